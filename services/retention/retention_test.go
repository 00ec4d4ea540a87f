package retention_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/secret"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/retention"
)

// standIn is the Harbor stand-in with wso2-dev/am holding 4.2.0.1.1 to 4.2.0.5.5 (latest on 4.2.0.1.1), and the
// retention KV bucket.
type standIn struct {
	harbor     *harbortest.Server
	repo       string
	digests    map[string]string // by unique tag
	records    *bus.KV
	promotions *bus.KV
	reg        *registry.Client
	// src holds every image pushed (am:<tag>), copied to the stand-in by rc.
	src *registrytest.Registry
	rc  *regclient.RegClient
	// deletes counts the DELETEs of artifacts sent to Harbor's API, by digest, and deleted lists them in the
	// order sent; calls counts every API request.
	mu      sync.Mutex
	deletes map[string]int
	deleted []string
	calls   atomic.Int64
}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	ctx := context.Background()
	s := &standIn{harbor: harbortest.New(t), digests: map[string]string{}, deletes: map[string]int{}}
	user, pass := s.harbor.Admin()
	s.harbor.CreateProject(t, "wso2-dev", false, nil)
	s.repo = s.harbor.Host() + "/wso2-dev/am"
	s.src = registrytest.New(t)
	s.rc = regclient.New(regclient.WithConfigHost(rcconfig.Host{Name: s.harbor.Host(), TLS: rcconfig.TLSDisabled, User: user, Pass: pass},
		rcconfig.Host{Name: s.src.Host, TLS: rcconfig.TLSDisabled}))
	for _, tag := range []string{"4.2.0.1.1", "4.2.0.2.2", "4.2.0.3.3", "4.2.0.4.4", "4.2.0.5.5"} {
		s.pushBuild(t, tag)
	}
	s.copy(t, "4.2.0.1.1", "latest")
	js := bustest.Start(t)
	var err error
	if s.records, err = js.Bus.KeyValue(ctx, event.BucketRetention); err != nil {
		t.Fatal(err)
	}
	if s.promotions, err = js.Bus.KeyValue(ctx, event.BucketPromotions); err != nil {
		t.Fatal(err)
	}
	if s.reg, err = registry.New([]registry.Host{{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// pushBuild pushes the build tag to wso2-dev/am.
func (s *standIn) pushBuild(t *testing.T, tag string) {
	t.Helper()
	s.digests[tag] = s.src.PushImage(t, "am:"+tag, registrytest.Image{User: "802", Layer: tag}).Digest
	s.copy(t, tag, tag)
}

// copy copies am:<from> of the source registry to wso2-dev/am:<to> in the stand-in.
func (s *standIn) copy(t *testing.T, from, to string) {
	t.Helper()
	src, err := ref.New(s.src.Host + "/am:" + from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := ref.New(s.repo + ":" + to)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.rc.ImageCopy(context.Background(), src, dst); err != nil {
		t.Fatalf("copying am:%s to %s:%s: %v", from, s.repo, to, err)
	}
}

// signAndAttest pushes, as cosign does, a signature of the build tag under sha256-<hex>.sig (an accessory in
// Harbor) and an attestation under sha256-<hex>.att (a root artifact of its own in Harbor), and returns their
// digests.
func (s *standIn) signAndAttest(t *testing.T, tag string) (sig, att string) {
	t.Helper()
	subject := registrytest.Pushed{Digest: s.digests[tag]}
	ps := s.src.PushSignature(t, "am", subject)
	s.copy(t, ps.Tag, ps.Tag)
	pa := s.src.PushAttestation(t, "am", subject)
	s.copy(t, pa.Tag, pa.Tag)
	return ps.Digest, pa.Digest
}

// immutable creates an immutable-tag rule of wso2-dev whose tag pattern is pattern: Harbor refuses (412) to
// delete what such a tag is on.
func (s *standIn) immutable(t *testing.T, pattern string) {
	t.Helper()
	user, pass := s.harbor.Admin()
	rule, _ := json.Marshal(map[string]any{"action": "immutable", "template": "immutable_template",
		"tag_selectors":   []map[string]string{{"kind": "doublestar", "decoration": "matches", "pattern": pattern}},
		"scope_selectors": map[string]any{"repository": []map[string]string{{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}}}})
	req, _ := http.NewRequest(http.MethodPost, s.harbor.URL()+"/api/v2.0/projects/wso2-dev/immutabletagrules", bytes.NewReader(rule))
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating the rule: %v %v", resp, err)
	}
	resp.Body.Close()
}

// replica is a retention stage of its own (Harbor client, clock) on the shared buckets: keep 2 per version,
// latest protected.
func (s *standIn) replica(t *testing.T, now func() time.Time) *retention.Retention {
	t.Helper()
	user, pass := s.harbor.Admin()
	hc, err := harbor.New(harbor.Host{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true},
		harbor.WithTransport(func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				s.calls.Add(1)
				if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/artifacts/") {
					s.mu.Lock()
					d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
					s.deletes[d]++
					s.deleted = append(s.deleted, d)
					s.mu.Unlock()
				}
				return next.RoundTrip(r)
			})
		}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := retention.New([]config.Retention{{Repositories: []string{s.harbor.Host() + "/wso2-*/am"}, KeepPerVersion: 2,
		Protect: []string{"latest"}}}, nil,
		retention.Deps{Harbors: map[string]*harbor.Client{s.harbor.Host(): hc}, Registry: s.reg, Records: s.records,
			Promotions: s.promotions, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// tags are the tags of wso2-dev/am in the stand-in, by digest.
func (s *standIn) tags(t *testing.T) map[string][]string {
	t.Helper()
	user, pass := s.harbor.Admin()
	hc, err := harbor.New(harbor.Host{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	arts, err := hc.Artifacts(context.Background(), "wso2-dev", "am")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, a := range arts {
		tags := a.TagNames()
		slices.Sort(tags)
		out[a.Digest] = tags
	}
	return out
}

func digestsOf(as []*harborflowv1.PrunedArtifact) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.GetDigest())
	}
	slices.Sort(out)
	return out
}

func (s *standIn) want(tags ...string) []string {
	var out []string
	for _, t := range tags {
		out = append(out, s.digests[t])
	}
	slices.Sort(out)
	return out
}

// TestDryRunThenApplyThenRestore: the plan keeps 4.2.0.5.5 and 4.2.0.4.4 (the newest two) and 4.2.0.1.1 (latest
// points to it), and deletes 4.2.0.3.3 and 4.2.0.2.2. A dry run deletes nothing; apply deletes exactly the plan
// and records each deletion with its manifest; restore puts one back with its tag.
func TestDryRunThenApplyThenRestore(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	r := s.replica(t, nil)

	dry, err := r.Run(ctx, s.repo, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := digestsOf(dry.GetDeleted()), s.want("4.2.0.2.2", "4.2.0.3.3"); !dry.GetDryRun() || !slices.Equal(got, want) {
		t.Fatalf("dry run: deleted %v (dry %v), want %v", got, dry.GetDryRun(), want)
	}
	if len(s.tags(t)) != 5 {
		t.Fatalf("a dry run deleted something: %v", s.tags(t))
	}
	if recs, _ := s.records.List(ctx, "deleted.>"); len(recs) != 0 {
		t.Errorf("a dry run recorded %d deletions", len(recs))
	}
	for _, a := range dry.GetKept() {
		if a.GetDigest() == s.digests["4.2.0.1.1"] && !strings.HasPrefix(a.GetReason(), "protected: tag latest") {
			t.Errorf("4.2.0.1.1 kept because %q", a.GetReason())
		}
	}

	s.calls.Store(0)
	applied, err := r.Run(ctx, s.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	// Harbor's API: the list (one page) and one call per deletion, nothing more.
	if n := s.calls.Load(); n != 1+2 {
		t.Errorf("apply made %d API calls, want 3", n)
	}
	if got := digestsOf(applied.GetDeleted()); !slices.Equal(got, digestsOf(dry.GetDeleted())) {
		t.Fatalf("apply deleted %v, the plan %v", got, digestsOf(dry.GetDeleted()))
	}
	left := s.tags(t)
	if len(left) != 3 || left[s.digests["4.2.0.2.2"]] != nil || left[s.digests["4.2.0.3.3"]] != nil {
		t.Fatalf("after apply: %v", left)
	}
	d3 := s.digests["4.2.0.3.3"]
	rec := &harborflowv1.Deletion{}
	if _, err := s.records.Get(ctx, event.Key("deleted", s.repo, d3), rec); err != nil || rec.GetState() != retention.StateDeleted ||
		!slices.Equal(rec.GetTags(), []string{"4.2.0.3.3"}) || len(rec.GetManifests()) != 1 || rec.GetManifests()[0].GetDigest() != d3 ||
		!strings.Contains(rec.GetReason(), "older than the newest 2 of 4.2.0") {
		t.Fatalf("record of 4.2.0.3.3: %v %v", rec, err)
	}
	m, err := retention.PrunedMessage(applied, "")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(m.Data, &body); err != nil || body["repository"] != s.repo || len(body["deleted"].([]any)) != 2 {
		t.Errorf("image.pruned %s", m.Data)
	}

	if _, err := r.Restore(ctx, s.repo, d3); err != nil {
		t.Fatal(err)
	}
	if got := s.tags(t)[d3]; !slices.Equal(got, []string{"4.2.0.3.3"}) {
		t.Errorf("restored 4.2.0.3.3 with tags %v", got)
	}
	if _, err := s.records.Get(ctx, event.Key("deleted", s.repo, d3), rec); err != nil || rec.GetState() != retention.StateRestored {
		t.Errorf("record after restore: %v %v", rec, err)
	}
	// The next run's plan still says delete it; it is kept, saying why, for the grace.
	again, err := r.Run(ctx, s.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(again.GetKept(), func(a *harborflowv1.PrunedArtifact) bool { return a.GetDigest() == d3 })
	if i < 0 || !strings.HasPrefix(again.GetKept()[i].GetReason(), "restored at ") || s.tags(t)[d3] == nil {
		t.Errorf("a restored artifact on the next run: %v", again.GetKept())
	}
}

// TestImmutableRuleReportedNotRetried: Harbor's 412 for an artifact an immutable rule protects is reported as
// such, kept, and not an error.
func TestImmutableRuleReportedNotRetried(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	s.immutable(t, "4.2.0.2.*")

	out, err := s.replica(t, nil).Run(ctx, s.repo, false)
	if err != nil {
		t.Fatalf("a 412 is an error: %v", err)
	}
	if got := digestsOf(out.GetDeleted()); !slices.Equal(got, s.want("4.2.0.3.3")) {
		t.Errorf("deleted %v", got)
	}
	i := slices.IndexFunc(out.GetKept(), func(a *harborflowv1.PrunedArtifact) bool { return a.GetDigest() == s.digests["4.2.0.2.2"] })
	if i < 0 || !strings.HasPrefix(out.GetKept()[i].GetReason(), "protected by immutable rule") {
		t.Errorf("4.2.0.2.2: %v", out.GetKept())
	}
}

// TestConcurrentRunsDeleteEachArtifactOnce: two replicas run one repository at the same time; Harbor is asked to
// delete each artifact once.
func TestConcurrentRunsDeleteEachArtifactOnce(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	a, b := s.replica(t, nil), s.replica(t, nil)
	var wg sync.WaitGroup
	var failed atomic.Value
	for _, r := range []*retention.Retention{a, b} {
		wg.Go(func() {
			if _, err := r.Run(ctx, s.repo, false); err != nil {
				failed.Store(err)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"4.2.0.2.2", "4.2.0.3.3"} {
		if n := s.deletes[s.digests[tag]]; n != 1 {
			t.Errorf("%s deleted %d times", tag, n)
		}
	}
	if len(s.tags(t)) != 3 {
		t.Errorf("left %v", s.tags(t))
	}
}

// TestKilledMidApplyLeavesAConsistentRecord: a run records a deletion and dies before Harbor deletes it (its
// request never returns). A later run, once the record is older than a run's claim, finishes it: the artifact
// is gone and the record says deleted.
func TestKilledMidApplyLeavesAConsistentRecord(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	d := s.digests["4.2.0.3.3"]
	rec := &harborflowv1.Deletion{Repository: s.repo, Digest: d, Tags: []string{"4.2.0.3.3"}, State: retention.StateDeleting,
		Reason: "older than the newest 2 of 4.2.0"}
	// What the dead run left: the record, written before its DELETE.
	if _, err := s.records.Create(ctx, event.Key("deleted", s.repo, d), rec); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(2 * time.Minute) }
	out, err := s.replica(t, later).Run(ctx, s.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := digestsOf(out.GetDeleted()); !slices.Equal(got, s.want("4.2.0.2.2", "4.2.0.3.3")) {
		t.Errorf("deleted %v", got)
	}
	got := &harborflowv1.Deletion{}
	if _, err := s.records.Get(ctx, event.Key("deleted", s.repo, d), got); err != nil || got.GetState() != retention.StateDeleted ||
		len(got.GetManifests()) != 1 || got.GetReason() != rec.GetReason() {
		t.Errorf("record %v %v", got, err)
	}
	if s.tags(t)[d] != nil {
		t.Error("4.2.0.3.3 still there")
	}
}

// TestPushesBecomeOneDebouncedRun: images entering a matching repository within one window ask for one run
// (the same task id), which waits for the end of the window; then it runs and publishes image.pruned. An image
// in a repository no policy matches asks for nothing.
func TestPushesBecomeOneDebouncedRun(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	clock := time.Date(2026, 12, 1, 12, 0, 10, 0, time.UTC)
	now := func() time.Time { return clock }
	r := s.replica(t, now)
	inspected := func(repo, tag string) *bus.Message {
		host, path, _ := strings.Cut(repo, "/")
		m, err := bus.NewMessage(event.SubjectImageInspected, tag, "corr", &harborflowv1.ImageInspected{Registry: host, Repository: path,
			Digest: s.digests[tag], Tags: []string{tag}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var tasks []*bus.Message
	for _, tag := range []string{"4.2.0.4.4", "4.2.0.5.5"} {
		out, err := r.Handle(ctx, inspected(s.repo, tag))
		if err != nil || len(out) != 1 || out[0].Subject != event.TaskSubject(event.StageRetention) {
			t.Fatalf("image.inspected of %s: %v %v", tag, out, err)
		}
		tasks = append(tasks, out[0])
	}
	if tasks[0].ID != tasks[1].ID {
		t.Errorf("two pushes in one window asked for two runs: %s, %s", tasks[0].ID, tasks[1].ID)
	}
	if out, err := r.Handle(ctx, inspected(s.harbor.Host()+"/wso2-dev/other", "4.2.0.4.4")); err != nil || len(out) != 0 {
		t.Errorf("a repository no policy matches: %v %v", out, err)
	}

	if _, err := r.Handle(ctx, tasks[0]); !bus.IsRetry(err) || !strings.Contains(err.Error(), "debounce window") {
		t.Fatalf("the task before its window ended: %v, want a wait", err)
	}
	clock = clock.Add(retention.DefaultDebounce)
	out, err := r.Handle(ctx, tasks[0])
	if err != nil || len(out) != 1 || out[0].Subject != event.SubjectImagePruned {
		t.Fatalf("the task: %v %v", out, err)
	}
	p := &harborflowv1.ImagePruned{}
	if err := out[0].Decode(p); err != nil || p.GetRepository() != s.repo || len(p.GetDeleted()) != 2 {
		t.Errorf("image.pruned %v %v", p, err)
	}
}

// TestScheduleAsksOncePerSlot: a policy with a schedule asks for a run of every repository its globs match in
// Harbor in the first round of each slot, under the same id on every replica, and not in later rounds.
func TestScheduleAsksOncePerSlot(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	user, pass := s.harbor.Admin()
	hc, err := harbor.New(harbor.Host{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 12, 1, 12, 0, 30, 0, time.UTC)
	r, err := retention.New([]config.Retention{{Repositories: []string{s.harbor.Host() + "/wso2-*/am"}, KeepPerVersion: 2, Schedule: time.Hour}}, nil,
		retention.Deps{Harbors: map[string]*harbor.Client{s.harbor.Host(): hc}, Records: s.records, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.Due(ctx)
	if err != nil || len(first) != 1 {
		t.Fatalf("due: %v %v", first, err)
	}
	task := &harborflowv1.RetentionTask{}
	if err := first[0].Decode(task); err != nil || task.GetRepository() != s.repo || task.GetReason() != "schedule" {
		t.Errorf("task %v %v", task, err)
	}
	// A replica whose round comes 20 s later in the same slot asks under the same id.
	clock = clock.Add(20 * time.Second)
	if again, err := r.Due(ctx); err != nil || len(again) != 1 || again[0].ID != first[0].ID {
		t.Errorf("the same round's slot: %v %v; want the same id", again, err)
	}
	// Later rounds of the slot ask nothing (the duplicate window is shorter than the schedule).
	clock = clock.Add(20 * time.Minute)
	if later, err := r.Due(ctx); err != nil || len(later) != 0 {
		t.Errorf("later in the slot: %v %v; want nothing", later, err)
	}
	clock = time.Date(2026, 12, 1, 13, 0, 10, 0, time.UTC)
	if next, err := r.Due(ctx); err != nil || len(next) != 1 || next[0].ID == first[0].ID {
		t.Errorf("the next slot: %v %v; want a new id", next, err)
	}
}

// TestAnArtifactGoneBeforeItsDeletionIsNoFailure: an artifact the plan deletes is deleted by someone else
// between the listing and its deletion; the run reports it kept as gone already, deletes the rest, and does
// not fail.
func TestAnArtifactGoneBeforeItsDeletionIsNoFailure(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	user, pass := s.harbor.Admin()
	other, err := harbor.New(harbor.Host{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	gone := s.digests["4.2.0.3.3"]
	var once sync.Once
	hc, err := harbor.New(harbor.Host{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true},
		harbor.WithTransport(func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				resp, err := next.RoundTrip(r)
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/artifacts") {
					once.Do(func() { // right after the listing: someone else deletes 4.2.0.3.3
						if err := other.DeleteArtifact(ctx, "wso2-dev", "am", gone); err != nil {
							t.Error(err)
						}
					})
				}
				return resp, err
			})
		}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := retention.New([]config.Retention{{Repositories: []string{s.harbor.Host() + "/wso2-*/am"}, KeepPerVersion: 2,
		Protect: []string{"latest"}}}, nil,
		retention.Deps{Harbors: map[string]*harbor.Client{s.harbor.Host(): hc}, Registry: s.reg, Records: s.records})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(ctx, s.repo, false)
	if err != nil {
		t.Fatalf("a run whose artifact was deleted meanwhile failed: %v", err)
	}
	if got := digestsOf(out.GetDeleted()); !slices.Equal(got, s.want("4.2.0.2.2")) {
		t.Errorf("deleted %v", got)
	}
	i := slices.IndexFunc(out.GetKept(), func(a *harborflowv1.PrunedArtifact) bool { return a.GetDigest() == gone })
	if i < 0 || !strings.HasPrefix(out.GetKept()[i].GetReason(), "gone already") {
		t.Errorf("4.2.0.3.3: %v", out.GetKept())
	}
}

// TestAnIndexIsRestoredWithItsChildren: a two-platform index retention deleted is recorded with every manifest
// it names, children first, and restored whole.
func TestAnIndexIsRestoredWithItsChildren(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	user, pass := s.harbor.Admin()
	src := registrytest.New(t)
	idx := src.PushIndex(t, "am:4.2.0.0.1", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Layer: "old-amd64"}, {Platform: "linux/arm64", Layer: "old-arm64"}}})
	rc := regclient.New(regclient.WithConfigHost(rcconfig.Host{Name: s.harbor.Host(), TLS: rcconfig.TLSDisabled, User: user, Pass: pass},
		rcconfig.Host{Name: src.Host, TLS: rcconfig.TLSDisabled}))
	from, _ := ref.New(src.Host + "/am:4.2.0.0.1")
	to, _ := ref.New(s.repo + ":4.2.0.0.1")
	if err := rc.ImageCopy(ctx, from, to); err != nil {
		t.Fatal(err)
	}
	r := s.replica(t, nil)
	out, err := r.Run(ctx, s.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(digestsOf(out.GetDeleted()), idx.Digest) {
		t.Fatalf("the old index was not deleted: %v", digestsOf(out.GetDeleted()))
	}
	rec := &harborflowv1.Deletion{}
	if _, err := s.records.Get(ctx, event.Key("deleted", s.repo, idx.Digest), rec); err != nil || len(rec.GetManifests()) != 3 ||
		rec.GetManifests()[2].GetDigest() != idx.Digest {
		t.Fatalf("the index's record keeps %d manifests (%v), want its two children then itself", len(rec.GetManifests()), err)
	}
	if _, err := r.Restore(ctx, s.repo, idx.Digest); err != nil {
		t.Fatal(err)
	}
	if got := s.tags(t)[idx.Digest]; !slices.Equal(got, []string{"4.2.0.0.1"}) {
		t.Errorf("restored index with tags %v", got)
	}
	art, err := s.reg.Inspect(ctx, s.repo+"@"+idx.Digest)
	if err != nil || len(art.Platforms) != 2 {
		t.Errorf("the restored index: %v %v", art, err)
	}
}

// TestSignaturesAndAttestationsGoWithTheirImage: every build of 4.2.0 is signed (.sig, an accessory in Harbor)
// and attested (.att, a root of its own in Harbor), and an immutable rule is on 4.2.0.2.2; keep 2. The old
// builds 4.2.0.0.9 and 4.2.0.3.3 are deleted, each before its attestation, and their signatures go with them;
// the newest two and latest's target keep both; 4.2.0.2.2, refused (412), keeps its attestation, which is
// never sent a DELETE, saying why.
func TestSignaturesAndAttestationsGoWithTheirImage(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	s.pushBuild(t, "4.2.0.0.9")
	s.immutable(t, "4.2.0.2.*")
	sigs, atts := map[string]string{}, map[string]string{}
	for _, tag := range []string{"4.2.0.0.9", "4.2.0.1.1", "4.2.0.2.2", "4.2.0.3.3", "4.2.0.4.4", "4.2.0.5.5"} {
		sigs[tag], atts[tag] = s.signAndAttest(t, tag)
	}

	dry, err := s.replica(t, nil).Run(ctx, s.repo, true)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, a := range slices.Concat(dry.GetDeleted(), dry.GetKept()) {
		reasons[a.GetDigest()] = a.GetReason()
	}
	for tag, want := range map[string]string{
		"4.2.0.3.3": "an accessory of deleted " + s.digests["4.2.0.3.3"],
		"4.2.0.4.4": "referred to by kept " + s.digests["4.2.0.4.4"],
		"4.2.0.1.1": "referred to by kept " + s.digests["4.2.0.1.1"],
	} {
		if got := reasons[atts[tag]]; got != want {
			t.Errorf("the plan for the attestation of %s: %q, want %q", tag, got, want)
		}
	}

	out, err := s.replica(t, nil).Run(ctx, s.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	gone := []string{s.digests["4.2.0.0.9"], atts["4.2.0.0.9"], s.digests["4.2.0.3.3"], atts["4.2.0.3.3"]}
	if got := digestsOf(out.GetDeleted()); !slices.Equal(got, sorted(gone)) {
		t.Errorf("deleted %v, want 4.2.0.0.9 and 4.2.0.3.3 with their attestations %v", got, sorted(gone))
	}
	// Each attestation only after its image: in what Harbor was asked, and in what image.pruned says.
	for _, tag := range []string{"4.2.0.0.9", "4.2.0.3.3"} {
		img, att := s.digests[tag], atts[tag]
		if i, j := slices.Index(s.deleted, img), slices.Index(s.deleted, att); i < 0 || j < i {
			t.Errorf("%s: Harbor was asked to delete %v, want the image before its attestation", tag, s.deleted)
		}
		order := digestsInOrder(out.GetDeleted())
		if i, j := slices.Index(order, img), slices.Index(order, att); i < 0 || j < i {
			t.Errorf("%s: image.pruned deleted %v, want the image before its attestation", tag, order)
		}
	}
	if n := s.deletes[atts["4.2.0.2.2"]]; n != 0 {
		t.Errorf("the attestation of the refused 4.2.0.2.2 was sent %d DELETEs", n)
	}
	i := slices.IndexFunc(out.GetKept(), func(a *harborflowv1.PrunedArtifact) bool { return a.GetDigest() == atts["4.2.0.2.2"] })
	if want := "its subject " + s.digests["4.2.0.2.2"] + " was not deleted: protected by immutable rule"; i < 0 ||
		!strings.HasPrefix(out.GetKept()[i].GetReason(), want) {
		t.Errorf("the attestation of 4.2.0.2.2 kept: %v, want a reason starting %q", out.GetKept(), want)
	}

	left := s.tags(t)
	for _, tag := range []string{"4.2.0.0.9", "4.2.0.3.3"} {
		if left[s.digests[tag]] != nil || left[atts[tag]] != nil {
			t.Errorf("%s or its attestation still listed: %v", tag, left)
		}
		if _, err := s.harborClient(t).Artifact(ctx, "wso2-dev", "am", sigs[tag]); !errors.Is(err, harbor.ErrNotFound) {
			t.Errorf("the signature of the deleted %s: %v, want not found", tag, err)
		}
	}
	for _, tag := range []string{"4.2.0.1.1", "4.2.0.2.2", "4.2.0.4.4", "4.2.0.5.5"} {
		att := "sha256-" + strings.TrimPrefix(s.digests[tag], "sha256:") + ".att"
		if left[s.digests[tag]] == nil || !slices.Equal(left[atts[tag]], []string{att}) {
			t.Errorf("the kept %s or its attestation is not listed: %v", tag, left)
		}
		accs, err := s.harborClient(t).Accessories(ctx, "wso2-dev", "am", s.digests[tag])
		if err != nil || len(accs) != 1 || accs[0].Digest != sigs[tag] {
			t.Errorf("the accessories of the kept %s: %v %v, want its signature", tag, accs, err)
		}
	}
	rec := &harborflowv1.Deletion{}
	if _, err := s.records.Get(ctx, event.Key("deleted", s.repo, atts["4.2.0.3.3"]), rec); err != nil || rec.GetState() != retention.StateDeleted ||
		len(rec.GetManifests()) != 1 || !strings.HasPrefix(rec.GetReason(), "an accessory of deleted "+s.digests["4.2.0.3.3"]) {
		t.Errorf("the record of the attestation of 4.2.0.3.3: %v %v", rec, err)
	}
}

// TestAnAttestationLeftBehindGoesOnlyWhenRetentionDeletedItsSubject: a run recorded and made the deletion of
// 4.2.0.3.3 and stopped before its attestation's; the next run deletes that attestation. The attestation of
// an image a person deleted (retention has no record of it) is kept: never deleted alone.
func TestAnAttestationLeftBehindGoesOnlyWhenRetentionDeletedItsSubject(t *testing.T) {
	ctx := context.Background()
	s := newStandIn(t)
	_, byRetention := s.signAndAttest(t, "4.2.0.3.3")
	_, byPerson := s.signAndAttest(t, "4.2.0.4.4")
	d3, d4 := s.digests["4.2.0.3.3"], s.digests["4.2.0.4.4"]
	// What the stopped run left: the record of 4.2.0.3.3, and 4.2.0.3.3 deleted. A person deletes 4.2.0.4.4.
	if _, err := s.records.Create(ctx, event.Key("deleted", s.repo, d3), &harborflowv1.Deletion{Repository: s.repo, Digest: d3,
		Tags: []string{"4.2.0.3.3"}, State: retention.StateDeleted, Reason: "older than the newest 2 of 4.2.0"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{d3, d4} {
		if err := s.harborClient(t).DeleteArtifact(ctx, "wso2-dev", "am", d); err != nil {
			t.Fatal(err)
		}
	}

	out, err := s.replica(t, nil).Run(ctx, s.repo, false)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(out.GetDeleted(), func(a *harborflowv1.PrunedArtifact) bool { return a.GetDigest() == byRetention })
	if i < 0 || out.GetDeleted()[i].GetReason() != "an accessory of deleted "+d3+" (by an earlier run)" {
		t.Errorf("the attestation of 4.2.0.3.3: deleted %v", out.GetDeleted())
	}
	i = slices.IndexFunc(out.GetKept(), func(a *harborflowv1.PrunedArtifact) bool { return a.GetDigest() == byPerson })
	if want := "an accessory of " + d4 + ", which is not in this repository: never deleted alone"; i < 0 || out.GetKept()[i].GetReason() != want {
		t.Errorf("the attestation of 4.2.0.4.4: kept %v, want %q", out.GetKept(), want)
	}
	left := s.tags(t)
	if left[byRetention] != nil || left[byPerson] == nil {
		t.Errorf("left %v", left)
	}
}

// harborClient is a Harbor API client of the stand-in, as its administrator.
func (s *standIn) harborClient(t *testing.T) *harbor.Client {
	t.Helper()
	user, pass := s.harbor.Admin()
	hc, err := harbor.New(harbor.Host{Name: s.harbor.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

func digestsInOrder(as []*harborflowv1.PrunedArtifact) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.GetDigest())
	}
	return out
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}
