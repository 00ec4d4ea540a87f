package promoter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/promoter"
)

// clock is a test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestGatesThatBecomeTrueLaterResume: a soak that ends and an approval written later resume a promotion on
// re-evaluation alone, without any other event; before then nothing is published, and a promotion done is
// not done again.
func TestGatesThatBecomeTrueLaterResume(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	reg := registrytest.New(t)
	pushed := reg.PushImage(t, "dev/am:4.2.0.15", registrytest.Image{User: "802", Labels: map[string]string{"update_level": "15"}})
	rc, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	promotions, err := js.Bus.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		t.Fatal(err)
	}
	scans, err := js.Bus.KeyValue(ctx, event.BucketScans)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	chain := config.Promotion{Name: "acme-am", RollingTags: []string{"latest"}, ScanTimeout: time.Minute, Stages: []config.PromotionStage{
		{Name: "dev", Repository: reg.Ref("dev/am")},
		{Name: "staging", Repository: reg.Ref("staging/am"), Gates: config.Gates{MinAge: time.Hour, NonRoot: true}},
		{Name: "prod", Repository: reg.Ref("prod/am"), Gates: config.Gates{Approval: true}},
	}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}

	m, err := bus.NewMessage(event.SubjectImageInspected, "ii", "corr", &harborflowv1.ImageInspected{Registry: reg.Host,
		Repository: "dev/am", Digest: pushed.Digest, Tags: []string{"4.2.0.15"}, InspectedAt: timestamppb.New(clk.Now())})
	if err != nil {
		t.Fatal(err)
	}
	m.Deliveries = 1
	if out, err := p.Handle(ctx, m); err != nil || len(out) != 0 {
		t.Fatalf("entering dev, soaking: %v %v", out, err)
	}
	if out, err := p.Reevaluate(ctx); err != nil || len(out) != 0 {
		t.Fatalf("re-evaluated before the soak ends: %v %v", out, err)
	}

	clk.Add(time.Hour)
	out, err := p.Reevaluate(ctx)
	if err != nil || len(out) != 1 || out[0].Subject != event.SubjectImagePromoted {
		t.Fatalf("after the soak: %v %v", out, err)
	}
	for _, tag := range []string{"4.2.0.15", "latest"} {
		d, err := rc.Resolve(ctx, reg.Ref("staging/am:"+tag))
		if err != nil || d.Digest != pushed.Digest {
			t.Errorf("staging/am:%s: %v %v", tag, d, err)
		}
	}
	if out, err := p.Reevaluate(ctx); err != nil || len(out) != 0 {
		t.Fatalf("waiting for approval published: %v %v", out, err)
	}

	// harborflow approve writes the approval into the state.
	key := event.Key("promotion", "acme-am", pushed.Digest)
	st := &harborflowv1.PromotionState{}
	rev, err := promotions.Get(ctx, key, st)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetVerdict() != "pending" {
		t.Errorf("towards prod: %s, want pending", st.GetVerdict())
	}
	st.Approvals = append(st.Approvals, &harborflowv1.Approval{Stage: "prod", By: "alice", At: timestamppb.New(clk.Now())})
	if _, err := promotions.Update(ctx, key, st, rev); err != nil {
		t.Fatal(err)
	}
	out, err = p.Reevaluate(ctx)
	if err != nil || len(out) != 1 || out[0].Subject != event.SubjectImagePromoted {
		t.Fatalf("after the approval: %v %v", out, err)
	}
	pr := &harborflowv1.ImagePromoted{}
	if err := out[0].Decode(pr); err != nil || pr.GetToStage() != "prod" || pr.GetGates()[0].GetReason() == "" {
		t.Errorf("image.promoted: %v %v", pr, err)
	}
	if out, err := p.Reevaluate(ctx); err != nil || len(out) != 0 {
		t.Fatalf("a finished promotion re-evaluated: %v %v", out, err)
	}
	// The same event again: nothing new, and a redelivery publishes the same ids again.
	if out, err := p.Handle(ctx, m); err != nil || len(out) != 0 {
		t.Fatalf("the same event again: %v %v", out, err)
	}
	m.Deliveries = 2
	out, err = p.Handle(ctx, m)
	if err != nil || len(out) != 2 || out[1].ID != event.PromotedID("acme-am", pushed.Digest, "staging", "prod") {
		t.Fatalf("a redelivery: %v %v", out, err)
	}
}
