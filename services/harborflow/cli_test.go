package harborflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/services/harborflow"
)

// startInProcess runs every stage of cfg in this process and shuts it down, checking the shutdown, when the
// test ends.
func startInProcess(t *testing.T, cfg *config.Config) *harborflow.Process {
	t.Helper()
	p, err := harborflow.Start(context.Background(), cfg, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return p
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := harborflow.NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, "127.0.0.1:8089", "127.0.0.1:4299")
	t.Setenv("REGISTRY_WEBHOOK_AUTH", "")
	os.Unsetenv("REGISTRY_WEBHOOK_AUTH")
	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer x")
	out, err := runCLI(t, "config", "check", good)
	if err != nil || !strings.Contains(out, good+": ok (1 sources") {
		t.Fatalf("good config: %v %q", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("http:\n  listen: 127.0.0.1:1\n  max_body: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, "config", "check", bad)
	if err == nil || err.Error() != bad+`:3: http.max_body: unknown key (did you mean "max_body_bytes"?)` {
		t.Fatalf("bad config: %v", err)
	}
	// The sample `make run` uses is valid.
	if out, err := runCLI(t, "config", "check", "../../deploy/harborflow.yaml"); err == nil {
		t.Fatalf("sample config passed without its secrets: %s", out)
	}
	t.Setenv("REGISTRY_WEBHOOK_AUTH", "Bearer y")
	if out, err := runCLI(t, "config", "check", "../../deploy/harborflow.yaml"); err != nil {
		t.Fatalf("sample config: %v %s", err, out)
	}
}

// TestRunEventsStatus runs every stage in-process on an embedded NATS, sends a webhook, and reads it back with
// `harborflow events` and `harborflow status`, which connect to the process's NATS client port.
func TestRunEventsStatus(t *testing.T) {
	dir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	path := writeConfig(t, dir, httpAddr, natsAddr)
	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer cli")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := startInProcess(t, cfg)
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.ReceiverAddr()+"/webhooks/harbor/harbor", strings.NewReader(push(1)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer cli")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("webhook: %v %v", err, resp)
	}
	resp.Body.Close()

	// The ops commands need no secrets.
	t.Setenv("HARBOR_WEBHOOK_AUTH", "")
	os.Unsetenv("HARBOR_WEBHOOK_AUTH")
	out, err := runCLI(t, "--config", path, "events", "--subject", "registry.>")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("events printed %d lines: %s", len(lines), out)
	}
	var line struct {
		Stream, Subject string
		Data            struct{ Kind, Tag, Repository string }
	}
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line.Stream != "REGISTRY" || line.Subject != "registry.harbor.push" || line.Data.Tag != "4.2.0.1" || line.Data.Repository != "wso2-apim/am" {
		t.Errorf("events line %s", lines[0])
	}
	if out, err := runCLI(t, "--config", path, "events", "--subject", "registry.>", "--since", "1ns"); err != nil || out != "" {
		t.Errorf("events --since 1ns: %v %q", err, out)
	}

	out, err = runCLI(t, "--config", path, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Streams []struct {
			Name     string
			Messages uint64
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, s := range st.Streams {
		got[s.Name] = s.Messages
	}
	if got["REGISTRY"] != 1 || len(got) != 3 {
		t.Errorf("status %s", out)
	}
	if out, err := runCLI(t, "--config", path, "status"); err != nil || !strings.Contains(out, "REGISTRY  1") {
		t.Errorf("status table: %v\n%s", err, out)
	}
}
