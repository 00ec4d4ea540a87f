package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// tarOf writes headers (no contents) as an uncompressed tar.
func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bytes.Repeat([]byte{'x'}, int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func dirH(name string, mode int64, uid int) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid, ModTime: time.Unix(100, 0)}
}

func linkH(name, target string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}
}

func fileH(name string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}
}

// Layers are read whatever their compression, and only directories, links and whiteouts are kept.
func TestReadCompressedTree(t *testing.T) {
	t.Parallel()
	raw := tarOf(t, dirH("./usr/", 0o755, 0), linkH("lib", "usr/lib"), fileH("usr/lib/libc.so"),
		fileH("opt/.wh.old"), fileH("var/cache/.wh..wh..opq"),
		&tar.Header{Typeflag: tar.TypeDir, Name: "home/wso2carbon/", Mode: 0o2750, Uid: 802, Gid: 802, ModTime: time.Unix(5, 7),
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}, Format: tar.FormatPAX})
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	ze, _ := zstd.NewWriter(&zs)
	_, _ = ze.Write(raw)
	_ = ze.Close()
	want := []node{
		{Name: "usr", Kind: nodeDir, Mode: 0o755, Sec: 100},
		{Name: "lib", Kind: nodeLink, Link: "usr/lib"},
		{Name: "opt/old", Kind: nodeWhiteout},
		{Name: "var/cache", Kind: nodeOpaque},
		{Name: "home/wso2carbon", Kind: nodeDir, Mode: 0o2750, UID: 802, GID: 802, Sec: 5, Nsec: 7, Xattrs: map[string]string{"user.k": "v"}},
	}
	for name, blob := range map[string][]byte{"tar": raw, "gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		r := bytes.NewReader(blob)
		lt, err := readCompressedTree(context.Background(), r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Len() != 0 {
			t.Errorf("%s: %d bytes left unread; the digest check needs the whole blob", name, r.Len())
		}
		if len(lt.Nodes) != len(want) {
			t.Fatalf("%s: nodes %+v, want %+v", name, lt.Nodes, want)
		}
		for i := range want {
			g, w := lt.Nodes[i], want[i]
			if g.Name != w.Name || g.Kind != w.Kind || g.Mode != w.Mode || g.UID != w.UID || g.GID != w.GID || g.Sec != w.Sec ||
				g.Nsec != w.Nsec || g.Link != w.Link || len(g.Xattrs) != len(w.Xattrs) || g.Xattrs["user.k"] != w.Xattrs["user.k"] {
				t.Errorf("%s: node %d = %+v, want %+v", name, i, g, w)
			}
		}
		data, err := encodeTree(lt)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeTree(data)
		if err != nil || len(back.Nodes) != len(lt.Nodes) || back.Nodes[4].Xattrs["user.k"] != "v" {
			t.Errorf("%s: encode/decode: %+v, %v", name, back, err)
		}
	}
	if _, err := readCompressedTree(context.Background(), strings.NewReader("not a tar at all, long enough to be read as a header? no")); err == nil {
		t.Error("garbage read as a layer")
	}
}

func treeOf(t *testing.T, layers ...[]*tar.Header) tree {
	t.Helper()
	var lts []*layerTree
	for _, hdrs := range layers {
		lt, err := readTree(bytes.NewReader(tarOf(t, hdrs...)))
		if err != nil {
			t.Fatal(err)
		}
		lts = append(lts, lt)
	}
	return mergeTrees(lts)
}

// Layers merge as a runtime applies them: whiteouts act on the layers below, an opaque directory hides what
// was below it, a link over a directory hides the directory's contents.
func TestMergeTrees(t *testing.T) {
	t.Parallel()
	tr := treeOf(t,
		[]*tar.Header{dirH("a", 0o755, 0), dirH("a/b", 0o700, 1), dirH("c", 0o755, 0), dirH("c/d", 0o755, 0), dirH("e", 0o755, 0),
			dirH("e/f", 0o755, 0), dirH("g", 0o755, 0)},
		[]*tar.Header{fileH("a/.wh.b"), fileH("c/.wh..wh..opq"), dirH("c/new", 0o711, 2), linkH("e", "g"), dirH("a/b2", 0o755, 0)},
		[]*tar.Header{dirH("a/b", 0o750, 3)},
	)
	var got []string
	for name, n := range tr {
		got = append(got, name+":"+n.Kind)
	}
	slices.Sort(got)
	want := []string{"a:d", "a/b:d", "a/b2:d", "c:d", "c/new:d", "e:l", "g:d"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
	if tr["a/b"].Mode != 0o750 || tr["a/b"].UID != 3 {
		t.Errorf("a/b = %+v, want the top layer's", tr["a/b"])
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tr := treeOf(t, []*tar.Header{
		dirH("usr", 0o755, 0), dirH("usr/lib", 0o755, 0), linkH("lib", "usr/lib"), linkH("lib64", "/usr/lib"),
		dirH("opt", 0o755, 0), linkH("opt/current", "../opt/app-1"), dirH("opt/app-1", 0o755, 0),
		linkH("up", "../../../../usr"), linkH("loop1", "loop2"), linkH("loop2", "loop1"), linkH("etc/alt", "java"),
	})
	for name, want := range map[string]string{
		"lib/jdbc.jar":          "usr/lib/jdbc.jar",
		"lib64/x.so":            "usr/lib/x.so",
		"opt/current/conf/a":    "opt/app-1/conf/a",
		"up/lib/z":              "usr/lib/z", // .. stops at the root
		"lib":                   "lib",       // the last component is not followed
		"opt/current":           "opt/current",
		"home/wso2carbon/a.jks": "home/wso2carbon/a.jks",
		"etc/alt/x":             "etc/java/x", // a relative target is taken from the link's directory
	} {
		got, err := tr.resolve(name)
		if err != nil || got != want {
			t.Errorf("resolve(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := tr.resolve("loop1/x"); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("resolve through a loop: %v", err)
	}
}

// Context files that the base's links lead to one place, or to a place another file needs as a directory,
// are refused with both names.
func TestContextCollisions(t *testing.T) {
	t.Parallel()
	tr := treeOf(t, []*tar.Header{dirH("usr", 0o755, 0), dirH("usr/lib", 0o755, 0), linkH("lib", "usr/lib"), linkH("d", "usr")})
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{"lib/a.jar", "usr/lib/a.jar"}, "both land at /usr/lib/a.jar"},
		{[]string{"usr/lib", "d/lib/x"}, "also a parent directory"},
	} {
		dir := t.TempDir()
		for _, f := range tc.files {
			p := filepath.Join(dir, filepath.FromSlash(f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cf, err := openContext(Layer{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		l, err := cf.layer(tr)
		cf.close()
		if err == nil {
			closeRemove(l.gz)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error saying %q", tc.files, err, tc.want)
		}
	}
}

// FuzzReadCompressedTree: whatever a layer blob holds, reading its tree neither panics nor hangs, and a tree
// that was read survives its cache encoding.
func FuzzReadCompressedTree(f *testing.F) {
	f.Add(tarOf(&testing.T{}, dirH("usr", 0o755, 0), linkH("lib", "usr/lib"), fileH("opt/.wh.x"), fileH("a/.wh..wh..opq")))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(tarOf(&testing.T{}, dirH("home/wso2carbon", 0o750, 802)))
	_ = zw.Close()
	f.Add(gz.Bytes())
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, blob []byte) {
		lt, err := readCompressedTree(context.Background(), bytes.NewReader(blob))
		if err != nil {
			return
		}
		for _, n := range lt.Nodes {
			if n.Name == "" || strings.HasPrefix(n.Name, "/") || strings.Contains("/"+n.Name+"/", "/../") {
				t.Fatalf("node name %q is not relative and clean", n.Name)
			}
		}
		data, err := encodeTree(lt)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeTree(data)
		if err != nil || len(back.Nodes) != len(lt.Nodes) {
			t.Fatalf("round trip: %d nodes, %v; want %d", len(back.Nodes), err, len(lt.Nodes))
		}
		mergeTrees([]*layerTree{lt, back})
	})
}

// FuzzResolve: whatever links a base holds, a path resolves within the image's root, to a clean relative
// path, or fails; it never loops.
func FuzzResolve(f *testing.F) {
	f.Add("lib", "usr/lib", "lib/jdbc.jar")
	f.Add("a", "/../../a/b", "a/x/y")
	f.Add("a", "a", "a/b")
	f.Add("x/y", "../../..", "x/y/z/w")
	f.Fuzz(func(t *testing.T, link, target, name string) {
		link, name = cleanName(link), cleanName(name)
		if link == "" || name == "" {
			return
		}
		tr := tree{link: &node{Name: link, Kind: nodeLink, Link: target}, "usr": &node{Name: "usr", Kind: nodeDir}}
		got, err := tr.resolve(name)
		if err != nil {
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || got != cleanName(got) || strings.HasSuffix(got, "/") {
			t.Fatalf("resolve(%q) with %s -> %q = %q: not a clean path within the root", name, link, target, got)
		}
		if path.Base(got) != path.Base(name) {
			t.Fatalf("resolve(%q) = %q: the last component changed", name, got)
		}
	})
}
