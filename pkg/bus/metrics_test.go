package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

func TestConsumerMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewPedanticRegistry()
	b, err := bus.New(e.srv.Conn, bus.WithLogger(zaptest.NewLogger(t)), bus.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan struct{}, 1)
	release := make(chan struct{})
	// One message in flight at a time, so that what the server holds back is predictable.
	cfg := bus.ConsumerConfig{Stage: "metered", MaxAckPending: 1, BackOff: []time.Duration{time.Millisecond}}
	c := e.consumeOn(b, cfg, func(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
		switch {
		case m.ID == "poison":
			return nil, bus.Permanent(errors.New("cannot be handled"))
		case m.ID == "flaky" && m.Deliveries == 1:
			return nil, errors.New("try again")
		case m.ID == "flaky":
			blocked <- struct{}{}
			<-release
		}
		return nil, nil
	})
	// A second stage in the same process registers in the same registry.
	e.consumeOn(b, bus.ConsumerConfig{Stage: "other", Subjects: []string{event.SubjectImageRebuilt}},
		func(context.Context, *bus.Message) ([]*bus.Message, error) { return nil, nil })

	e.publish("flaky", "", `{}`)
	recv(t, blocked, "the second delivery")
	e.publish("ok", "", `{}`) // held back by MaxAckPending while flaky runs

	const gauges = `
# HELP harborflow_consumer_ack_pending_messages Messages delivered to a stage's consumer and not yet settled, per stream.
# TYPE harborflow_consumer_ack_pending_messages gauge
harborflow_consumer_ack_pending_messages{stage="metered",stream="REGISTRY"} 1
harborflow_consumer_ack_pending_messages{stage="other",stream="IMAGE"} 0
# HELP harborflow_consumer_pending_messages Messages stored on a stage's subjects and not yet delivered to its consumer, per stream.
# TYPE harborflow_consumer_pending_messages gauge
harborflow_consumer_pending_messages{stage="metered",stream="REGISTRY"} 1
harborflow_consumer_pending_messages{stage="other",stream="IMAGE"} 0
# HELP harborflow_consumer_redelivered_messages Messages delivered to a stage's consumer more than once and not yet settled, per stream.
# TYPE harborflow_consumer_redelivered_messages gauge
harborflow_consumer_redelivered_messages{stage="metered",stream="REGISTRY"} 1
harborflow_consumer_redelivered_messages{stage="other",stream="IMAGE"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(gauges), "harborflow_consumer_ack_pending_messages",
		"harborflow_consumer_pending_messages", "harborflow_consumer_redelivered_messages"); err != nil {
		t.Error(err)
	}
	close(release)
	seq := e.publish("poison", "", `{}`)
	e.waitSettled("metered", seq)

	const counters = `
# HELP harborflow_consumer_messages_total Messages a stage's consumer settled, by outcome: handled (acked), retried (redelivered after the bus's back-off), waiting (redelivered later as part of normal work), dead_lettered, handed_back (at shutdown, redelivered at once).
# TYPE harborflow_consumer_messages_total counter
harborflow_consumer_messages_total{outcome="dead_lettered",stage="metered"} 1
harborflow_consumer_messages_total{outcome="handled",stage="metered"} 2
harborflow_consumer_messages_total{outcome="retried",stage="metered"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(counters), "harborflow_consumer_messages_total"); err != nil {
		t.Error(err)
	}
	if n := handlerCalls(t, reg, "metered"); n != 4 {
		t.Errorf("handler duration observed %d times, want 4 (flaky twice, ok, poison)", n)
	}

	// A stopped consumer no longer reports its state.
	if err := c.Shutdown(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "harborflow_consumer_pending_messages"); err != nil || n != 1 {
		t.Errorf("pending series after one consumer stopped: %d (%v), want 1", n, err)
	}
}

// handlerCalls returns the sample count of stage's handler duration histogram.
func handlerCalls(t *testing.T, reg prometheus.Gatherer, stage string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "harborflow_consumer_handler_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
