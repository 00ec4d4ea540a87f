package buildahtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/harborflow/harborflow/pkg/buildah"
)

// Kinds of Entry.
const (
	TypeDir     = "dir"
	TypeFile    = "file"
	TypeSymlink = "symlink"
	TypeOther   = "other" // a device, a socket, a pipe
)

// Entry is what a root file system shows at one path.
type Entry struct {
	// Type is TypeDir, TypeFile, TypeSymlink or TypeOther.
	Type string
	// Mode holds the permission bits and fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky, nothing else.
	Mode fs.FileMode
	// UID and GID own the entry (a symbolic link's own, not its target's).
	UID, GID int
	// Link is a symbolic link's target.
	Link string
	// SHA256 is the hex digest of a file's content.
	SHA256 string
}

// String describes e as Diff prints it: "dir 802:802 0750", "file 0:0 0644 sha256:0123456789ab",
// "symlink 0:0 -> usr/lib".
func (e Entry) String() string {
	s := fmt.Sprintf("%s %d:%d", e.Type, e.UID, e.GID)
	switch e.Type {
	case TypeSymlink:
		return s + " -> " + e.Link
	case TypeFile:
		return fmt.Sprintf("%s %s sha256:%.12s", s, octal(e.Mode), e.SHA256)
	}
	return s + " " + octal(e.Mode)
}

// octal writes mode as chmod takes it: 0750, 1777, 4755.
func octal(mode fs.FileMode) string {
	m := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Sprintf("%04o", m)
}

// Tree is a root file system: every path below the root ("home/wso2carbon", slash-separated, without a
// leading slash) and what is there. The root itself is not in it.
type Tree map[string]Entry

// ReadTree walks the root file system at root without following symbolic links.
func ReadTree(root string) (Tree, error) {
	tree := Tree{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		e, err := readEntry(path)
		if err != nil {
			return err
		}
		tree[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the root file system %s: %w", root, err)
	}
	return tree, nil
}

// readEntry reads what is at path, without following a symbolic link.
func readEntry(path string) (Entry, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.UID, e.GID = int(st.Uid), int(st.Gid)
	}
	switch {
	case fi.IsDir():
		e.Type = TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		if e.Link, err = os.Readlink(path); err != nil {
			return Entry{}, err
		}
	case fi.Mode().IsRegular():
		e.Type = TypeFile
		if e.SHA256, err = fileDigest(path); err != nil {
			return Entry{}, err
		}
	default:
		e.Type = TypeOther
	}
	return e, nil
}

// fileDigest returns the hex SHA-256 of the file at path.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DiffOption adjusts what Diff compares.
type DiffOption func(*diffConf)

type diffConf struct {
	ignore []string
}

// Ignore leaves paths, and everything below them, out of the comparison.
func Ignore(paths ...string) DiffOption {
	return func(c *diffConf) { c.ignore = append(c.ignore, paths...) }
}

// Diff lists, in path order, how got differs from want, one line per path: a path that is missing, one that
// is not wanted, and differences of type, owner, mode, link target and content. Modification times are not
// compared. No difference gives nil.
func Diff(want, got Tree, opts ...DiffOption) []string {
	var c diffConf
	for _, o := range opts {
		o(&c)
	}
	paths := slices.Sorted(maps.Keys(want))
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []string
	for _, p := range paths {
		if c.ignored(p) {
			continue
		}
		w, inWant := want[p]
		g, inGot := got[p]
		switch {
		case !inGot:
			out = append(out, fmt.Sprintf("%s: missing (want %s)", p, w))
		case !inWant:
			out = append(out, fmt.Sprintf("%s: not wanted (got %s)", p, g))
		case w.Type != g.Type:
			out = append(out, fmt.Sprintf("%s: got %s, want %s", p, g, w))
		default:
			var d []string
			if w.UID != g.UID || w.GID != g.GID {
				d = append(d, fmt.Sprintf("owner %d:%d, want %d:%d", g.UID, g.GID, w.UID, w.GID))
			}
			if w.Mode != g.Mode {
				d = append(d, fmt.Sprintf("mode %s, want %s", octal(g.Mode), octal(w.Mode)))
			}
			if w.Link != g.Link {
				d = append(d, fmt.Sprintf("link to %s, want %s", g.Link, w.Link))
			}
			if w.SHA256 != g.SHA256 {
				d = append(d, fmt.Sprintf("content sha256:%.12s, want sha256:%.12s", g.SHA256, w.SHA256))
			}
			if len(d) > 0 {
				out = append(out, fmt.Sprintf("%s (%s): %s", p, w.Type, strings.Join(d, "; ")))
			}
		}
	}
	return out
}

// ignored says whether p is, or is below, a path given to Ignore.
func (c diffConf) ignored(p string) bool {
	for _, i := range c.ignore {
		i = strings.Trim(i, "/")
		if p == i || strings.HasPrefix(p, i+"/") {
			return true
		}
	}
	return false
}

// Tree pulls ref (host/repository:tag or @digest, on a registry given to NewStore) for platform
// (os/arch[/variant]; any platform works, nothing is run), mounts its root file system with the store's
// driver (for overlay, Tree checks that the mount is a kernel overlay mount), and reads it. The container is
// unmounted and removed before Tree returns.
func (s *Store) Tree(t testing.TB, ref, platform string) Tree {
	t.Helper()
	s.checkHost(t, ref)
	// By image ID, not by name: pulling another platform of the same reference moves the name.
	out := s.run(t, "", "pull", "--quiet", "--policy", "always", "--platform", platform,
		"--signature-policy", s.env.Policy, "--authfile", s.env.AuthFile, ref)
	id := lastLine(out)
	if id == "" {
		t.Fatalf("buildah pull %s for %s printed no image ID", ref, platform)
	}
	// An image manifest is pulled whatever its platform; a test must not read another platform's tree.
	got := s.run(t, "", "inspect", "--type", "image", "--format", "{{.OCIv1.OS}} {{.OCIv1.Architecture}} {{.OCIv1.Variant}}", id)
	f := strings.Fields(got)
	if m := platformPattern.FindStringSubmatch(platform); m == nil || len(f) < 2 || f[0] != m[1] || f[1] != m[2] ||
		(len(f) > 2 && m[3] != "" && f[2] != m[3]) {
		t.Fatalf("%s pulled for platform %q is an image for %s", ref, platform, strings.Join(f, "/"))
	}
	return s.imageTree(t, id)
}

// imageTree reads the root file system of image, an image of the store, through a container of its own.
func (s *Store) imageTree(t testing.TB, image string) Tree {
	t.Helper()
	ctr := s.name("read")
	s.run(t, "", "from", "--quiet", "--pull=never", "--name", ctr, image)
	defer func() {
		if _, stderr, err := s.exec("", "rm", ctr); err != nil {
			t.Errorf("buildah rm %s (%s store): %v\n%s", ctr, s.Driver, err, lastLines(stderr, 5))
		}
	}()
	root := s.run(t, "", "mount", ctr)
	if s.Driver == buildah.DriverOverlay {
		// What the overlay tests are about; buildah must not have fallen back to anything else.
		if ok, err := isKernelOverlay(root); err != nil || !ok {
			t.Fatalf("image %s: buildah's mount %s is not a kernel overlay mount (%v)", image, root, err)
		}
	}
	tree, err := ReadTree(root)
	if err != nil {
		t.Fatalf("image %s on %s storage: %v", image, s.Driver, err)
	}
	return tree
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
