package buildah_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// stopBound is how long a cancelled Build may take to return: the grace buildah gets for SIGTERM, the SIGKILL
// of what is left, and removing the work directory.
const stopBound = 2500 * time.Millisecond

// sleeperBinary builds testdata/sleeper as a static binary, to run as a RUN step in an image without a libc.
func sleeperBinary(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sleeper")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sleeper: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestBuildCancelledStopsEveryProcess: a build whose RUN step forks a child that ignores SIGTERM is stopped when
// its context is cancelled (a shutdown): Build returns within stopBound, no process of the build is left —
// buildah, its chroot runtime, the RUN step and its child — and the work directory is gone.
func TestBuildCancelledStopsEveryProcess(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushImage(t, "wso2/am:sleeper", registrytest.Image{
		Platform: "linux/" + runtime.GOARCH,
		Entries:  [][]registrytest.Entry{{registrytest.File("sleeper", string(sleeperBinary(t)), 0o755, 0, 0)}},
	})
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()})
	token := "cancel-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dockerfile := "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN [\"/sleeper\", \"" + token + "\"]\n"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(ctx, buildah.Spec{Context: buildContext(t, dockerfile), BuildArgs: map[string]string{"BASE_IMAGE": base.Ref}})
		done <- err
	}()

	// The RUN step and its child.
	sleepers := awaitProcesses(t, done, token, 2*time.Minute)
	build := processes(t, work)
	groups := map[int]bool{}
	for _, p := range append(build, sleepers...) {
		groups[p.pgid] = true
	}
	t.Logf("running: %d processes of buildah, %d of the RUN step, in process groups %v", len(build), len(sleepers), keys(groups))

	cancel()
	start := time.Now()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Build did not return within 30s of the cancellation")
	}
	took := time.Since(start)
	t.Logf("cancelled build returned after %s: %v", took, err)
	if took > stopBound {
		t.Errorf("Build returned %s after the cancellation, want under %s", took, stopBound)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Build error %v, want context.Canceled", err)
	}
	if left := append(processes(t, token), processes(t, work)...); len(left) > 0 {
		t.Errorf("processes left after the build returned: %+v", left)
	}
	for g := range groups {
		if err := syscall.Kill(-g, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d: kill(-pgid, 0) = %v, want ESRCH (no process left)", g, err)
		}
	}
	assertEmpty(t, work)
}

// TestBuildStopsABuildahThatIgnoresSIGTERM: a buildah that does not stop on SIGTERM is killed after the grace,
// with the rest of its group (a fake buildah: a shell that ignores SIGTERM and waits on a sleep).
func TestBuildStopsABuildahThatIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	fake := filepath.Join(t.TempDir(), "buildah")
	script := "#!/bin/sh\ntrap '' TERM\nsleep 300 &\nwait\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b, work := newBuilder(t, nil, buildah.WithPath(fake))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(ctx, buildah.Spec{Context: buildContext(t, rebuildDockerfile)})
		done <- err
	}()
	// The shell and its sleep, which both have the work dir in their environment.
	running := awaitProcesses(t, done, work, 30*time.Second)

	cancel()
	start := time.Now()
	err := <-done
	took := time.Since(start)
	t.Logf("cancelled build returned after %s: %v", took, err)
	if took > stopBound {
		t.Errorf("Build returned %s after the cancellation, want under %s", took, stopBound)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Build error %v, want context.Canceled", err)
	}
	if err := syscall.Kill(-running[0].pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d: kill(-pgid, 0) = %v, want ESRCH (no process left)", running[0].pgid, err)
	}
	assertEmpty(t, work)
}

// proc is a live process.
type proc struct {
	pid, pgid int
	cmdline   string
}

// processes lists the live (not zombie) processes other than this one whose command line or environment
// mention s.
func processes(t *testing.T, s string) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[i+1:]))
		if i < 0 || len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		pgid, _ := strconv.Atoi(fields[2])
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && strings.Contains(string(data), s) {
				cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				found = append(found, proc{pid: pid, pgid: pgid, cmdline: strings.ReplaceAll(string(cmdline), "\x00", " ")})
				break
			}
		}
	}
	return found
}

func keys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// awaitProcesses waits up to limit until at least two processes mention token, and returns them; it fails the
// test if the build (done) returns first. Nothing else tells when a build's processes run: it polls /proc.
func awaitProcesses(t *testing.T, done <-chan error, token string, limit time.Duration) []proc {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if running := processes(t, token); len(running) >= 2 {
			return running
		}
		select {
		case err := <-done:
			t.Fatalf("Build returned before its processes ran: %v", err)
		case <-deadline.C:
			t.Fatalf("no two processes of %s within %s", token, limit)
		case <-tick.C:
		}
	}
}
