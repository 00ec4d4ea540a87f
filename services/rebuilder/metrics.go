package rebuilder

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a trigger, as counted in harborflow_rebuilder_triggers_total.
const (
	outcomeBuilt      = "built"      // built and tagged
	outcomeRepeated   = "repeated"   // built before: the same image.rebuilt again
	outcomeSkipped    = "skipped"    // same level without on_digest_change, failed before, or built elsewhere
	outcomeSuperseded = "superseded" // an older update level than the one its line built meanwhile: not built
	outcomeFailed     = "failed"     // dead-lettered: retrying cannot fix it
	outcomeRetried    = "retried"    // failed for now: the trigger is redelivered
)

// metrics are the rebuilder's series; label values come from the configuration only.
type metrics struct {
	triggers *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "rebuilder", Name: "triggers_total",
			Help: "Triggers of a recipe by outcome (built, repeated, skipped, superseded, failed, retried).",
		}, []string{"recipe", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "harborflow", Subsystem: "rebuilder", Name: "build_duration_seconds",
			Help:    "Time from the start of a build to its tag, by recipe and builder.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"recipe", "builder"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "rebuilder", Name: "blob_bytes_total",
			Help: "Blob bytes builds moved through harborflow's registry client, by recipe and direction (read, written).",
		}, []string{"recipe", "direction"}),
	}
	reg.MustRegister(m.triggers, m.duration, m.bytes)
	return m
}
