package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

// publishTo stores a message on subject and returns its stream sequence.
func (e *env) publishTo(subject, id string) uint64 {
	e.t.Helper()
	ack, err := e.bus.Publish(testContext(e.t), &bus.Message{Subject: subject, ID: id, Header: nats.Header{}, Data: []byte(`{}`)})
	if err != nil {
		e.t.Fatalf("publishing to %s: %v", subject, err)
	}
	return ack.Sequence
}

func TestConsumeSubjectsAcrossStreams(t *testing.T) {
	e := newEnv(t)
	got := make(chan string, 8)
	e.consume(bus.ConsumerConfig{Stage: "promoter", Subjects: []string{event.SubjectImageInspected, "registry.*.scan"}},
		func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
			got <- m.Stream + " " + m.Subject + " " + m.ID
			return nil, nil
		})
	imageSeq := e.publishTo(event.SubjectImageInspected, "inspected-1")
	e.publishTo("registry.harbor.push", "push-1") // not a subject of the stage
	registrySeq := e.publishTo("registry.harbor.scan", "scan-1")

	want := map[string]bool{"IMAGE image.inspected inspected-1": true, "REGISTRY registry.harbor.scan scan-1": true}
	for range len(want) {
		m := recv(t, got, "a message")
		if !want[m] {
			t.Errorf("handled %q", m)
		}
		delete(want, m)
	}
	e.waitSettledOn(event.StreamImage, "promoter", imageSeq)
	e.waitSettledOn(event.StreamRegistry, "promoter", registrySeq)
	if len(got) != 0 {
		t.Errorf("handled more: %q", <-got)
	}
	// One durable consumer per stream, each under the durable name, filtered to its stream's subjects.
	for _, stream := range []string{event.StreamImage, event.StreamRegistry} {
		consumers, err := e.bus.Consumers(testContext(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		if len(consumers) != 1 || consumers[0].Durable != "promoter" {
			t.Errorf("consumers of %s: %+v", stream, consumers)
		}
	}
}

func TestConsumeDurablesOfOneStageEachGetEveryMessage(t *testing.T) {
	e := newEnv(t)
	got := map[string]chan string{"blue": make(chan string, 4), "green": make(chan string, 4)}
	for durable, ch := range got {
		e.consume(bus.ConsumerConfig{Stage: "inspector", Durable: durable}, func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
			ch <- m.ID
			return nil, nil
		})
	}
	e.publish("in-1", "", `{}`)
	seq := e.publish("in-2", "", `{}`)
	for durable, ch := range got {
		for _, want := range []string{"in-1", "in-2"} {
			if id := recv(t, ch, durable+"'s message"); id != want {
				t.Errorf("%s handled %s, want %s", durable, id, want)
			}
		}
		e.waitSettled(durable, seq)
	}
}

func TestConsumeReplicasOfADurableSplitTheWork(t *testing.T) {
	e := newEnv(t)
	type start struct {
		replica, id string
	}
	started := make(chan start, 4)
	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[string]int{}
	for _, replica := range []string{"a", "b"} {
		b, _ := e.process(replica)
		e.consumeOn(b, bus.ConsumerConfig{Stage: "inspector"}, func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
			started <- start{replica, m.ID}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			mu.Lock()
			handled[m.ID]++
			mu.Unlock()
			return nil, nil
		})
	}
	// Publish when both replicas wait for a message, so that the server, which serves pull requests in the
	// order they came, has the idle replica's request ahead of the busy one's next.
	e.waitForPullRequests("inspector", 2)
	e.publish("in-1", "", `{}`)
	first := recv(t, started, "the first handler")
	e.waitForPullRequests("inspector", 2)
	// The replica that took in-1 is busy (one handler at a time): in-2 goes to the other, while in-1 runs.
	seq := e.publish("in-2", "", `{}`)
	second := recv(t, started, "the second handler")
	if first.replica == second.replica || second.id != "in-2" {
		t.Errorf("started %+v then %+v, want in-2 on the other replica", first, second)
	}
	close(release)
	e.waitSettled("inspector", seq)
	mu.Lock()
	defer mu.Unlock()
	if handled["in-1"] != 1 || handled["in-2"] != 1 {
		t.Errorf("handled %v, want each message once", handled)
	}
}

// waitForPullRequests waits until n pull requests of the durable consumer on REGISTRY wait on the server.
func (e *env) waitForPullRequests(durable string, n int) {
	e.t.Helper()
	ctx := testContext(e.t)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := e.bus.ConsumerInfo(ctx, event.StreamRegistry, durable)
		if err == nil && info.Waiting >= n {
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("%s: not %d pull requests waiting: %+v, %v", durable, n, info, err)
		case <-tick.C:
		}
	}
}
