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

// TestPromotionThroughTheStandIn pushes images into the dev project of the Harbor stand-in, whose scanner scans
// them on push, and runs the receiver, the inspector and the promoter on its webhooks: a clean single image goes
// dev → staging → prod with its unique tag then its rolling tags in each; an image with a High finding is
// blocked with a readable reason; a two-platform image whose arm64 scan fails stays blocked; the same events
// delivered again publish nothing new.
func TestPromotionThroughTheStandIn(t *testing.T) {
	harbor := harbortest.New(t)
	user, password := harbor.Admin()
	harbor.CreateProject(t, "wso2-dev", false, map[string]string{"auto_scan": "true"})
	harbor.CreateProject(t, "wso2-staging", false, nil)
	harbor.CreateProject(t, "wso2-prod", false, nil)
	src := registrytest.New(t)
	src.PushImage(t, "am:4.2.0.15", registrytest.Image{User: "802:802", ExposedPorts: []string{"9443/tcp"},
		Labels: map[string]string{"update_level": "15"}})
	src.PushImage(t, "bad:4.2.0.16", registrytest.Image{User: "802:802", Layer: "bad",
		Labels: map[string]string{"update_level": "16", harbortest.LabelSeverity: "High"}})
	src.PushIndex(t, "is:7.1.0.4", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", User: "802", Labels: map[string]string{"update_level": "4"}},
		{Platform: "linux/arm64", User: "802", Labels: map[string]string{"update_level": "4", harbortest.LabelScan: "error"}},
	}})

	h := harbor.Host()
	chain := func(name, repo string, prod bool) config.Promotion {
		p := config.Promotion{Name: name, RollingTags: []string{"{{.Version}}", "latest"}, Stages: []config.PromotionStage{
			{Repository: h + "/wso2-dev/" + repo},
			{Repository: h + "/wso2-staging/" + repo, Gates: config.Gates{MaxSeverity: "Medium", NonRoot: true}},
		}}
		if prod {
			p.Stages = append(p.Stages, config.PromotionStage{Repository: h + "/wso2-prod/" + repo,
				Gates: config.Gates{MaxSeverity: "Medium", AllowedPorts: []string{"9443/tcp"}}})
		}
		return p
	}
	cfg := config.Default()
	cfg.NATS.Listen, cfg.NATS.StoreDir, cfg.NATS.SyncAlways = "127.0.0.1:0", t.TempDir(), false
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Sources = []config.Source{{Name: "harbor", Kind: config.SourceHarbor, Host: h, Secrets: []config.Secret{"Bearer standin"}}}
	cfg.Registries = []config.Registry{{Host: h, Harbor: true, PlainHTTP: true, Username: user, Password: config.Secret(password)}}
	cfg.Promotions = []config.Promotion{chain("acme-am", "am", true), chain("acme-bad", "bad", false), chain("acme-is", "is", false)}
	for i := range cfg.Promotions {
		cfg.Promotions[i].ScanTimeout = time.Minute
		for j := range cfg.Promotions[i].Stages {
			cfg.Promotions[i].Stages[j].Name = strings.Split(cfg.Promotions[i].Stages[j].Repository, "/")[1]
		}
	}
	p := startStages(t, &cfg, event.StageReceiver, event.StageInspector, event.StagePromoter)

	body, _ := json.Marshal(map[string]any{"name": "harborflow", "enabled": true,
		"event_types": []string{"PUSH_ARTIFACT", "SCANNING_COMPLETED", "SCANNING_FAILED"},
		"targets": []map[string]any{{"type": "http", "address": "http://" + p.ReceiverAddr() + "/webhooks/harbor/harbor",
			"auth_header": "Bearer standin", "payload_format": "Default"}}})
	for _, project := range []string{"wso2-dev", "wso2-staging", "wso2-prod"} {
		req, _ := http.NewRequest(http.MethodPost, harbor.URL()+"/api/v2.0/projects/"+project+"/webhook/policies", bytes.NewReader(body))
		req.SetBasicAuth(user, password)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("creating the webhook policy of %s: %s", project, resp.Status)
		}
	}

	rc := regclient.New(regclient.WithConfigHost(
		rcconfig.Host{Name: h, TLS: rcconfig.TLSDisabled, User: user, Pass: password},
		rcconfig.Host{Name: src.Host, TLS: rcconfig.TLSDisabled}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{"am:4.2.0.15", "bad:4.2.0.16", "is:7.1.0.4"} {
		f, _ := ref.New(src.Host + "/" + name)
		d, _ := ref.New(h + "/wso2-dev/" + name)
		if err := rc.ImageCopy(ctx, f, d); err != nil {
			t.Fatalf("pushing %s into wso2-dev: %v", name, err)
		}
	}

	promoted := readMessages[*harborflowv1.ImagePromoted](t, p.NATSURL, event.SubjectImagePromoted, 2, true)
	var steps []string
	for _, m := range promoted {
		steps = append(steps, m.GetChain()+":"+m.GetFromStage()+"→"+m.GetToStage())
		if strings.Join(m.GetTags(), ",") != "4.2.0.15,4.2.0,latest" {
			t.Errorf("%s → %s: tags %v, want the unique tag then the rolling tags", m.GetFromStage(), m.GetToStage(), m.GetTags())
		}
		for _, g := range m.GetGates() {
			if !g.GetPassed() {
				t.Errorf("promoted with gate %s not passed: %s", g.GetName(), g.GetReason())
			}
		}
	}
	if strings.Join(steps, " ") != "acme-am:wso2-dev→wso2-staging acme-am:wso2-staging→wso2-prod" {
		t.Errorf("promotions: %v", steps)
	}
	digest := promoted[0].GetDigest()
	for _, repo := range []string{"wso2-staging/am", "wso2-prod/am"} {
		for _, tag := range []string{"4.2.0.15", "4.2.0", "latest"} {
			r, _ := ref.New(h + "/" + repo + ":" + tag)
			m, err := rc.ManifestHead(ctx, r)
			if err != nil || m.GetDescriptor().Digest.String() != digest {
				t.Errorf("%s:%s: %v, want %s", repo, tag, err, digest)
			}
		}
	}

	// A verdict is published once per distinct verdict: the index is blocked once or twice, as its platforms'
	// scans arrive (its arm64 failed; then, or before, its amd64 passed).
	reason := func(m *harborflowv1.ImageBlocked) string {
		for _, g := range m.GetGates() {
			if g.GetName() == "max_severity" {
				return g.GetVerdict() + ": " + g.GetReason()
			}
		}
		return ""
	}
	b := connectBus(t, p.NATSURL)
	blocked := map[string]string{}
	var nBlocked int
	for m, err := range b.Read(ctx, bus.ReadConfig{Subject: event.SubjectImageBlocked, Follow: true}) {
		if err != nil {
			t.Fatalf("reading image.blocked (have %v): %v", blocked, err)
		}
		ib := &harborflowv1.ImageBlocked{}
		if err := m.Decode(ib); err != nil {
			t.Fatal(err)
		}
		nBlocked++
		blocked[ib.GetChain()] = reason(ib)
		if blocked["acme-bad"] != "" && strings.HasSuffix(blocked["acme-is"], ") scan failed") {
			break
		}
	}
	if r := blocked["acme-bad"]; r != "blocked: High vulnerability on linux/amd64, max Medium" {
		t.Errorf("the image with a High finding: %q", r)
	}
	if r := blocked["acme-is"]; !strings.HasPrefix(r, "blocked: platform linux/arm64 (") || !strings.HasSuffix(r, ") scan failed") {
		t.Errorf("the index with a failed platform scan: %q", r)
	}

	// The same events once more, as a redelivery or a duplicate after the window would bring them.
	var again int
	for _, subject := range []string{event.SubjectImageInspected, "registry.harbor.scan"} {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		for m, err := range b.Read(rctx, bus.ReadConfig{Subject: subject}) {
			if err != nil {
				t.Fatalf("reading %s: %v", subject, err)
			}
			if _, err := b.Publish(ctx, &bus.Message{Subject: m.Subject, ID: "again-" + m.ID, Header: m.Header, Data: m.Data}); err != nil {
				t.Fatal(err)
			}
			again++
		}
		rcancel()
	}
	if again == 0 {
		t.Fatal("no events to deliver again")
	}
	for _, stream := range []string{event.StreamImage, event.StreamRegistry} {
		for {
			ci, err := b.ConsumerInfo(ctx, stream, event.StagePromoter)
			if err != nil {
				t.Fatal(err)
			}
			if ci.Pending == 0 && ci.AckPending == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the promoter did not settle the %d events delivered again: %+v", again, ci)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	readMessages[*harborflowv1.ImagePromoted](t, p.NATSURL, event.SubjectImagePromoted, 2, true)
	readMessages[*harborflowv1.ImageBlocked](t, p.NATSURL, event.SubjectImageBlocked, nBlocked, true)
}
