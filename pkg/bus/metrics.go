package bus

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/logging"
)

// Outcomes of a consumed message: the outcome label of harborflow_consumer_messages_total.
const (
	// outcomeHandled: the handler succeeded, its outputs are stored and the message acked.
	outcomeHandled = "handled"
	// outcomeRetried: the handler failed; the bus redelivers the message after a back-off. This is the one
	// retry layer of a stage: the handler does not retry itself.
	outcomeRetried = "retried"
	// outcomeWaiting: the handler asked for a later delivery as part of normal work (Wait).
	outcomeWaiting = "waiting"
	// outcomeDeadLettered: given up on, copied to dlq.<stage> and terminated.
	outcomeDeadLettered = "dead_lettered"
	// outcomeHandedBack: not handled, or cancelled, because the consumer shut down; redelivered at once.
	outcomeHandedBack = "handed_back"
)

// infoTimeout bounds reading the consumers' state at a scrape.
const infoTimeout = time.Second

// metrics are the consumer metrics of a Bus, labelled by stage so that the stages of one process share a
// registry. A nil *metrics counts nothing.
type metrics struct {
	reg      prometheus.Registerer
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the consumer metrics with reg, or reuses those another Bus registered there.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "harborflow_consumer_messages_total",
			Help: "Messages a stage's consumer settled, by outcome: handled (acked), retried (redelivered after the bus's back-off), waiting (redelivered later as part of normal work), dead_lettered, handed_back (at shutdown, redelivered at once).",
		}, []string{"stage", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "harborflow_consumer_handler_duration_seconds",
			Help:    "How long a stage's handler ran on one message, whatever its outcome.",
			Buckets: []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200},
		}, []string{"stage"}),
	}
	m.messages = register(reg, m.messages)
	m.duration = register(reg, m.duration)
	return m
}

// register registers c with reg, or returns the equal collector registered there before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a metric of the same name and other labels: a programming error
	}
	return c
}

func (m *metrics) count(stage, outcome string) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(stage, outcome).Inc()
}

func (m *metrics) observe(stage string, d time.Duration) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(stage).Observe(d.Seconds())
}

// infoCollector reports the server's view of one Consumer at scrape time: its pending, ack pending and
// redelivered messages per stream. The stage is a constant label, so that each stage of a process registers
// its own collector in the shared registry.
type infoCollector struct {
	c                                *Consumer
	pending, ackPending, redelivered *prometheus.Desc
}

func newInfoCollector(c *Consumer) *infoCollector {
	stage := prometheus.Labels{"stage": c.cfg.Stage}
	return &infoCollector{
		c: c,
		pending: prometheus.NewDesc("harborflow_consumer_pending_messages",
			"Messages stored on a stage's subjects and not yet delivered to its consumer, per stream.", []string{"stream"}, stage),
		ackPending: prometheus.NewDesc("harborflow_consumer_ack_pending_messages",
			"Messages delivered to a stage's consumer and not yet settled, per stream.", []string{"stream"}, stage),
		redelivered: prometheus.NewDesc("harborflow_consumer_redelivered_messages",
			"Messages delivered to a stage's consumer more than once and not yet settled, per stream.", []string{"stream"}, stage),
	}
}

func (ic *infoCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- ic.pending
	ch <- ic.ackPending
	ch <- ic.redelivered
}

func (ic *infoCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), infoTimeout)
	defer cancel()
	for _, s := range ic.c.subs {
		info, err := infoOf(ctx, s.jc)
		if err != nil {
			// Leave the series out rather than fail the scrape: NATS may be reconnecting.
			ic.c.log.Debug("reading the consumer's state for metrics", zap.String(logging.FieldStream, s.stream), zap.Error(err))
			continue
		}
		ch <- prometheus.MustNewConstMetric(ic.pending, prometheus.GaugeValue, float64(info.Pending), s.stream)
		ch <- prometheus.MustNewConstMetric(ic.ackPending, prometheus.GaugeValue, float64(info.AckPending), s.stream)
		ch <- prometheus.MustNewConstMetric(ic.redelivered, prometheus.GaugeValue, float64(info.Redelivered), s.stream)
	}
}

// registerInfo registers the consumer's state collector; nil without metrics, or when another consumer of the
// same stage reports in this registry already (replicas in one process, as in tests: they share the state).
func (c *Consumer) registerInfo() *infoCollector {
	if c.metrics == nil {
		return nil
	}
	ic := newInfoCollector(c)
	if err := c.metrics.reg.Register(ic); err != nil {
		c.log.Debug("not reporting the consumer's pending messages twice", zap.Error(err))
		return nil
	}
	return ic
}

func (c *Consumer) unregisterInfo() {
	if c.info != nil {
		c.metrics.reg.Unregister(c.info)
	}
}
