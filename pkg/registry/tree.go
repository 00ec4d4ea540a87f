package registry

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/types/blob"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/harborflow/harborflow/pkg/logging"
)

// Base trees.
//
// An added layer must give, on every runtime, the tree a Dockerfile COPY gives, and runtimes differ where a
// layer leaves something out: a tar extractor (vfs, umoci) keeps an existing parent directory and follows a
// parent that is a symbolic link, while an overlayfs-based store (containerd's snapshotter, the overlay driver
// of podman, CRI-O and buildah) unpacks each layer into a directory of its own, where a missing parent is
// created as root 0755 and then hides the base's directory of the same path, and a parent that is a symbolic
// link below becomes a plain directory above. So the layer must hold every parent directory of what it adds,
// written as the base has it, and must put a path that goes through a symbolic link of the base where the
// link points. Both need the base's directories and links: the tree.
//
// The tree comes from the base's layers, streamed: each layer is downloaded and decompressed once, its tar
// headers are read and its contents discarded, and nothing is written to disk. What a layer holds is kept by
// layer digest in a TreeCache, so a typical update (the same OS layers, a new product layer) reads only the
// new layer. A layer's tree holds its directories, symbolic links and whiteouts; regular files and hard links
// are not kept (a context file replaces whatever is at its own path, on every runtime, so only parents matter).
// A directory a layer holds only implicitly (a file under it, no entry of its own) is not in its tree: a tar
// extractor keeps the lower layers' directory there.

// TreeCache keeps what base layers hold, by layer digest (a layer's content never changes, so an entry never
// goes stale). A failed Put is logged and costs only a later read of the layer again.
type TreeCache interface {
	// Get returns the data Put stored for digest; ok is false when there is none.
	Get(ctx context.Context, digest string) (data []byte, ok bool, err error)
	// Put stores data for digest.
	Put(ctx context.Context, digest string, data []byte) error
}

// Kinds of tree nodes.
const (
	nodeDir      = "d" // a directory
	nodeLink     = "l" // a symbolic link
	nodeWhiteout = "w" // .wh.<name>: name is deleted from the layers below
	nodeOpaque   = "o" // .wh..wh..opq: the directory's contents in the layers below are hidden
)

// treeVersion is the encoding version of a cached layer tree; a cached tree of another version is read again.
const treeVersion = 1

// maxLinks bounds the symbolic links followed resolving one path (Linux's MAXSYMLINKS).
const maxLinks = 40

// node is one directory, symbolic link or whiteout of a layer, as its tar header gives it.
type node struct {
	Name string `json:"n"` // relative, clean: "home/wso2carbon"
	Kind string `json:"k"`
	// Mode is the permission bits with setuid, setgid and sticky; UID and GID the owner; Sec and Nsec the
	// modification time; Xattrs the extended attributes (PAX SCHILY.xattr.*), of a directory.
	Mode   int64             `json:"m,omitempty"`
	UID    int               `json:"u,omitempty"`
	GID    int               `json:"g,omitempty"`
	Sec    int64             `json:"s,omitempty"`
	Nsec   int64             `json:"ns,omitempty"`
	Xattrs map[string]string `json:"x,omitempty"`
	Link   string            `json:"l,omitempty"` // a symbolic link's target, as written
}

// layerTree is what one layer holds: its directories, symbolic links and whiteouts, in tar order.
type layerTree struct {
	Version int    `json:"v"`
	Nodes   []node `json:"nodes"`
}

// tree is a base image's merged directories and symbolic links, by path: its layers applied in order.
type tree map[string]*node

// paxXattr prefixes the PAX records of extended attributes.
const paxXattr = "SCHILY.xattr."

// baseTrees gathers the trees of a base's layers, each distinct layer read at most once: from the cache when
// it has it, while a copy to another registry downloads the layer anyway (tee), or else streamed from the
// registry. Trees it reads go into the cache.
type baseTrees struct {
	c     *Client
	r     ref.Ref // the repository holding the layers
	cache TreeCache

	mu    sync.Mutex
	trees map[digest.Digest]*layerTree
	want  []descriptor.Descriptor // distinct layers, in the order first given
}

// newBaseTrees looks layers (blobs of r) up in cache, which may be nil.
func (c *Client) newBaseTrees(ctx context.Context, r ref.Ref, layers []descriptor.Descriptor, cache TreeCache) *baseTrees {
	bt := &baseTrees{c: c, r: r, cache: cache, trees: map[digest.Digest]*layerTree{}}
	seen := map[digest.Digest]bool{}
	for _, l := range layers {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		bt.want = append(bt.want, l)
		if lt := bt.cached(ctx, l.Digest); lt != nil {
			bt.trees[l.Digest] = lt
		}
	}
	return bt
}

// cached is the cache's tree of layer d; nil when it has none (a cache that fails is logged and passed by).
func (bt *baseTrees) cached(ctx context.Context, d digest.Digest) *layerTree {
	if bt.cache == nil {
		return nil
	}
	data, ok, err := bt.cache.Get(ctx, d.String())
	if err != nil {
		bt.c.log.Warn("reading a layer tree from the cache; reading the layer", zap.String(logging.FieldDigest, d.String()), zap.Error(err))
	}
	if !ok {
		return nil
	}
	lt, err := decodeTree(data)
	if err != nil {
		bt.c.log.Warn("a cached layer tree does not decode; reading the layer", zap.String(logging.FieldDigest, d.String()), zap.Error(err))
		return nil
	}
	return lt
}

// has reports whether the tree of layer d is known.
func (bt *baseTrees) has(d digest.Digest) bool {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return bt.trees[d] != nil
}

// keep records the tree of layer d and stores it in the cache.
func (bt *baseTrees) keep(ctx context.Context, d digest.Digest, lt *layerTree) {
	bt.mu.Lock()
	bt.trees[d] = lt
	bt.mu.Unlock()
	if bt.cache == nil {
		return
	}
	data, err := encodeTree(lt)
	if err == nil {
		err = bt.cache.Put(ctx, d.String(), data)
	}
	if err != nil {
		bt.c.log.Warn("caching a layer tree", zap.String(logging.FieldDigest, d.String()), zap.Error(err))
	}
}

// tee returns, for a layer whose tree is still wanted, a BlobCopy option that reads the tree from the bytes the
// copy downloads, and finish, which the caller calls with the copy's result once BlobCopy returns; for any
// other blob, nil and a finish that does nothing. A copy that mounts the blob, or finds it in the target, reads
// nothing: fill reads those layers.
func (bt *baseTrees) tee(ctx context.Context, d descriptor.Descriptor) (regclient.BlobOpts, func(error)) {
	if bt == nil || bt.has(d.Digest) {
		return nil, func(error) {}
	}
	var (
		pw   *io.PipeWriter
		done chan struct{}
		lt   *layerTree
		serr error
	)
	hook := regclient.BlobWithReaderHook(func(src *blob.BReader) (*blob.BReader, error) {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		done = make(chan struct{})
		go func() {
			defer close(done)
			lt, serr = readCompressedTree(ctx, pr)
			// The copy goes on whatever the scan found: keep draining the pipe so it never blocks.
			_, _ = io.Copy(io.Discard, pr)
		}()
		return blob.NewReader(blob.WithReader(&teeBody{src: src, w: pw}), blob.WithDesc(src.GetDescriptor())), nil
	})
	finish := func(copyErr error) {
		if pw == nil {
			return // mounted, or the target had it
		}
		if copyErr == nil {
			_ = pw.Close()
		} else {
			_ = pw.CloseWithError(copyErr)
		}
		<-done
		if copyErr == nil && serr == nil {
			// The copy read the blob to its end, where its digest was checked.
			bt.keep(ctx, d.Digest, lt)
		}
	}
	return hook, finish
}

// teeBody passes a downloaded blob to the upload and a copy of every byte to a tree scan.
type teeBody struct {
	src *blob.BReader
	w   *io.PipeWriter
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		_, _ = t.w.Write(p[:n]) // the scan drains the pipe to its end, also after an error of its own
	}
	return n, err
}

func (t *teeBody) Close() error { return t.src.Close() }

// fill reads, concurrently, the trees of the layers still missing, streaming each from the registry.
func (bt *baseTrees) fill(ctx context.Context) error {
	var todo []descriptor.Descriptor
	for _, l := range bt.want {
		if !bt.has(l.Digest) {
			todo = append(todo, l)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, l := range todo {
		g.Go(func() error {
			if len(l.URLs) > 0 {
				return fmt.Errorf("reading base layer %s: a foreign layer (it is fetched from %s), whose tree cannot be read", l.Digest, l.URLs[0])
			}
			lt, err := bt.c.scanLayer(ctx, bt.r, l)
			if err != nil {
				return fmt.Errorf("reading base layer %s of %s: %w", l.Digest, bt.r.CommonName(), err)
			}
			bt.keep(ctx, l.Digest, lt)
			return nil
		})
	}
	return g.Wait()
}

// merged is the tree of an image made of layers (all known: after fill).
func (bt *baseTrees) merged(layers []descriptor.Descriptor) tree {
	lts := make([]*layerTree, len(layers))
	bt.mu.Lock()
	for i, l := range layers {
		lts[i] = bt.trees[l.Digest]
	}
	bt.mu.Unlock()
	return mergeTrees(lts)
}

// scanLayer streams the layer blob d of r and reads its tree. readCompressedTree reads the blob to its end, so
// that regclient checks its digest: a tree is only kept from a layer that verified.
func (c *Client) scanLayer(ctx context.Context, r ref.Ref, d descriptor.Descriptor) (*layerTree, error) {
	b, err := c.rc.BlobGet(ctx, r, d)
	if err != nil {
		return nil, mapErr(err)
	}
	defer b.Close()
	return readCompressedTree(ctx, b)
}

// readCompressedTree reads the tree of a layer blob, decompressing it, and then reads the rest of the blob
// (padding after the archive, the compressor's trailer) without decompressing it: the bytes are needed for
// the blob's digest, what they decompress to is not.
//
// Decompression stops when ctx ends, also where it needs no more input (a layer that decompresses to far more
// than it is).
func readCompressedTree(ctx context.Context, r io.Reader) (*layerTree, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	rd, closeRd, err := decompress(br)
	if err != nil {
		return nil, err
	}
	defer closeRd()
	lt, err := readTree(ctxReader{ctx: ctx, r: rd})
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("reading the layer: %w", mapErr(err))
	}
	return lt, nil
}

// ctxReader fails its reads once ctx has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// decompress picks the decompressor from the stream's first bytes (a layer's media type may not say, and
// Docker's does not for zstd): gzip, zstd or an uncompressed tar.
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, mapErr(err)
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		// A gzip layer may be several members; read them all, as the runtimes do.
		return zr, func() { _ = zr.Close() }, nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// readTree reads the tar headers of one uncompressed layer.
func readTree(rd io.Reader) (*layerTree, error) {
	lt := &layerTree{Version: treeVersion}
	tr := tar.NewReader(rd)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return lt, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the layer's tar: %w", mapErr(err))
		}
		name := cleanName(h.Name)
		if name == "" {
			continue // the root itself
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case base == ".wh..wh..opq":
			lt.Nodes = append(lt.Nodes, node{Name: dir, Kind: nodeOpaque})
		case strings.HasPrefix(base, ".wh."):
			lt.Nodes = append(lt.Nodes, node{Name: path.Join(dir, strings.TrimPrefix(base, ".wh.")), Kind: nodeWhiteout})
		case h.Typeflag == tar.TypeDir:
			n := node{Name: name, Kind: nodeDir, Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid, Sec: h.ModTime.Unix(),
				Nsec: int64(h.ModTime.Nanosecond())}
			for k, v := range h.PAXRecords {
				if x, ok := strings.CutPrefix(k, paxXattr); ok {
					if n.Xattrs == nil {
						n.Xattrs = map[string]string{}
					}
					n.Xattrs[x] = v
				}
			}
			lt.Nodes = append(lt.Nodes, n)
		case h.Typeflag == tar.TypeSymlink:
			lt.Nodes = append(lt.Nodes, node{Name: name, Kind: nodeLink, Link: h.Linkname})
		}
	}
}

// cleanName makes a tar entry's name relative and clean: "./usr/lib/" → "usr/lib"; the root is "".
func cleanName(name string) string {
	name = path.Clean("/" + name)
	return strings.TrimPrefix(name, "/")
}

func encodeTree(lt *layerTree) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := json.NewEncoder(zw).Encode(lt); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func decodeTree(data []byte) (*layerTree, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	lt := &layerTree{}
	if err := json.NewDecoder(zr).Decode(lt); err != nil {
		return nil, err
	}
	if lt.Version != treeVersion {
		return nil, fmt.Errorf("layer tree version %d, want %d", lt.Version, treeVersion)
	}
	return lt, nil
}

// mergeTrees applies layer trees in order, as a runtime applies layers: a layer's whiteouts first (they act
// on the layers below only), then its directories and links. A link that replaces a directory hides what was
// below the directory.
func mergeTrees(layers []*layerTree) tree {
	t := tree{}
	for _, lt := range layers {
		for i := range lt.Nodes {
			switch n := &lt.Nodes[i]; n.Kind {
			case nodeOpaque:
				t.removeBelow(n.Name)
			case nodeWhiteout:
				delete(t, n.Name)
				t.removeBelow(n.Name)
			}
		}
		for i := range lt.Nodes {
			switch n := &lt.Nodes[i]; n.Kind {
			case nodeDir:
				t[n.Name] = n
			case nodeLink:
				if old := t[n.Name]; old != nil && old.Kind == nodeDir {
					t.removeBelow(n.Name)
				}
				t[n.Name] = n
			}
		}
	}
	return t
}

// removeBelow removes everything under dir (not dir itself); "" is the root.
func (t tree) removeBelow(dir string) {
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	for name := range t {
		if strings.HasPrefix(name, prefix) && name != dir {
			delete(t, name)
		}
	}
}

// resolve returns where name (relative, clean) lands in the tree: every parent that is a symbolic link of the
// base is followed, within the image's root (an absolute target starts from the root, ".." stops there), as a
// tar extractor and a Dockerfile COPY do. The last component is not followed: what is added there replaces a
// link of the base, on every runtime and in a COPY alike.
func (t tree) resolve(name string) (string, error) {
	parts := strings.Split(name, "/")
	var done []string
	links := 0
	for len(parts) > 1 {
		p := parts[0]
		parts = parts[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		n := t[strings.Join(append(done, p), "/")]
		if n == nil || n.Kind != nodeLink {
			done = append(done, p)
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: more than %d symbolic links of the base on its way", name, maxLinks)
		}
		if strings.HasPrefix(n.Link, "/") {
			done = done[:0]
		}
		parts = append(strings.Split(n.Link, "/"), parts...)
	}
	last := parts[0]
	if last == "" || last == "." || last == ".." {
		return "", fmt.Errorf("%s: its last component is %q", name, last)
	}
	return strings.Join(append(done, last), "/"), nil
}

// dirHeader is the tar header of directory name: the base's own owner, mode, time and extended attributes
// where the tree has the directory, else uid:gid, mode 0755 and mtime.
func (t tree) dirHeader(name string, uid, gid int, mtime time.Time) *tar.Header {
	n := t[name]
	if n == nil || n.Kind != nodeDir {
		return &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, Uid: uid, Gid: gid, ModTime: mtime}
	}
	h := &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: n.Mode, Uid: n.UID, Gid: n.GID, ModTime: time.Unix(n.Sec, n.Nsec)}
	if n.Nsec != 0 || len(n.Xattrs) > 0 {
		// USTAR would round the time to the second and drop the attributes.
		h.Format = tar.FormatPAX
	}
	for _, k := range slices.Sorted(maps.Keys(n.Xattrs)) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+k] = n.Xattrs[k]
	}
	return h
}
