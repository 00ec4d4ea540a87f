package retention_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/services/retention"
)

// BenchmarkPlan plans a repository of 10,000 tagged artifacts (three version lines, update levels and builds
// in random order, latest and 4.2.0 on one of them, an accessory per tenth), side by side in each op with a
// plain sort-and-cut over the same tags: parse each, group by line, sort newest first, keep the first three.
// Reported: planner-ns/op, baseline-ns/op and their ratio (issue 12's target: ≤ 3).
func BenchmarkPlan(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	lines := []string{"4.2.0.%d.%d", "4.2.0.%d.%d-rocky", "4.1.0.%d.%d"}
	arts := make([]retention.Artifact, 0, 11000)
	for i := range 10000 {
		tag := fmt.Sprintf(lines[i%3], rng.IntN(200), rng.IntN(50))
		a := retention.Artifact{Digest: fmt.Sprintf("sha256:%064x", i), Tags: []string{tag}, Pushed: now.Add(-48 * time.Hour)}
		if i == 5000 {
			a.Tags = append(a.Tags, "latest", "4.2.0")
		}
		arts = append(arts, a)
		if i%10 == 0 {
			arts = append(arts, retention.Artifact{Digest: fmt.Sprintf("sha256:%064x", 100000+i), Subjects: []string{a.Digest}, Pushed: a.Pushed})
		}
	}
	protect, err := retention.ParseProtect([]string{"latest", `^\d+\.\d+\.\d+$`})
	if err != nil {
		b.Fatal(err)
	}
	p := retention.Policy{KeepPerVersion: 3, Protect: protect, MinAge: time.Hour}

	var planner, baseline time.Duration
	var kept int
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		plan := retention.Make(p, arts, now)
		planner += time.Since(start)

		start = time.Now()
		kept = sortAndCut(arts, 3)
		baseline += time.Since(start)
		if len(plan.Kept) < kept {
			b.Fatalf("the planner kept %d, the baseline %d", len(plan.Kept), kept)
		}
	}
	b.ReportMetric(float64(planner.Nanoseconds())/float64(b.N), "planner-ns/op")
	b.ReportMetric(float64(baseline.Nanoseconds())/float64(b.N), "baseline-ns/op")
	b.ReportMetric(float64(planner)/float64(baseline), "ratio")
}

// sortAndCut is the baseline: the newest n of each version line, by tag alone; it returns how many it keeps.
func sortAndCut(arts []retention.Artifact, n int) int {
	byLine := map[string][]imagetag.Tag{}
	for _, a := range arts {
		for _, s := range a.Tags {
			if t, err := imagetag.Parse(s); err == nil && !t.Moving() {
				byLine[t.Line()] = append(byLine[t.Line()], t)
			}
		}
	}
	kept := 0
	for _, ts := range byLine {
		slices.SortFunc(ts, func(a, b imagetag.Tag) int { return imagetag.Compare(b, a) })
		kept += min(n, len(ts))
	}
	return kept
}
