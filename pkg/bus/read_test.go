package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

// readAll collects what Read returns.
func readAll(t *testing.T, b *bus.Bus, ctx context.Context, cfg bus.ReadConfig) ([]*bus.Message, error) {
	t.Helper()
	var out []*bus.Message
	for m, err := range b.Read(ctx, cfg) {
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

func TestReadReturnsTheStoredMessagesOfASubject(t *testing.T) {
	e := newEnv(t)
	before := time.Now()
	first := e.publishTo("registry.harbor.scan", "scan-1")
	e.publishTo("registry.harbor.push", "push-1")
	second := e.publishTo("registry.other.scan", "scan-2")

	got, err := readAll(t, e.bus, testContext(t), bus.ReadConfig{Subject: "registry.*.scan"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "scan-1" || got[1].ID != "scan-2" {
		t.Fatalf("read %d messages %v, want scan-1 and scan-2", len(got), got)
	}
	if m := got[1]; m.Stream != event.StreamRegistry || m.Sequence != second || m.Subject != "registry.other.scan" ||
		m.Time.Before(before.Add(-time.Second)) || got[0].Sequence != first {
		t.Errorf("read %+v", m)
	}

	// Since skips what was stored before it; nothing stored since is an empty read, not a wait.
	if got, err := readAll(t, e.bus, testContext(t), bus.ReadConfig{Subject: "registry.>", Since: time.Now().Add(time.Hour)}); err != nil || len(got) != 0 {
		t.Errorf("read since an hour ahead: %d messages, %v", len(got), err)
	}
	if got, err := readAll(t, e.bus, testContext(t), bus.ReadConfig{Subject: "dlq.>"}); err != nil || len(got) != 0 {
		t.Errorf("read of an empty subject: %d messages, %v", len(got), err)
	}
}

func TestReadFollowsUntilTheContextEnds(t *testing.T) {
	e := newEnv(t)
	e.publishTo(event.SubjectImageInspected, "old")
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	got := make(chan string, 4)
	ended := make(chan error, 1)
	go func() {
		for m, err := range e.bus.Read(ctx, bus.ReadConfig{Subject: event.SubjectImageInspected, Follow: true}) {
			if err != nil {
				ended <- err
				return
			}
			got <- m.ID
		}
		ended <- nil
	}()
	if id := recv(t, got, "the stored message"); id != "old" {
		t.Errorf("first %s, want old", id)
	}
	e.publishTo(event.SubjectImageInspected, "new")
	if id := recv(t, got, "the new message"); id != "new" {
		t.Errorf("then %s, want new", id)
	}
	cancel()
	if err := recv(t, ended, "the end of the read"); err != nil {
		t.Errorf("a followed read ended by its context: %v, want no error", err)
	}
}

func TestReadAndInfoErrors(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	for _, subject := range []string{">", "nope.x", ""} {
		if _, err := readAll(t, e.bus, ctx, bus.ReadConfig{Subject: subject}); !errors.Is(err, bus.ErrNoStream) {
			t.Errorf("Read %q = %v, want ErrNoStream", subject, err)
		}
	}
	if _, err := e.bus.StreamInfo(ctx, "NOPE"); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Errorf("StreamInfo of a missing stream = %v", err)
	}
	if _, err := e.bus.ConsumerInfo(ctx, event.StreamRegistry, "nobody"); !errors.Is(err, bus.ErrConsumerNotFound) {
		t.Errorf("ConsumerInfo of a missing consumer = %v", err)
	}
	info, err := e.bus.StreamInfo(ctx, event.StreamImage)
	if err != nil || info.Name != event.StreamImage || len(info.Subjects) != 1 || info.Subjects[0] != "image.>" || info.Replicas != 1 {
		t.Errorf("StreamInfo = %+v, %v", info, err)
	}
}
