package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/event"
)

// BenchmarkConsume measures a stage's message path, one op per message: delivery, a handler that returns one
// output, the output stored (JetStream's ack) and the input acked (the server's confirmation), with the stage's
// metrics on. Beside it, in the same run, "bare" does the same with nats.go alone: a durable pull consumer, the
// same concurrency, PublishMsg with a message id, DoubleAck.
func BenchmarkConsume(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("bus/concurrency=%d", conc), func(b *testing.B) { benchConsume(b, conc, false) })
		b.Run(fmt.Sprintf("bare/concurrency=%d", conc), func(b *testing.B) { benchConsume(b, conc, true) })
	}
}

func benchConsume(b *testing.B, conc int, bare bool) {
	srv := bustest.Start(b)
	ctx := context.Background()
	var last uint64
	for i := range b.N {
		ack, err := srv.Bus.Publish(ctx, &bus.Message{Subject: inSubject, ID: "in-" + strconv.Itoa(i), Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)})
		if err != nil {
			b.Fatal(err)
		}
		last = ack.Sequence
	}
	b.ResetTimer()
	if bare {
		stop := bareConsume(b, srv.Conn, conc)
		defer stop()
	} else {
		bb, err := bus.New(srv.Conn, bus.WithMetrics(prometheus.NewRegistry()))
		if err != nil {
			b.Fatal(err)
		}
		c, err := bb.Consume(ctx, bus.ConsumerConfig{Stage: "bench", Subjects: []string{inSubject}, Concurrency: conc},
			func(_ context.Context, m *bus.Message) ([]*bus.Message, error) {
				return []*bus.Message{{Subject: event.SubjectImageInspected, ID: "out-" + m.ID, Data: m.Data}}, nil
			})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Shutdown(ctx) }()
	}
	srv.WaitSettled(event.StreamRegistry, "bench", last)
	b.StopTimer()
}

// bareConsume is the stage's work done with nats.go alone.
func bareConsume(b *testing.B, nc *nats.Conn, conc int) (stop func()) {
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	jc, err := js.CreateOrUpdateConsumer(ctx, event.StreamRegistry, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 64, FilterSubjects: []string{inSubject}})
	if err != nil {
		b.Fatal(err)
	}
	slots := make(chan struct{}, conc)
	cc, err := jc.Consume(func(m jetstream.Msg) {
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			out := nats.NewMsg(event.SubjectImageInspected)
			out.Data = m.Data()
			if _, err := js.PublishMsg(ctx, out, jetstream.WithMsgID("out-"+m.Headers().Get(event.HeaderMsgID))); err != nil {
				b.Error(err)
				return
			}
			if err := m.DoubleAck(ctx); err != nil {
				b.Error(err)
			}
		}()
	}, jetstream.PullMaxMessages(conc))
	if err != nil {
		b.Fatal(err)
	}
	return cc.Stop
}
