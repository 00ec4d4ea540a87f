//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDemo is `make run` and `make demo` as a newcomer runs them, from a copy of the repository's scripts and
// deploy/ (so that its ./var starts empty and a developer's is left alone): scripts/run.sh in the background,
// then `harborflow dev demo`, which exits 0 only if every step of the trail happened; then Ctrl-C, after
// which run.sh must exit within seconds. It needs the ports make run uses (8880, 5000, 8080, 4222, 8081).
func TestDemo(t *testing.T) {
	bin := harborflowBin(t)
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"scripts", "deploy"} {
		if out, err := exec.Command("cp", "-r", filepath.Join(root, d), dir).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v\n%s", d, err, out)
		}
	}
	if out, err := exec.Command("cp", filepath.Join(root, "Makefile"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying the Makefile: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(dir, "bin", "harborflow")); err != nil {
		t.Fatal(err)
	}
	// Tools the scripts install on first use (crane) are shared with the repository's .tmp.
	if err := os.MkdirAll(filepath.Join(root, ".tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, ".tmp"), filepath.Join(dir, ".tmp")); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HARBOR_WEBHOOK_AUTH=Bearer dev-secret", "REGISTRY_WEBHOOK_AUTH=Bearer dev-secret",
		"HARBOR_PASSWORD=Harbor12345", "COSIGN_PASSWORD=dev-cosign")

	runLog := &syncBuffer{}
	run := exec.Command(filepath.Join(dir, "scripts", "run.sh"))
	run.Dir, run.Env, run.Stdout, run.Stderr = dir, env, runLog, runLog
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("make run's output:\n%s", runLog.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	demo := exec.CommandContext(ctx, bin, "--config", filepath.Join(dir, "deploy", "harborflow.yaml"), "dev", "demo",
		"--push", filepath.Join(dir, "scripts", "push-base.sh"))
	demo.Dir, demo.Env = dir, env
	out, err := demo.CombinedOutput()
	t.Logf("make demo:\n%s", out)
	if err != nil {
		t.Fatalf("the demo failed: %v", err)
	}
	if !strings.Contains(string(out), "demo: every step happened") {
		t.Fatal("the demo did not say every step happened")
	}

	// Ctrl-C: the process group gets SIGINT.
	start := time.Now()
	if err := syscall.Kill(-run.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		t.Logf("make run stopped %s after Ctrl-C (%v)", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(15 * time.Second):
		t.Fatal("make run did not stop within 15 s of Ctrl-C")
	}
}

// syncBuffer collects a process's output while it writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
