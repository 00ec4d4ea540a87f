package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the receiver's Prometheus series. Label values are bounded: a source label is a configured
// source name or "unknown", never a path segment as sent.
type metrics struct {
	requests  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	unusable  *prometheus.CounterVec
	published *prometheus.CounterVec
	publish   *prometheus.HistogramVec
	// The publish histogram's two children, resolved once: this is on every webhook's path.
	publishOK, publishFailed prometheus.Observer
}

const unknownLabel = "unknown"

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "receiver", Name: "requests_total",
			Help: "Webhook requests by source, event kind and HTTP status code.",
		}, []string{"source", "kind", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "receiver", Name: "rejections_total",
			Help: "Webhook requests refused, by source and reason.",
		}, []string{"source", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "receiver", Name: "events_dropped_total",
			Help: "Events accepted but not published on purpose (our own operator, blob events, HEAD or own pulls), by source and reason.",
		}, []string{"source", "reason"}),
		unusable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "receiver", Name: "events_dead_lettered_total",
			Help: "Distribution events that could not be used and were copied to dlq.receiver, by source.",
		}, []string{"source"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "receiver", Name: "events_published_total",
			Help: "Events stored in JetStream, by source, kind and whether JetStream had it already (duplicate).",
		}, []string{"source", "kind", "duplicate"}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "harborflow", Subsystem: "receiver", Name: "publish_duration_seconds",
			Help:    "Time from publish to JetStream's ack, by result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.rejected, m.dropped, m.unusable, m.published, m.publish)
	m.publishOK, m.publishFailed = m.publish.WithLabelValues("ok"), m.publish.WithLabelValues("error")
	return m
}
