package harborflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"
	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/harborflow"
	"github.com/harborflow/harborflow/services/promoter"
)

// fakeClock is the clock of the promoter a test re-evaluates with.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// flow is the Harbor stand-in with projects wso2-dev and wso2-staging, a source registry to push from, and the
// receiver, the inspector and the promoter running on the stand-in's webhooks. reevaluate runs a round of a
// second promoter on the same buckets with a fake clock, as the promoter's own loop would once its time has come.
type flow struct {
	harbor     *harbortest.Server
	user, pass string
	h          string
	src        *registrytest.Registry
	p          *harborflow.Process
	cfg        config.Config
	rc         *regclient.RegClient
	b          *bus.Bus
	promotions *bus.KV
	clk        *fakeClock
	side       *promoter.Promoter
	ctx        context.Context
	// signer's public key is the one signing.public_keys lists; reg reads and writes the stand-in.
	signer *signature.Signer
	reg    *registry.Client
}

// newSigningKey is a new ECDSA P-256 signing key.
func newSigningKey(t *testing.T) *signature.Signer {
	t.Helper()
	s, err := signature.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writePublicKey writes s's public key to a PEM file and returns its path.
func writePublicKey(t *testing.T, s *signature.Signer) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(p, s.Verifier().PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startFlow starts a flow whose chains (built on the stand-in's host) run dev → staging; devMeta is the
// metadata of wso2-dev (auto_scan).
func startFlow(t *testing.T, devMeta map[string]string, chains func(h string) []config.Promotion) *flow {
	t.Helper()
	f := &flow{harbor: harbortest.New(t)}
	f.user, f.pass = f.harbor.Admin()
	f.h = f.harbor.Host()
	f.harbor.CreateProject(t, "wso2-dev", false, devMeta)
	f.harbor.CreateProject(t, "wso2-staging", false, nil)
	f.src = registrytest.New(t)

	cfg := config.Default()
	cfg.NATS.Listen, cfg.NATS.StoreDir, cfg.NATS.SyncAlways = "127.0.0.1:0", t.TempDir(), false
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Sources = []config.Source{{Name: "harbor", Kind: config.SourceHarbor, Host: f.h, Secrets: []config.Secret{"Bearer standin"}}}
	cfg.Registries = []config.Registry{{Host: f.h, Harbor: true, PlainHTTP: true, Username: f.user, Password: config.Secret(f.pass)}}
	cfg.Promotions = chains(f.h)
	for i := range cfg.Promotions {
		if cfg.Promotions[i].ScanTimeout == 0 {
			cfg.Promotions[i].ScanTimeout = time.Minute
		}
		for j := range cfg.Promotions[i].Stages {
			cfg.Promotions[i].Stages[j].Name = strings.Split(cfg.Promotions[i].Stages[j].Repository, "/")[1]
		}
	}
	// The key a signed gate verifies with.
	f.signer = newSigningKey(t)
	cfg.Signing.PublicKeys = []string{writePublicKey(t, f.signer)}
	f.cfg = cfg
	f.p = startStages(t, &f.cfg, event.StageReceiver, event.StageInspector, event.StagePromoter)

	body, _ := json.Marshal(map[string]any{"name": "harborflow", "enabled": true,
		"event_types": []string{"PUSH_ARTIFACT", "SCANNING_COMPLETED", "SCANNING_FAILED"},
		"targets": []map[string]any{{"type": "http", "address": "http://" + f.p.ReceiverAddr() + "/webhooks/harbor/harbor",
			"auth_header": "Bearer standin", "payload_format": "Default"}}})
	for _, project := range []string{"wso2-dev", "wso2-staging"} {
		f.api(t, http.MethodPost, "/projects/"+project+"/webhook/policies", body, http.StatusCreated)
	}

	f.rc = regclient.New(regclient.WithConfigHost(
		rcconfig.Host{Name: f.h, TLS: rcconfig.TLSDisabled, User: f.user, Pass: f.pass},
		rcconfig.Host{Name: f.src.Host, TLS: rcconfig.TLSDisabled}))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	f.ctx = ctx
	f.b = connectBus(t, f.p.NATSURL)
	var err error
	if f.promotions, err = f.b.KeyValue(ctx, event.BucketPromotions); err != nil {
		t.Fatal(err)
	}
	scans, err := f.b.KeyValue(ctx, event.BucketScans)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(config.RegistryHosts(cfg.Registries))
	if err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	hc, err := harbor.New(cfg.Registries[0].HarborHost())
	if err != nil {
		t.Fatal(err)
	}
	f.clk = &fakeClock{now: time.Now()}
	f.side, err = promoter.New(cfg.Promotions, promoter.Deps{Registry: reg, Harbors: map[string]*harbor.Client{f.h: hc},
		Promotions: f.promotions, Scans: scans, Now: f.clk.Now, Verifiers: []*signature.Verifier{f.signer.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// api calls the stand-in's API as the administrator and checks the status; it returns the response.
func (f *flow) api(t *testing.T, method, path string, body []byte, want int) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, f.harbor.URL()+"/api/v2.0"+path, bytes.NewReader(body))
	req.SetBasicAuth(f.user, f.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s, want %d", method, path, resp.Status, want)
	}
	return resp
}

// push pushes img to the source registry as repo:tag, then copies it into project of the stand-in; it returns
// its digest.
func (f *flow) push(t *testing.T, project, repoTag string, img registrytest.Image) string {
	t.Helper()
	pushed := f.src.PushImage(t, repoTag, img)
	from, _ := ref.New(f.src.Host + "/" + repoTag)
	to, _ := ref.New(f.h + "/" + project + "/" + repoTag)
	if err := f.rc.ImageCopy(f.ctx, from, to); err != nil {
		t.Fatalf("pushing %s into %s: %v", repoTag, project, err)
	}
	return pushed.Digest
}

// digestOf is the digest repo:tag names in the stand-in ("" when none).
func (f *flow) digestOf(t *testing.T, repoTag string) string {
	t.Helper()
	r, _ := ref.New(f.h + "/" + repoTag)
	m, err := f.rc.ManifestHead(f.ctx, r)
	if err != nil {
		return ""
	}
	return m.GetDescriptor().Digest.String()
}

// reevaluate runs a round of the fake-clocked promoter's loop: the tasks it finds due, each handled by it, and
// publishes what comes of it.
func (f *flow) reevaluate(t *testing.T) {
	t.Helper()
	tasks, err := f.side.Due(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		task.Deliveries = 1
		msgs, err := f.side.Handle(f.ctx, task)
		if err != nil {
			t.Logf("a round lost to the process's promoter: %v", err)
			continue
		}
		for _, m := range msgs {
			if _, err := f.b.Publish(f.ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// reevaluateUntil re-evaluates round after round, as the stage's own loop does, until repoTag (project/repo:tag)
// of the stand-in points at digest: a round that loses a compare-and-set to the running process, or finds a
// copy still under way, leaves the promotion to the next round.
func (f *flow) reevaluateUntil(t *testing.T, repoTag, digest string) {
	t.Helper()
	waitFor(t, repoTag+" at "+digest, func() bool {
		f.reevaluate(t)
		return f.digestOf(t, repoTag) == digest
	})
}

// waitVerdict waits for the promotion state of chain and digest to have verdict: a state without an event of
// its own (pending) is only seen in the bucket.
func (f *flow) waitVerdict(t *testing.T, chain, digest, verdict string) *harborflowv1.PromotionState {
	t.Helper()
	st := &harborflowv1.PromotionState{}
	waitFor(t, chain+" "+digest+" "+verdict, func() bool {
		st.Reset()
		_, err := f.promotions.Get(f.ctx, event.Key("promotion", chain, digest), st)
		return err == nil && st.GetVerdict() == verdict
	})
	return st
}

// waitMessage reads subject from its stream's start until a message satisfies match, within 60 s.
func waitMessage[T interface {
	*E
	proto.Message
}, E any](t *testing.T, b *bus.Bus, subject string, match func(T) bool) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var seen []string
	for m, err := range b.Read(ctx, bus.ReadConfig{Subject: subject, Follow: true}) {
		if err != nil {
			t.Fatalf("waiting for %s (seen %v): %v", subject, seen, err)
		}
		v := T(new(E))
		if err := m.Decode(v); err != nil {
			t.Fatal(err)
		}
		if match(v) {
			return v
		}
		seen = append(seen, string(m.Data))
	}
	t.Fatalf("no matching %s within 60 s (seen %v)", subject, seen)
	return nil
}

func promotedOf(digest, to string) func(*harborflowv1.ImagePromoted) bool {
	return func(m *harborflowv1.ImagePromoted) bool { return m.GetDigest() == digest && m.GetToStage() == to }
}

func blockedOf(digest string) func(*harborflowv1.ImageBlocked) bool {
	return func(m *harborflowv1.ImageBlocked) bool { return m.GetDigest() == digest }
}

// gate is the gate called name of gates (nil when none).
func gate(gates []*harborflowv1.Gate, name string) *harborflowv1.Gate {
	for _, g := range gates {
		if g.GetName() == name {
			return g
		}
	}
	return nil
}

// devToStaging is a chain of repo from wso2-dev to wso2-staging with gates.
func devToStaging(h, name, repo string, g config.Gates) config.Promotion {
	return config.Promotion{Name: name, RollingTags: []string{"{{.Version}}", "latest"}, Stages: []config.PromotionStage{
		{Repository: h + "/wso2-dev/" + repo},
		{Repository: h + "/wso2-staging/" + repo, Gates: g},
	}}
}

var am15 = registrytest.Image{User: "802:802", ExposedPorts: []string{"9443/tcp"}, Labels: map[string]string{"update_level": "15"}}

// TestPromoterRequestsAScanAfterTheTimeout: in a dev project without auto_scan no scan event comes; once the
// scan timeout has passed the promoter asks Harbor to scan, and the scan's completion promotes the image.
func TestPromoterRequestsAScanAfterTheTimeout(t *testing.T) {
	f := startFlow(t, nil, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{MaxSeverity: "Medium"})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	st := f.waitVerdict(t, "acme-am", digest, "pending")
	if g := gate(st.GetGates(), "max_severity"); g == nil || g.GetPassed() {
		t.Fatalf("before any scan: %v", st.GetGates())
	}
	f.reevaluate(t) // before the timeout: nothing is asked

	f.clk.Add(2 * time.Minute)
	f.reevaluateUntil(t, "wso2-staging/am:4.2.0.15", digest)
	waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(digest, "wso2-staging"))
	if d := f.digestOf(t, "wso2-staging/am:latest"); d != digest {
		t.Errorf("wso2-staging/am:latest: %q, want %s", d, digest)
	}
}

// TestUnsignedBlockedUntilSigned: with signed: true an image without a cosign signature is blocked with a
// readable reason; signed by a key signing.public_keys does not list, or with a signature of another image put
// under its tag (tampered), it stays blocked, saying so; once signed
// with the configured key (another layer under the same sha256-<hex>.sig tag), re-evaluation promotes it.
func TestUnsignedBlockedUntilSigned(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{Signed: true})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(digest))
	if g := gate(b.GetGates(), "signed"); g == nil || !strings.HasPrefix(g.GetReason(), "no cosign signature for ") {
		t.Fatalf("unsigned: %v", b.GetGates())
	}

	img := f.h + "/wso2-dev/am@" + digest
	if _, err := newSigningKey(t).Sign(f.ctx, f.reg, img); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the foreign key's signature reported", func() bool {
		f.reevaluate(t)
		st := &harborflowv1.PromotionState{}
		_, err := f.promotions.Get(f.ctx, event.Key("promotion", "acme-am", digest), st)
		g := gate(st.GetGates(), "signed")
		return err == nil && g != nil && strings.HasSuffix(g.GetReason(), "is signed, but by no key of signing.public_keys")
	})
	if d := f.digestOf(t, "wso2-staging/am:4.2.0.15"); d != "" {
		t.Fatal("promoted with a foreign key's signature")
	}

	// Tampered: the configured key's signature of another image, put under this image's signature tag.
	other := f.push(t, "wso2-dev", "am:other", registrytest.Image{User: "802", Labels: map[string]string{"update_level": "1"}})
	if _, err := f.signer.Sign(f.ctx, f.reg, f.h+"/wso2-dev/am@"+other); err != nil {
		t.Fatal(err)
	}
	sigTag := func(d string) string { return strings.Replace(d, ":", "-", 1) + ".sig" }
	desc, body, err := f.reg.ManifestBody(f.ctx, f.h+"/wso2-dev/am:"+sigTag(other))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.PutManifest(f.ctx, f.h+"/wso2-dev/am", sigTag(digest), desc.MediaType, body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tampered signature reported", func() bool {
		f.reevaluate(t)
		st := &harborflowv1.PromotionState{}
		_, err := f.promotions.Get(f.ctx, event.Key("promotion", "acme-am", digest), st)
		g := gate(st.GetGates(), "signed")
		return err == nil && g != nil && !g.GetPassed() && strings.Contains(g.GetReason(), "does not match it (tampered")
	})
	if d := f.digestOf(t, "wso2-staging/am:4.2.0.15"); d != "" {
		t.Fatal("promoted with a tampered signature")
	}

	if _, err := f.signer.Sign(f.ctx, f.reg, img); err != nil {
		t.Fatal(err)
	}
	f.reevaluateUntil(t, "wso2-staging/am:4.2.0.15", digest)
	m := waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(digest, "wso2-staging"))
	if g := gate(m.GetGates(), "signed"); g == nil || !g.GetPassed() {
		t.Errorf("promoted with gates %v", m.GetGates())
	}
}

// TestRootImageBlocked: non_root blocks an image whose config runs as root.
func TestRootImageBlocked(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{NonRoot: true})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", registrytest.Image{User: "root", Labels: map[string]string{"update_level": "15"}})
	b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(digest))
	if g := gate(b.GetGates(), "non_root"); g == nil || g.GetPassed() || !strings.Contains(g.GetReason(), "root") {
		t.Errorf("a root image: %v", b.GetGates())
	}
	if d := f.digestOf(t, "wso2-staging/am:4.2.0.15"); d != "" {
		t.Errorf("a blocked image reached staging: %s", d)
	}
}

// TestUnlistedPortBlocked: allowed_ports blocks an image that exposes a port not in the list.
func TestUnlistedPortBlocked(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{AllowedPorts: []string{"9443/tcp"}})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", registrytest.Image{User: "802", ExposedPorts: []string{"9443/tcp", "8080/tcp"},
		Labels: map[string]string{"update_level": "15"}})
	b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(digest))
	if g := gate(b.GetGates(), "allowed_ports"); g == nil || g.GetPassed() || !strings.Contains(g.GetReason(), "port 8080/tcp not in allowed_ports") {
		t.Errorf("an unlisted port: %v", b.GetGates())
	}
}

// TestLabelAddedLaterUnblocks: labels: [qa-approved] blocks until the Harbor label is added to the artifact
// through the API; re-evaluation then promotes it.
func TestLabelAddedLaterUnblocks(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{Labels: []string{"qa-approved"}})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(digest))
	if g := gate(b.GetGates(), "labels"); g == nil || g.GetReason() != "missing label qa-approved" {
		t.Fatalf("unlabelled: %v", b.GetGates())
	}

	resp := f.api(t, http.MethodPost, "/labels", []byte(`{"name":"qa-approved","scope":"g"}`), http.StatusCreated)
	loc := resp.Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	f.api(t, http.MethodPost, "/projects/wso2-dev/repositories/am/artifacts/"+digest+"/labels", []byte(`{"id":`+id+`}`), http.StatusOK)
	f.reevaluateUntil(t, "wso2-staging/am:4.2.0.15", digest)
	m := waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(digest, "wso2-staging"))
	if g := gate(m.GetGates(), "labels"); g == nil || !g.GetPassed() {
		t.Errorf("promoted with gates %v", m.GetGates())
	}
}

// TestApprovalThroughTheCLI: approval: true keeps a promotion pending until harborflow approve records an
// approval; the task approve publishes has the running process promote it at once.
func TestApprovalThroughTheCLI(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{Approval: true})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	st := f.waitVerdict(t, "acme-am", digest, "pending")
	if g := gate(st.GetGates(), "approval"); g == nil || !strings.HasPrefix(g.GetReason(), "waiting for approval: ") {
		t.Fatalf("before the approval: %v", st.GetGates())
	}
	f.reevaluate(t)
	if d := f.digestOf(t, "wso2-staging/am:4.2.0.15"); d != "" {
		t.Fatalf("promoted without an approval")
	}

	path := filepath.Join(t.TempDir(), "harborflow.yaml")
	if err := os.WriteFile(path, []byte("nats:\n  url: "+f.p.NATSURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "--config", path, "approve", "acme-am", "4.2.0.15", "--stage", "wso2-staging", "--by", "alice"); err != nil {
		t.Fatalf("harborflow approve: %v\n%s", err, out)
	}
	// approve asks the running process's promoter to evaluate the promotion now (task.promoter): no round of
	// its loop, and none of this test's, is needed.
	m := waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(digest, "wso2-staging"))
	if g := gate(m.GetGates(), "approval"); g == nil || !strings.Contains(g.GetReason(), "approved by alice") {
		t.Errorf("promoted with gates %v", m.GetGates())
	}
}

// TestImmutableLatestReportedNotRetried: an immutable-tag rule on latest in the target project refuses the
// rolling tag; the promotion is blocked with the reason, and the events are settled, not redelivered for ever.
func TestImmutableLatestReportedNotRetried(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{})}
	})
	old := f.push(t, "wso2-staging", "am:latest", registrytest.Image{User: "802", Layer: "old", Labels: map[string]string{"update_level": "1"}})
	rule, _ := json.Marshal(map[string]any{"action": "immutable", "template": "immutable_template",
		"tag_selectors":   []map[string]string{{"kind": "doublestar", "decoration": "matches", "pattern": "latest"}},
		"scope_selectors": map[string]any{"repository": []map[string]string{{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}}}})
	f.api(t, http.MethodPost, "/projects/wso2-staging/immutabletagrules", rule, http.StatusCreated)

	digest := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(digest))
	if g := gate(b.GetGates(), "tags"); g == nil || !strings.Contains(g.GetReason(), "immutable") {
		t.Fatalf("a refused latest: %v", b.GetGates())
	}
	if d := f.digestOf(t, "wso2-staging/am:latest"); d != old {
		t.Errorf("wso2-staging/am:latest: %s, want the old %s", d, old)
	}
	for _, stream := range []string{event.StreamImage, event.StreamRegistry} {
		waitFor(t, "the promoter settling "+stream, func() bool {
			ci, err := f.b.ConsumerInfo(f.ctx, stream, event.StagePromoter)
			if err != nil {
				t.Fatal(err)
			}
			return ci.Pending == 0 && ci.AckPending == 0
		})
		ci, _ := f.b.ConsumerInfo(f.ctx, stream, event.StagePromoter)
		if ci.Redelivered != 0 {
			t.Errorf("%s: %d redelivered", stream, ci.Redelivered)
		}
	}
	// Re-evaluation does not retry it either: a blocked tags verdict waits for the rule to change.
	f.reevaluate(t)
	readMessages[*harborflowv1.ImageBlocked](t, f.p.NATSURL, event.SubjectImageBlocked, 1, true)
}

// TestOlderUpdateLevelKeepsLatest: 4.2.0.16 then 4.2.0.15 through the chain: 4.2.0.15 is promoted under its own
// tag, but latest and 4.2.0 stay on 4.2.0.16, in wso2-dev as in wso2-staging.
func TestOlderUpdateLevelKeepsLatest(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{MaxSeverity: "Medium"})}
	})
	d16 := f.push(t, "wso2-dev", "am:4.2.0.16", registrytest.Image{User: "802", Layer: "16", Labels: map[string]string{"update_level": "16"}})
	waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(d16, "wso2-staging"))
	d15 := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	m := waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(d15, "wso2-staging"))
	if strings.Join(m.GetTags(), ",") != "4.2.0.15" {
		t.Errorf("4.2.0.15 promoted with tags %v, want only its own", m.GetTags())
	}
	for tag, want := range map[string]string{"latest": d16, "4.2.0": d16, "4.2.0.16": d16, "4.2.0.15": d15} {
		if d := f.digestOf(t, "wso2-staging/am:"+tag); d != want {
			t.Errorf("wso2-staging/am:%s: %s, want %s", tag, d, want)
		}
		// The rolling tags move in the first stage too, never backwards either.
		if d := f.digestOf(t, "wso2-dev/am:"+tag); d != want {
			t.Errorf("wso2-dev/am:%s: %s, want %s", tag, d, want)
		}
	}
}

// TestTwoPromoterReplicasPromoteOnce: a second process running the promoter stage on the same NATS shares its
// durable; images pushed together are each promoted once, and latest ends on the newest, whatever order the
// two replicas copy them in (promotions into one repository take turns).
func TestTwoPromoterReplicasPromoteOnce(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{MaxSeverity: "Medium"})}
	})
	cfg2 := f.cfg
	cfg2.NATS.URL, cfg2.NATS.Listen, cfg2.NATS.StoreDir = f.p.NATSURL, "", ""
	cfg2.HTTP.Listen = "127.0.0.1:0"
	startStages(t, &cfg2, event.StagePromoter)

	// Three images pushed one after another without waiting: which replica takes each is the bus's choice, and
	// their promotions into wso2-staging/am overlap. 4.2.0.13 comes last, after the newer two.
	digests := map[string]string{}
	for _, tag := range []string{"4.2.0.14", "4.2.0.15", "4.2.0.13"} {
		digests[tag] = f.push(t, "wso2-dev", "am:"+tag, registrytest.Image{User: "802", Layer: tag,
			Labels: map[string]string{"update_level": strings.Split(tag, ".")[3]}})
	}
	promoted := readMessages[*harborflowv1.ImagePromoted](t, f.p.NATSURL, event.SubjectImagePromoted, 3, true)
	seen := map[string]bool{}
	for _, m := range promoted {
		if seen[m.GetDigest()] {
			t.Errorf("%s promoted twice", m.GetDigest())
		}
		seen[m.GetDigest()] = true
	}
	for tag, d := range digests {
		if !seen[d] {
			t.Errorf("%s (%s) not promoted", tag, d)
		}
		if got := f.digestOf(t, "wso2-staging/am:"+tag); got != d {
			t.Errorf("wso2-staging/am:%s: %s, want %s", tag, got, d)
		}
	}
	if d := f.digestOf(t, "wso2-staging/am:latest"); d != digests["4.2.0.15"] {
		t.Errorf("wso2-staging/am:latest: %s, want 4.2.0.15's", d)
	}
}
