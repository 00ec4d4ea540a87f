package registry

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regclient/regclient/mod"
	"github.com/regclient/regclient/types/mediatype"
)

// Layer is a directory turned into one image layer.
type Layer struct {
	// Dir holds the files to add; their paths in the image are their paths relative to Dir.
	Dir string
	// Owner is "uid:gid" of every entry (e.g. "802:802"); empty is 0:0.
	Owner string
	// Time is the modification time of every entry, for a reproducible layer; zero is the Unix epoch.
	Time time.Time
}

// Overlay writes base (registry/repository@digest) with one layer added on top of every platform, made
// from layer.Dir, to target (registry/repository) by digest, with edit applied. The base's layers are
// copied registry to registry: mounted when target is on the same registry, so that none is downloaded.
//
// The layer is a gzip tar built reproducibly: the same files with the same modes, Owner and Time give the
// same layer digest. It holds Dir's regular files and symbolic links (stored as links, never followed, and
// nothing outside Dir is read), sorted by path, each with its permission bits (no setuid, setgid or sticky
// bit), uid and gid from Owner, no user or group names, and Time as its modification time. It holds no
// directory entries: a directory entry would replace the base's directory of the same path with its owner
// and mode (the base's /home/wso2carbon, owned by uid 802, say), and the base's directories cannot be known
// without downloading its layers. So a file's parent directories keep the base's owner and mode where the
// base has them; where it does not, the container runtime creates them as root with mode 0755, and empty
// directories in Dir are not reproduced. Any other kind of file (a device, a socket, a pipe) is an error.
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
	rTgt, editOpts, want, err := writeTo(target, edit)
	if err != nil {
		return fail(err)
	}
	f, err := layerTar(layer)
	if err != nil {
		return fail(err)
	}
	defer closeRemove(f)

	ctx, tr := withTransfer(ctx)
	src, err := c.readSource(ctx, rBase, want)
	if err != nil {
		return fail(err)
	}
	// mod.WithLayerAddTar gzips the tar (with Go's compress/gzip, so reproducibly) and pushes the layer
	// once, for every platform.
	w, err := c.write(ctx, tr, src, rTgt, src.imageLayers(), editOpts, mod.WithLayerAddTar(f, mediatype.OCI1LayerGzip, nil))
	if err != nil {
		return fail(err)
	}
	return w, nil
}

// layerTar writes the uncompressed tar of l (see Overlay) to a temporary file and returns it rewound; the
// caller closes and removes it.
func layerTar(l Layer) (*os.File, error) {
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
	// An os.Root keeps every open and stat inside Dir, even if a file is swapped for a symbolic link
	// while the layer is built.
	root, err := os.OpenRoot(l.Dir)
	if err != nil {
		return nil, fmt.Errorf("context directory %q: %w", l.Dir, err)
	}
	defer root.Close()
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
	if err != nil {
		return nil, fmt.Errorf("context directory %q: %w", l.Dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("context directory %q: no files to add", l.Dir)
	}
	slices.Sort(names)

	f, err := os.CreateTemp("", "harborflow-layer-*.tar")
	if err != nil {
		return nil, fmt.Errorf("building the layer: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	tw := tar.NewWriter(bw)
	for _, name := range names {
		if err = addTarEntry(tw, root, name, uid, gid, mtime); err != nil {
			break
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		closeRemove(f)
		return nil, fmt.Errorf("context directory %q: %w", l.Dir, err)
	}
	return f, nil
}

// addTarEntry writes the regular file or symbolic link name of root.
func addTarEntry(tw *tar.Writer, root *os.Root, name string, uid, gid int, mtime time.Time) error {
	fi, err := root.Lstat(name)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Uid: uid, Gid: gid, ModTime: mtime}
	if fi.Mode()&fs.ModeSymlink != 0 {
		hdr.Typeflag = tar.TypeSymlink
		if hdr.Linkname, err = root.Readlink(name); err != nil {
			return err
		}
		return tw.WriteHeader(hdr)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s changed while the layer was built", name)
	}
	rf, err := root.Open(name)
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
