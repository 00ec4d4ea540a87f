package watcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/watcher"
)

type fixture struct {
	t       *testing.T
	js      *bustest.Server
	regs    []*registrytest.Registry
	counter *registry.Counter
	client  *registry.Client
	metrics *prometheus.Registry
}

func newFixture(t *testing.T, regs ...*registrytest.Registry) *fixture {
	t.Helper()
	f := &fixture{t: t, js: bustest.Start(t), regs: regs, counter: &registry.Counter{}}
	var cfgs []registry.Host
	for _, r := range regs {
		cfgs = append(cfgs, r.Settings())
	}
	c, err := registry.New(cfgs, registry.WithTransport(f.counter.Wrap), registry.WithMaxRetryWait(0))
	if err != nil {
		t.Fatal(err)
	}
	f.client = c
	return f
}

// watcher builds a watcher for sources; a new one stands for a restarted process (same KV, fresh memory).
func (f *fixture) watcher(sources ...config.Source) *watcher.Watcher {
	f.t.Helper()
	kv, err := f.js.Bus.KeyValue(context.Background(), event.BucketWatcher)
	if err != nil {
		f.t.Fatal(err)
	}
	f.metrics = prometheus.NewRegistry()
	w, err := watcher.New(sources, watcher.Deps{Registry: f.client, Bus: f.js.Bus, Baselines: kv, Metrics: f.metrics})
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

func source(name, repository, initial string, tags []string, platforms ...string) config.Source {
	return config.Source{Name: name, Kind: config.SourcePoll, Interval: time.Minute, Initial: initial,
		Repositories: []config.PollRepository{{Repository: repository, Tags: tags, Platforms: platforms}}}
}

// events returns the registry events stored so far.
func (f *fixture) events() []*harborflowv1.RegistryEvent {
	f.t.Helper()
	var out []*harborflowv1.RegistryEvent
	for _, m := range f.js.Messages(event.StreamRegistry, "registry.>") {
		ev := &harborflowv1.RegistryEvent{}
		if err := (&bus.Message{Subject: m.Subject, Data: m.Data}).Decode(ev); err != nil {
			f.t.Fatal(err)
		}
		if m.Subject != event.RegistrySubject(ev.GetSource(), event.KindPush) || m.Header.Get(event.HeaderMsgID) != ev.GetId() {
			f.t.Errorf("event %s stored on %s with id header %q", ev.GetId(), m.Subject, m.Header.Get(event.HeaderMsgID))
		}
		out = append(out, ev)
	}
	return out
}

func image(level int) registrytest.Image {
	return registrytest.Image{Labels: map[string]string{"update_level": fmt.Sprint(level)}}
}

func TestFirstRunPublishesEveryMatchingTagThenNothingUntilATagMoves(t *testing.T) {
	reg := registrytest.New(t)
	f := newFixture(t, reg)
	a := reg.PushImage(t, "wso2-apim/am:4.2.0.15", image(15))
	reg.PushImage(t, "wso2-apim/am:4.2.0.15-rocky", image(15))
	reg.PushImage(t, "wso2-apim/am:4.3.0.1", image(1)) // not tracked
	src := source("wso2", reg.Ref("wso2-apim/am"), "publish", []string{`^4\.2\.0(\.\d+)?(-rocky)?$`})
	if err := f.watcher(src).PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := f.events()
	if len(evs) != 2 {
		t.Fatalf("%d events on the first run, want 2", len(evs))
	}
	ev := evs[0]
	if ev.GetKind() != "push" || ev.GetSource() != "wso2" || ev.GetRegistry() != reg.Host || ev.GetRepository() != "wso2-apim/am" ||
		ev.GetProject() != "wso2-apim" || ev.GetTag() != "4.2.0.15" || ev.GetDigest() != a.Digest || ev.GetFormat() != "poll" ||
		ev.GetCorrelationId() != ev.GetId() || ev.GetOccurredAt() == nil {
		t.Errorf("event %v", ev)
	}

	// A restarted watcher (same baselines): no storm; one tag list and one HEAD per tag, no GET.
	f.counter.Reset()
	if err := f.watcher(src).PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.counter.Snapshot(); got.TagList != 1 || got.ManifestHead != 2 || got.Gets() != 0 {
		t.Errorf("an unchanged cycle made %+v", got)
	}
	if n := len(f.events()); n != 2 {
		t.Fatalf("restart published %d new events", n-2)
	}

	// The tag moves (while the watcher is down, say): one event with the new digest.
	b := reg.PushImage(t, "wso2-apim/am:4.2.0.15", image(16))
	w := f.watcher(src)
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs = f.events()
	if len(evs) != 3 || evs[2].GetDigest() != b.Digest || evs[2].GetTag() != "4.2.0.15" {
		t.Fatalf("after the move: %v", evs)
	}
	// And back: not folded into the first event although tag and digest are the same as then.
	reg.PushImage(t, "wso2-apim/am:4.2.0.15", image(15))
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs = f.events()
	if len(evs) != 4 || evs[3].GetDigest() != a.Digest || evs[3].GetId() == evs[0].GetId() {
		t.Fatalf("moving back: %v", evs)
	}
	if got := testutil.ToFloat64(counterOf(t, f.metrics, "harborflow_watcher_events_published_total")); got != 2 {
		t.Errorf("events_published_total = %v", got)
	}
}

func counterOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var total float64
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(total)
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func TestBaselineModeRecordsSilentlyFirst(t *testing.T) {
	reg := registrytest.New(t)
	f := newFixture(t, reg)
	reg.PushImage(t, "wso2-is/is:7.1.0.1", image(1))
	src := source("wso2", reg.Ref("wso2-is/is"), "baseline", nil)
	w := f.watcher(src)
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events()); n != 0 {
		t.Fatalf("baseline mode published %d events on the first run", n)
	}
	b := reg.PushImage(t, "wso2-is/is:7.1.0.1", image(2))
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := f.events(); len(evs) != 1 || evs[0].GetDigest() != b.Digest {
		t.Fatalf("%v", evs)
	}
}

func TestAnIndexGainingAPlatformIsNoUpdateForAnAmd64Follower(t *testing.T) {
	reg := registrytest.New(t)
	f := newFixture(t, reg)
	amd := registrytest.Image{Platform: "linux/amd64", Labels: map[string]string{"update_level": "5"}}
	reg.PushIndex(t, "wso2-apim/am:4.5.0.0", registrytest.Index{Images: []registrytest.Image{amd}})
	src := source("wso2", reg.Ref("wso2-apim/am"), "publish", nil, "linux/amd64")
	w := f.watcher(src)
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events()); n != 1 {
		t.Fatalf("%d events", n)
	}
	reg.PushIndex(t, "wso2-apim/am:4.5.0.0", registrytest.Index{Images: []registrytest.Image{amd, {Platform: "linux/arm64/v8", Labels: map[string]string{"update_level": "5"}}}})
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events()); n != 1 {
		t.Fatalf("an added arm64 platform gave an update to an amd64 follower (%d events)", n)
	}
	// The amd64 image itself changes: an update.
	reg.PushIndex(t, "wso2-apim/am:4.5.0.0", registrytest.Index{Images: []registrytest.Image{{Platform: "linux/amd64", Labels: map[string]string{"update_level": "6"}}}})
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events()); n != 2 {
		t.Fatalf("a new amd64 image gave %d events, want 2 in all", n)
	}
}

func TestFailingRegistriesDoNotStopTheOthers(t *testing.T) {
	good := registrytest.New(t)
	limited := registrytest.New(t)
	locked := registrytest.New(t, registrytest.WithBasicAuth("robot$harborflow", "right"))
	down := registrytest.New(t)
	f := newFixture(t, good, limited, down)
	// The locked registry is configured with the wrong password.
	lockedCfg := locked.Settings()
	lockedCfg.Password = "wrong-s3cr3t"
	client, err := registry.New([]registry.Host{good.Settings(), limited.Settings(), down.Settings(), lockedCfg}, registry.WithMaxRetryWait(0))
	if err != nil {
		t.Fatal(err)
	}
	f.client = client
	good.PushImage(t, "p/a:1.0.0", image(1))
	limited.PushImage(t, "p/b:1.0.0", image(1))
	locked.PushImage(t, "p/c:1.0.0", image(1))
	limited.RateLimit(100, "120")
	down.SetDown(true)
	w := f.watcher(
		source("good", good.Ref("p/a"), "publish", nil),
		source("limited", limited.Ref("p/b"), "publish", nil),
		source("down", down.Ref("p/d"), "publish", nil),
		source("locked", locked.Ref("p/c"), "publish", nil),
	)
	err = w.PollOnce(context.Background())
	if err == nil {
		t.Fatal("no error from three failing registries")
	}
	for _, want := range []error{registry.ErrRateLimited, registry.ErrUnavailable, registry.ErrUnauthorized} {
		if !errors.Is(err, want) {
			t.Errorf("error does not report %v: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "wrong-s3cr3t") {
		t.Error("the password is in the error")
	}
	if evs := f.events(); len(evs) != 1 || evs[0].GetSource() != "good" {
		t.Fatalf("events %v", evs)
	}
	polls, _ := testutil.GatherAndCount(f.metrics, "harborflow_watcher_polls_total")
	if polls != 4 {
		t.Errorf("%d poll series, want one per source", polls)
	}
}

func TestADeletedTagKeepsItsBaselineAndSendsNothing(t *testing.T) {
	reg := registrytest.New(t)
	f := newFixture(t, reg)
	reg.PushImage(t, "wso2-apim/am:4.2.0.20", image(20))
	reg.PushImage(t, "wso2-apim/am:4.2.0.21", image(21))
	src := source("wso2", reg.Ref("wso2-apim/am"), "publish", nil)
	w := f.watcher(src)
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg.DeleteTag(t, "wso2-apim/am:4.2.0.21")
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events()); n != 2 {
		t.Fatalf("%d events after a tag was deleted, want the 2 of the first run", n)
	}
	kv, _ := f.js.Bus.KeyValue(context.Background(), event.BucketWatcher)
	if _, err := kv.GetBytes(context.Background(), event.Key("wso2", reg.Ref("wso2-apim/am"), "4.2.0.21")); err != nil {
		t.Errorf("the deleted tag's baseline is gone: %v", err)
	}
	// The tag comes back pointing where it did: no event either.
	reg.PushImage(t, "wso2-apim/am:4.2.0.21", image(21))
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events()); n != 2 {
		t.Fatalf("a tag restored to its digest gave an event (%d in all)", n)
	}
}

func TestABaselineWithFieldsOfANewerWatcherIsKept(t *testing.T) {
	reg := registrytest.New(t)
	f := newFixture(t, reg)
	reg.PushImage(t, "wso2-apim/am:4.2.0.21", image(21))
	src := source("wso2", reg.Ref("wso2-apim/am"), "publish", nil)
	if err := f.watcher(src).PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A newer replica rewrites the baseline with a field this one does not know.
	ctx := context.Background()
	kv, err := f.js.Bus.KeyValue(ctx, event.BucketWatcher)
	if err != nil {
		t.Fatal(err)
	}
	key := event.Key("wso2", reg.Ref("wso2-apim/am"), "4.2.0.21")
	e, err := kv.GetBytes(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	newer := append([]byte(`{"addedByANewerWatcher":{"reason":"x"},`), e.Value[1:]...)
	if _, err := kv.PutBytes(ctx, key, newer); err != nil {
		t.Fatal(err)
	}
	// This watcher reads the baseline, sees the tag has not moved, and sends nothing.
	if err := f.watcher(src).PollOnce(ctx); err != nil {
		t.Fatalf("polling over a newer watcher's baseline: %v", err)
	}
	if n := len(f.events()); n != 1 {
		t.Errorf("%d events, want only the first run's: the baseline was not read", n)
	}
}

// TestAnUnchangedCycleOver100TagsIsOneListAndHEADsOnly is the request budget for a quiet cycle.
func TestAnUnchangedCycleOver100TagsIsOneListAndHEADsOnly(t *testing.T) {
	reg := registrytest.New(t)
	f := newFixture(t, reg)
	for i := range 100 {
		reg.PushImage(t, fmt.Sprintf("wso2-apim/am:4.2.0.%d", i), image(i))
	}
	src := source("wso2", reg.Ref("wso2-apim/am"), "baseline", nil)
	w := f.watcher(src)
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.counter.Reset()
	if err := f.watcher(src).PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := f.counter.Snapshot()
	if got.TagList != 1 || got.ManifestHead > 100 || got.Gets() != 0 {
		t.Errorf("a quiet cycle over 100 tags made %+v, want 1 tag list, ≤ 100 HEADs, 0 GETs", got)
	}
	t.Logf("quiet cycle over 100 tags: %+v", got)
}

// A repository that does not exist yet (an empty registry, a product line not published yet) has no tags: the
// cycle succeeds, so the repository is polled at its interval and not backed off, and its first tag is seen
// within one interval. distribution answers its tag list 404 NAME_UNKNOWN, as here.
func TestAMissingRepositoryIsPolledAtItsIntervalUntilItsFirstTag(t *testing.T) {
	var missing atomic.Bool
	missing.Store(true)
	reg := registrytest.New(t, registrytest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if missing.Load() && r.URL.Path == "/v2/wso2-apim/am/tags/list" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"wso2-apim/am"}}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	f := newFixture(t, reg)
	src := source("wso2", reg.Ref("wso2-apim/am"), "publish", []string{`^4\.2\.0(\.\d+)?$`})
	w := f.watcher(src)
	for range 3 {
		if err := w.PollOnce(context.Background()); err != nil {
			t.Fatalf("a missing repository: %v, want no error (no back-off)", err)
		}
	}
	if evs := f.events(); len(evs) != 0 {
		t.Fatalf("events of a missing repository: %v", evs)
	}
	a := reg.PushImage(t, "wso2-apim/am:4.2.0.15", image(15))
	missing.Store(false)
	if err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := f.events(); len(evs) != 1 || evs[0].GetDigest() != a.Digest {
		t.Fatalf("after the first push: %v", evs)
	}
}
