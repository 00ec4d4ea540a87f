package harborflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// TestStandInDrivesThePipeline pushes through the Harbor stand-in's registry front, as a customer's CI would,
// and lets the stand-in's own webhook deliveries (built from HARBOR.md, not from the receiver's parser) drive
// the receiver and the inspector: a single image and a two-platform index each end as one image.inspected, and
// the project's scan on push arrives as registry.harbor.scan, one per scanned digest (the index's platforms,
// never the index itself: HARBOR.md §7.1).
func TestStandInDrivesThePipeline(t *testing.T) {
	harbor := harbortest.New(t)
	user, password := harbor.Admin()
	harbor.CreateProject(t, "wso2-apim", false, map[string]string{"auto_scan": "true"})
	src := registrytest.New(t)
	am := src.PushImage(t, "am:4.2.0.15", registrytest.Image{Labels: map[string]string{"update_level": "15", harbortest.LabelSeverity: "High"}})
	is := src.PushIndex(t, "is:7.1.0.4", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{"update_level": "4"}},
		{Platform: "linux/arm64", Labels: map[string]string{"update_level": "4", harbortest.LabelScan: "error"}},
	}})

	cfg := config.Default()
	cfg.NATS.Listen, cfg.NATS.StoreDir, cfg.NATS.SyncAlways = "127.0.0.1:0", t.TempDir(), false
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Sources = []config.Source{{Name: "harbor", Kind: config.SourceHarbor, Host: harbor.Host(), Secrets: []config.Secret{"Bearer standin"}}}
	cfg.Registries = []config.Registry{{Host: harbor.Host(), Harbor: true, PlainHTTP: true, Username: user, Password: config.Secret(password)}}
	p := startStages(t, &cfg, event.StageReceiver, event.StageInspector)

	// The project's webhook policy, as an administrator (or `harborflow harbor setup-webhooks`) writes it.
	body, _ := json.Marshal(map[string]any{"name": "harborflow", "enabled": true, "event_types": []string{"PUSH_ARTIFACT", "SCANNING_COMPLETED", "SCANNING_FAILED"},
		"targets": []map[string]any{{"type": "http", "address": "http://" + p.ReceiverAddr() + "/webhooks/harbor/harbor",
			"auth_header": "Bearer standin", "payload_format": "Default"}}})
	req, _ := http.NewRequest(http.MethodPost, harbor.URL()+"/api/v2.0/projects/wso2-apim/webhook/policies", bytes.NewReader(body))
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating the webhook policy: %s", resp.Status)
	}

	rc := regclient.New(regclient.WithConfigHost(
		rcconfig.Host{Name: harbor.Host(), TLS: rcconfig.TLSDisabled, User: user, Pass: password},
		rcconfig.Host{Name: src.Host, TLS: rcconfig.TLSDisabled}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for from, to := range map[string]string{"am:4.2.0.15": "wso2-apim/am:4.2.0.15", "is:7.1.0.4": "wso2-apim/is:7.1.0.4"} {
		f, _ := ref.New(src.Host + "/" + from)
		d, _ := ref.New(harbor.Host() + "/" + to)
		if err := rc.ImageCopy(ctx, f, d); err != nil {
			t.Fatalf("pushing %s through the stand-in: %v", to, err)
		}
	}

	got := map[string]*harborflowv1.ImageInspected{}
	for _, ii := range readMessages[*harborflowv1.ImageInspected](t, p.NATSURL, event.SubjectImageInspected, 2, true) {
		got[ii.GetRepository()] = ii
	}
	if am := got["wso2-apim/am"]; am == nil || am.GetUpdateLevel() != 15 || am.GetRegistry() != harbor.Host() || am.GetTags()[0] != "4.2.0.15" {
		t.Errorf("the single image: %v", am)
	}
	if is := got["wso2-apim/is"]; is == nil || is.GetUpdateLevel() != 4 || len(is.GetPlatforms()) != 2 || is.GetTags()[0] != "7.1.0.4" {
		t.Errorf("the two-platform index (N+1 PUSH_ARTIFACT deliveries): %v", is)
	}
	// A platform may be scanned twice (again when its index arrives after its first scan ended, HARBOR.md
	// §7.1): read until three digests are reported, the newest report of each winning.
	scans := map[string]*harborflowv1.RegistryEvent{}
	b := connectBus(t, p.NATSURL)
	for m, err := range b.Read(ctx, bus.ReadConfig{Subject: "registry.harbor.scan", Follow: true}) {
		if err != nil {
			t.Fatalf("reading scan events (have %d digests): %v", len(scans), err)
		}
		ev := &harborflowv1.RegistryEvent{}
		if err := m.Decode(ev); err != nil {
			t.Fatal(err)
		}
		scans[ev.GetDigest()] = ev
		if len(scans) == 3 {
			break
		}
	}
	if len(scans) < 3 {
		t.Fatalf("scan events of %d digests within 30 s, want 3: %v", len(scans), scans)
	}
	if ev := scans[am.Digest]; ev == nil || ev.GetType() != "SCANNING_COMPLETED" || ev.GetTag() != "4.2.0.15" || ev.GetScan().GetSeverity() != "High" {
		t.Errorf("the single image's scan: %v", ev)
	}
	if scans[is.Digest] != nil {
		t.Errorf("the index itself was reported scanned: %v", scans[is.Digest])
	}
	var failed, completed int
	for d, ev := range scans {
		if d == am.Digest {
			continue
		}
		if ev.GetTag() != "" {
			t.Errorf("a platform's scan carries tag %q, want none", ev.GetTag())
		}
		switch ev.GetType() {
		case "SCANNING_FAILED":
			failed++
		case "SCANNING_COMPLETED":
			completed++
		}
	}
	if failed != 1 || completed != 1 {
		t.Errorf("the index's platforms: %d completed, %d failed scans, want one each", completed, failed)
	}
	if err := harbor.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
	var pushes int
	for _, d := range harbor.Deliveries() {
		if d.Event.Type == "PUSH_ARTIFACT" && d.Status == http.StatusAccepted {
			pushes++
		}
	}
	if pushes != 4 {
		t.Errorf("%d PUSH_ARTIFACT deliveries answered 202, want 4 (one image, then two platforms and their index)", pushes)
	}
}

// TestSetupWebhooksOnTheStandIn runs `harborflow harbor setup-webhooks` against the stand-in as a robot-like
// user who administers two projects and may only push to a third: the two get the policy, the third is
// reported, a second run changes nothing, a new secret updates the policy without being printed, and a dry run
// of another format changes nothing.
func TestSetupWebhooksOnTheStandIn(t *testing.T) {
	harbor := harbortest.New(t, harbortest.WithUser("harborflow-bot", "bot-pass"))
	for _, p := range []string{"wso2-dev", "wso2-staging", "locked"} {
		harbor.CreateProject(t, p, false, nil)
		role := harbortest.RoleProjectAdmin
		if p == "locked" {
			role = harbortest.RoleDeveloper
		}
		harbor.AddMember(t, p, "harborflow-bot", role)
	}
	dir := t.TempDir()
	path := writeYAML(t, dir, `http: {public_url: "https://harborflow.acme.example"}
sources:
  - {name: acme, kind: harbor, host: "`+harbor.Host()+`", secrets: ["${HARBOR_WEBHOOK_AUTH}"]}
registries:
  - {host: "`+harbor.Host()+`", harbor: true, plain_http: true, username: harborflow-bot, password: "${HARBOR_BOT_PASSWORD}"}
rebuilds:
  - {name: acme-am, base: "registry.wso2.com/wso2-apim/am:4.2.0", context: ".", target: "`+harbor.Host()+`/wso2-dev/acme-am"}
`)
	t.Setenv("HARBOR_BOT_PASSWORD", "bot-pass")
	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer first-s3cr3t")
	setup := func(args ...string) (string, error) {
		return runCLI(t, append([]string{"--config", path, "harbor", "setup-webhooks", "--project", "wso2-staging", "--project", "locked"}, args...)...)
	}

	out, err := setup()
	if err == nil || !strings.Contains(err.Error(), "1 of 3 projects: "+harbor.Host()+"/locked") {
		t.Errorf("first run: %v, want the project it may not manage named", err)
	}
	for _, want := range []string{"/wso2-dev: policy harborflow created (id ", "/wso2-staging: policy harborflow created (id ", "/locked: failed: "} {
		if !strings.Contains(out, want) {
			t.Errorf("first run lacks %q:\n%s", want, out)
		}
	}
	policy := readPolicy(t, harbor, "wso2-dev")
	if policy.Targets[0].Address != "https://harborflow.acme.example/webhooks/harbor/acme" || policy.Targets[0].AuthHeader != "Bearer first-s3cr3t" ||
		!policy.Enabled || len(policy.EventTypes) != 7 {
		t.Errorf("the policy in wso2-dev: %+v", policy)
	}

	out, _ = setup()
	if strings.Count(out, "policy harborflow unchanged") != 2 {
		t.Errorf("second run changed something:\n%s", out)
	}

	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer rotated-s3cr3t")
	out, _ = setup("--format", "CloudEvents", "--dry-run")
	if strings.Count(out, "would be updated") != 2 || readPolicy(t, harbor, "wso2-dev").Targets[0].AuthHeader != "Bearer first-s3cr3t" {
		t.Errorf("a dry run changed the policy, or said nothing:\n%s", out)
	}
	out, _ = setup()
	if strings.Count(out, "updated (id ") != 2 || !strings.Contains(out, "auth header: changed (not shown)") ||
		readPolicy(t, harbor, "wso2-staging").Targets[0].AuthHeader != "Bearer rotated-s3cr3t" {
		t.Errorf("a rotated secret did not update the policies:\n%s", out)
	}
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("a secret was printed:\n%s", out)
	}
}

// standinPolicy is a webhook policy as Harbor's API lists it (the auth header in clear, HARBOR.md §7).
type standinPolicy struct {
	Name       string
	Enabled    bool
	EventTypes []string `json:"event_types"`
	Targets    []struct {
		Address    string
		AuthHeader string `json:"auth_header"`
	}
}

// readPolicy reads the policy named harborflow of project, as the administrator, straight from the API.
func readPolicy(t *testing.T, harbor *harbortest.Server, project string) standinPolicy {
	t.Helper()
	user, password := harbor.Admin()
	req, _ := http.NewRequest(http.MethodGet, harbor.URL()+"/api/v2.0/projects/"+project+"/webhook/policies", nil)
	req.SetBasicAuth(user, password)
	req.Header.Set("X-Is-Resource-Name", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var policies []standinPolicy
	if err := json.NewDecoder(resp.Body).Decode(&policies); err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		if p.Name == "harborflow" {
			return p
		}
	}
	t.Fatalf("no policy harborflow in %s: %+v", project, policies)
	return standinPolicy{}
}
