package inspector_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
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
	"github.com/harborflow/harborflow/services/inspector"
)

type fixture struct {
	t       *testing.T
	js      *bustest.Server
	reg     *registrytest.Registry
	counter *registry.Counter
	insp    *inspector.Inspector
	history *bus.KV
	cons    *bus.Consumer
	seq     int
	lastSeq uint64 // stream sequence of the last event published
}

func newFixture(t *testing.T, indexWait time.Duration) *fixture {
	t.Helper()
	js := bustest.Start(t)
	reg := registrytest.New(t)
	var counter registry.Counter
	client, err := registry.New([]registry.Host{reg.Settings()}, registry.WithTransport(counter.Wrap))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	history, err := js.Bus.KeyValue(ctx, event.BucketImageHistory)
	if err != nil {
		t.Fatal(err)
	}
	children, err := js.Bus.KeyValue(ctx, event.BucketIndexChildren)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Inspector
	cfg.IndexWait = indexWait
	cfg.RequireUpdateLevel = []string{reg.Host + "/wso2/**"}
	insp, err := inspector.New(cfg, inspector.Deps{Registry: client, History: history, Children: children, DuplicateWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cc := insp.ConsumerConfig()
	cons, err := js.Bus.Consume(ctx, cc, insp.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace: cancel the handlers at once
		if err := cons.Shutdown(ctx); err != nil {
			t.Errorf("shutting the inspector's consumer down: %v", err)
		}
	})
	return &fixture{t: t, js: js, reg: reg, counter: &counter, insp: insp, history: history, cons: cons}
}

// push publishes the push event a webhook would give for repository (without host), digest and tag, and returns
// it as published.
func (f *fixture) push(repository, digest, tag string) *bus.Message {
	f.t.Helper()
	f.seq++
	ev := &harborflowv1.RegistryEvent{
		Id: event.ID("test", repository, digest, tag, time.Now().String()), Source: "test", Kind: event.KindPush, Type: "PUSH_ARTIFACT",
		Registry: f.reg.Host, Repository: repository, Digest: digest, Tag: tag, OccurredAt: timestamppb.Now(), ReceivedAt: timestamppb.Now(),
	}
	ev.CorrelationId = ev.Id
	m, err := bus.NewMessage(event.RegistrySubject("test", event.KindPush), ev.Id, ev.CorrelationId, ev)
	if err != nil {
		f.t.Fatal(err)
	}
	ack, err := f.js.Bus.Publish(context.Background(), m)
	if err != nil {
		f.t.Fatal(err)
	}
	f.lastSeq = max(f.lastSeq, ack.Sequence)
	return m
}

// redeliver handles an event again, as a redelivery to another replica would, and stores its outputs.
func (f *fixture) redeliver(m *bus.Message) []*bus.Message {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	outs, err := f.insp.Handle(ctx, &bus.Message{Subject: m.Subject, ID: m.ID, Header: m.Header, Data: m.Data})
	if err != nil {
		f.t.Fatalf("handling %s again: %v", m.ID, err)
	}
	for _, out := range outs {
		if _, err := f.js.Bus.Publish(ctx, out); err != nil {
			f.t.Fatal(err)
		}
	}
	return outs
}

// awaitRecord waits until the image history of repository@digest satisfies ok.
func (f *fixture) awaitRecord(repository, digest string, ok func(*harborflowv1.ImageRecord) bool) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := event.Key(f.reg.Host, repository, digest)
	// Watch first, then read, so that no change between the two is missed.
	w, err := f.history.Watch(ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	rec := &harborflowv1.ImageRecord{}
	if _, err := f.history.Get(ctx, key, rec); err == nil && ok(rec) {
		return
	} else if err != nil && !errors.Is(err, bus.ErrKeyNotFound) {
		f.t.Fatal(err)
	}
	for {
		select {
		case e, open := <-w.Updates():
			if !open {
				f.t.Fatalf("image history of %s@%s: the watch ended", repository, digest)
			}
			if e.Deleted {
				continue
			}
			rec := &harborflowv1.ImageRecord{}
			if err := e.Decode(rec); err != nil {
				f.t.Fatal(err)
			}
			if ok(rec) {
				return
			}
		case <-ctx.Done():
			f.t.Fatalf("image history of %s@%s: %v", repository, digest, ctx.Err())
		}
	}
}

// redelivered waits until the consumer has handed at least one event back and delivered it again: a handler
// asked it to wait.
func (f *fixture) redelivered() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		info, err := f.js.Bus.ConsumerInfo(ctx, event.StreamRegistry, event.StageInspector)
		if err != nil {
			f.t.Fatalf("waiting for a redelivery: %v", err)
		}
		if info.Redelivered > 0 {
			return
		}
		select {
		case <-ctx.Done():
			f.t.Fatal("no event was redelivered")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settle waits until the inspector has handled every event published so far (nothing pending or unacked).
func (f *fixture) settle() {
	f.t.Helper()
	f.js.WaitSettled(event.StreamRegistry, event.StageInspector, f.lastSeq)
}

// outputs returns the messages of the IMAGE stream on subject.
func (f *fixture) outputs(subject string) []*bus.Message {
	f.t.Helper()
	var out []*bus.Message
	for _, m := range f.js.Messages(event.StreamImage, subject) {
		out = append(out, &bus.Message{Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

func (f *fixture) inspected() []*harborflowv1.ImageInspected {
	var out []*harborflowv1.ImageInspected
	for _, m := range f.outputs(event.SubjectImageInspected) {
		ii := &harborflowv1.ImageInspected{}
		if err := m.Decode(ii); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, ii)
	}
	return out
}

func (f *fixture) dlq() []*bus.Message {
	f.t.Helper()
	return f.js.Messages(event.StreamDLQ, "dlq.>")
}

func TestLabelledImageIsInspectedOnceAndANewTagWithoutRegistryRequests(t *testing.T) {
	f := newFixture(t, time.Second)
	img := f.reg.PushImage(t, "wso2/am:4.2.0.15-rocky", registrytest.Image{Labels: map[string]string{"update_level": "15", "maintainer": "WSO2"}})
	f.counter.Reset()
	f.push("wso2/am", img.Digest, "4.2.0.15-rocky")
	f.settle()
	if got := f.counter.Snapshot(); got.Total() > 2 {
		t.Errorf("inspection by digest made %d requests (%+v), want at most 2", got.Total(), got)
	}
	out := f.inspected()
	if len(out) != 1 {
		t.Fatalf("%d image.inspected, want 1", len(out))
	}
	ii := out[0]
	if ii.GetUpdateLevel() != 15 || ii.GetVersion() != "4.2.0" || ii.GetSuffix() != "-rocky" || ii.GetDigest() != img.Digest ||
		ii.GetArtifactKind() != "image" || len(ii.GetPlatforms()) != 1 || ii.GetPlatforms()[0].GetArchitecture() != "amd64" ||
		ii.GetLabels()["maintainer"] != "WSO2" || ii.GetRepository() != "wso2/am" || ii.GetRegistry() != f.reg.Host {
		t.Errorf("image.inspected %v", ii)
	}

	// The same push again (a duplicate webhook, the CloudEvents twin): nothing new.
	f.push("wso2/am", img.Digest, "4.2.0.15-rocky")
	f.settle()
	if n := len(f.inspected()); n != 1 {
		t.Errorf("same digest and tag gave %d image.inspected", n)
	}

	// A second tag on the digest: published again, from the history, with no registry request.
	f.counter.Reset()
	f.push("wso2/am", img.Digest, "4.2.0.0-rocky")
	f.settle()
	if got := f.counter.Snapshot(); got.Total() != 0 {
		t.Errorf("a new tag on a known digest made %d requests (%+v)", got.Total(), got)
	}
	out = f.inspected()
	if len(out) != 2 || strings.Join(out[1].GetTags(), ",") != "4.2.0.15-rocky,4.2.0.0-rocky" || out[1].GetUpdateLevel() != 15 {
		t.Fatalf("after a new tag: %v", out)
	}
}

func TestPushByTagOnlyResolvesTheDigest(t *testing.T) {
	f := newFixture(t, time.Second)
	img := f.reg.PushImage(t, "wso2/is:7.1.0.3", registrytest.Image{Labels: map[string]string{"update_level": "3"}})
	f.counter.Reset()
	f.push("wso2/is", "", "7.1.0.3")
	f.settle()
	if got := f.counter.Snapshot(); got.Total() > 3 {
		t.Errorf("inspection by tag made %d requests (%+v), want at most 3", got.Total(), got)
	}
	if out := f.inspected(); len(out) != 1 || out[0].GetDigest() != img.Digest || out[0].GetUpdateLevel() != 3 {
		t.Fatalf("%v", out)
	}
}

func TestMultiArchPushIsOneImageInEitherOrder(t *testing.T) {
	for _, order := range []string{"children first", "index first"} {
		t.Run(order, func(t *testing.T) {
			f := newFixture(t, 5*time.Second)
			idx := f.reg.PushIndex(t, "wso2/mi:4.4.0.7", registrytest.Index{Images: []registrytest.Image{
				{Platform: "linux/amd64", Labels: map[string]string{"update_level": "7"}},
				{Platform: "linux/arm64/v8", Labels: map[string]string{"update_level": "7"}},
			}, Attestations: true})
			children := func() {
				for _, c := range idx.Children {
					f.push("wso2/mi", c.Digest, "") // Harbor's digest-in-tag, moved to digest by the receiver
				}
			}
			if order == "children first" {
				children()
				f.push("wso2/mi", idx.Digest, "4.4.0.7")
			} else {
				f.push("wso2/mi", idx.Digest, "4.4.0.7")
				children()
			}
			f.settle()
			out := f.inspected()
			if len(out) != 1 {
				t.Fatalf("%d image.inspected, want 1: %v", len(out), out)
			}
			ii := out[0]
			if ii.GetDigest() != idx.Digest || ii.GetArtifactKind() != "index" || len(ii.GetPlatforms()) != 2 || ii.GetUpdateLevel() != 7 {
				t.Errorf("%v", ii)
			}
			if n := len(f.dlq()); n != 0 {
				t.Errorf("%d messages dead-lettered", n)
			}
		})
	}
}

func TestUntaggedImageWithoutIndexIsInspectedAfterTheWait(t *testing.T) {
	f := newFixture(t, 300*time.Millisecond)
	img := f.reg.PushImage(t, "wso2/am", registrytest.Image{Labels: map[string]string{"update_level": "20"}})
	f.push("wso2/am", img.Digest, "")
	f.settle()
	out := f.inspected()
	if len(out) != 1 || out[0].GetDigest() != img.Digest || len(out[0].GetTags()) != 0 || out[0].GetUpdateLevel() != 20 {
		t.Fatalf("%v", out)
	}
}

func TestMissingOrEmptyUpdateLevelIsRejectedWhereRequired(t *testing.T) {
	f := newFixture(t, time.Second)
	empty := f.reg.PushImage(t, "wso2/am:4.2.0.16", registrytest.Image{Labels: map[string]string{"update_level": ""}})
	none := f.reg.PushImage(t, "wso2/am:4.2.0.17", registrytest.Image{Labels: map[string]string{"other": "x"}})
	free := f.reg.PushImage(t, "acme/app:1.0.0", registrytest.Image{})
	f.push("wso2/am", empty.Digest, "4.2.0.16")
	f.push("wso2/am", none.Digest, "4.2.0.17")
	f.push("acme/app", free.Digest, "1.0.0")
	f.settle()
	var reasons []string
	for _, m := range f.outputs(event.SubjectImageRejected) {
		r := &harborflowv1.ImageRejected{}
		if err := m.Decode(r); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, r.GetReason())
	}
	slices.Sort(reasons) // handled concurrently, in any order
	want := []string{
		"update_level label is empty on " + f.reg.Host + "/wso2/am@" + empty.Digest,
		"update_level label not found on " + f.reg.Host + "/wso2/am@" + none.Digest,
	}
	if len(reasons) != 2 || !strings.HasPrefix(reasons[0], want[0]) || reasons[1] != want[1] {
		t.Errorf("rejections %q, want %q", reasons, want)
	}
	out := f.inspected()
	if len(out) != 1 || out[0].GetRepository() != "acme/app" || out[0].UpdateLevel != nil {
		t.Errorf("an image outside require_update_level: %v", out)
	}
}

func TestAccessoriesAreSkipped(t *testing.T) {
	f := newFixture(t, time.Second)
	img := f.reg.PushImage(t, "wso2/am:4.2.0.18", registrytest.Image{Labels: map[string]string{"update_level": "18"}})
	sig := f.reg.PushSignature(t, "wso2/am", img)
	sbom := f.reg.PushSBOM(t, "wso2/am", img)
	f.push("wso2/am", sig.Digest, sig.Tag)
	f.push("wso2/am", sbom.Digest, sbom.Tag)
	f.settle()
	if out := f.inspected(); len(out) != 0 {
		t.Errorf("accessories inspected: %v", out)
	}
	if n := len(f.outputs(event.SubjectImageRejected)); n != 0 {
		t.Errorf("accessories rejected: %d", n)
	}
}

func TestAnImageThatIsGoneIsDeadLettered(t *testing.T) {
	f := newFixture(t, time.Second)
	f.push("wso2/am", "sha256:"+strings.Repeat("0", 64), "4.2.0.99")
	f.settle()
	dlq := f.dlq()
	if len(dlq) != 1 || !strings.Contains(dlq[0].Header.Get(event.HeaderDLQReason), "not found") {
		t.Fatalf("DLQ %v", dlq)
	}
}

// The rebuilder, crane, regctl and buildah manifest push write an image by digest (an index after its children)
// and then PUT it under its tag: an untagged push event, then a tagged one, for one digest — one image.
func TestPushByDigestThenTagIsOneImageInspected(t *testing.T) {
	for _, kind := range []string{"index", "image"} {
		for _, order := range []string{"tag first", "tag while the untagged push waits", "together"} {
			t.Run(kind+"/"+order, func(t *testing.T) {
				f := newFixture(t, 5*time.Second)
				labels := map[string]string{"update_level": "21"}
				var pushed registrytest.Pushed
				if kind == "index" {
					pushed = f.reg.PushIndex(t, "wso2/am:4.2.0.21.1", registrytest.Index{Images: []registrytest.Image{
						{Platform: "linux/amd64", Labels: labels}, {Platform: "linux/arm64/v8", Labels: labels},
					}})
				} else {
					pushed = f.reg.PushImage(t, "wso2/am:4.2.0.21.1", registrytest.Image{Labels: labels})
				}
				var untagged []*bus.Message
				pushUntagged := func() {
					for _, c := range pushed.Children {
						untagged = append(untagged, f.push("wso2/am", c.Digest, ""))
					}
					untagged = append(untagged, f.push("wso2/am", pushed.Digest, ""))
				}
				var tagged *bus.Message
				switch order {
				case "tag first":
					tagged = f.push("wso2/am", pushed.Digest, "4.2.0.21.1")
					f.settle()
					pushUntagged()
				case "tag while the untagged push waits":
					pushUntagged()
					if kind == "index" {
						f.awaitRecord("wso2/am", pushed.Digest, (*harborflowv1.ImageRecord).GetAwaitingTag)
					} else {
						f.redelivered()
					}
					tagged = f.push("wso2/am", pushed.Digest, "4.2.0.21.1")
				case "together":
					pushUntagged()
					tagged = f.push("wso2/am", pushed.Digest, "4.2.0.21.1")
				}
				f.settle()
				out := f.inspected()
				if len(out) != 1 {
					t.Fatalf("%d image.inspected, want 1: %v", len(out), out)
				}
				if ii := out[0]; ii.GetDigest() != pushed.Digest || ii.GetArtifactKind() != kind || !slices.Equal(ii.GetTags(), []string{"4.2.0.21.1"}) ||
					ii.GetVersion() != "4.2.0" || ii.GetUpdateLevel() != 21 {
					t.Errorf("image.inspected %v", ii)
				}
				if n := len(f.dlq()); n != 0 {
					t.Errorf("%d messages dead-lettered", n)
				}

				// Redelivered, the tagged event publishes again under the same id; the untagged ones publish nothing.
				if outs := f.redeliver(tagged); len(outs) != 1 {
					t.Errorf("the tagged event handled again gave %d messages, want 1", len(outs))
				}
				for _, m := range untagged {
					if outs := f.redeliver(m); len(outs) != 0 {
						t.Errorf("an untagged event handled again gave %v", outs)
					}
				}
				if n := len(f.inspected()); n != 1 {
					t.Errorf("after redeliveries: %d image.inspected stored, want 1", n)
				}
			})
		}
	}
}

func TestPushByDigestWithoutTagIsInspectedAfterTheWaitAndAgainWhenTagged(t *testing.T) {
	for _, kind := range []string{"index", "image"} {
		t.Run(kind, func(t *testing.T) {
			const indexWait = 500 * time.Millisecond
			f := newFixture(t, indexWait)
			labels := map[string]string{"update_level": "22"}
			var pushed registrytest.Pushed
			if kind == "index" {
				pushed = f.reg.PushIndex(t, "wso2/am:4.2.0.22", registrytest.Index{Images: []registrytest.Image{
					{Platform: "linux/amd64", Labels: labels}, {Platform: "linux/arm64/v8", Labels: labels},
				}})
			} else {
				pushed = f.reg.PushImage(t, "wso2/am:4.2.0.22", registrytest.Image{Labels: labels})
			}
			before := time.Now()
			for _, c := range pushed.Children {
				f.push("wso2/am", c.Digest, "")
			}
			untagged := f.push("wso2/am", pushed.Digest, "")
			f.settle()
			out := f.inspected()
			if len(out) != 1 || out[0].GetDigest() != pushed.Digest || len(out[0].GetTags()) != 0 || out[0].GetArtifactKind() != kind {
				t.Fatalf("untagged: %v", out)
			}
			if waited := out[0].GetInspectedAt().AsTime().Sub(before); waited < indexWait {
				t.Errorf("published untagged %s after the push, before the index wait (%s) was over", waited, indexWait)
			}
			// Redelivered, the untagged event publishes again under its id, stored once.
			if outs := f.redeliver(untagged); len(outs) != 1 {
				t.Errorf("the untagged event handled again gave %d messages, want 1", len(outs))
			}
			if n := len(f.inspected()); n != 1 {
				t.Fatalf("after a redelivery: %d image.inspected stored, want 1", n)
			}

			// The tag comes late: a new tag set, published once more.
			f.push("wso2/am", pushed.Digest, "4.2.0.22")
			f.settle()
			out = f.inspected()
			if len(out) != 2 || !slices.Equal(out[1].GetTags(), []string{"4.2.0.22"}) || out[1].GetVersion() != "4.2.0" {
				t.Fatalf("after the tag: %v", out)
			}
			if outs := f.redeliver(untagged); len(outs) != 0 {
				t.Errorf("the untagged event handled after the tag gave %v", outs)
			}
			if n := len(f.inspected()); n != 2 {
				t.Errorf("%d image.inspected stored, want 2", n)
			}
		})
	}
}

func TestIndexWithoutUpdateLevelPushedByDigestThenTagIsRejectedOnce(t *testing.T) {
	f := newFixture(t, 5*time.Second)
	idx := f.reg.PushIndex(t, "wso2/am:4.2.0.23", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64/v8"},
	}})
	for _, c := range idx.Children {
		f.push("wso2/am", c.Digest, "")
	}
	f.push("wso2/am", idx.Digest, "")
	f.awaitRecord("wso2/am", idx.Digest, (*harborflowv1.ImageRecord).GetAwaitingTag)
	f.push("wso2/am", idx.Digest, "4.2.0.23")
	f.settle()
	rejected := f.outputs(event.SubjectImageRejected)
	if len(rejected) != 1 {
		t.Fatalf("%d image.rejected, want 1", len(rejected))
	}
	r := &harborflowv1.ImageRejected{}
	if err := rejected[0].Decode(r); err != nil {
		t.Fatal(err)
	}
	if r.GetDigest() != idx.Digest || !slices.Equal(r.GetTags(), []string{"4.2.0.23"}) {
		t.Errorf("image.rejected %v", r)
	}
	if out := f.inspected(); len(out) != 0 {
		t.Errorf("image.inspected %v", out)
	}
}

// TestUnreachableRegistryGoesToTheBusBackOff: an inspection of an image on a registry that cannot be reached
// fails within seconds with an error the bus retries with its back-off (not permanent), rather than holding the
// worker in the registry client's own retries.
func TestUnreachableRegistryGoesToTheBusBackOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, host := range []string{"registry.harborflow.invalid", refused} {
		for _, tag := range []string{"", "4.2.0.15"} { // by digest: Inspect; by tag: Resolve first
			ev := &harborflowv1.RegistryEvent{Id: "unreachable-" + host + tag, Source: "test", Kind: event.KindPush, Registry: host,
				Repository: "wso2/am", Tag: tag, OccurredAt: timestamppb.Now(), ReceivedAt: timestamppb.Now()}
			if tag == "" {
				ev.Digest = digest
			}
			m, err := bus.NewMessage(event.RegistrySubject("test", event.KindPush), ev.Id, ev.Id, ev)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			start := time.Now()
			_, err = f.insp.Handle(ctx, m)
			took := time.Since(start)
			cancel()
			t.Logf("%s tag %q: failed after %s: %v", host, tag, took, err)
			if err == nil || bus.IsPermanent(err) || !errors.Is(err, registry.ErrUnavailable) {
				t.Errorf("%s tag %q: %v, want a retryable ErrUnavailable", host, tag, err)
			}
			if took > 3*time.Second {
				t.Errorf("%s tag %q: took %s, want under 3s", host, tag, took)
			}
		}
	}
}

// TestMissingManifestErrorNamesTheReferenceOnce follows a push of a digest the registry does not have through
// the inspector and the registry client: the error says what failed and names the image once, and is
// dead-lettered at once (a missing manifest does not appear by retrying).
func TestMissingManifestErrorNamesTheReferenceOnce(t *testing.T) {
	f := newFixture(t, 0)
	missing := "sha256:" + strings.Repeat("0", 64)
	m := f.push("acme/missing", missing, "")
	_, err := f.insp.Handle(context.Background(), &bus.Message{Subject: m.Subject, ID: m.ID, Header: m.Header, Data: m.Data})
	if err == nil {
		t.Fatal("a missing manifest was inspected")
	}
	ref := f.reg.Host + "/acme/missing@" + missing
	msg := err.Error()
	if n := strings.Count(msg, ref); n != 1 {
		t.Errorf("error names %s %d times: %s", ref, n, msg)
	}
	if !strings.HasPrefix(msg, "inspecting: ") || !strings.Contains(msg, "not found") {
		t.Errorf("error does not say what failed: %s", msg)
	}
	if !errors.Is(err, registry.ErrNotFound) || !bus.IsPermanent(err) {
		t.Errorf("error is not a permanent ErrNotFound: %v", err)
	}
}

// TestTagMovedBackIsSeenOnItsDigestAgain: 4.2.0 moves from A to B and back to A (a rollback). A is seen again
// after B, so the history shows the tag where it is now, and a duplicate of an old event changes nothing.
func TestTagMovedBackIsSeenOnItsDigestAgain(t *testing.T) {
	f := newFixture(t, time.Second)
	a := f.reg.PushImage(t, "acme/am:4.2.0", registrytest.Image{Labels: map[string]string{"update_level": "15"}})
	b := f.reg.PushImage(t, "acme/am:4.2.0", registrytest.Image{Labels: map[string]string{"update_level": "16"}})
	lastSeen := func(digest string) time.Time {
		rec := &harborflowv1.ImageRecord{}
		if _, err := f.history.Get(context.Background(), event.Key(f.reg.Host, "acme/am", digest), rec); err != nil {
			t.Fatal(err)
		}
		return rec.GetLastSeen().AsTime()
	}
	first := f.push("acme/am", a.Digest, "4.2.0")
	f.settle()
	f.push("acme/am", b.Digest, "4.2.0")
	f.settle()
	if !lastSeen(b.Digest).After(lastSeen(a.Digest)) {
		t.Fatalf("B, pushed after A, was not seen after it")
	}
	f.push("acme/am", a.Digest, "4.2.0")
	f.settle()
	back := lastSeen(a.Digest)
	if !back.After(lastSeen(b.Digest)) {
		t.Errorf("A, tagged 4.2.0 again after B, is not seen after B: the tag would still show on B")
	}
	f.redeliver(first)
	if got := lastSeen(a.Digest); !got.Equal(back) {
		t.Errorf("a redelivery of the first push changed A's last seen from %s to %s", back, got)
	}
}

// TestTwoTagsOfOneDigestAtOnce: the pushes of two tags of one new digest are handled at the same moment (two
// replicas, or two handlers): both succeed — the one that finds the record created meanwhile carries on from it
// instead of failing into a retry — and each tag is published.
func TestTwoTagsOfOneDigestAtOnce(t *testing.T) {
	f := newFixture(t, time.Second)
	for i := range 5 {
		tag := fmt.Sprintf("4.2.0.%d", 20+i)
		img := f.reg.PushImage(t, "wso2/am:"+tag, registrytest.Image{Layer: tag, Labels: map[string]string{"update_level": strconv.Itoa(20 + i)}})
		// Handed to the handler directly, not published: the fixture's own consumer must not see them first.
		pushOf := func(tag string) *bus.Message {
			ev := &harborflowv1.RegistryEvent{Id: tag + img.Digest, Source: "test", Kind: "push", Type: "PUSH_ARTIFACT",
				Registry: f.reg.Host, Repository: "wso2/am", Digest: img.Digest, Tag: tag, OccurredAt: timestamppb.Now()}
			m, err := bus.NewMessage("registry.test.push", ev.Id, ev.Id, ev)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		a, b := pushOf(tag), pushOf("latest")
		errs := make(chan error, 2)
		for _, m := range []*bus.Message{a, b} {
			go func() {
				_, err := f.insp.Handle(context.Background(), &bus.Message{Subject: m.Subject, ID: m.ID, Header: m.Header, Data: m.Data, Deliveries: 1})
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", tag, err)
			}
		}
	}
}
