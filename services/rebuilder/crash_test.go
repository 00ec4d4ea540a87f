package rebuilder_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/rebuilder"
)

// The crash tests stop a build at each write it sends the registry, in three ways, and redeliver its trigger
// to another process (a rebuilder of its own on the same state and registry), as JetStream does after a crash:
//
//   - exit-before: the process dies while the request is on its way: the registry never sees it;
//   - exit-after: the process dies while the answer is on its way: the registry did the write;
//   - refused: the registry refuses the write once with what an interrupted write leaves behind
//     (MANIFEST_BLOB_UNKNOWN and DIGEST_INVALID for a manifest, BLOB_UPLOAD_UNKNOWN for an upload, 503 for the
//     rest), and the delivery goes on or fails and is redelivered.
//
// A dead process is a delivery whose request never returns: it does nothing more, holds the line under its
// delivery's name, and its build record stays as it left it. Every case must end like a build nothing stopped:
// one image, the same digest, one tag, build number 1, and never a permanent failure (a dead letter).

// processHeader marks the requests of the process that dies, with the name of its case, so that only its
// writes are counted and stopped.
const processHeader = "X-Test-Process"

// writeStep stops the n-th write (POST, PUT, PATCH, DELETE) of one case's dying process as mode says, and
// records every write of it.
type writeStep struct {
	n     int
	mode  string
	fired chan struct{} // closed when the n-th write was stopped
	stop  chan struct{} // closed when the case ends: a stopped request returns

	mu     sync.Mutex
	writes []string
	count  int
}

// writeSteps are the cases' steps by case name, for a registry shared by the cases.
type writeSteps struct{ m sync.Map }

func (ws *writeSteps) add(t *testing.T, name string, n int, mode string) *writeStep {
	s := &writeStep{n: n, mode: mode, fired: make(chan struct{}), stop: make(chan struct{})}
	ws.m.Store(name, s)
	t.Cleanup(func() { close(s.stop) })
	return s
}

func isWrite(req *http.Request) bool {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func (ws *writeSteps) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v, ok := ws.m.Load(req.Header.Get(processHeader))
		if !ok || !isWrite(req) {
			next.ServeHTTP(w, req)
			return
		}
		s := v.(*writeStep)
		s.mu.Lock()
		s.count++
		n := s.count
		s.writes = append(s.writes, req.Method+" "+req.URL.Path)
		s.mu.Unlock()
		if n != s.n {
			next.ServeHTTP(w, req)
			return
		}
		switch s.mode {
		case "exit-after":
			next.ServeHTTP(discard{header: http.Header{}}, req)
			fallthrough
		case "exit-before":
			close(s.fired)
			// The process is gone: its request never returns, until the case ends.
			select {
			case <-req.Context().Done():
			case <-s.stop:
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		case "refused":
			close(s.fired)
			w.Header().Set("Content-Type", "application/json")
			switch {
			case strings.Contains(req.URL.Path, "/manifests/"):
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},` +
					`{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}`))
			case req.Method != http.MethodPost:
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}`))
			default:
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	})
}

// discard is a response writer whose answer nobody reads.
type discard struct{ header http.Header }

func (d discard) Header() http.Header       { return d.header }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// marked sends a process's requests with processHeader: name.
func marked(name string) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			req = req.Clone(req.Context())
			req.Header.Set(processHeader, name)
			return next.RoundTrip(req)
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// crashRecipe is the overlay recipe of one case, with a target of its own.
func crashRecipe(t *testing.T, name string) config.Rebuild {
	rc := overlayRecipe(t)
	rc.Target = "acme/am-" + name
	return rc
}

// delivery is the trigger as the bus delivers it: the same stream and sequence on every delivery.
func delivery(f *fixture, b registrytest.Pushed) *bus.Message {
	m := f.inspected(b, "4.2.0.16", 16)
	m.Stream, m.Sequence = event.StreamImage, 7
	return m
}

// runningDelivery is a delivery running in the background in a process that is about to die.
type runningDelivery struct {
	kill func()
	done chan struct{}
	err  error
}

// wait waits for the delivery's handler to return, and returns its error.
func (d *runningDelivery) wait() error {
	<-d.done
	return d.err
}

// startDelivery hands m to rb in the background and returns once step has stopped it at its write. The test's
// end tears the delivery down.
func startDelivery(t *testing.T, rb *rebuilder.Rebuilder, m *bus.Message, step *writeStep) *runningDelivery {
	t.Helper()
	ctx, kill := context.WithCancel(context.Background())
	d := &runningDelivery{kill: kill, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		_, d.err = rb.Handle(ctx, m)
	}()
	t.Cleanup(func() { kill(); <-d.done })
	select {
	case <-step.fired:
	case <-d.done:
		t.Fatalf("the delivery ended (%v) before write %d", d.err, step.n)
	case <-time.After(wait):
		t.Fatalf("write %d never came", step.n)
	}
	return d
}

// redeliver hands the trigger to rb as JetStream would, until it succeeds: a retryable error is redelivered
// (a few times at most), a permanent one fails the test.
func redeliver(t *testing.T, rb *rebuilder.Rebuilder, m *bus.Message) []*bus.Message {
	t.Helper()
	for range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		outs, err := rb.Handle(ctx, m)
		cancel()
		if err == nil {
			return outs
		}
		if bus.IsPermanent(err) {
			t.Fatalf("the redelivery failed for good (it would be dead-lettered): %v", err)
		}
	}
	t.Fatal("the redelivery kept failing")
	return nil
}

// rebuiltOf decodes the one image.rebuilt of outs.
func rebuiltOf(t *testing.T, outs []*bus.Message) *harborflowv1.ImageRebuilt {
	t.Helper()
	if len(outs) != 1 {
		t.Fatalf("%d outputs, want one image.rebuilt", len(outs))
	}
	r := &harborflowv1.ImageRebuilt{}
	if err := outs[0].Decode(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCrashAtEveryWriteStep stops a two-platform overlay build at every write it makes — each blob, each
// platform manifest, the index, the tag — by process death before or after the write, and by a refusal; and
// between the tag and the ack. The redelivery always ends in the image an uninterrupted build makes (the same
// digest: the cases share one registry and one base), under one tag, with no dead letter.
func TestCrashAtEveryWriteStep(t *testing.T) {
	t.Parallel()
	steps := &writeSteps{}
	reg := registrytest.New(t, registrytest.WithMiddleware(steps.wrap))
	var base registrytest.Pushed

	// The build nothing stops, and the writes it makes.
	rec := steps.add(t, "ref", 0, "")
	ref := newFixtureOn(t, reg, nil, crashRecipe(t, "ref"))
	base = ref.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	want := rebuiltOf(t, redeliver(t, ref.process(marked("ref")), delivery(ref, base)))
	if want.GetTag() != "4.2.0.16.1" {
		t.Fatalf("reference build %v", want)
	}
	writes := rec.writes
	t.Logf("a build makes %d writes: %s", len(writes), strings.Join(writes, ", "))
	if len(writes) < 6 {
		t.Fatalf("only %d writes: the steps are not what this test expects", len(writes))
	}

	for n := 1; n <= len(writes); n++ {
		for _, mode := range []string{"exit-before", "exit-after", "refused"} {
			what := strings.Fields(writes[n-1])
			kind := "blob"
			if strings.Contains(what[1], "/manifests/") {
				kind = "manifest"
			}
			name := fmt.Sprintf("%02d-%s-%s-%s", n, mode, strings.ToLower(what[0]), kind)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				step := steps.add(t, name, n, mode)
				f := newFixtureOn(t, reg, nil, crashRecipe(t, name))
				m := delivery(f, base)

				// The first delivery, in a process that dies (or is refused) at write n.
				first := startDelivery(t, f.process(marked(name)), m, step)
				if mode == "refused" {
					if err := first.wait(); bus.IsPermanent(err) {
						t.Fatalf("refused at write %d (%s): a permanent failure: %v", n, writes[n-1], err)
					}
				}

				// The redelivery, in another process.
				got := rebuiltOf(t, redeliver(t, f.process(nil), m))
				if got.GetDigest() != want.GetDigest() || got.GetTag() != want.GetTag() || got.GetBuild() != 1 {
					t.Errorf("the redelivery built %s as %s (build %d); want %s as %s, what a build nothing stopped makes",
						got.GetDigest(), got.GetTag(), got.GetBuild(), want.GetDigest(), want.GetTag())
				}
				if tags := f.tags("acme/am-" + name); !slices.Equal(tags, []string{"4.2.0.16.1"}) {
					t.Errorf("target tags %v, want one", tags)
				}
				f.complete("acme/am-"+name, got.GetDigest())

				// The dead process is torn down (its request fails): nothing it does then changes the result.
				first.kill()
				_ = first.wait()
				again := rebuiltOf(t, redeliver(t, f.process(nil), m))
				if again.GetDigest() != want.GetDigest() || again.GetTag() != want.GetTag() {
					t.Errorf("after the dead process was torn down: %v", again)
				}
			})
		}
	}

	t.Run("between tag and ack", func(t *testing.T) {
		t.Parallel()
		f := newFixtureOn(t, reg, nil, crashRecipe(t, "ack"))
		m := delivery(f, base)
		first := redeliver(t, f.process(nil), m) // tagged; the process dies before its ack
		again := redeliver(t, f.process(nil), m)
		if len(again) != 1 || again[0].ID != first[0].ID || !bytes.Equal(again[0].Data, first[0].Data) {
			t.Errorf("the redelivery after the tag gave %v; want the same image.rebuilt", again)
		}
		if tags := f.tags("acme/am-ack"); !slices.Equal(tags, []string{"4.2.0.16.1"}) {
			t.Errorf("target tags %v", tags)
		}
	})
}

// complete fails the test unless every manifest and blob of the image repo@digest is in the registry.
func (f *fixture) complete(repo, digest string) {
	f.t.Helper()
	_, platforms, _, _ := f.readBack(repo, digest)
	for _, p := range platforms {
		for _, l := range p.Layers {
			if len(f.reg.ReadBlob(f.t, repo, l.Digest)) == 0 {
				f.t.Errorf("layer %s of %s@%s is empty", l.Digest, repo, digest)
			}
		}
	}
}

// buildRecord reads the build record of recipe from base digest.
func (f *fixture) buildRecord(recipe, digest string) *harborflowv1.Build {
	f.t.Helper()
	b := &harborflowv1.Build{}
	if _, err := f.kv.Get(context.Background(), event.Key("build", recipe, digest), b); err != nil {
		f.t.Fatalf("build record of %s from %s: %v", recipe, digest, err)
	}
	return b
}

// TestSupersededAfterCrash: a process dies building update level 16, holding the line with build number 1.
// Level 17 waits for the line's lease to run out (the dead process no longer renews it), takes the line over
// and is built as 4.2.0.17.2. The redelivery of 16 then finds a newer level built: it is recorded as superseded
// by 4.2.0.17.2, with the number it took, and never tagged.
func TestSupersededAfterCrash(t *testing.T) {
	t.Parallel()
	steps := &writeSteps{}
	reg := registrytest.New(t, registrytest.WithMiddleware(steps.wrap))
	f := newFixtureOn(t, reg, nil, overlayRecipe(t))
	f.deps.LineLease = 600 * time.Millisecond
	b16 := f.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	b17 := f.base("wso2/am:4.2.0.17", "17", "linux/amd64", "linux/arm64")
	t16 := f.inspected(b16, "4.2.0.16", 16)
	t16.Stream, t16.Sequence = event.StreamImage, 7
	t17 := f.inspected(b17, "4.2.0.17", 17)
	t17.Stream, t17.Sequence = event.StreamImage, 8

	// 16 dies at its first manifest write, holding the line.
	step := steps.add(t, "dying", 8, "exit-before")
	dying, disconnect := f.processConn(marked("dying"))
	startDelivery(t, dying, t16, step)
	disconnect()
	if b := f.buildRecord("acme-am", b16.Digest); b.GetBuild() != 1 || b.GetState() != rebuilder.StateClaimed {
		t.Fatalf("16's build record %v, want claimed with number 1", b)
	}

	// 17, delivered meanwhile to another process: waits out the dead holder's lease, then builds.
	start := time.Now()
	got := rebuiltOf(t, redeliver(t, f.process(nil), t17))
	if got.GetTag() != "4.2.0.17.2" {
		t.Fatalf("17 built as %s, want 4.2.0.17.2", got.GetTag())
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("17 was built %s after its delivery; it should have waited for the dead holder's lease", waited)
	}

	// The redelivery of 16: superseded, recorded, not tagged.
	if outs := redeliver(t, f.process(nil), t16); len(outs) != 0 {
		t.Errorf("the redelivery of 16 published %v; want nothing", outs)
	}
	b := f.buildRecord("acme-am", b16.Digest)
	if b.GetState() != rebuilder.StateSuperseded || b.GetSupersededBy() != "4.2.0.17.2" || b.GetBuild() != 1 || b.GetTag() != "4.2.0.16.1" ||
		!strings.Contains(b.GetReason(), "older than 17") {
		t.Errorf("16's build record %v; want superseded by 4.2.0.17.2, keeping build 1", b)
	}
	if tags := f.tags("acme/am"); !slices.Equal(tags, []string{"4.2.0.17.2"}) {
		t.Errorf("target tags %v, want 4.2.0.17.2 only", tags)
	}
}

// TestLineBuildsInLevelOrder: a backlog of update levels arrives at once (NATS was down while they were
// pushed) at two replicas, each running two handlers. However the deliveries race, the line builds one base at
// a time: image.rebuilt comes in increasing update level, build numbers follow the levels, and a level that
// loses the race to a newer one is recorded as superseded by it, never built after it.
func TestLineBuildsInLevelOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, overlayRecipe(t))
	var bases []registrytest.Pushed
	for level := 20; level <= 27; level++ {
		bases = append(bases, f.base(fmt.Sprintf("wso2/am:4.2.0.%d", level), fmt.Sprint(level)))
	}
	for i, b := range bases {
		f.publish(f.inspected(b, fmt.Sprintf("4.2.0.%d", 20+i), int64(20+i)))
	}
	// Two replicas on the one durable consumer.
	for range 2 {
		rb := f.process(nil)
		cfg := rb.ConsumerConfig()
		cfg.BackOff = []time.Duration{50 * time.Millisecond}
		c, err := f.js.Bus.Consume(context.Background(), cfg, rb.Handle)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shutdown(t, c) })
	}
	f.settle()

	var levels, builds []int64
	for _, r := range f.rebuilt() {
		levels = append(levels, r.GetUpdateLevel())
		builds = append(builds, r.GetBuild())
	}
	if len(levels) == 0 || levels[len(levels)-1] != 27 {
		t.Fatalf("rebuilt levels %v; want 27 built last", levels)
	}
	for i := 1; i < len(levels); i++ {
		if levels[i] <= levels[i-1] || builds[i] != builds[i-1]+1 {
			t.Errorf("image.rebuilt in the order levels %v, builds %v: want increasing levels with consecutive numbers", levels, builds)
			break
		}
	}
	built := map[int64]bool{}
	for _, l := range levels {
		built[l] = true
	}
	for i, b := range bases {
		level := int64(20 + i)
		rec := f.buildRecord("acme-am", b.Digest)
		switch {
		case built[level] && rec.GetState() != rebuilder.StateBuilt:
			t.Errorf("level %d: published as built, recorded %v", level, rec)
		case !built[level] && (rec.GetState() != rebuilder.StateSuperseded || rec.GetSupersededBy() == ""):
			t.Errorf("level %d: not built and recorded %v; want superseded, by which build", level, rec)
		}
	}
	if d := f.dlq(); len(d) != 0 {
		t.Errorf("dead letters: %v", d)
	}
	t.Logf("built levels %v (builds %v) of 20..27", levels, builds)
}

// TestTaggedBuildRecoveredAfterCrash: a process dies right after the tag of update level 16 reached the
// registry, before it recorded the build, holding the line. 17, delivered to another process, waits out the
// dead holder's lease and takes the line over: 16 finished first (its tag is there), so 17's delivery records
// it built and publishes its image.rebuilt before its own. 16's redelivery then publishes the same one again.
func TestTaggedBuildRecoveredAfterCrash(t *testing.T) {
	t.Parallel()
	steps := &writeSteps{}
	reg := registrytest.New(t, registrytest.WithMiddleware(steps.wrap))

	// The writes of a build nothing stops: the tag is the last.
	rec := steps.add(t, "ref", 0, "")
	ref := newFixtureOn(t, reg, nil, crashRecipe(t, "ref"))
	refBase := ref.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	rebuiltOf(t, redeliver(t, ref.process(marked("ref")), ref.inspected(refBase, "4.2.0.16", 16)))
	last := len(rec.writes)
	if !strings.HasSuffix(rec.writes[last-1], "/manifests/4.2.0.16.1") {
		t.Fatalf("the last write is %s, not the tag", rec.writes[last-1])
	}

	f := newFixtureOn(t, reg, nil, crashRecipe(t, "tagged"))
	f.deps.LineLease = 600 * time.Millisecond
	b16 := f.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	b17 := f.base("wso2/am:4.2.0.17", "17", "linux/amd64", "linux/arm64")
	t16 := f.inspected(b16, "4.2.0.16", 16)
	t16.Stream, t16.Sequence = event.StreamImage, 7
	t17 := f.inspected(b17, "4.2.0.17", 17)
	t17.Stream, t17.Sequence = event.StreamImage, 8

	step := steps.add(t, "dying", last, "exit-after")
	dying, disconnect := f.processConn(marked("dying"))
	startDelivery(t, dying, t16, step)
	disconnect()
	if b := f.buildRecord("acme-am", b16.Digest); b.GetState() != rebuilder.StatePushed || b.GetResult().GetTag() != "4.2.0.16.1" {
		t.Fatalf("16's build record %v, want pushed with its result", b)
	}
	if tags := f.tags("acme/am-tagged"); !slices.Equal(tags, []string{"4.2.0.16.1"}) {
		t.Fatalf("target tags %v, want 16's tag in place", tags)
	}

	outs := redeliver(t, f.process(nil), t17)
	if len(outs) != 2 {
		t.Fatalf("17's delivery published %d messages, want 16's image.rebuilt then its own", len(outs))
	}
	if first, second := rebuiltOf(t, outs[:1]), rebuiltOf(t, outs[1:]); first.GetTag() != "4.2.0.16.1" || second.GetTag() != "4.2.0.17.2" {
		t.Errorf("published %s then %s, want 4.2.0.16.1 then 4.2.0.17.2", first.GetTag(), second.GetTag())
	}
	if b := f.buildRecord("acme-am", b16.Digest); b.GetState() != rebuilder.StateBuilt {
		t.Errorf("16's build record %v, want built", b)
	}

	again := redeliver(t, f.process(nil), t16)
	if len(again) != 1 || again[0].ID != outs[0].ID {
		t.Errorf("the redelivery of 16 published %v, want 16's image.rebuilt again (id %s)", again, outs[0].ID)
	}
	if tags := f.tags("acme/am-tagged"); !slices.Equal(tags, []string{"4.2.0.16.1", "4.2.0.17.2"}) {
		t.Errorf("target tags %v", tags)
	}
}
