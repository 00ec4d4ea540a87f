package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/event"
)

const (
	inSubject = "registry.test.push"
	// wait bounds every wait for something that should happen.
	wait = 10 * time.Second
	// quiet is how long a test watches for something that must not happen.
	quiet = 100 * time.Millisecond
)

// env is one test's server and a Bus that logs to the test.
type env struct {
	t   *testing.T
	srv *bustest.Server
	bus *bus.Bus
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := bustest.Start(t)
	b, err := bus.New(srv.Conn, bus.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, bus: b}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// consume starts a consumer on the test's Bus.
func (e *env) consume(cfg bus.ConsumerConfig, h bus.HandlerFunc) *bus.Consumer {
	e.t.Helper()
	return e.consumeOn(e.bus, cfg, h)
}

// consumeOn starts a consumer on b that is stopped, and waited for, when the test ends.
func (e *env) consumeOn(b *bus.Bus, cfg bus.ConsumerConfig, h bus.HandlerFunc) *bus.Consumer {
	e.t.Helper()
	if len(cfg.Subjects) == 0 {
		cfg.Subjects = []string{inSubject}
	}
	c, err := b.Consume(testContext(e.t), cfg, h)
	if err != nil {
		e.t.Fatalf("Consume: %v", err)
	}
	e.t.Cleanup(func() {
		if err := c.Shutdown(expired()); err != nil {
			e.t.Errorf("shutting the consumer down: %v", err)
		}
	})
	return c
}

// expired is a context that has ended: Shutdown with it cancels the handlers at once.
func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// process connects a Bus of its own, as another process would, and returns it with its connection.
func (e *env) process(name string) (*bus.Bus, *nats.Conn) {
	e.t.Helper()
	nc, err := bus.Connect(testContext(e.t), e.srv.URL(), name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.WithLogger(zaptest.NewLogger(e.t).Named(name)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b, nc
}

// publish stores an input message and returns its stream sequence.
func (e *env) publish(id, correlationID, data string) uint64 {
	e.t.Helper()
	h := nats.Header{}
	if correlationID != "" {
		h.Set(event.HeaderCorrelationID, correlationID)
	}
	ack, err := e.bus.Publish(testContext(e.t), &bus.Message{Subject: inSubject, ID: id, Header: h, Data: []byte(data)})
	if err != nil {
		e.t.Fatalf("publishing input: %v", err)
	}
	return ack.Sequence
}

// waitSettled waits until the stage's consumer has settled (acked or termed) everything up to seq and has
// nothing pending, and returns its info.
func (e *env) waitSettled(stage string, seq uint64) *bus.ConsumerInfo {
	e.t.Helper()
	return e.waitSettledOn(event.StreamRegistry, stage, seq)
}

// waitSettledOn is waitSettled of the durable consumer on stream.
func (e *env) waitSettledOn(stream, durable string, seq uint64) *bus.ConsumerInfo {
	e.t.Helper()
	return e.srv.WaitSettled(stream, durable, seq)
}

// terminated subscribes to the advisories JetStream publishes when the stage terms a message.
func (e *env) terminated(stage string) <-chan *nats.Msg {
	e.t.Helper()
	ch := make(chan *nats.Msg, 16)
	sub, err := e.srv.Conn.ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+event.StreamRegistry+"."+stage, ch)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.srv.Conn.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

type termAdvisory struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

func (e *env) waitTerminated(ch <-chan *nats.Msg) termAdvisory {
	e.t.Helper()
	select {
	case m := <-ch:
		var a termAdvisory
		if err := json.Unmarshal(m.Data, &a); err != nil {
			e.t.Fatalf("decoding term advisory: %v", err)
		}
		return a
	case <-time.After(wait):
		e.t.Fatal("no message was terminated")
		return termAdvisory{}
	}
}

// lastMsg returns the last message stored on subject of stream.
func (e *env) lastMsg(stream, subject string) *bus.Message {
	e.t.Helper()
	msgs := e.srv.Messages(stream, subject)
	if len(msgs) == 0 {
		e.t.Fatalf("no message on %s", subject)
	}
	return msgs[len(msgs)-1]
}

func (e *env) streamMsgs(stream string) uint64 {
	e.t.Helper()
	info, err := e.bus.StreamInfo(testContext(e.t), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Messages
}

// recv waits for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func output(subject, id string) *bus.Message {
	return &bus.Message{Subject: subject, ID: id, Data: []byte(`{"out":"` + id + `"}`)}
}

func TestConsumeSuccessPublishesOutputsThenAcks(t *testing.T) {
	e := newEnv(t)
	got := make(chan *bus.Message, 4)
	e.consume(bus.ConsumerConfig{Stage: "ok"}, func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
		got <- m
		own := output(event.SubjectImageRejected, "out-2")
		own.Header = nats.Header{event.HeaderCorrelationID: {"own"}}
		return []*bus.Message{output(event.SubjectImageInspected, "out-1"), own}, nil
	})
	seq := e.publish("in-1", "corr-1", `{"n":1}`)

	m := recv(t, got, "the handler")
	if m.Subject != inSubject || m.ID != "in-1" || string(m.Data) != `{"n":1}` || m.CorrelationID() != "corr-1" ||
		m.Stream != event.StreamRegistry || m.Sequence != seq || m.Deliveries != 1 {
		t.Errorf("handler got %+v, want subject %s, id in-1, body, correlation id, stream, sequence %d, delivery 1",
			m, inSubject, seq)
	}
	info := e.waitSettled("ok", seq)
	if info.Redelivered != 0 {
		t.Errorf("redelivered %d messages", info.Redelivered)
	}

	out1 := e.lastMsg(event.StreamImage, event.SubjectImageInspected)
	if c := out1.Header.Get(event.HeaderCorrelationID); c != "corr-1" {
		t.Errorf("output correlation id = %q, want the input's corr-1", c)
	}
	if id := out1.Header.Get(event.HeaderMsgID); id != "out-1" {
		t.Errorf("output Nats-Msg-Id = %q, want out-1", id)
	}
	if string(out1.Data) != `{"out":"out-1"}` {
		t.Errorf("output body = %s", out1.Data)
	}
	out2 := e.lastMsg(event.StreamImage, event.SubjectImageRejected)
	if c := out2.Header.Get(event.HeaderCorrelationID); c != "own" {
		t.Errorf("output with its own correlation id got %q", c)
	}
	if n := e.streamMsgs(event.StreamDLQ); n != 0 {
		t.Errorf("DLQ holds %d messages", n)
	}
}

func TestConsumeStoresTheSameOutputOnce(t *testing.T) {
	e := newEnv(t)
	e.consume(bus.ConsumerConfig{Stage: "dedupe"}, func(context.Context, *bus.Message) ([]*bus.Message, error) {
		// Every input causes the same output, twice.
		return []*bus.Message{output(event.SubjectImageInspected, "same"), output(event.SubjectImageInspected, "same")}, nil
	})
	e.publish("in-1", "", `{}`)
	seq := e.publish("in-2", "", `{}`)
	e.waitSettled("dedupe", seq)
	if n := e.streamMsgs(event.StreamImage); n != 1 {
		t.Errorf("IMAGE holds %d messages, want the one output stored once", n)
	}
}

type delivery struct {
	n          uint64
	start, end time.Time
}

func TestConsumeRetriesWithBackOff(t *testing.T) {
	e := newEnv(t)
	deliveries := make(chan delivery, 8)
	e.consume(bus.ConsumerConfig{Stage: "retry", MaxDeliver: 5, BackOff: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}},
		func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
			d := delivery{n: m.Deliveries, start: time.Now()}
			defer func() { d.end = time.Now(); deliveries <- d }()
			if m.Deliveries < 3 {
				return nil, errors.New("registry unreachable")
			}
			return nil, nil
		})
	seq := e.publish("in-1", "", `{}`)

	var ds []delivery
	for range 3 {
		ds = append(ds, recv(t, deliveries, "a delivery"))
	}
	for i, d := range ds {
		if d.n != uint64(i+1) {
			t.Errorf("delivery %d has Deliveries %d", i+1, d.n)
		}
	}
	// The nak follows the handler's return, and the redelivery follows the nak by the back-off.
	if gap := ds[1].start.Sub(ds[0].end); gap < 50*time.Millisecond {
		t.Errorf("2nd delivery %s after the 1st failed, want at least BackOff[0] 50ms", gap)
	}
	if gap := ds[2].start.Sub(ds[1].end); gap < 100*time.Millisecond {
		t.Errorf("3rd delivery %s after the 2nd failed, want at least BackOff[1] 100ms", gap)
	}
	e.waitSettled("retry", seq)
	select {
	case d := <-deliveries:
		t.Errorf("delivered again after success: %+v", d)
	default:
	}
	if n := e.streamMsgs(event.StreamDLQ); n != 0 {
		t.Errorf("DLQ holds %d messages", n)
	}
}

func TestConsumeRetryAfterOverridesBackOff(t *testing.T) {
	e := newEnv(t)
	deliveries := make(chan delivery, 8)
	e.consume(bus.ConsumerConfig{Stage: "retry-after", BackOff: []time.Duration{10 * time.Millisecond}},
		func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
			d := delivery{n: m.Deliveries, start: time.Now()}
			defer func() { d.end = time.Now(); deliveries <- d }()
			if m.Deliveries == 1 {
				return nil, bus.Retry(errors.New("429 Too Many Requests"), 200*time.Millisecond)
			}
			return nil, nil
		})
	seq := e.publish("in-1", "", `{}`)
	first, second := recv(t, deliveries, "delivery 1"), recv(t, deliveries, "delivery 2")
	if gap := second.start.Sub(first.end); gap < 200*time.Millisecond {
		t.Errorf("2nd delivery %s after the 1st failed, want at least the requested 200ms", gap)
	}
	e.waitSettled("retry-after", seq)
}

// checkDeadLetter checks the DLQ copy of the input published as (id in-1, correlation id corr-1, body).
func (e *env) checkDeadLetter(stage string, seq uint64, deliveries int, reason string) {
	e.t.Helper()
	dl := e.lastMsg(event.StreamDLQ, event.DLQSubject(stage))
	want := map[string]string{
		event.HeaderDLQReason:     reason,
		event.HeaderDLQStage:      stage,
		event.HeaderDLQSubject:    inSubject,
		event.HeaderDLQStream:     event.StreamRegistry,
		event.HeaderDLQSequence:   fmt.Sprint(seq),
		event.HeaderDLQDeliveries: fmt.Sprint(deliveries),
		event.HeaderDLQMsgID:      "in-1",
		event.HeaderCorrelationID: "corr-1",
		event.HeaderContentType:   event.ContentTypeJSON,
	}
	for k, v := range want {
		if got := dl.Header.Get(k); got != v {
			e.t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
	if dl.Header.Get(event.HeaderMsgID) == "" || dl.Header.Get(event.HeaderMsgID) == "in-1" {
		e.t.Errorf("dead letter Nats-Msg-Id = %q, want its own id", dl.Header.Get(event.HeaderMsgID))
	}
	if string(dl.Data) != `{"n":1}` {
		e.t.Errorf("dead letter body = %s, want the input's", dl.Data)
	}
}

func TestConsumeGivesUpAfterMaxDeliver(t *testing.T) {
	e := newEnv(t)
	terms := e.terminated("give-up")
	var calls atomic.Int32
	e.consume(bus.ConsumerConfig{Stage: "give-up", MaxDeliver: 3, BackOff: []time.Duration{10 * time.Millisecond}},
		func(context.Context, *bus.Message) ([]*bus.Message, error) {
			calls.Add(1)
			return nil, errors.New("registry unreachable")
		})
	seq := e.publish("in-1", "corr-1", `{"n":1}`)

	const reason = "gave up after 3 deliveries: registry unreachable"
	a := e.waitTerminated(terms)
	if a.StreamSeq != seq || a.Deliveries != 3 || a.Reason != reason {
		t.Errorf("terminated %+v, want sequence %d after 3 deliveries with reason %q", a, seq, reason)
	}
	e.checkDeadLetter("give-up", seq, 3, reason)
	if info := e.waitSettled("give-up", seq); info.Redelivered != 0 {
		t.Errorf("%d messages still to be redelivered", info.Redelivered)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want MaxDeliver 3", n)
	}
}

func TestConsumeDeadLettersPermanentErrorsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler bus.HandlerFunc
		reason  string
	}{
		{
			name: "permanent",
			handler: func(context.Context, *bus.Message) ([]*bus.Message, error) {
				return nil, fmt.Errorf("decoding RegistryEvent: %w", bus.Permanent(errors.New("unexpected token\nat line 1")))
			},
			reason: "decoding RegistryEvent: unexpected token at line 1",
		},
		{
			name: "panic",
			handler: func(context.Context, *bus.Message) ([]*bus.Message, error) {
				panic("boom")
			},
			reason: "handler panicked: boom",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			terms := e.terminated(tc.name)
			var calls atomic.Int32
			e.consume(bus.ConsumerConfig{Stage: tc.name, BackOff: []time.Duration{10 * time.Millisecond}},
				func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
					calls.Add(1)
					return tc.handler(ctx, m)
				})
			seq := e.publish("in-1", "corr-1", `{"n":1}`)

			a := e.waitTerminated(terms)
			if a.StreamSeq != seq || a.Deliveries != 1 || a.Reason != tc.reason {
				t.Errorf("terminated %+v, want sequence %d on its first delivery with reason %q", a, seq, tc.reason)
			}
			e.checkDeadLetter(tc.name, seq, 1, tc.reason)
			e.waitSettled(tc.name, seq)
			if n := calls.Load(); n != 1 {
				t.Errorf("handler called %d times, want once", n)
			}
		})
	}
}

func TestConsumePublishesFinishedOutputsBeforeDeadLettering(t *testing.T) {
	e := newEnv(t)
	terms := e.terminated("partial")
	e.consume(bus.ConsumerConfig{Stage: "partial"}, func(context.Context, *bus.Message) ([]*bus.Message, error) {
		// Two recipes follow the same base: one was built, the other cannot be.
		return []*bus.Message{output(event.SubjectImageInspected, "built-1")},
			bus.Permanent(errors.New("recipe b: context directory missing"))
	})
	seq := e.publish("in-1", "corr-1", `{"n":1}`)
	if a := e.waitTerminated(terms); a.StreamSeq != seq {
		t.Fatalf("terminated %+v, want sequence %d", a, seq)
	}
	e.checkDeadLetter("partial", seq, 1, "recipe b: context directory missing")
	out := e.lastMsg(event.StreamImage, event.SubjectImageInspected)
	if out.Header.Get(event.HeaderMsgID) != "built-1" || out.Header.Get(event.HeaderCorrelationID) != "corr-1" {
		t.Errorf("output %v, want built-1 with the input's correlation id", out.Header)
	}
}

func TestShutdownLetsRunningHandlersFinishAndStopsIntake(t *testing.T) {
	e := newEnv(t)
	started := make(chan string, 4)
	release := make(chan struct{})
	var handled sync.Map
	c := e.consume(bus.ConsumerConfig{Stage: "drain"}, func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
		started <- m.ID
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if _, again := handled.LoadOrStore(m.ID, true); again {
			t.Errorf("%s handled twice", m.ID)
		}
		return []*bus.Message{output(event.SubjectImageInspected, "out-"+m.ID)}, nil
	})
	e.publish("in-1", "", `{}`)
	if id := recv(t, started, "the handler"); id != "in-1" {
		t.Fatalf("handler started with %s", id)
	}
	// in-2 arrives while in-1 is handled: no handler starts once Shutdown has, so it is left for the next start.
	seq := e.publish("in-2", "", `{}`)

	shutdown := make(chan error, 1)
	go func() { shutdown <- c.Shutdown(testContext(t)) }()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned while a handler was running within the grace: %v", err)
	case <-time.After(quiet):
	}
	close(release)
	if err := recv(t, shutdown, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(started) != 0 {
		t.Errorf("a handler started after Shutdown: %s", <-started)
	}
	if err := c.Shutdown(testContext(t)); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}

	// Whatever the stopped consumer did not take, the next start does: nothing is lost or left unacked.
	e.consume(bus.ConsumerConfig{Stage: "drain"}, func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
		if _, again := handled.LoadOrStore(m.ID, true); again {
			t.Errorf("%s handled twice", m.ID)
		}
		return []*bus.Message{output(event.SubjectImageInspected, "out-"+m.ID)}, nil
	})
	e.waitSettled("drain", seq)
	for _, id := range []string{"in-1", "in-2"} {
		if _, ok := handled.Load(id); !ok {
			t.Errorf("%s was never handled", id)
		}
	}
	if n := e.streamMsgs(event.StreamImage); n != 2 {
		t.Errorf("IMAGE holds %d outputs, want 2", n)
	}
}

func TestShutdownCancelsHandlersAfterTheGraceAndHandsTheirMessagesBackAtOnce(t *testing.T) {
	e := newEnv(t)
	const ackWait = 30 * time.Second
	const grace = 200 * time.Millisecond
	started := make(chan struct{}, 1)
	cancelled := make(chan time.Time, 1)
	c := e.consume(bus.ConsumerConfig{Stage: "grace", AckWait: ackWait}, func(ctx context.Context, _ *bus.Message) ([]*bus.Message, error) {
		started <- struct{}{}
		<-ctx.Done() // a handler that outlives the grace
		cancelled <- time.Now()
		return nil, ctx.Err()
	})
	seq := e.publish("in-1", "", `{}`)
	recv(t, started, "the handler")

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v, want nil: a cancelled handler whose message was handed back is a clean shutdown", err)
	}
	if at := recv(t, cancelled, "the cancellation"); at.Sub(begin) < grace {
		t.Errorf("the handler was cancelled %s after Shutdown began, before the grace of %s", at.Sub(begin), grace)
	}

	// The message is back at once: a new consumer gets it long before the ack wait would have passed.
	handedBack := time.Now()
	redelivered := make(chan uint64, 1)
	e.consume(bus.ConsumerConfig{Stage: "grace", AckWait: ackWait}, func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
		redelivered <- m.Deliveries
		return nil, nil
	})
	select {
	case n := <-redelivered:
		if n != 2 {
			t.Errorf("redelivered as delivery %d, want 2", n)
		}
	case <-time.After(ackWait / 6):
		t.Fatalf("not redelivered within %s of the shutdown (ack wait %s)", ackWait/6, ackWait)
	}
	t.Logf("redelivered %s after the shutdown", time.Since(handedBack))
	e.waitSettled("grace", seq)
	if n := e.streamMsgs(event.StreamDLQ); n != 0 {
		t.Errorf("DLQ holds %d messages: a shutdown is not a failure", n)
	}
}

func TestShutdownReportsAHandlerThatIgnoresCancellation(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	c, err := e.bus.Consume(testContext(t), bus.ConsumerConfig{Stage: "stuck", Subjects: []string{inSubject}},
		func(context.Context, *bus.Message) ([]*bus.Message, error) {
			started <- struct{}{}
			<-stuck // ignores its context
			return nil, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	e.publish("in-1", "", `{}`)
	recv(t, started, "the handler")
	err = c.Shutdown(expired())
	if err == nil || !strings.Contains(err.Error(), `consumer "stuck": 1 handlers still running`) {
		t.Fatalf("Shutdown = %v, want an error naming the handler that did not return", err)
	}
}

func TestConsumeDeadLettersAnUnsettledLastDelivery(t *testing.T) {
	e := newEnv(t)
	terms := e.terminated("last")
	started := make(chan struct{}, 1)
	c := e.consume(bus.ConsumerConfig{Stage: "last", MaxDeliver: 1}, func(ctx context.Context, _ *bus.Message) ([]*bus.Message, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	seq := e.publish("in-1", "corr-1", `{"n":1}`)
	recv(t, started, "the handler")
	// Stopped during its only allowed delivery, the message is handed back ...
	if err := c.Shutdown(expired()); err != nil {
		t.Fatal(err)
	}
	// ... and the next start dead-letters it without running the handler again.
	var calls atomic.Int32
	e.consume(bus.ConsumerConfig{Stage: "last", MaxDeliver: 1}, func(context.Context, *bus.Message) ([]*bus.Message, error) {
		calls.Add(1)
		return nil, nil
	})
	a := e.waitTerminated(terms)
	if a.StreamSeq != seq || !strings.HasPrefix(a.Reason, "gave up after 1 deliveries: the last one was not settled") {
		t.Errorf("terminated %+v", a)
	}
	e.checkDeadLetter("last", seq, 2, a.Reason)
	e.waitSettled("last", seq)
	if n := calls.Load(); n != 0 {
		t.Errorf("handler ran %d times after the last allowed delivery", n)
	}
}

func TestConsumeConcurrency(t *testing.T) {
	e := newEnv(t)
	started := make(chan string, 4)
	release := make(chan struct{})
	var running, most atomic.Int32
	e.consume(bus.ConsumerConfig{Stage: "concurrency", Concurrency: 2}, func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			if old := most.Load(); n <= old || most.CompareAndSwap(old, n) {
				break
			}
		}
		started <- m.ID
		<-release
		return nil, nil
	})
	e.publish("in-1", "", `{}`)
	e.publish("in-2", "", `{}`)
	seq := e.publish("in-3", "", `{}`)
	recv(t, started, "handler 1")
	recv(t, started, "handler 2")
	select {
	case id := <-started:
		t.Fatalf("%s started while 2 handlers were running", id)
	case <-time.After(quiet):
	}
	close(release)
	recv(t, started, "handler 3")
	e.waitSettled("concurrency", seq)
	if n := most.Load(); n != 2 {
		t.Errorf("at most %d handlers ran at once, want 2", n)
	}
}

func TestConsumeSurvivesServerRestart(t *testing.T) {
	e := newEnv(t)
	started := make(chan uint64, 8)
	release := make(chan struct{})
	e.consume(bus.ConsumerConfig{Stage: "restart", AckWait: 2 * time.Second, BackOff: []time.Duration{50 * time.Millisecond}},
		func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
			started <- m.Deliveries
			if m.Deliveries == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return []*bus.Message{output(event.SubjectImageInspected, "out-1")}, nil
		})
	seq := e.publish("in-1", "", `{}`)
	recv(t, started, "the handler")

	// The server goes away while the message is handled: the output is stored, and the input settled, only
	// once the client has reconnected, or else the input is redelivered. Either way nothing is lost.
	e.srv.Stop()
	close(release)
	e.srv.Restart()

	e.waitSettled("restart", seq)
	if n := e.streamMsgs(event.StreamImage); n != 1 {
		t.Errorf("IMAGE holds %d outputs, want 1", n)
	}
	if n := e.streamMsgs(event.StreamDLQ); n != 0 {
		t.Errorf("DLQ holds %d messages", n)
	}
}

func TestConsumeRedeliversAfterACrash(t *testing.T) {
	e := newEnv(t)
	cfg := bus.ConsumerConfig{Stage: "crash", AckWait: time.Second}

	// The first process takes the message and dies with the server, before it settles anything.
	crashing, nc := e.process("crashing")
	started := make(chan struct{}, 1)
	e.consumeOn(crashing, cfg, func(ctx context.Context, _ *bus.Message) ([]*bus.Message, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	seq := e.publish("in-1", "corr-1", `{}`)
	recv(t, started, "the first handler")
	e.srv.Stop()
	nc.Close()
	e.srv.Restart()

	// The next process gets the message again once its ack wait has passed.
	next, _ := e.process("next")
	deliveries := make(chan uint64, 4)
	e.consumeOn(next, cfg, func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
		deliveries <- m.Deliveries
		return []*bus.Message{output(event.SubjectImageInspected, "out-1")}, nil
	})
	// Usually delivery 2; under load the server's shutdown can outlast the ack wait and redeliver to the
	// crashing process first.
	if n := recv(t, deliveries, "the redelivery"); n < 2 {
		t.Errorf("redelivered as delivery %d, want 2 or more", n)
	}
	e.waitSettled("crash", seq)
	if n := e.streamMsgs(event.StreamImage); n != 1 {
		t.Errorf("IMAGE holds %d outputs, want 1", n)
	}
}

func TestConsumeHandlerTimeoutKeepsTheMessageInProgress(t *testing.T) {
	e := newEnv(t)
	// The in-progress acks the runner sends are messages on the delivery's ack subject.
	beats := make(chan *nats.Msg, 64)
	sub, err := e.srv.Conn.ChanSubscribe("$JS.ACK."+event.StreamRegistry+".long.>", beats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	const ackWait = 600 * time.Millisecond
	deliveries := make(chan uint64, 4)
	e.consume(bus.ConsumerConfig{Stage: "long", AckWait: ackWait, HandlerTimeout: time.Minute},
		func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
			deliveries <- m.Deliveries
			// Outlive the ack wait several times over: hold on until the runner has kept the message in
			// progress eight times after the first one (the one sent when the handler starts).
			for n := 0; n < 9; {
				select {
				case b := <-beats:
					if string(b.Data) == "+WPI" {
						n++
					}
				case <-ctx.Done():
					return nil, fmt.Errorf("handler context ended early: %w", ctx.Err())
				}
			}
			return []*bus.Message{output(event.SubjectImageInspected, "out-1")}, nil
		})
	start := time.Now()
	seq := e.publish("in-1", "", `{}`)
	if n := recv(t, deliveries, "the handler"); n != 1 {
		t.Errorf("first handler call is delivery %d", n)
	}
	info := e.waitSettled("long", seq)
	if took := time.Since(start); took < 2*ackWait {
		t.Errorf("the handler ran %s, want it to outlive the ack wait of %s", took, ackWait)
	}
	if info.Redelivered != 0 || len(deliveries) != 0 {
		t.Errorf("redelivered while the handler ran (%d redelivered, %d more calls)", info.Redelivered, len(deliveries))
	}
	if n := e.streamMsgs(event.StreamImage); n != 1 {
		t.Errorf("IMAGE holds %d outputs, want 1", n)
	}
}

func TestConsumeRejectsBadConfig(t *testing.T) {
	e := newEnv(t)
	ok := func(context.Context, *bus.Message) ([]*bus.Message, error) { return nil, nil }
	subjects := []string{inSubject}
	for _, tc := range []struct {
		name string
		cfg  bus.ConsumerConfig
		h    bus.HandlerFunc
	}{
		{"no stage", bus.ConsumerConfig{Subjects: subjects}, ok},
		{"stage with a dot", bus.ConsumerConfig{Stage: "a.b", Subjects: subjects}, ok},
		{"durable with a dot", bus.ConsumerConfig{Stage: "x", Durable: "a.b", Subjects: subjects}, ok},
		{"no subjects", bus.ConsumerConfig{Stage: "x"}, ok},
		{"negative max deliver", bus.ConsumerConfig{Stage: "x", Subjects: subjects, MaxDeliver: -1}, ok},
		{"zero back-off", bus.ConsumerConfig{Stage: "x", Subjects: subjects, BackOff: []time.Duration{0}}, ok},
		{"empty subject", bus.ConsumerConfig{Stage: "x", Subjects: []string{""}}, ok},
		{"subject of no stream", bus.ConsumerConfig{Stage: "x", Subjects: []string{"nope.push"}}, ok},
		{"subject spanning streams", bus.ConsumerConfig{Stage: "x", Subjects: []string{">"}}, ok},
		{"nil handler", bus.ConsumerConfig{Stage: "x", Subjects: subjects}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := e.bus.Consume(testContext(t), tc.cfg, tc.h); err == nil {
				_ = c.Shutdown(expired())
				t.Error("Consume accepted it")
			}
		})
	}
	if err := (bus.ConsumerConfig{Stage: "inspector", Subjects: []string{"registry.*.push"}}).Validate(); err != nil {
		t.Errorf("Validate with defaults: %v", err)
	}
}

// A consumer is ready while its durables exist on the server, and says which is missing when one is deleted.
func TestConsumerReadyWhileItsDurablesExist(t *testing.T) {
	e := newEnv(t)
	c := e.consume(bus.ConsumerConfig{Stage: "ready", Subjects: []string{inSubject, event.SubjectImageInspected}},
		func(context.Context, *bus.Message) ([]*bus.Message, error) { return nil, nil })
	if err := c.Ready(testContext(t)); err != nil {
		t.Fatalf("Ready of a running consumer: %v", err)
	}
	js, err := jetstream.New(e.srv.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(testContext(t), event.StreamImage, "ready"); err != nil {
		t.Fatal(err)
	}
	err = c.Ready(testContext(t))
	if !errors.Is(err, bus.ErrNotReady) || !strings.Contains(err.Error(), "ready") || !strings.Contains(err.Error(), event.StreamImage) {
		t.Errorf("Ready after its IMAGE durable was deleted: %v, want ErrNotReady naming the stage and the stream", err)
	}
}
