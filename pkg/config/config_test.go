package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const sample = `
nats:
  listen: 127.0.0.1:4333
  duplicate_window: 5m
sources:
  - name: harbor
    kind: harbor
    host: harbor.acme.example
    secrets: ["${HARBOR_WEBHOOK_AUTH}", "Bearer old"]
    ignore_operators: ["robot$harborflow"]
  - name: wso2
    kind: poll
    repositories:
      - repository: registry.wso2.com/wso2-apim/am
        tags: ['^4\.2\.0(\.\d+)?(-rocky)?$']
registries:
  - host: harbor.acme.example
    username: robot$harborflow
    password: ${HARBOR_ROBOT_SECRET}
`

func TestParseSampleAppliesDefaultsAndExpandsSecrets(t *testing.T) {
	cfg, err := config.Parse("h.yaml", []byte(sample), env(map[string]string{
		"HARBOR_WEBHOOK_AUTH": "Bearer s3cr3t", "HARBOR_ROBOT_SECRET": "p$w",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.NATS.Listen; got != "127.0.0.1:4333" {
		t.Errorf("nats.listen = %q", got)
	}
	if !cfg.NATS.SyncAlways {
		t.Error("nats.sync_always must default to true")
	}
	if cfg.NATS.DuplicateWindow != 5*time.Minute || cfg.NATS.Replicas != 1 || cfg.HTTP.MaxBodyBytes != 1<<20 {
		t.Errorf("defaults not applied: %+v %+v", cfg.NATS, cfg.HTTP)
	}
	h, _ := cfg.Source("harbor")
	if h.Secrets[0].Value() != "Bearer s3cr3t" || h.Secrets[1].Value() != "Bearer old" {
		t.Errorf("secrets not expanded: %q", []string{h.Secrets[0].Value(), h.Secrets[1].Value()})
	}
	// `$` outside ${NAME} stays as written.
	if h.IgnoreOperators[0] != "robot$harborflow" || cfg.Registries[0].Username != "robot$harborflow" {
		t.Errorf("a plain $ was expanded: %q %q", h.IgnoreOperators[0], cfg.Registries[0].Username)
	}
	if cfg.Registries[0].Password.Value() != "p$w" {
		t.Errorf("password = %q", cfg.Registries[0].Password.Value())
	}
	w, _ := cfg.Source("wso2")
	if w.Interval != 5*time.Minute || w.Initial != "publish" {
		t.Errorf("poll defaults not applied: %+v", w)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	cfg, err := config.Parse("h.yaml", []byte(sample), env(map[string]string{
		"HARBOR_WEBHOOK_AUTH": "Bearer s3cr3t", "HARBOR_ROBOT_SECRET": "hunter2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(cfg)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, *cfg, *cfg, cfg), string(j)} {
		if strings.Contains(out, "s3cr3t") || strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestParseErrorsNameFileKeyAndLine(t *testing.T) {
	base := "sources:\n  - name: h\n    kind: harbor\n    host: h.example\n    secrets: [x]\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "natz:\n  url: x\n", []string{"bad.yaml:1: natz: unknown key", `did you mean "nats"?`}},
		{"unknown nested key", "nats:\n  listen: 127.0.0.1:1\n  sync_allways: false\n", []string{"bad.yaml:3: nats.sync_allways: unknown key", `"sync_always"`}},
		{"unknown key in a list item", base + "    secret: y\n", []string{"bad.yaml:6: sources[0].secret: unknown key"}},
		{"bad duration", "nats:\n  duplicate_window: ten minutes\n", []string{"bad.yaml:2: nats.duplicate_window:", "time.Duration"}},
		{"bad int", "http:\n  max_body_bytes: lots\n", []string{"bad.yaml:2: http.max_body_bytes:"}},
		{"bad replicas", "nats:\n  replicas: 0\n", []string{"bad.yaml:2: nats.replicas: must be between 1 and 5, not 0"}},
		{"bad source name", "sources:\n  - name: Harbor_1\n    kind: harbor\n    host: h\n    secrets: [x]\n", []string{"bad.yaml:2: sources[0].name: must match [a-z0-9-]+"}},
		{"bad source kind", "sources:\n  - name: h\n    kind: quay\n", []string{"bad.yaml:3: sources[0].kind: must be harbor, distribution or poll"}},
		{"no secrets", "sources:\n  - name: h\n    kind: harbor\n    host: h\n", []string{"sources[0].secrets: must list at least one"}},
		{"duplicate source", base + "  - name: h\n    kind: harbor\n    host: h\n    secrets: [y]\n", []string{"bad.yaml:6: sources[1].name: \"h\" is already the name of sources[0]"}},
		{"unset env", "sources:\n  - name: h\n    kind: harbor\n    host: h\n    secrets: [\"${NOPE}\"]\n", []string{"bad.yaml:5: sources[0].secrets[0]: environment variable NOPE is not set"}},
		{"bad listen", "http:\n  listen: 8080\n", []string{"bad.yaml:2: http.listen: must be host:port"}},
		{"bad regexp", "sources:\n  - name: w\n    kind: poll\n    repositories:\n      - repository: r\n        tags: ['(']\n", []string{"bad.yaml:6: sources[0].repositories[0].tags[0]: is not a valid regular expression"}},
		{"mapping expected", "nats: 5\n", []string{"bad.yaml:1: nats: must be a mapping"}},
		{"not yaml", "nats: [\n", []string{"bad.yaml"}},
		{"bad log level", "log:\n  level: loud\n", []string{"bad.yaml:2: log.level: must be debug, info, warn or error"}},
		{"bad recipe name", "rebuilds:\n  - name: Acme AM\n    base: r.example/am:4.2.0\n    builder: rebase\n    image: h.example/p/am:1\n    target: h.example/p/am\n",
			[]string{"bad.yaml:2: rebuilds[0].name: must match [a-z0-9-]+"}},
		{"base without a tag", "rebuilds:\n  - name: am\n    base: r.example/am\n    builder: rebase\n    image: h.example/p/am:1\n    target: h.example/p/am\n",
			[]string{"bad.yaml:3: rebuilds[0].base: must be registry/repository:tag"}},
		{"base on latest", "rebuilds:\n  - name: am\n    base: r.example/am:latest\n    builder: rebase\n    image: h.example/p/am:1\n    target: h.example/p/am\n",
			[]string{`bad.yaml:3: rebuilds[0].base: tag "latest" of r.example/am is not a version tag`}},
		{"target with a tag", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    builder: rebase\n    image: h.example/p/am:1\n    target: h.example/p/am:4\n",
			[]string{"bad.yaml:6: rebuilds[0].target: must be registry/repository without a tag"}},
		{"bad builder", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    builder: kaniko\n    target: h.example/p/am\n",
			[]string{"bad.yaml:4: rebuilds[0].builder: must be overlay, dockerfile or rebase"}},
		{"missing context", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    context: /nonexistent/acme-am\n    target: h.example/p/am\n",
			[]string{`bad.yaml:4: rebuilds[0].context: cannot read "/nonexistent/acme-am": no such file or directory`}},
		{"bad owner", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    context: /\n    owner: wso2carbon\n    target: h.example/p/am\n",
			[]string{"bad.yaml:5: rebuilds[0].owner: must be uid:gid in numbers"}},
		{"bad tag template", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    context: /\n    target: h.example/p/am\n    tag: '{{.Flavour}}'\n",
			[]string{"bad.yaml:6: rebuilds[0].tag: tag template", "Flavour"}},
		{"rebase without image", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    builder: rebase\n    target: h.example/p/am\n",
			[]string{"rebuilds[0].image: must name the derived image"}},
		{"bad platform", "rebuilds:\n  - name: am\n    base: r.example/am:4.2.0\n    context: /\n    target: h.example/p/am\n    platforms: [amd64]\n",
			[]string{"bad.yaml:6: rebuilds[0].platforms[0]: must be os/arch[/variant]"}},
		{"bad poll platform", "sources:\n  - name: w\n    kind: poll\n    repositories:\n      - repository: r.example/am\n        platforms: [Linux/amd64]\n",
			[]string{"bad.yaml:6: sources[0].repositories[0].platforms[0]: must be os/arch[/variant]", "Linux/amd64"}},
		{"bad public url", "http:\n  public_url: harborflow.acme.example\n", []string{"bad.yaml:2: http.public_url: must be an http:// or https:// URL"}},
		{"missing creds file", "nats:\n  url: nats://n:4222\n  creds_file: /nonexistent/harborflow.creds\n", []string{`bad.yaml:3: nats.creds_file: cannot read "/nonexistent/harborflow.creds": no such file or directory`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("bad.yaml", []byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.File != "bad.yaml" {
				t.Errorf("error %v is not a *config.Error naming the file", err)
			}
		})
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	y := "sources:\n  - name: h\n    kind: harbor\n    host: h\n    secrets: [\"${S}\"]\n    bogus: 1\n"
	_, err := config.Parse("bad.yaml", []byte(y), env(map[string]string{"S": "Bearer s3cr3t"}))
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("err = %v", err)
	}
}

func TestEmptyFileIsAllDefaults(t *testing.T) {
	cfg, err := config.Parse("empty.yaml", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.Listen != "127.0.0.1:4222" || cfg.HTTP.Listen != "127.0.0.1:8080" || !cfg.NATS.SyncAlways {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestRebuildDefaultsAndRelativeContext(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/images/acme-am", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/images/acme-am/Dockerfile", []byte("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := "rebuilds:\n  - name: acme-am\n    base: registry.wso2.com/wso2-apim/am:4.2.0\n    context: images/acme-am\n    target: harbor.acme.example/wso2-dev/acme-am\n" +
		"  - name: acme-am-docker\n    base: registry.wso2.com/wso2-apim/am:4.2.0-rocky\n    builder: dockerfile\n    context: images/acme-am\n    target: harbor.acme.example/wso2-dev/acme-am\n    on_digest_change: false\n"
	cfg, err := config.Parse(dir+"/harborflow.yaml", []byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Rebuilds[0]
	if r.Builder != config.BuilderOverlay || r.Owner != "0:0" || r.Tag != "{{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}}" ||
		r.Timeout != 30*time.Minute || !r.RebuildOnDigestChange() || r.Context != dir+"/images/acme-am" {
		t.Errorf("defaults: %+v", r)
	}
	if d := cfg.Rebuilds[1]; d.Dockerfile != "Dockerfile" || d.RebuildOnDigestChange() {
		t.Errorf("dockerfile recipe: %+v", d)
	}
}
