// Package buildahtest reads images back the way container runtimes do, for tests: it pulls an image into a
// private buildah store, mounts its root file system with the storage driver a runtime would use (overlay,
// as podman, CRI-O and containerd's overlayfs snapshotter; or vfs, which applies each layer onto a copy of the
// one below), and walks it into a Tree of owners, modes, link targets and content digests. Reading the
// mounted file system, not the layer tars, is the point: a layer is only right if every runtime shows the
// same tree, and the tree a Dockerfile COPY would have made.
//
// A Store also builds test images without running anything in them, so every platform works on any host:
// WSO2-shaped bases (BuildBase), the reference result of COPYing a directory onto a base (DockerfileTree), and
// customer images built with buildah bud --manifest (BuildDerived).
//
//	reg := registrytest.New(t)
//	store := buildahtest.NewStore(t, buildah.DriverOverlay, reg.Host)
//	dig := store.BuildBase(t, reg.Host, "wso2/am:4.2.0.16", buildahtest.BaseSpec{Platforms: []string{"linux/arm64"}})
//	got := store.Tree(t, reg.Ref("wso2/am@"+dig), "linux/arm64")
//	if d := buildahtest.Diff(want, got); len(d) > 0 { ... }
//
// Runtimes. The tests need buildah (make buildah installs it) and, for the overlay driver, root and a kernel
// that allows overlay mounts; Tool looks up crane and regctl, and NewRegctl gives regctl a configuration of
// the test's own. When one is missing the test is skipped, with the reason, unless the environment variable
// HARBORFLOW_REQUIRE_RUNTIMES is 1 (make test sets it): then the test fails, so that a CI machine cannot pass
// by skipping.
package buildahtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/buildah"
)

// RequireEnv is the environment variable that turns a missing runtime or tool from a skip into a failure,
// when set to 1.
const RequireEnv = "HARBORFLOW_REQUIRE_RUNTIMES"

// commandTimeout bounds one buildah or tool invocation.
const commandTimeout = 3 * time.Minute

// unavailable skips the test for the reason given, or fails it when RequireEnv is 1.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1: runtimes are required)", reason, RequireEnv)
	}
	t.Skipf("%s (set %s=1 to make this a failure)", reason, RequireEnv)
}

// Store is a private buildah store (storage, run root, temporary directory and configuration, see
// buildah.Env) in a directory of the test that made it. It is safe for concurrent use by parallel subtests.
type Store struct {
	// Driver is the storage driver: buildah.DriverOverlay or buildah.DriverVFS.
	Driver string

	env   *buildah.Env
	path  string
	hosts []string
	seq   atomic.Int64

	mu       sync.Mutex
	osImages map[string]*osImage // by platform: the OS layer every base of the platform starts with
}

// osImage is an OS image of a store, built once.
type osImage struct {
	once sync.Once
	name string
	err  error
}

// NewStore makes a store for driver (buildah.DriverOverlay or buildah.DriverVFS) that reaches the registries
// insecureHosts (host:port) over plain HTTP. When the test ends, every container is unmounted and removed,
// every image removed, any mount left under the store undone, and the directory removed.
//
// Without buildah, or for overlay without overlay mounts (not root, or the kernel or file system refuses),
// the test is skipped, or fails when RequireEnv is 1.
func NewStore(t testing.TB, driver string, insecureHosts ...string) *Store {
	t.Helper()
	path, err := exec.LookPath("buildah")
	if err != nil {
		unavailable(t, "buildah is not installed (make buildah installs it): %v", err)
	}
	dir := t.TempDir()
	if driver == buildah.DriverOverlay {
		if err := overlayMountable(filepath.Join(dir, "overlay-check")); err != nil {
			unavailable(t, "buildah's overlay driver cannot work here: %v", err)
		}
	}
	regs := make([]buildah.Host, len(insecureHosts))
	for i, h := range insecureHosts {
		regs[i] = buildah.Host{Name: h, PlainHTTP: true}
	}
	env, err := buildah.NewEnv(filepath.Join(dir, "buildah"), driver, regs)
	if err != nil {
		t.Fatalf("making a buildah store: %v", err)
	}
	s := &Store{Driver: driver, env: env, path: path, hosts: insecureHosts, osImages: map[string]*osImage{}}
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// cleanup removes every container and image, then undoes whatever is still mounted under the store so that
// the test's temporary directory can be removed.
func (s *Store) cleanup(t testing.TB) {
	t.Helper()
	for _, args := range [][]string{{"umount", "--all"}, {"rm", "--all"}, {"rmi", "--all", "--force"}} {
		if _, stderr, err := s.exec("", args...); err != nil {
			t.Logf("cleaning up the %s store: buildah %s: %v: %s", s.Driver, strings.Join(args, " "), err, lastLines(stderr, 5))
		}
	}
	left, err := mountsUnder(s.env.Dir)
	if err != nil {
		t.Errorf("cleaning up the %s store: %v", s.Driver, err)
		return
	}
	// Deepest first: the overlay driver's own bind mount of its directory holds the layers' mounts.
	slices.Reverse(left)
	for _, m := range left {
		if err := unmount(m); err != nil {
			t.Errorf("cleaning up the %s store: unmounting %s: %v", s.Driver, m, err)
			continue
		}
		t.Logf("cleaning up the %s store: unmounted %s, which buildah left mounted", s.Driver, m)
	}
}

// exec runs buildah in the store's environment with args and returns its standard output and error.
func (s *Store) exec(dir string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.path, s.env.Args(args...)...)
	cmd.Dir = dir
	cmd.Env = s.env.Environ()
	cmd.WaitDelay = 10 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), commandTimeout)
	}
	return out.String(), errOut.String(), err
}

// run runs buildah with args in dir and returns its standard output, trimmed; it fails the test when buildah
// fails.
func (s *Store) run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	stdout, stderr, err := s.exec(dir, args...)
	if err != nil {
		t.Fatalf("buildah %s (%s store): %v\n%s", strings.Join(args, " "), s.Driver, err, lastLines(stderr, 20))
	}
	return strings.TrimSpace(stdout)
}

// name returns a name no other container or image of the store has.
func (s *Store) name(kind string) string {
	return fmt.Sprintf("harborflow-%s-%d", kind, s.seq.Add(1))
}

// checkHost fails the test unless ref's registry is one NewStore was given: buildah would try HTTPS.
func (s *Store) checkHost(t testing.TB, ref string) {
	t.Helper()
	host, _, _ := strings.Cut(ref, "/")
	if !slices.Contains(s.hosts, host) {
		t.Fatalf("%s: registry %s was not given to NewStore (it has %q), so buildah would not use plain HTTP", ref, host, s.hosts)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mountsUnder lists the mount points at or below dir, in the order they were mounted.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ...; the mount point escapes space as \040.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of a path in /proc/self/mountinfo.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Tool returns the path of the command name (crane, regctl): on PATH, or else in the workspace's .tmp/bin,
// where make installs the pinned tools. When it is in neither, the test is skipped, or fails when
// RequireEnv is 1.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if root, ok := workspaceRoot(); ok {
		p := filepath.Join(root, ".tmp", "bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	unavailable(t, "%s is not installed (make test installs it into .tmp/bin)", name)
	return ""
}

// RunTool runs the command name (see Tool) with args and returns its standard output and error together; err
// is not nil when it fails, and the output says why.
func RunTool(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	return runTool(Tool(t, name), nil, args...)
}

// Cosign runs cosign (see Tool) with args and env added, with a HOME of the test's own (cosign keeps its
// caches there), and returns its standard output and error together; err is not nil when it fails.
func Cosign(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	return runTool(Tool(t, "cosign"), append([]string{"HOME=" + t.TempDir()}, env...), args...)
}

// runTool runs the command at path with args, in the environment of the test with env added, and returns its
// standard output and error together.
func runTool(path string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %s", ctx.Err(), commandTimeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", filepath.Base(path), strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Regctl is regctl (see Tool) with a configuration of its own, in a directory of the test that made it: HOME,
// XDG_CONFIG_HOME, REGCTL_CONFIG and DOCKER_CONFIG point there, so that it neither reads the user's
// configuration or credentials nor writes to them.
type Regctl struct {
	path string
	env  []string
}

// NewRegctl returns regctl configured to reach the registries insecureHosts (host:port) over plain HTTP, as
// `regctl registry set <host> --tls disabled` configures it. Without regctl the test is skipped, or fails when
// RequireEnv is 1.
func NewRegctl(t testing.TB, insecureHosts ...string) *Regctl {
	t.Helper()
	home := t.TempDir()
	r := &Regctl{path: Tool(t, "regctl"), env: []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"REGCTL_CONFIG=" + filepath.Join(home, ".regctl", "config.json"),
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
	}}
	for _, h := range insecureHosts {
		if out, err := r.Run("registry", "set", h, "--tls", "disabled", "--skip-check"); err != nil {
			t.Fatalf("configuring regctl for %s: %v\n%s", h, err, out)
		}
	}
	return r
}

// Run runs regctl with args and returns its standard output and error together; err is not nil when it
// fails (a non-zero exit status: *exec.ExitError), and the output says why.
func (r *Regctl) Run(args ...string) (string, error) {
	return runTool(r.path, r.env, args...)
}

// workspaceRoot finds the directory holding go.work, from the working directory up.
func workspaceRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
