package harborflow_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// stopLimit is the promise: with the defaults, SIGTERM ends the process within 10 s, exit status 0.
const stopLimit = 10 * time.Second

// TestShutdown stops `harborflow run` with SIGTERM while it is idle, while the inspector waits on a registry
// that accepts connections and never answers, and while a buildah build waits on a registry that never sends a
// blob: each time the process exits 0 within 10 s with the default grace, and no buildah process is left.
func TestShutdown(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("idle", func(t *testing.T) {
		dir := t.TempDir()
		httpAddr, natsAddr := freeAddr(t), freeAddr(t)
		p := startHarborflow(t, bin, writeConfig(t, dir, httpAddr, natsAddr), httpAddr, natsAddr)
		stopWithin(t, p, stopLimit)
	})

	// startWaiting runs harborflow with its inspector waiting on a registry that never answers.
	startWaiting := func(t *testing.T) *proc {
		silent := silentRegistry(t)
		dir := t.TempDir()
		httpAddr, natsAddr := freeAddr(t), freeAddr(t)
		cfg := writeYAML(t, dir, registryConfig(dir, httpAddr, natsAddr, silent.addr))
		p := startHarborflow(t, bin, cfg, httpAddr, natsAddr)
		postWebhook(t, httpAddr, "Bearer crash-test", push(1))
		waitFor(t, "the inspector to ask the registry", func() bool { return silent.accepted.Load() > 0 })
		return p
	}

	t.Run("registry does not answer", func(t *testing.T) {
		stopWithin(t, startWaiting(t), stopLimit)
	})

	t.Run("second signal", func(t *testing.T) {
		p := startWaiting(t)
		exited := make(chan error, 1)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		go func() { exited <- p.cmd.Wait() }()
		// The first signal was handled once the process says it is shutting down.
		waitFor(t, "the shutdown to begin", func() bool { return strings.Contains(p.logs.String(), `"shutting down"`) })
		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			t.Logf("exited %s after the second signal: %v", time.Since(start).Round(time.Millisecond), err)
			if err == nil {
				t.Errorf("exit status 0 after a second signal cut the shutdown short, want non-zero")
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("still running 2 s after the second signal (the grace is 5 s)\n%s", p.logs)
		}
	})

	t.Run("build running", func(t *testing.T) {
		var blobWaits atomic.Int64
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		// buildah's pull of a base layer never gets an answer; harborflow's own reads (the inspector's) do.
		reg := registrytest.New(t, registrytest.WithMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && !strings.HasPrefix(r.UserAgent(), registry.UserAgentPrefix) {
					blobWaits.Add(1)
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				next.ServeHTTP(w, r)
			})
		}))
		base := reg.PushImage(t, "wso2-apim/am:4.2.0.15", registrytest.Image{Labels: map[string]string{"update_level": "15"},
			Files: map[string]string{"home/wso2carbon/README": "am"}})
		dir := t.TempDir()
		buildCtx := filepath.Join(dir, "acme")
		if err := os.MkdirAll(buildCtx, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(buildCtx, "Dockerfile"), []byte("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY Dockerfile /acme/\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		httpAddr, natsAddr := freeAddr(t), freeAddr(t)
		cfg := writeYAML(t, dir, registryConfig(dir, httpAddr, natsAddr, reg.Host)+fmt.Sprintf(`rebuilds:
  - {name: acme-am, base: %q, builder: dockerfile, context: %s, target: %q}
`, reg.Ref("wso2-apim/am:4.2.0"), buildCtx, reg.Ref("acme/am")))
		tmp := filepath.Join(dir, "tmp")
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		p := startHarborflow(t, bin, cfg, httpAddr, natsAddr, "TMPDIR="+tmp)
		postWebhook(t, httpAddr, "Bearer crash-test", harborPush(base.Digest, "4.2.0.15", time.Now().Unix()))
		waitFor(t, "buildah to wait for a base layer", func() bool { return blobWaits.Load() > 0 })
		if len(processesUnder(t, tmp)) == 0 {
			t.Fatalf("no buildah process runs under %s while it pulls\n%s", tmp, p.logs)
		}
		stopWithin(t, p, stopLimit)
		if left := processesUnder(t, tmp); len(left) > 0 {
			t.Errorf("processes left behind after the stop: %s", strings.Join(left, "; "))
		}
	})
}

// stopWithin sends SIGTERM to p and asserts it exits 0 within limit.
func stopWithin(t *testing.T, p *proc, limit time.Duration) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		took := time.Since(start)
		t.Logf("stopped in %s", took.Round(time.Millisecond))
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0\n%s", err, p.logs)
		}
	case <-time.After(limit + 5*time.Second):
		_ = p.cmd.Process.Kill()
		<-exited
		t.Fatalf("still running %s after SIGTERM\n%s", limit+5*time.Second, p.logs)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("stop took %s, want at most %s\n%s", took, limit, p.logs)
	}
}

// silent is a TCP server that accepts connections and never answers them.
type silent struct {
	addr     string
	accepted atomic.Int64
}

func silentRegistry(t *testing.T) *silent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silent{addr: ln.Addr().String()}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

// registryConfig is a configuration whose Harbor source and plain-HTTP registry are host, storing in dir.
func registryConfig(dir, httpAddr, natsAddr, host string) string {
	return fmt.Sprintf(`nats: {listen: %s, store_dir: %s}
http: {listen: %s}
log: {level: info}
sources:
  - {name: harbor, kind: harbor, host: %q, secrets: ["${HARBOR_WEBHOOK_AUTH}"]}
registries:
  - {host: %q, plain_http: true}
`, natsAddr, filepath.Join(dir, "nats"), httpAddr, host, host)
}

func writeYAML(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "harborflow.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func postWebhook(t *testing.T, httpAddr, auth, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/webhooks/harbor/harbor", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %s", resp.Status)
	}
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		// Another process's progress: poll it at a bounded rate.
		<-time.After(20 * time.Millisecond)
	}
}

// processesUnder lists the live processes whose command line names dir (buildah's work directories are under
// the TMPDIR it was given), as "pid: command line".
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat")); err == nil {
			// A zombie holds nothing; its parent reaps it.
			if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
				continue
			}
		}
		out = append(out, pid+": "+strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " "))
	}
	return out
}
