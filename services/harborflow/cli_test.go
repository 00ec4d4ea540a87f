package harborflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/services/harborflow"
)

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

// unsetenv unsets names for the test (and restores them after it).
func unsetenv(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		t.Setenv(n, "")
		os.Unsetenv(n)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, "127.0.0.1:8089", "127.0.0.1:4299")
	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer x")
	out, err := runCLI(t, "config", "check", good)
	if err != nil || !strings.Contains(out, good+": ok (1 sources") {
		t.Fatalf("good config: %v %q", err, out)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"http:\n  listen: 127.0.0.1:1\n  max_body: 5\n", `:3: http.max_body: unknown key (did you mean "max_body_bytes"?)`},
		{"retention:\n  - dry_run: true\n", ":2: retention[0].repositories: must list at least one repository glob, e.g. harbor.acme.example/wso2-*/acme-am\n" + "BAD:2: retention[0].keep_per_version: must be at least 1, not 0"},
		// A bad value fails whichever stage reads it, with or without --stages.
		{"inspector:\n  concurrency: 0\n", ":2: inspector.concurrency: must be between 1 and 256, not 0"},
	} {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"config", "check", bad}, {"config", "check", bad, "--stages", "receiver"}} {
			// BAD in want stands for the file's path, on the lines after the first.
			_, err := runCLI(t, args...)
			if want := bad + strings.ReplaceAll(tc.want, "BAD", bad); err == nil || err.Error() != want {
				t.Errorf("%v: %v; want %s", args, err, want)
			}
		}
	}
}

// TestConfigCheckSample: the sample `make run` uses is valid as shipped. Without its webhook variables, the
// Harbor stand-in's password and the dev signing key's password (only the Makefile sets them) config check warns, naming each with its key and the
// stages that need it, and fails only when asked for such a stage or --strict; with them it is clean.
func TestConfigCheckSample(t *testing.T) {
	const sample = "../../deploy/harborflow.yaml"
	unsetenv(t, "HARBOR_WEBHOOK_AUTH", "REGISTRY_WEBHOOK_AUTH", "HARBOR_PASSWORD", "COSIGN_PASSWORD")
	hook := func(level string) []string {
		return []string{
			level + ": " + sample + ":25: sources[0].secrets[0]: environment variable HARBOR_WEBHOOK_AUTH is not set (needed by the receiver)",
			level + ": " + sample + ":30: sources[1].secrets[0]: environment variable REGISTRY_WEBHOOK_AUTH is not set (needed by the receiver)",
		}
	}
	password := func(level string) []string {
		return []string{level + ": " + sample + ":45: registries[1].password: environment variable HARBOR_PASSWORD is not set " +
			"(needed by the watcher, the inspector, the rebuilder, the promoter, the retention stage)"}
	}
	cosign := sample + ":95: signing.password: environment variable COSIGN_PASSWORD is not set (needed by the rebuilder)"
	warnings := append(hook("warning"), append(password("warning"), "warning: "+cosign)...)
	for _, tc := range []struct {
		args    []string
		err     string // empty: exit 0
		printed []string
	}{
		{nil, "", append(warnings, sample+": ok (3 sources, 3 registries, nats embedded at 127.0.0.1:4222); 4 variable(s) not set")},
		{[]string{"--stages", "receiver"}, sample + ": not set, and needed by --stages receiver: HARBOR_WEBHOOK_AUTH, REGISTRY_WEBHOOK_AUTH",
			append(hook("error"), password("warning")...)},
		{[]string{"--stages", "watcher", "--stages", "inspector"}, sample + ": not set, and needed by --stages watcher,inspector: HARBOR_PASSWORD",
			append(hook("warning"), password("error")...)},
		{[]string{"--stages", "inspector,receiver"}, sample + ": not set, and needed by --stages inspector,receiver: HARBOR_WEBHOOK_AUTH, REGISTRY_WEBHOOK_AUTH, HARBOR_PASSWORD",
			append(hook("error"), password("error")...)},
		{[]string{"--stages", "rebuilder"}, sample + ": not set, and needed by --stages rebuilder: HARBOR_PASSWORD, COSIGN_PASSWORD",
			append(password("error"), "error: "+cosign)},
		{[]string{"--strict"}, sample + ": not set (--strict): HARBOR_WEBHOOK_AUTH, REGISTRY_WEBHOOK_AUTH, HARBOR_PASSWORD, COSIGN_PASSWORD", nil},
		{[]string{"--stages", "inspecter"}, `--stages: unknown stage "inspecter" (stages: receiver, watcher, inspector, rebuilder, promoter, retention)`, nil},
	} {
		out, err := runCLI(t, append([]string{"config", "check", sample}, tc.args...)...)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)):
			t.Errorf("%v: %v; want %s", tc.args, err, tc.err)
		}
		for _, p := range tc.printed {
			if !strings.Contains(out, p) {
				t.Errorf("%v printed\n%s\nwithout %q", tc.args, out, p)
			}
		}
	}

	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer x")
	t.Setenv("REGISTRY_WEBHOOK_AUTH", "Bearer y")
	t.Setenv("HARBOR_PASSWORD", "Harbor12345")
	t.Setenv("COSIGN_PASSWORD", "dev-cosign")
	for _, args := range [][]string{nil, {"--strict"}, {"--stages", "receiver"}} {
		out, err := runCLI(t, append([]string{"config", "check", sample}, args...)...)
		if err != nil || out != sample+": ok (3 sources, 3 registries, nats embedded at 127.0.0.1:4222)\n" {
			t.Errorf("%v with the variables: %v %q", args, err, out)
		}
	}
}

// TestOpsCommandsWithoutAConfigFile: the ops commands say which file they tried and how to name one.
func TestOpsCommandsWithoutAConfigFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	unsetenv(t, "HARBORFLOW_CONFIG")
	for _, args := range [][]string{{"events"}, {"status"}, {"dlq", "list"}, {"dlq", "replay", "--stage", "inspector", "--all"}, {"history", "r.example/a"}, {"rebuild", "acme-am"}, {"run"}, {"config", "check"}} {
		_, err := runCLI(t, args...)
		want := "config file harborflow.yaml (" + filepath.Join(dir, "harborflow.yaml") + ") does not exist: it is the default when neither " +
			"--config nor $HARBORFLOW_CONFIG is set; name one with --config FILE or $HARBORFLOW_CONFIG"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: %v; want %s", args, err, want)
		}
	}
	t.Setenv("HARBORFLOW_CONFIG", filepath.Join(dir, "etc", "h.yaml"))
	if _, err := runCLI(t, "status"); err == nil || !strings.HasPrefix(err.Error(), "config file "+filepath.Join(dir, "etc", "h.yaml")+" does not exist: $HARBORFLOW_CONFIG names it") {
		t.Errorf("status with $HARBORFLOW_CONFIG: %v", err)
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
	p := startStages(t, cfg)
	postWebhook(t, p.ReceiverAddr(), "Bearer cli", push(1))

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
	if got["REGISTRY"] != 1 || len(got) != len(event.StreamNames) {
		t.Errorf("status %s", out)
	}
	if out, err := runCLI(t, "--config", path, "status"); err != nil || !strings.Contains(out, "REGISTRY  1") {
		t.Errorf("status table: %v\n%s", err, out)
	}
}
