package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
)

// full uses a variable in every stage's sections: the receiver's webhook secret, the watcher's poll repository,
// the registries' password (watcher, inspector, rebuilder), the inspector's label, the rebuilder's target.
const full = `
nats:
  url: nats://n:4222
sources:
  - name: harbor
    kind: harbor
    host: harbor.acme.example
    secrets: ["${T_WEBHOOK}"]
  - name: wso2
    kind: poll
    repositories:
      - repository: registry.wso2.com/${T_POLL_NS}/am
registries:
  - host: harbor.acme.example
    username: robot$harborflow
    password: ${T_ROBOT}
inspector:
  update_level_label: ${T_LABEL}
  require_update_level: ["${T_REQUIRE}"]
  concurrency: 3
rebuilds:
  - name: acme-am
    base: registry.wso2.com/wso2-apim/am:4.2.0
    builder: rebase
    image: harbor.acme.example/wso2-dev/acme-am:1
    target: harbor.acme.example/${T_TARGET_NS}/acme-am
`

var allVars = map[string]string{
	"T_WEBHOOK": "Bearer hook", "T_POLL_NS": "wso2-apim", "T_ROBOT": "pw", "T_LABEL": "level",
	"T_REQUIRE": "registry.wso2.com/**", "T_TARGET_NS": "wso2-dev",
}

// without is allVars less names.
func without(names ...string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if slices.Contains(names, k) {
			return "", false
		}
		v, ok := allVars[k]
		return v, ok
	}
}

func TestLoadForStagesExpandsOnlyTheirSections(t *testing.T) {
	for _, tc := range []struct {
		stages []string
		unset  []string // variables not set; the load must still succeed
		needs  string   // one variable it needs: unset, the load fails naming it and the key
		key    string
	}{
		{[]string{"receiver"}, []string{"T_POLL_NS", "T_ROBOT", "T_LABEL", "T_REQUIRE", "T_TARGET_NS"}, "T_WEBHOOK", "sources[0].secrets[0]"},
		{[]string{"watcher"}, []string{"T_WEBHOOK", "T_LABEL", "T_REQUIRE", "T_TARGET_NS"}, "T_POLL_NS", "sources[1].repositories[0].repository"},
		{[]string{"watcher"}, []string{"T_WEBHOOK"}, "T_ROBOT", "registries[0].password"},
		{[]string{"inspector"}, []string{"T_WEBHOOK", "T_POLL_NS", "T_TARGET_NS"}, "T_REQUIRE", "inspector.require_update_level[0]"},
		{[]string{"inspector"}, []string{"T_WEBHOOK", "T_POLL_NS", "T_TARGET_NS"}, "T_ROBOT", "registries[0].password"},
		{[]string{"rebuilder"}, []string{"T_WEBHOOK", "T_POLL_NS", "T_REQUIRE"}, "T_LABEL", "inspector.update_level_label"},
		{[]string{"rebuilder"}, []string{"T_WEBHOOK", "T_POLL_NS", "T_REQUIRE"}, "T_TARGET_NS", "rebuilds[0].target"},
		{[]string{"inspector", "rebuilder"}, []string{"T_WEBHOOK", "T_POLL_NS"}, "T_LABEL", "inspector.update_level_label"},
		{nil, nil, "T_WEBHOOK", "sources[0].secrets[0]"}, // no stages: every stage
		{[]string{}, nil, "T_TARGET_NS", "rebuilds[0].target"},
	} {
		t.Run(strings.Join(tc.stages, ",")+"/"+tc.needs, func(t *testing.T) {
			if _, err := config.Parse("h.yaml", []byte(full), without(tc.unset...), tc.stages...); err != nil {
				t.Fatalf("without %v: %v", tc.unset, err)
			}
			_, err := config.Parse("h.yaml", []byte(full), without(append(tc.unset, tc.needs)...), tc.stages...)
			if err == nil || !strings.Contains(err.Error(), tc.key+": environment variable "+tc.needs+" is not set (needed by the ") {
				t.Fatalf("without %s: %v", tc.needs, err)
			}
		})
	}
}

func TestLoadForStagesHoldsOnlyTheirSections(t *testing.T) {
	lookup := without()
	def := config.Default()

	recv, err := config.Parse("h.yaml", []byte(full), lookup, event.StageReceiver)
	if err != nil {
		t.Fatal(err)
	}
	if len(recv.Sources) != 1 || recv.Sources[0].Name != "harbor" || recv.Sources[0].Secrets[0].Value() != "Bearer hook" {
		t.Errorf("receiver sources: %+v", recv.Sources)
	}
	if recv.Registries != nil || recv.Rebuilds != nil || recv.Inspector.UpdateLevelLabel != def.Inspector.UpdateLevelLabel {
		t.Errorf("receiver holds other stages' sections: %+v %+v %+v", recv.Registries, recv.Rebuilds, recv.Inspector)
	}
	if recv.NATS.URL != "nats://n:4222" {
		t.Errorf("nats.url = %q", recv.NATS.URL)
	}

	w, err := config.Parse("h.yaml", []byte(full), lookup, event.StageWatcher)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Sources) != 1 || w.Sources[0].Name != "wso2" || w.Sources[0].Repositories[0].Repository != "registry.wso2.com/wso2-apim/am" {
		t.Errorf("watcher sources: %+v", w.Sources)
	}
	if len(w.Registries) != 1 || w.Registries[0].Password.Value() != "pw" {
		t.Errorf("watcher registries: %+v", w.Registries)
	}

	rb, err := config.Parse("h.yaml", []byte(full), lookup, event.StageRebuilder)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Inspector.UpdateLevelLabel != "level" || rb.Inspector.Concurrency != def.Inspector.Concurrency || rb.Inspector.RequireUpdateLevel != nil {
		t.Errorf("rebuilder's inspector section: %+v; want only update_level_label from the file", rb.Inspector)
	}
	if rb.Sources != nil || len(rb.Rebuilds) != 1 || rb.Rebuilds[0].Target != "harbor.acme.example/wso2-dev/acme-am" {
		t.Errorf("rebuilder: sources %+v, rebuilds %+v", rb.Sources, rb.Rebuilds)
	}

	insp, err := config.Parse("h.yaml", []byte(full), lookup, event.StageInspector)
	if err != nil {
		t.Fatal(err)
	}
	if insp.Inspector.Concurrency != 3 || insp.Inspector.RequireUpdateLevel[0] != "registry.wso2.com/**" || insp.Rebuilds != nil || insp.Sources != nil {
		t.Errorf("inspector: %+v, rebuilds %+v, sources %+v", insp.Inspector, insp.Rebuilds, insp.Sources)
	}
}

func TestLoadForStagesValidatesOnlyTheirSections(t *testing.T) {
	// A bad receiver listener and a bad recipe: each stops only the stage that reads it.
	y := "http:\n  listen: 8080\nrebuilds:\n  - name: Acme AM\n    base: r.example/am:4.2.0\n    builder: rebase\n    image: h.example/p/am:1\n    target: h.example/p/am\n"
	for _, tc := range []struct {
		stage, want string // want empty: loads
	}{
		{event.StageReceiver, "h.yaml:2: http.listen: must be host:port"},
		{event.StageRebuilder, "h.yaml:4: rebuilds[0].name: must match [a-z0-9-]+"},
		{event.StageInspector, ""},
		{event.StageWatcher, ""},
	} {
		_, err := config.Parse("h.yaml", []byte(y), env(nil), tc.stage)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.stage, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want %q", tc.stage, err, tc.want)
		case tc.stage == event.StageReceiver && strings.Contains(err.Error(), "rebuilds"):
			t.Errorf("receiver reports the rebuilder's problem: %v", err)
		}
	}
	// A structural problem (an unknown key) stops every process, whichever section it is in.
	if _, err := config.Parse("h.yaml", []byte("rebuilds:\n  - nam: x\n"), env(nil), event.StageReceiver); err == nil ||
		!strings.Contains(err.Error(), "h.yaml:2: rebuilds[0].nam: unknown key") {
		t.Errorf("unknown key in another stage's section: %v", err)
	}
}

func TestUnknownStage(t *testing.T) {
	for _, tc := range []struct{ stage, want string }{
		{"inspectr", `unknown stage "inspectr" (stages: receiver, watcher, inspector, rebuilder, promoter, retention)`},
	} {
		if _, err := config.Parse("h.yaml", nil, env(nil), "receiver", tc.stage); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.stage, err, tc.want)
		}
		if err := config.CheckStages([]string{tc.stage}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckStages %s: %v", tc.stage, err)
		}
	}
	if err := config.CheckStages(config.StageNames()); err != nil {
		t.Errorf("CheckStages of every stage: %v", err)
	}
}

func TestStagesTable(t *testing.T) {
	got := map[string][]string{}
	for _, s := range config.Stages() {
		for _, u := range s.Uses {
			got[s.Name] = append(got[s.Name], u.String())
		}
	}
	want := map[string][]string{
		"receiver":  {"http", "sources of kind harbor, distribution"},
		"watcher":   {"sources of kind poll", "registries"},
		"inspector": {"inspector", "registries"},
		"rebuilder": {"rebuilds", "inspector.update_level_label", "registries", "signing"},
		"promoter":  {"promotions", "registries", "signing.public_keys"},
		"retention": {"retention", "promotions", "registries"},
	}
	for name, uses := range want {
		if !slices.Equal(got[name], uses) {
			t.Errorf("%s uses %v, want %v", name, got[name], uses)
		}
	}
	if len(got) != len(want) {
		t.Errorf("stages %v", config.StageNames())
	}
	// Stages returns a copy: changing it changes nothing.
	config.Stages()[0].Uses[0].Key = "nats"
	if config.Stages()[0].Uses[0].Key != "http" {
		t.Error("Stages exposes the table itself")
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadOpsNeedsNoStageSecrets(t *testing.T) {
	for name := range allVars {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	// A recipe that does not validate either: the ops commands only connect to NATS.
	path := writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), full+"  - name: Bad Name\n    base: x\n    target: y\n")
	cfg, err := config.LoadOps(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://n:4222" || cfg.Sources != nil || cfg.Registries != nil || cfg.Rebuilds != nil {
		t.Errorf("ops config: nats %+v sources %+v registries %+v rebuilds %+v", cfg.NATS, cfg.Sources, cfg.Registries, cfg.Rebuilds)
	}
	if _, err := config.Load(path, event.StageRebuilder); err == nil {
		t.Error("the rebuilder loaded without its variables")
	}
	// nats and log are still read, expanded and checked.
	for _, tc := range []struct{ yaml, want string }{
		{"nats:\n  url: ${T_NATS_URL}\n", "h.yaml:2: nats.url: environment variable T_NATS_URL is not set (needed by every process)"},
		{"log:\n  level: loud\n", "h.yaml:2: log.level: must be"},
		{"nats:\n  replicas: 7\n", "h.yaml:2: nats.replicas: must be between 1 and 5"},
	} {
		bad := writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), tc.yaml)
		if _, err := config.LoadOps(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadOps: %v; want %q", err, tc.want)
		}
	}
}

func TestCheckListsUnsetVariablesWithTheirStages(t *testing.T) {
	for name := range allVars {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	t.Setenv("T_LABEL", "level")
	path := writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), full+"ops:\n  listen: ${T_OPS_LISTEN}\n")
	cfg, unset, err := config.Check(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, u := range unset {
		got[u.Name] = u.Key + " " + strings.Join(u.Stages, ",")
	}
	want := map[string]string{
		"T_WEBHOOK":    "sources[0].secrets[0] receiver",
		"T_POLL_NS":    "sources[1].repositories[0].repository watcher",
		"T_ROBOT":      "registries[0].password watcher,inspector,rebuilder,promoter,retention",
		"T_REQUIRE":    "inspector.require_update_level[0] inspector",
		"T_TARGET_NS":  "rebuilds[0].target rebuilder",
		"T_OPS_LISTEN": "ops.listen receiver,watcher,inspector,rebuilder,promoter,retention",
	}
	if len(got) != len(want) {
		t.Errorf("unset %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
	if cfg.Inspector.UpdateLevelLabel != "level" {
		t.Errorf("a set variable was not expanded: %q", cfg.Inspector.UpdateLevelLabel)
	}
	for _, u := range unset {
		switch u.Name {
		case "T_WEBHOOK":
			if s := u.String(); s != path+":8: sources[0].secrets[0]: environment variable T_WEBHOOK is not set (needed by the receiver)" {
				t.Errorf("String: %s", s)
			}
			if !u.NeededBy([]string{"inspector", "receiver"}) || u.NeededBy([]string{"inspector"}) || u.NeededBy(nil) {
				t.Error("NeededBy")
			}
		case "T_ROBOT":
			if s := u.String(); !strings.HasSuffix(s, "(needed by the watcher, the inspector, the rebuilder, the promoter, the retention stage)") {
				t.Errorf("String: %s", s)
			}
		case "T_OPS_LISTEN":
			if s := u.String(); !strings.HasSuffix(s, "(needed by every process)") {
				t.Errorf("String: %s", s)
			}
		}
	}

	// Every other problem fails, in every section.
	bad := writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), "http:\n  listen: 8080\ninspector:\n  concurrency: 0\nrebuilds:\n  - name: x\n    bogus: 1\n")
	if _, _, err := config.Check(bad); err == nil || !strings.Contains(err.Error(), "h.yaml:7: rebuilds[0].bogus: unknown key") {
		t.Errorf("unknown key: %v", err)
	}
	bad = writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), "http:\n  listen: 8080\ninspector:\n  concurrency: 0\n")
	_, _, err = config.Check(bad)
	for _, want := range []string{"h.yaml:2: http.listen: must be host:port", "h.yaml:4: inspector.concurrency: must be between 1 and 256"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v; want %q", err, want)
		}
	}
}

func TestCheckDoesNotValidateAnUnsetValue(t *testing.T) {
	t.Setenv("T_CREDS", "")
	os.Unsetenv("T_CREDS")
	path := writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), "nats:\n  url: nats://n:4222\n  creds_file: ${T_CREDS}\n")
	_, unset, err := config.Check(path)
	if err != nil || len(unset) != 1 || unset[0].Key != "nats.creds_file" {
		t.Fatalf("Check: %v %v", unset, err)
	}
	if _, err := config.Load(path); err == nil || strings.Contains(err.Error(), "cannot read") {
		t.Errorf("Load: %v; want only the unset variable", err)
	}
}

func TestKeysNoLongerReadAreRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"http:\n  shutdown_timeout: 20s\n", "h.yaml:2: http.shutdown_timeout: is no longer read: ops.shutdown_grace is how long running handlers get"},
	} {
		path := writeFile(t, filepath.Join(t.TempDir(), "h.yaml"), tc.yaml)
		for name, load := range map[string]func() error{
			"Load":           func() error { _, err := config.Load(path); return err },
			"Load inspector": func() error { _, err := config.Load(path, event.StageInspector); return err },
			"LoadOps":        func() error { _, err := config.LoadOps(path); return err },
			"Check":          func() error { _, _, err := config.Check(path); return err },
		} {
			err := load()
			var ce *config.Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) || ce.File != path {
				t.Errorf("%s of %q: %v; want %q", name, tc.yaml, err, tc.want)
			}
		}
	}
}

func TestRelativePathsAreRelativeToTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "certs", "ca.pem"), "not checked at load")
	writeFile(t, filepath.Join(dir, "nats.creds"), "not checked at load")
	writeFile(t, filepath.Join(dir, "images", "acme-am", "Dockerfile"), "FROM x\n")
	path := writeFile(t, filepath.Join(dir, "harborflow.yaml"), `
nats:
  url: tls://n:4222
  store_dir: var/nats
  creds_file: ./nats.creds
  ca_file: certs/ca.pem
registries:
  - host: harbor.acme.example
    ca_file: certs/ca.pem
  - host: abs.example
    ca_file: /etc/ssl/certs/ca.pem
rebuilds:
  - name: acme-am
    base: registry.wso2.com/wso2-apim/am:4.2.0
    builder: dockerfile
    context: images/acme-am
    target: harbor.acme.example/wso2-dev/acme-am
`)
	// From another working directory, with the config named by a relative path.
	wd := t.TempDir()
	t.Chdir(wd)
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(rel)
	if err != nil {
		t.Fatal(err)
	}
	for key, got := range map[string]string{
		"nats.store_dir":         cfg.NATS.StoreDir,
		"nats.creds_file":        cfg.NATS.CredsFile,
		"nats.ca_file":           cfg.NATS.CAFile,
		"registries[0].ca_file":  cfg.Registries[0].CAFile,
		"registries[1].ca_file":  cfg.Registries[1].CAFile,
		"rebuilds[0].context":    cfg.Rebuilds[0].Context,
		"rebuilds[0].dockerfile": cfg.Rebuilds[0].Dockerfile,
	} {
		want := map[string]string{
			"nats.store_dir":         filepath.Join(dir, "var", "nats"),
			"nats.creds_file":        filepath.Join(dir, "nats.creds"),
			"nats.ca_file":           filepath.Join(dir, "certs", "ca.pem"),
			"registries[0].ca_file":  filepath.Join(dir, "certs", "ca.pem"),
			"registries[1].ca_file":  "/etc/ssl/certs/ca.pem",
			"rebuilds[0].context":    filepath.Join(dir, "images", "acme-am"),
			"rebuilds[0].dockerfile": "Dockerfile", // relative to the context, as documented
		}[key]
		if got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	// The default store is relative to the file too.
	empty := writeFile(t, filepath.Join(dir, "empty.yaml"), "")
	cfg, err = config.Load(empty)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.StoreDir != filepath.Join(dir, "var", "nats") {
		t.Errorf("default nats.store_dir = %q", cfg.NATS.StoreDir)
	}
	// A relative path that does not exist is named resolved.
	missing := writeFile(t, filepath.Join(dir, "missing.yaml"), "nats:\n  url: nats://n:4222\n  creds_file: nope.creds\n")
	if _, err := config.Load(missing); err == nil || !strings.Contains(err.Error(), `nats.creds_file: cannot read "`+filepath.Join(dir, "nope.creds")+`"`) {
		t.Errorf("missing creds file: %v", err)
	}
}

func TestOpsSection(t *testing.T) {
	cfg, err := config.Parse("h.yaml", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ops.Listen != "127.0.0.1:8081" || cfg.Ops.ShutdownGrace != 5*time.Second {
		t.Errorf("ops defaults: %+v", cfg.Ops)
	}
	if d := cfg.Ops.StopTimeout(); d > 10*time.Second || d <= cfg.Ops.ShutdownGrace {
		t.Errorf("the whole stop with defaults takes up to %s; want more than the grace, at most 10s", d)
	}
	cfg, err = config.Parse("h.yaml", []byte("ops:\n  listen: 0.0.0.0:9090\n  shutdown_grace: 2s\n"), env(nil), event.StageInspector)
	if err != nil || cfg.Ops.Listen != "0.0.0.0:9090" || cfg.Ops.ShutdownGrace != 2*time.Second {
		t.Errorf("ops: %+v %v", cfg, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"ops:\n  listen: 8081\n", "h.yaml:2: ops.listen: must be host:port"},
		{"ops:\n  listen: localhost:http-alt\n", "h.yaml:2: ops.listen: port must be a number"},
		{"ops:\n  shutdown_grace: 0s\n", "h.yaml:2: ops.shutdown_grace: must be a positive duration"},
		{"ops:\n  shutdown_grace: -1s\n", "h.yaml:2: ops.shutdown_grace: must be a positive duration"},
		{"ops:\n  shutdown_grace: soon\n", "h.yaml:2: ops.shutdown_grace:"},
		{"ops:\n  grace: 1s\n", `h.yaml:2: ops.grace: unknown key`},
	} {
		// Every process reads ops, whichever stages it runs.
		for _, stage := range config.StageNames() {
			if _, err := config.Parse("h.yaml", []byte(tc.yaml), env(nil), stage); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, %q: %v; want %q", stage, tc.yaml, err, tc.want)
			}
		}
	}
}

func TestNoConfigFileSaysHowToNameOne(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(config.EnvFile, "")
	for _, tc := range []struct {
		env, flag string
		want      []string
	}{
		{"", "", []string{"config file harborflow.yaml (" + filepath.Join(dir, "harborflow.yaml") + ") does not exist", "the default when neither --config nor $HARBORFLOW_CONFIG is set", "--config FILE or $HARBORFLOW_CONFIG"}},
		{"/nonexistent/h.yaml", "", []string{"config file /nonexistent/h.yaml does not exist: $HARBORFLOW_CONFIG names it"}},
		{"", "x/h.yaml", []string{"config file x/h.yaml (" + filepath.Join(dir, "x", "h.yaml") + ") does not exist: name one with --config FILE or $HARBORFLOW_CONFIG"}},
	} {
		t.Setenv(config.EnvFile, tc.env)
		path := config.Path(tc.flag)
		for name, load := range map[string]func() error{
			"Load":    func() error { _, err := config.Load(path); return err },
			"LoadOps": func() error { _, err := config.LoadOps(path); return err },
			"Check":   func() error { _, _, err := config.Check(path); return err },
		} {
			err := load()
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %v is not fs.ErrNotExist", name, err)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %v; want %q", name, err, w)
				}
			}
		}
	}
}
