package watcher

import "github.com/prometheus/client_golang/prometheus"

// metrics are the watcher's series; label values come from the configuration only.
type metrics struct {
	polls   *prometheus.CounterVec
	events  *prometheus.CounterVec
	backoff *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "watcher", Name: "polls_total",
			Help: "Poll cycles by source and result (ok, not_found: the repository does not exist yet, error).",
		}, []string{"source", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "watcher", Name: "events_published_total",
			Help: "Tag moves published as registry.<source>.push, by source.",
		}, []string{"source"}),
		backoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "harborflow", Subsystem: "watcher", Name: "backoff_seconds",
			Help: "Current back-off of a failing repository (0 when healthy), by source and repository.",
		}, []string{"source", "repository"}),
	}
	reg.MustRegister(m.polls, m.events, m.backoff)
	return m
}
