package harborflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/bus"
)

// buildBinary builds cmd/harborflow once per test binary run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "harborflow-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "harborflow")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/harborflow").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	http string
	nats string
	logs *logBuffer
}

// logBuffer collects a process's output; it is read while the process writes it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startHarborflow runs `harborflow run` on cfg, with env added to its environment, and waits until /readyz answers 200.
func startHarborflow(t *testing.T, bin, cfg, httpAddr, natsAddr string, env ...string) *proc {
	t.Helper()
	logs := &logBuffer{}
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(append(os.Environ(), "HARBOR_WEBHOOK_AUTH=Bearer crash-test"), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, http: httpAddr, nats: natsAddr, logs: logs}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("harborflow not ready after 30 s: %v\n%s", err, logs.String())
		}
		// Poll readiness at a bounded rate; the process is starting in another address space.
		<-time.After(50 * time.Millisecond)
	}
}

func writeConfig(t *testing.T, dir, httpAddr, natsAddr string) string {
	t.Helper()
	cfg := fmt.Sprintf(`nats:
  listen: %s
  store_dir: %s
  sync_always: true
http:
  listen: %s
log:
  level: warn
sources:
  - name: harbor
    kind: harbor
    host: harbor.acme.example
    secrets: ["${HARBOR_WEBHOOK_AUTH}"]
`, natsAddr, filepath.Join(dir, "nats"), httpAddr)
	path := filepath.Join(dir, "harborflow.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func push(i int) string {
	return harborPush(fmt.Sprintf("sha256:%064x", i), fmt.Sprintf("4.2.0.%d", i), int64(1763855000+i))
}

// harborPush is the body of Harbor's PUSH_ARTIFACT webhook for wso2-apim/am@digest tagged tag, occurred at the
// unix time at.
func harborPush(digest, tag string, at int64) string {
	return fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":%d,"operator":"admin","event_data":{"resources":[{"digest":%q,"tag":%q}],"repository":{"name":"am","namespace":"wso2-apim","repo_full_name":"wso2-apim/am","repo_type":"private"}}}`,
		at, digest, tag)
}

// TestAcknowledgedWebhooksSurviveSIGKILL loads `harborflow run`, kills it with SIGKILL in the middle of the
// load, restarts it on the same store and checks that every event answered 202 is in the stream.
func TestAcknowledgedWebhooksSurviveSIGKILL(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, httpAddr, natsAddr)
	p := startHarborflow(t, bin, cfg, httpAddr, natsAddr)

	const workers, killAfter = 8, 300
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		next     atomic.Int64
		okCount  atomic.Int64
		killed   = make(chan struct{})
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-killed:
					return
				default:
				}
				i := int(next.Add(1))
				req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/webhooks/harbor/harbor", strings.NewReader(push(i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer crash-test")
				resp, err := client.Do(req)
				if err != nil {
					continue // the process is gone: this request was never acknowledged
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					continue
				}
				var a struct{ IDs []string }
				if err := json.Unmarshal(body, &a); err != nil || len(a.IDs) != 1 {
					t.Errorf("202 without an id: %s", body)
					continue
				}
				mu.Lock()
				accepted[a.IDs[0]] = true
				mu.Unlock()
				if okCount.Add(1) == killAfter {
					if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Errorf("kill: %v", err)
					}
					close(killed)
				}
			}
		}()
	}
	wg.Wait()
	_ = p.cmd.Wait()
	if p.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("process did not die of SIGKILL: %v", p.cmd.ProcessState)
	}

	startHarborflow(t, bin, cfg, httpAddr, natsAddr)
	stored := storedIDs(t, natsAddr)
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for id := range accepted {
		if !stored[id] {
			missing++
		}
	}
	t.Logf("%d webhooks answered 202 before SIGKILL, %d events stored after restart", len(accepted), len(stored))
	if len(accepted) < killAfter {
		t.Fatalf("only %d accepted", len(accepted))
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged events are missing after the crash", missing, len(accepted))
	}
}

// storedIDs returns the Nats-Msg-Id of every message in REGISTRY.
func storedIDs(t *testing.T, natsAddr string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := map[string]bool{}
	for m, err := range connectBus(t, "nats://"+natsAddr).Read(ctx, bus.ReadConfig{Subject: "registry.>"}) {
		if err != nil {
			t.Fatal(err)
		}
		ids[m.ID] = true
	}
	return ids
}

// connectBus connects a Bus of its own to url, as another process would, until the test ends.
func connectBus(t *testing.T, url string) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, url, t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
