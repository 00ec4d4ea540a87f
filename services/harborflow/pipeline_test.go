package harborflow_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// TestWebhookAndPollBecomeInspectedImages runs every stage in one process against a real registry: a Harbor
// webhook and a poll source each end as image.inspected with the update level read from the registry, and
// the webhook's base is rebuilt by the recipe that follows it.
func TestWebhookAndPollBecomeInspectedImages(t *testing.T) {
	reg := registrytest.New(t)
	pushed := reg.PushImage(t, "wso2-apim/am:4.2.0.15", registrytest.Image{Labels: map[string]string{"update_level": "15"},
		Files: map[string]string{"home/wso2carbon/README": "am"}})
	polled := reg.PushImage(t, "wso2-is/is:7.1.0.4", registrytest.Image{Labels: map[string]string{"update_level": "4"}})

	cfg := config.Default()
	cfg.NATS.Listen = freeAddr(t)
	cfg.NATS.StoreDir = filepath.Join(t.TempDir(), "nats")
	cfg.NATS.SyncAlways = false
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Registries = []config.Registry{reg.Config()}
	cfg.Inspector.RequireUpdateLevel = []string{reg.Host + "/**"}
	cfg.Sources = []config.Source{
		{Name: "harbor", Kind: config.SourceHarbor, Host: reg.Host, Secrets: []config.Secret{"Bearer p"}},
		{Name: "upstream", Kind: config.SourcePoll, Interval: time.Hour, Initial: "publish",
			Repositories: []config.PollRepository{{Repository: reg.Ref("wso2-is/is")}}},
	}
	overlay := t.TempDir()
	if err := os.WriteFile(filepath.Join(overlay, "acme.conf"), []byte("acme"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Rebuilds = []config.Rebuild{{Name: "acme-am", Base: reg.Ref("wso2-apim/am:4.2.0"), Builder: config.BuilderOverlay,
		Context: overlay, Owner: "802:802", Target: reg.Ref("acme/am"), Tag: imagetag.DefaultTemplate, Timeout: time.Minute}}
	p := startStages(t, &cfg)
	postWebhook(t, p.ReceiverAddr(), "Bearer p", harborPush(pushed.Digest, "4.2.0.15", time.Now().Unix()))

	b := connectBus(t, p.NATSURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]*harborflowv1.ImageInspected{}
	inspected, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	for m, err := range b.Read(inspected, bus.ReadConfig{Subject: event.SubjectImageInspected, Follow: true}) {
		if err != nil {
			t.Fatalf("waiting for image.inspected (have %d): %v", len(got), err)
		}
		ii := &harborflowv1.ImageInspected{}
		if err := m.Decode(ii); err != nil {
			t.Fatal(err)
		}
		if got[ii.GetDigest()] = ii; len(got) == 2 {
			break
		}
	}
	if len(got) < 2 {
		t.Fatalf("%d image.inspected within 20s, want 2", len(got))
	}
	if ii := got[pushed.Digest]; ii == nil || ii.GetUpdateLevel() != 15 || ii.GetVersion() != "4.2.0" || ii.GetRepository() != "wso2-apim/am" {
		t.Errorf("webhook image: %v", ii)
	}
	if ii := got[polled.Digest]; ii == nil || ii.GetUpdateLevel() != 4 || ii.GetTags()[0] != "7.1.0.4" {
		t.Errorf("polled image: %v", ii)
	}

	rebuilt, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	var rb *harborflowv1.ImageRebuilt
	for m, err := range b.Read(rebuilt, bus.ReadConfig{Subject: event.SubjectImageRebuilt, Follow: true}) {
		if err != nil {
			t.Fatalf("waiting for image.rebuilt: %v", err)
		}
		rb = &harborflowv1.ImageRebuilt{}
		if err := m.Decode(rb); err != nil {
			t.Fatal(err)
		}
		break
	}
	if rb == nil {
		t.Fatal("no image.rebuilt within 20s")
	}
	if rb.GetRecipe() != "acme-am" || rb.GetTag() != "4.2.0.15.1" || rb.GetBaseDigest() != pushed.Digest {
		t.Errorf("image.rebuilt %v, want acme-am 4.2.0.15.1 from the pushed base", rb)
	}
	client, err := registry.New(config.RegistryHosts(cfg.Registries))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if d, err := client.Resolve(ctx, reg.Ref("acme/am:4.2.0.15.1")); err != nil || d.Digest != rb.GetDigest() {
		t.Errorf("acme/am:4.2.0.15.1 resolves to %v, %v; want %s", d, err, rb.GetDigest())
	}
}
