package promoter_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
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

// buckets are the promotions and scans KV buckets, through b.
func buckets(t testing.TB, b *bus.Bus) (promotions, scans *bus.KV) {
	t.Helper()
	ctx := context.Background()
	var err error
	if promotions, err = b.KeyValue(ctx, event.BucketPromotions); err != nil {
		t.Fatal(err)
	}
	if scans, err = b.KeyValue(ctx, event.BucketScans); err != nil {
		t.Fatal(err)
	}
	return promotions, scans
}

// round is one round of the promoter's loop: the tasks Due finds, each handled as the consumer would.
func round(ctx context.Context, t *testing.T, p *promoter.Promoter) ([]*bus.Message, error) {
	t.Helper()
	tasks, err := p.Due(ctx)
	if err != nil {
		return nil, err
	}
	var out []*bus.Message
	for _, task := range tasks {
		if task.Subject != event.TaskSubject(event.StagePromoter) || task.ID == "" {
			t.Fatalf("a task on %s with id %q", task.Subject, task.ID)
		}
		task.Deliveries = 1
		msgs, err := p.Handle(ctx, task)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

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
	promotions, scans := buckets(t, js.Bus)
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
	if out, err := round(ctx, t, p); err != nil || len(out) != 0 {
		t.Fatalf("re-evaluated before the soak ends: %v %v", out, err)
	}

	clk.Add(time.Hour)
	out, err := round(ctx, t, p)
	if err != nil || len(out) != 1 || out[0].Subject != event.SubjectImagePromoted {
		t.Fatalf("after the soak: %v %v", out, err)
	}
	for _, tag := range []string{"4.2.0.15", "latest"} {
		d, err := rc.Resolve(ctx, reg.Ref("staging/am:"+tag))
		if err != nil || d.Digest != pushed.Digest {
			t.Errorf("staging/am:%s: %v %v", tag, d, err)
		}
	}
	if out, err := round(ctx, t, p); err != nil || len(out) != 0 {
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
	out, err = round(ctx, t, p)
	if err != nil || len(out) != 1 || out[0].Subject != event.SubjectImagePromoted {
		t.Fatalf("after the approval: %v %v", out, err)
	}
	pr := &harborflowv1.ImagePromoted{}
	if err := out[0].Decode(pr); err != nil || pr.GetToStage() != "prod" || pr.GetGates()[0].GetReason() == "" {
		t.Errorf("image.promoted: %v %v", pr, err)
	}
	if out, err := round(ctx, t, p); err != nil || len(out) != 0 {
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

// TestPromotionsIntoOneRepositoryTakeTurns: two replicas promote 4.2.0.14 and 4.2.0.15 into one repository at
// the same time. 4.2.0.14's replica has found latest on an older image and is about to move it when
// 4.2.0.15's replica starts: without turns, 4.2.0.15 would move latest and 4.2.0.14 would then move it back.
// The registry holds 4.2.0.14's move of latest until 4.2.0.15's move arrives, or 2 s at most (with turns it
// never arrives first: 4.2.0.15 waits for the turn).
func TestPromotionsIntoOneRepositoryTakeTurns(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	var (
		mu          sync.Mutex
		held, moved = make(chan struct{}), make(chan struct{})
		d14, d15    string
		heldOnce    sync.Once
		movedOnce   sync.Once
	)
	reg := registrytest.New(t, registrytest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/staging/am/manifests/latest") {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				mu.Lock()
				a, b := d14, d15
				mu.Unlock()
				sum := sha256.Sum256(body)
				switch "sha256:" + hex.EncodeToString(sum[:]) {
				case a:
					heldOnce.Do(func() { close(held) })
					select {
					case <-moved:
					case <-time.After(2 * time.Second):
					}
				case b:
					movedOnce.Do(func() { close(moved) })
				}
			}
			next.ServeHTTP(w, r)
		})
	}))
	old := reg.PushImage(t, "staging/am:latest", registrytest.Image{User: "802", Layer: "13"})
	p14 := reg.PushImage(t, "dev/am:4.2.0.14", registrytest.Image{User: "802", Layer: "14"})
	p15 := reg.PushImage(t, "dev/am:4.2.0.15", registrytest.Image{User: "802", Layer: "15"})
	mu.Lock()
	d14, d15 = p14.Digest, p15.Digest
	mu.Unlock()
	if old.Digest == d14 {
		t.Fatal("images not distinct")
	}
	rc, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	promotions, scans := buckets(t, js.Bus)
	chain := config.Promotion{Name: "acme-am", RollingTags: []string{"latest"}, Stages: []config.PromotionStage{
		{Name: "dev", Repository: reg.Ref("dev/am")}, {Name: "staging", Repository: reg.Ref("staging/am")}}}
	replica := func() *promoter.Promoter {
		p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	inspected := func(p registrytest.Pushed) *bus.Message {
		m, err := bus.NewMessage(event.SubjectImageInspected, p.Digest, "", &harborflowv1.ImageInspected{Registry: reg.Host,
			Repository: "dev/am", Digest: p.Digest, Tags: []string{p.Tag}, InspectedAt: timestamppb.Now()})
		if err != nil {
			t.Fatal(err)
		}
		m.Deliveries = 1
		return m
	}
	errs := make(chan error, 2)
	go func() { _, err := replica().Handle(ctx, inspected(p14)); errs <- err }()
	<-held
	go func() { _, err := replica().Handle(ctx, inspected(p15)); errs <- err }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for tag, want := range map[string]string{"latest": d15, "4.2.0.14": d14, "4.2.0.15": d15} {
		if d, err := rc.Resolve(ctx, reg.Ref("staging/am:"+tag)); err != nil || d.Digest != want {
			t.Errorf("staging/am:%s: %v %v, want %s", tag, d, err, want)
		}
	}
	turns, err := promotions.List(ctx, "turn.>")
	if err != nil || len(turns) != 2 {
		t.Fatalf("turns: %v %v, want dev's and staging's", turns, err)
	}
	for _, e := range turns {
		turn := &harborflowv1.RepositoryTurn{}
		if err := e.Decode(turn); err != nil || turn.GetHolder() != "" {
			t.Errorf("the turn of %s was not given back: %v %v", e.Key, turn, err)
		}
	}
}

// TestTurnOfADeadHolderIsTakenOver: a turn left by a process that died (its lease not renewed) is taken over
// once its lease runs out, not before.
func TestTurnOfADeadHolderIsTakenOver(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	reg := registrytest.New(t)
	pushed := reg.PushImage(t, "dev/am:4.2.0.15", registrytest.Image{User: "802"})
	rc, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	promotions, scans := buckets(t, js.Bus)
	chain := config.Promotion{Name: "acme-am", RollingTags: []string{"latest"}, Stages: []config.PromotionStage{
		{Name: "dev", Repository: reg.Ref("dev/am")}, {Name: "staging", Repository: reg.Ref("staging/am")}}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans})
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(700 * time.Millisecond)
	if _, err := promotions.Create(ctx, event.Key("turn", reg.Host, "staging/am"),
		&harborflowv1.RepositoryTurn{Holder: "dead", Digest: "sha256:0", LeaseUntil: timestamppb.New(until)}); err != nil {
		t.Fatal(err)
	}
	m, err := bus.NewMessage(event.SubjectImageInspected, "ii", "", &harborflowv1.ImageInspected{Registry: reg.Host,
		Repository: "dev/am", Digest: pushed.Digest, Tags: []string{"4.2.0.15"}, InspectedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m.Deliveries = 1
	out, err := p.Handle(ctx, m)
	if err != nil || len(out) != 1 || out[0].Subject != event.SubjectImagePromoted {
		t.Fatalf("promoting: %v %v", out, err)
	}
	if now := time.Now(); now.Before(until) {
		t.Errorf("copied %s before the dead holder's lease ran out", until.Sub(now))
	}
	if d, err := rc.Resolve(ctx, reg.Ref("staging/am:latest")); err != nil || d.Digest != pushed.Digest {
		t.Errorf("staging/am:latest: %v %v", d, err)
	}
}

// TestSignatureAndAttestationTravelWithThePromotion: an image signed and attested in its first stage (cosign's
// sha256-<hex>.sig and .att tags) is promoted across two registries with both, which verify in the next stage
// with the same key against the promoted digest — so a signed or provenance gate further on can pass. cosign
// verify-attestation accepts the attestation there too, when cosign is installed.
func TestSignatureAndAttestationTravelWithThePromotion(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	dev, next := registrytest.New(t), registrytest.New(t)
	pushed := dev.PushIndex(t, "dev/am:4.2.0.15", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", User: "802"}, {Platform: "linux/arm64", User: "802"}}})
	rc, err := registry.New([]registry.Host{dev.Settings(), next.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	signer := newSigner(t)
	if _, err := signer.Sign(ctx, rc, dev.Ref("dev/am@"+pushed.Digest)); err != nil {
		t.Fatal(err)
	}
	attest(t, rc, signer, dev.Ref("dev/am@"+pushed.Digest), wso2Base)
	promotions, scans := buckets(t, js.Bus)
	chain := config.Promotion{Name: "acme-am", RollingTags: []string{"latest"}, Stages: []config.PromotionStage{
		{Name: "dev", Repository: dev.Ref("dev/am")}, {Name: "staging", Repository: next.Ref("staging/am")}}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.NewMessage(event.SubjectImageInspected, "ii", "", &harborflowv1.ImageInspected{Registry: dev.Host,
		Repository: "dev/am", Digest: pushed.Digest, Tags: []string{"4.2.0.15"}, InspectedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m.Deliveries = 1
	if out, err := p.Handle(ctx, m); err != nil || len(out) != 1 {
		t.Fatalf("promoting: %v %v", out, err)
	}
	promoted := next.Ref("staging/am@" + pushed.Digest)
	keys := []*signature.Verifier{signer.Verifier()}
	if err := signature.Verify(ctx, rc, promoted, keys); err != nil {
		t.Errorf("the signature in the next stage: %v", err)
	}
	st, err := signature.VerifyAttestation(ctx, rc, promoted, keys, provenance.PredicateType)
	if err != nil {
		t.Fatalf("the attestation in the next stage: %v", err)
	}
	if b, err := provenance.Parse(st); err != nil || b.Digest != pushed.Digest || b.BaseImage != wso2Base {
		t.Errorf("the provenance in the next stage: %+v, %v", b, err)
	}

	cosign := buildahtest.Tool(t, "cosign")
	pub := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pub, signer.Verifier().PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, cosign, "verify-attestation", "--key", pub, "--type", "slsaprovenance1", "--offline=true",
		"--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", promoted)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cosign verify-attestation %s: %v\n%s", promoted, err, out)
	}
}

// TestAPromotionRecordedBeforeAFailureIsPublished: dev → next → last, with last's registry down. The first
// stage's copy is recorded and its image.promoted returned with the error of the second, so that the bus
// publishes it; a redelivery returns it again (the same id) while the last stage still fails.
func TestAPromotionRecordedBeforeAFailureIsPublished(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	reg, down := registrytest.New(t), registrytest.New(t)
	pushed := reg.PushImage(t, "dev/am:4.2.0.15", registrytest.Image{User: "802"})
	rc, err := registry.New([]registry.Host{reg.Settings(), down.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	down.SetDown(true)
	promotions, scans := buckets(t, js.Bus)
	chain := config.Promotion{Name: "acme-am", Stages: []config.PromotionStage{
		{Name: "dev", Repository: reg.Ref("dev/am")}, {Name: "next", Repository: reg.Ref("next/am")},
		{Name: "last", Repository: down.Ref("last/am")}}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bus.NewMessage(event.SubjectImageInspected, "ii", "", &harborflowv1.ImageInspected{Registry: reg.Host,
		Repository: "dev/am", Digest: pushed.Digest, Tags: []string{"4.2.0.15"}, InspectedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	want := event.PromotedID("acme-am", pushed.Digest, "dev", "next")
	for delivery := uint64(1); delivery <= 2; delivery++ {
		m.Deliveries = delivery
		out, err := p.Handle(ctx, m)
		if err == nil || bus.IsPermanent(err) {
			t.Fatalf("delivery %d: %v, want a retryable error (last's registry is down)", delivery, err)
		}
		if !slices.ContainsFunc(out, func(o *bus.Message) bool { return o.ID == want }) {
			t.Errorf("delivery %d returned %v with its error, want the image.promoted to next (%s)", delivery, out, want)
		}
	}
}

// TestAPushIntoALaterStageIsNotAnnouncedAsAPromotion: an image blocked in dev (it runs as root) is pushed into
// next by a person; a redelivery of that push announces no image.promoted dev → next, which never happened.
func TestAPushIntoALaterStageIsNotAnnouncedAsAPromotion(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	reg := registrytest.New(t)
	pushed := reg.PushImage(t, "dev/am:4.2.0.15", registrytest.Image{User: "root"})
	reg.PushImage(t, "next/am:4.2.0.15", registrytest.Image{User: "root"})
	rc, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	promotions, scans := buckets(t, js.Bus)
	chain := config.Promotion{Name: "acme-am", Stages: []config.PromotionStage{
		{Name: "dev", Repository: reg.Ref("dev/am")}, {Name: "next", Repository: reg.Ref("next/am"), Gates: config.Gates{NonRoot: true}},
		{Name: "last", Repository: reg.Ref("last/am"), Gates: config.Gates{Approval: true}}}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans})
	if err != nil {
		t.Fatal(err)
	}
	inspected := func(repo string, deliveries uint64) []*bus.Message {
		m, err := bus.NewMessage(event.SubjectImageInspected, repo, "", &harborflowv1.ImageInspected{Registry: reg.Host,
			Repository: repo, Digest: pushed.Digest, Tags: []string{"4.2.0.15"}, InspectedAt: timestamppb.Now()})
		if err != nil {
			t.Fatal(err)
		}
		m.Deliveries = deliveries
		out, err := p.Handle(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	inspected("dev/am", 1) // blocked: root
	inspected("next/am", 1)
	for _, o := range inspected("next/am", 2) {
		if o.Subject == event.SubjectImagePromoted {
			t.Errorf("a redelivery announced %s: a push into next is no promotion", o.Data)
		}
	}
}

// TestAnUntaggedImageWaitsForItsTag: an image inspected before its tag (pushed by digest; the tag came late or
// never, as after a crashed rebuild) does not enter the chain — no state, nothing published, no error to
// dead-letter — and enters and is promoted under its tag once that is inspected.
func TestAnUntaggedImageWaitsForItsTag(t *testing.T) {
	ctx := context.Background()
	js := bustest.Start(t)
	reg := registrytest.New(t)
	pushed := reg.PushImage(t, "dev/am:4.2.0.15", registrytest.Image{User: "802"})
	rc, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	promotions, scans := buckets(t, js.Bus)
	chain := config.Promotion{Name: "acme-am", Stages: []config.PromotionStage{
		{Name: "dev", Repository: reg.Ref("dev/am")}, {Name: "next", Repository: reg.Ref("next/am")}}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans})
	if err != nil {
		t.Fatal(err)
	}
	inspected := func(tags ...string) []*bus.Message {
		m, err := bus.NewMessage(event.SubjectImageInspected, strings.Join(tags, ","), "", &harborflowv1.ImageInspected{Registry: reg.Host,
			Repository: "dev/am", Digest: pushed.Digest, Tags: tags, InspectedAt: timestamppb.Now()})
		if err != nil {
			t.Fatal(err)
		}
		m.Deliveries = 1
		out, err := p.Handle(ctx, m)
		if err != nil {
			t.Fatalf("image.inspected with tags %v: %v", tags, err)
		}
		return out
	}
	if out := inspected(); len(out) != 0 {
		t.Errorf("the untagged image published %v", out)
	}
	if entries, err := promotions.List(ctx, "promotion.>"); err != nil || len(entries) != 0 {
		t.Errorf("the untagged image left %d promotion states (%v)", len(entries), err)
	}
	var promoted *harborflowv1.ImagePromoted
	for _, o := range inspected("4.2.0.15") {
		if o.Subject == event.SubjectImagePromoted {
			promoted = &harborflowv1.ImagePromoted{}
			if err := o.Decode(promoted); err != nil {
				t.Fatal(err)
			}
		}
	}
	if promoted == nil || !slices.Equal(promoted.GetTags(), []string{"4.2.0.15"}) {
		t.Errorf("once tagged: image.promoted %v, want it promoted under 4.2.0.15", promoted)
	}
}
