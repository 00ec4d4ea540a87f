package watcher

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/registry"
)

func TestBackOffGrowsHonoursRetryAfterAndResets(t *testing.T) {
	w := &Watcher{backoff: 30 * time.Minute, m: newMetrics(prometheus.NewRegistry())}
	r := &repo{source: config.Source{Name: "wso2", Interval: time.Minute}, ref: "registry.wso2.com/wso2-apim/am"}
	within := func(got, want time.Duration) bool { return got >= want*9/10 && got <= want*11/10 }
	gauge := func() float64 { return testutil.ToFloat64(w.m.backoff.WithLabelValues("wso2", r.ref)) }

	if got := w.next(r, nil); !within(got, time.Minute) || gauge() != 0 {
		t.Errorf("healthy: wait %s, gauge %v", got, gauge())
	}
	down := registry.ErrUnavailable
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute} {
		if got := w.next(r, down); !within(got, want) {
			t.Errorf("failure %d: wait %s, want about %s", i+1, got, want)
		}
	}
	if gauge() != (4 * time.Minute).Seconds() {
		t.Errorf("gauge %v after three failures", gauge())
	}
	for range 20 {
		w.next(r, down)
	}
	if got := w.next(r, down); got > 33*time.Minute {
		t.Errorf("back-off not capped: %s", got)
	}
	limited := &registry.RateLimitError{RetryAfter: 2 * time.Hour}
	if got := w.next(&repo{source: r.source, ref: "x"}, errors.Join(errors.New("listing tags"), limited)); !within(got, 2*time.Hour) {
		t.Errorf("Retry-After 2h: wait %s", got)
	}
	if got := w.next(r, nil); !within(got, time.Minute) || gauge() != 0 {
		t.Errorf("after recovery: wait %s, gauge %v", got, gauge())
	}
}
