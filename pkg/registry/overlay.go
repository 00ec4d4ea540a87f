package registry

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/mediatype"
	v1 "github.com/regclient/regclient/types/oci/v1"
	"github.com/regclient/regclient/types/ref"
)

// Layer is a directory turned into one image layer.
type Layer struct {
	// Dir holds the files to add; their paths in the image are their paths relative to Dir.
	Dir string
	// Owner is "uid:gid" of every file added, and of every parent directory the base does not have (e.g.
	// "802:802"); empty is 0:0.
	Owner string
	// Time is the modification time of every file added, and of every parent directory the base does not
	// have, for a reproducible layer; zero is the Unix epoch.
	Time time.Time
	// Trees keeps what the base's layers hold by layer digest, so that each base layer is read once; nil reads
	// every base layer on every call.
	Trees TreeCache
}

// Overlay writes base (registry/repository@digest) with one layer added on top of every platform, made
// from layer.Dir, to target (registry/repository) by digest, with edit applied. The base's layers are
// copied registry to registry: mounted when target is on the same registry, so that none is downloaded.
//
// The layer gives, on every runtime, the tree a Dockerfile `COPY --chown=<Owner>` of each file gives:
//
//   - Dir's regular files and symbolic links (stored as links, never followed, and nothing outside Dir is
//     read), each with its permission bits (no setuid, setgid or sticky bit), uid and gid from Owner, no user
//     or group names, and Time as its modification time. Any other kind of file (a device, a socket, a pipe)
//     is an error; empty directories of Dir are not added.
//   - A path that goes through a symbolic link of the base lands where the link points, and the link stays:
//     lib/jdbc.jar on a base whose /lib is a link to usr/lib is added as usr/lib/jdbc.jar. A file whose own
//     path is a link of the base replaces the link, as COPY does.
//   - Every parent directory of an added path, as a directory entry: with the base's own owner, mode,
//     modification time and extended attributes where the base has that directory (/home/wso2carbon stays
//     802:802 0750), and with Owner, mode 0755 and Time where it does not. Without these entries an
//     overlayfs-based runtime (containerd, the overlay storage of podman, CRI-O and buildah) would create the
//     missing parents as root 0755, hiding the base's own, while a tar extractor kept them.
//
// To know the base's directories and links, Overlay streams the tar headers of the base's layers (see "Base
// trees" in tree.go; never written to disk, each layer digest read once with layer.Trees); the bytes it reads
// are in Written.BytesRead. The layer is a gzip tar built reproducibly: the same files, Owner, Time and base
// give the same layer digest. Platforms whose bases give the same layer share one blob; where they differ
// (their directories differ), each platform gets its own.
//
// Dir must exist and hold at least one file.
func (c *Client) Overlay(ctx context.Context, base, target string, layer Layer, edit Edit) (Written, error) {
	fail := func(err error) (Written, error) {
		return Written{}, fmt.Errorf("overlay of %s to %s: %w", base, target, err)
	}
	rBase, err := pinnedRef(base)
	if err != nil {
		return fail(err)
	}
	rTgt, ed, want, err := writeTo(target, edit)
	if err != nil {
		return fail(err)
	}
	cf, err := openContext(layer)
	if err != nil {
		return fail(err)
	}
	defer cf.close()

	ctx, tr := withTransfer(ctx)
	src, err := c.readSource(ctx, rBase, want)
	if err != nil {
		return fail(err)
	}
	layers, err := c.overlayLayers(ctx, src, rTgt, cf, layer.Trees)
	if err != nil {
		return fail(err)
	}
	defer layers.remove()
	w, err := c.write(ctx, tr, src, rTgt, src.imageLayers(), ed)
	if err != nil {
		return fail(err)
	}
	return w, nil
}

// addedLayer is a layer an overlay adds: its gzipped tar, and its descriptor and diff ID.
type addedLayer struct {
	gz     *os.File
	desc   descriptor.Descriptor // OCI gzip layer
	diffID digest.Digest         // of the uncompressed tar
	// history is the layer's entry in the config's history.
	history v1.History
}

// addedLayers are the layers of an overlay, one per distinct tar.
type addedLayers []*addedLayer

// overlayLayers builds the overlay's layer for every platform image of src — the context placed in that
// image's tree — and gives each image its layer (srcImage.add). Platforms whose trees give the same tar share
// one. The base's layers are copied to the target first, so that a layer downloaded for another registry is
// read for its tree on the way (the write's own copy then finds every blob there).
func (c *Client) overlayLayers(ctx context.Context, src *source, tgt ref.Ref, cf *contextFiles, cache TreeCache) (addedLayers, error) {
	var all []descriptor.Descriptor
	for _, img := range src.images {
		all = append(all, img.layers...)
	}
	trees := c.newBaseTrees(ctx, src.ref, all, cache)
	if err := c.copyBlobs(ctx, tgt, src.imageLayers(), trees); err != nil {
		return nil, err
	}
	if err := trees.fill(ctx); err != nil {
		return nil, err
	}
	var out addedLayers
	for _, img := range src.images {
		l, err := cf.layer(trees.merged(img.layers))
		if err != nil {
			out.remove()
			return nil, err
		}
		if i := slices.IndexFunc(out, func(a *addedLayer) bool { return a.diffID == l.diffID }); i >= 0 {
			closeRemove(l.gz)
			img.add = out[i]
			continue
		}
		l.history = v1.History{Created: historyTime(cf.setTime, img.oc.Created), CreatedBy: fmt.Sprintf("harborflow overlay: %d files", len(cf.names)),
			Comment: "harborflow"}
		img.add = l
		out = append(out, l)
	}
	return out, nil
}

// historyTime is the creation time of the added layer's history entry: the Layer's Time when it has one, else
// the base image's creation time, else the Unix epoch. Never the time of the write: the same base and context
// give the same image, also when a crashed write is redone by another process.
func historyTime(set time.Time, base *time.Time) *time.Time {
	t := time.Unix(0, 0).UTC()
	switch {
	case !set.IsZero():
		t = set
	case base != nil:
		t = *base
	}
	return &t
}

func (ls addedLayers) remove() {
	for _, l := range ls {
		closeRemove(l.gz)
	}
}

// contextFiles are the files of a Layer's Dir, listed once.
type contextFiles struct {
	dir      string
	root     *os.Root
	names    []string // regular files and symbolic links, relative, sorted
	uid, gid int
	mtime    time.Time // of the files, and of the parents the base lacks
	setTime  time.Time // Layer.Time as given (zero when not)
}

// openContext lists the regular files and symbolic links of l.Dir. An os.Root keeps every open and stat
// inside Dir, even if a file is swapped for a symbolic link while the layer is built.
func openContext(l Layer) (*contextFiles, error) {
	uid, gid, err := parseOwner(l.Owner)
	if err != nil {
		return nil, err
	}
	mtime := time.Unix(0, 0)
	if !l.Time.IsZero() {
		mtime = l.Time.Truncate(time.Second)
	}
	if l.Dir == "" {
		return nil, errors.New("context directory: none given")
	}
	root, err := os.OpenRoot(l.Dir)
	if err != nil {
		return nil, fmt.Errorf("context directory %q: %w", l.Dir, err)
	}
	var names []string
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return nil
		case d.Type().IsRegular(), d.Type()&fs.ModeSymlink != 0:
			names = append(names, name)
			return nil
		}
		return fmt.Errorf("%s is a %s; only regular files and symbolic links can be added", name, d.Type())
	})
	if err == nil && len(names) == 0 {
		err = errors.New("no files to add")
	}
	if err != nil {
		_ = root.Close()
		return nil, fmt.Errorf("context directory %q: %w", l.Dir, err)
	}
	slices.Sort(names)
	return &contextFiles{dir: l.Dir, root: root, names: names, uid: uid, gid: gid, mtime: mtime, setTime: l.Time}, nil
}

func (cf *contextFiles) close() { _ = cf.root.Close() }

// layer writes the layer of the context placed in the base tree t (see Overlay) to a temporary file, as a gzip
// tar made reproducibly (Go's gzip at its default level, no name or time in its header), and returns it with
// its descriptor and diff ID; the caller closes and removes the file.
func (cf *contextFiles) layer(t tree) (*addedLayer, error) {
	fail := func(err error) (*addedLayer, error) {
		return nil, fmt.Errorf("context directory %q: %w", cf.dir, err)
	}
	// Where each file lands, and the parent directories of those places.
	at := make(map[string]string, len(cf.names)) // image path → context name
	dirs := map[string]bool{}
	for _, name := range cf.names {
		p, err := t.resolve(name)
		if err != nil {
			return fail(err)
		}
		if other, ok := at[p]; ok {
			return fail(fmt.Errorf("%s and %s both land at /%s in the image (the base's symbolic links lead them there)", other, name, p))
		}
		at[p] = name
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	paths := slices.Collect(maps.Keys(dirs))
	for p := range at {
		if dirs[p] {
			return fail(fmt.Errorf("%s lands at /%s, which is also a parent directory of another file of the context", at[p], p))
		}
		paths = append(paths, p)
	}
	slices.Sort(paths) // a parent sorts before what it holds

	f, err := os.CreateTemp("", "harborflow-layer-*.tar.gz")
	if err != nil {
		return fail(fmt.Errorf("building the layer: %w", err))
	}
	// tar → (diff ID) → gzip → (digest) → file, in one pass.
	gzSum, tarSum := sha256.New(), sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, gzSum), 1<<16)
	zw := gzip.NewWriter(bw)
	tw := tar.NewWriter(io.MultiWriter(zw, tarSum))
	for _, p := range paths {
		if dirs[p] {
			err = tw.WriteHeader(t.dirHeader(p, cf.uid, cf.gid, cf.mtime))
		} else {
			err = cf.addFile(tw, at[p], p)
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if err != nil {
		closeRemove(f)
		return fail(err)
	}
	return &addedLayer{gz: f, diffID: digest.NewDigestFromBytes(digest.SHA256, tarSum.Sum(nil)), desc: descriptor.Descriptor{
		MediaType: mediatype.OCI1LayerGzip, Digest: digest.NewDigestFromBytes(digest.SHA256, gzSum.Sum(nil)), Size: size}}, nil
}

// addFile writes the regular file or symbolic link name of the context at path p of the image.
func (cf *contextFiles) addFile(tw *tar.Writer, name, p string) error {
	fi, err := cf.root.Lstat(name)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: p, Mode: int64(fi.Mode().Perm()), Uid: cf.uid, Gid: cf.gid, ModTime: cf.mtime}
	if fi.Mode()&fs.ModeSymlink != 0 {
		hdr.Typeflag = tar.TypeSymlink
		if hdr.Linkname, err = cf.root.Readlink(name); err != nil {
			return err
		}
		return tw.WriteHeader(hdr)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s changed while the layer was built", name)
	}
	rf, err := cf.root.Open(name)
	if err != nil {
		return err
	}
	defer rf.Close()
	if ofi, err := rf.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return fmt.Errorf("%s changed while the layer was built", name)
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, rf, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// parseOwner parses "uid:gid"; empty is 0:0.
func parseOwner(s string) (uid, gid int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	u, g, ok := strings.Cut(s, ":")
	if ok {
		uid, err = strconv.Atoi(u)
	}
	if ok && err == nil {
		gid, err = strconv.Atoi(g)
	}
	if !ok || err != nil || uid < 0 || gid < 0 || uid > 1<<31-1 || gid > 1<<31-1 {
		return 0, 0, fmt.Errorf("owner %q: want uid:gid, two numbers", s)
	}
	return uid, gid, nil
}
