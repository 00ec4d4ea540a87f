package bus_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

// TestGetMsgAndDeleteMsgOfTheDLQ: a dead letter is read and deleted by its DLQ sequence, once.
func TestGetMsgAndDeleteMsgOfTheDLQ(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	orig := &bus.Message{Subject: "registry.harbor.push", ID: "in-1", Header: nats.Header{event.HeaderCorrelationID: {"corr-1"}},
		Data: []byte(`{"n":1}`), Stream: event.StreamRegistry, Sequence: 7, Deliveries: 5}
	ack, err := e.bus.Publish(ctx, bus.DeadLetter(event.StageInspector, "gave up", orig))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != event.StreamDLQ {
		t.Fatalf("dead letter stored in %s", ack.Stream)
	}

	m, err := e.bus.GetMsg(ctx, event.StreamDLQ, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "dlq.inspector" || m.Stream != event.StreamDLQ || m.Sequence != ack.Sequence || m.Time.IsZero() ||
		string(m.Data) != `{"n":1}` || m.ID == "" || m.ID == "in-1" ||
		m.Header.Get(event.HeaderDLQMsgID) != "in-1" || m.Header.Get(event.HeaderDLQReason) != "gave up" ||
		m.Header.Get(event.HeaderCorrelationID) != "corr-1" {
		t.Errorf("GetMsg %+v", m)
	}

	if err := e.bus.DeleteMsg(ctx, event.StreamDLQ, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := e.bus.GetMsg(ctx, event.StreamDLQ, ack.Sequence); !errors.Is(err, bus.ErrMsgNotFound) {
		t.Errorf("GetMsg after DeleteMsg: %v, want ErrMsgNotFound", err)
	}
	if err := e.bus.DeleteMsg(ctx, event.StreamDLQ, ack.Sequence); !errors.Is(err, bus.ErrMsgNotFound) {
		t.Errorf("second DeleteMsg: %v, want ErrMsgNotFound", err)
	}
	if err := e.bus.DeleteMsg(ctx, event.StreamDLQ, ack.Sequence+100); !errors.Is(err, bus.ErrMsgNotFound) {
		t.Errorf("DeleteMsg of a sequence never stored: %v, want ErrMsgNotFound", err)
	}
	if _, err := e.bus.GetMsg(ctx, "NOPE", 1); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Errorf("GetMsg of a missing stream: %v, want ErrStreamNotFound", err)
	}
	if err := e.bus.DeleteMsg(ctx, "NOPE", 1); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Errorf("DeleteMsg of a missing stream: %v, want ErrStreamNotFound", err)
	}
}

func TestStreamOfADLQReplaySubject(t *testing.T) {
	for subject, want := range map[string]string{"registry.harbor.push": event.StreamRegistry, "image.inspected": event.StreamImage, "dlq.inspector": event.StreamDLQ} {
		if got, err := bus.StreamOf(subject); err != nil || got != want {
			t.Errorf("StreamOf(%s) = %s, %v; want %s", subject, got, err, want)
		}
	}
	for _, subject := range []string{"/webhooks/distribution/reg", "nowhere.x", ""} {
		if got, err := bus.StreamOf(subject); !errors.Is(err, bus.ErrNoStream) {
			t.Errorf("StreamOf(%q) = %s, %v; want ErrNoStream", subject, got, err)
		}
	}
}
