package harbortest_test

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// scanEvents are the scan events among evs.
func scanEvents(evs []harbortest.Event) []harbortest.Event {
	var out []harbortest.Event
	for _, e := range evs {
		if strings.HasPrefix(e.Type, "SCANNING_") {
			out = append(out, e)
		}
	}
	return out
}

// waitScans returns the scan events once there are n.
func (r *recorder) waitScans(t *testing.T, n int) []harbortest.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		evs := scanEvents(r.events)
		r.mu.Unlock()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d scan events, have %d", n, len(evs))
		}
		select {
		case <-r.more:
		case <-time.After(time.Until(deadline)):
		}
	}
}

// overviewOf is the report summary of a scan event.
func overviewOf(t *testing.T, e harbortest.Event) map[string]any {
	t.Helper()
	ov, ok := e.ScanOverview[harbortest.ReportMIME].(map[string]any)
	if !ok || len(e.ScanOverview) != 1 {
		t.Fatalf("event scan_overview %v, want one keyed %q", e.ScanOverview, harbortest.ReportMIME)
	}
	return ov
}

// apiOverview is the artifact's scan_overview in the API (nil when the key is absent).
func apiOverview(t *testing.T, s *harbortest.Server, path string) map[string]any {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	a := call(t, s, http.MethodGet, path+sep+"with_scan_overview=true", admin, pass, nil)
	want(t, a, http.StatusOK)
	var art struct {
		ScanOverview map[string]map[string]any `json:"scan_overview"`
	}
	a.json(t, &art)
	if art.ScanOverview == nil {
		if strings.Contains(string(a.body), `"scan_overview"`) {
			t.Fatalf("scan_overview present but empty: %s", a.body)
		}
		return nil
	}
	ov, ok := art.ScanOverview[harbortest.ReportMIME]
	if !ok || len(art.ScanOverview) != 1 {
		t.Fatalf("scan_overview %v", art.ScanOverview)
	}
	return ov
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func image(labels map[string]string) registrytest.Image {
	return registrytest.Image{Labels: labels, Layer: "layer of " + labels[harbortest.LabelSeverity] + labels[harbortest.LabelScan]}
}

var uuidLike = func(s string) bool {
	return len(s) == 36 && strings.Count(s, "-") == 4
}

// HARBOR.md §7.1: with auto_scan a push is scanned; SCANNING_COMPLETED carries the pushed tag, scan_type
// vulnerability, the pusher as operator, no date_created, and the overview's fields; the API shows the same
// report with with_scan_overview=true only, and a project without auto_scan scans nothing on push.
func TestScanOnPush(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "auto", false, map[string]string{"auto_scan": "true"})
	s.CreateProject(t, "plain", false, nil)
	subscribe(t, s, "auto", "PUSH_ARTIFACT", "SCANNING_COMPLETED", "SCANNING_FAILED")
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:1", image(map[string]string{harbortest.LabelSeverity: "High"}))

	push(t, s, src, "src/app:1", "plain/app:1")
	if ov := apiOverview(t, s, "/projects/plain/repositories/app/artifacts/1"); ov != nil {
		t.Errorf("a push without auto_scan has an overview: %v", ov)
	}

	push(t, s, src, "src/app:1", "auto/app:1")
	evs := rec.wait(t, 2)
	if evs[0].Type != "PUSH_ARTIFACT" {
		t.Errorf("first event %s, want PUSH_ARTIFACT", evs[0].Type)
	}
	e := rec.waitScans(t, 1)[0]
	if e.Type != "SCANNING_COMPLETED" || e.Digest != img.Digest || e.Tag != "1" || e.ScanType != "vulnerability" ||
		e.Operator != admin || !e.RepoCreated.IsZero() || e.Project != "auto" || e.Repository != "auto/app" {
		t.Errorf("scan event %+v", e)
	}
	ov := overviewOf(t, e)
	sum, _ := ov["summary"].(map[string]any)
	bySev, _ := sum["summary"].(map[string]int)
	scanner, _ := ov["scanner"].(map[string]any)
	if ov["scan_status"] != "Success" || ov["severity"] != "High" || ov["complete_percent"] != 100 ||
		!uuidLike(ov["report_id"].(string)) || sum["total"] != 1 || sum["fixable"] != 1 || bySev["High"] != 1 ||
		scanner["name"] == nil || scanner["vendor"] == nil || scanner["version"] == nil {
		t.Errorf("event overview %v", ov)
	}
	for _, k := range []string{"start_time", "end_time"} {
		if v, _ := ov[k].(string); len(v) != len("2006-01-02T15:04:05Z") || !strings.HasSuffix(v, "Z") {
			t.Errorf("event %s %q, want whole seconds", k, ov[k])
		}
	}
	if _, ok := ov["duration"].(int64); !ok {
		t.Errorf("duration %T", ov["duration"])
	}

	api := apiOverview(t, s, "/projects/auto/repositories/app/artifacts/1")
	if api == nil || api["report_id"] != ov["report_id"] || api["scan_status"] != "Success" || api["severity"] != "High" ||
		api["complete_percent"] != 100.0 || !strings.HasSuffix(api["end_time"].(string), ".000Z") {
		t.Errorf("API overview %v", api)
	}
	// Reports belong to the digest: the same image in another project shows the same report.
	if got := apiOverview(t, s, "/projects/plain/repositories/app/artifacts/1"); got == nil || got["report_id"] != ov["report_id"] {
		t.Errorf("the other project's overview %v", got)
	}
	a := call(t, s, http.MethodGet, "/projects/auto/repositories/app/artifacts/1", admin, pass, nil)
	if strings.Contains(string(a.body), "scan_overview") {
		t.Errorf("scan_overview without with_scan_overview: %s", a.body)
	}
	// Only the other report type accepted: no overview.
	a = call(t, s, http.MethodGet, "/projects/auto/repositories/app/artifacts/1?with_scan_overview=true", admin, pass, nil,
		"X-Accept-Vulnerabilities", "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0")
	if strings.Contains(string(a.body), "scan_overview") {
		t.Errorf("scan_overview of a type not accepted: %s", a.body)
	}
}

// HARBOR.md §7.1: a scan by request is 202 with an empty body; while it runs the overview is Running with the
// zero end_time, and a second request is 409 CONFLICT.
func TestScanRequestPending(t *testing.T) {
	s := standIn(t, nil, harbortest.WithScanDelay(time.Hour))
	s.CreateProject(t, "p", false, nil)
	src := registrytest.New(t)
	src.PushImage(t, "src/app:1", image(nil))
	push(t, s, src, "src/app:1", "p/app:1")
	const art = "/projects/p/repositories/app/artifacts/1"

	a := call(t, s, http.MethodPost, art+"/scan", admin, pass, nil)
	want(t, a, http.StatusAccepted)
	if len(a.body) != 0 {
		t.Errorf("202 body %q", a.body)
	}
	ov := apiOverview(t, s, art)
	if ov["scan_status"] != "Running" || ov["end_time"] != "0001-01-01T00:00:00.000Z" || ov["duration"].(float64) > -1e9 {
		t.Errorf("running overview %v", ov)
	}
	msg := wantError(t, call(t, s, http.MethodPost, art+"/scan", admin, pass, map[string]string{"scan_type": "vulnerability"}), http.StatusConflict, "CONFLICT")
	if msg != "a previous scan process is Pending" {
		t.Errorf("409 message %q", msg)
	}
	wantError(t, call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/nope/scan", admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
	wantError(t, call(t, s, http.MethodPost, art+"/scan", "", "", nil), http.StatusUnauthorized, "UNAUTHORIZED")
}

// HARBOR.md §7.1, the trap: an index is never scanned itself; each platform manifest is, with no tag in its
// event; the index's API overview merges the children's, and one failed child leaves it Success with
// complete_percent 50. A failed child has its own failed overview.
func TestScanIndex(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "p", false, nil)
	subscribe(t, s, "p", "SCANNING_COMPLETED", "SCANNING_FAILED")
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/am:4.2.0.1", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{harbortest.LabelSeverity: "High"}},
		{Platform: "linux/arm64", Labels: map[string]string{harbortest.LabelScan: "error"}},
	}})
	push(t, s, src, "src/am:4.2.0.1", "p/am:4.2.0.1")
	const base = "/projects/p/repositories/am/artifacts/"
	if ov := apiOverview(t, s, base+"4.2.0.1"); ov != nil {
		t.Fatalf("never scanned, yet an overview: %v", ov)
	}

	want(t, call(t, s, http.MethodPost, base+"4.2.0.1/scan", admin, pass, nil), http.StatusAccepted)
	evs := rec.waitScans(t, 2)
	byDigest := map[string]harbortest.Event{}
	for _, e := range evs {
		if e.Tag != "" || e.Digest == idx.Digest {
			t.Errorf("scan event for %s with tag %q: an index child's has none, the index none at all", e.Digest, e.Tag)
		}
		byDigest[e.Digest] = e
	}
	good, bad := byDigest[idx.Children[0].Digest], byDigest[idx.Children[1].Digest]
	if good.Type != "SCANNING_COMPLETED" || bad.Type != "SCANNING_FAILED" {
		t.Fatalf("child events %+v", evs)
	}
	failed := overviewOf(t, bad)
	if failed["scan_status"] != "Error" || failed["severity"] != "" || failed["summary"] != nil || failed["complete_percent"] != 0 {
		t.Errorf("failed event overview %v", failed)
	}
	if _, ok := failed["scanner"]; ok {
		t.Errorf("failed overview has a scanner: %v", failed)
	}

	// The failed child by digest shows only what a failed report has.
	if got := keys(apiOverview(t, s, base+idx.Children[1].Digest)); !slices.Equal(got, []string{"duration", "end_time", "report_id", "scan_status", "start_time"}) {
		t.Errorf("failed child's API overview keys %v", got)
	}
	merged := apiOverview(t, s, base+"4.2.0.1")
	if merged["scan_status"] != "Success" || merged["severity"] != "High" || merged["complete_percent"] != 50.0 {
		t.Errorf("merged overview %v, want Success, High, 50 %%", merged)
	}
	ids, err := base64.StdEncoding.DecodeString(merged["report_id"].(string))
	wantIDs := overviewOf(t, good)["report_id"].(string) + "|" + failed["report_id"].(string)
	if err != nil || string(ids) != wantIDs {
		t.Errorf("merged report_id decodes to %q (%v), want %q", ids, err, wantIDs)
	}
	// The list shows the index alone, with the merged overview.
	a := call(t, s, http.MethodGet, "/projects/p/repositories/am/artifacts?with_scan_overview=true", admin, pass, nil)
	var list []struct {
		Digest       string
		ScanOverview map[string]map[string]any `json:"scan_overview"`
	}
	a.json(t, &list)
	if a.header.Get("X-Total-Count") != "1" || len(list) != 1 || list[0].ScanOverview[harbortest.ReportMIME]["complete_percent"] != 50.0 {
		t.Errorf("list %s", a.body)
	}
	if n := len(scanEvents(rec.wait(t, 2))); n != 2 {
		t.Errorf("%d scan events, want 2", n)
	}
}

// HARBOR.md §7.1: with auto_scan a multi-arch push scans the platform manifests (2 or 4 events, depending on
// timing), never the index, and no child event has a tag.
func TestScanOnPushIndex(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "auto", false, map[string]string{"auto_scan": "true"})
	subscribe(t, s, "auto", "SCANNING_COMPLETED")
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/am:1", twoPlatforms())
	push(t, s, src, "src/am:1", "auto/am:1")
	evs := rec.waitScans(t, 2)
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Digest == idx.Digest || e.Tag != "" {
			t.Errorf("scan event %s tag %q", e.Digest, e.Tag)
		}
		seen[e.Digest] = true
	}
	if !seen[idx.Children[0].Digest] && !seen[idx.Children[1].Digest] {
		t.Errorf("no child scanned: %+v", evs)
	}
	// Both children end up with a report.
	for _, ch := range idx.Children {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ov := apiOverview(t, s, "/projects/auto/repositories/am/artifacts/"+ch.Digest)
			if ov != nil && ov["scan_status"] == "Success" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %s overview %v", ch.Digest, ov)
			}
			rec.waitScans(t, len(scanEvents(rec.wait(t, 0)))+1)
		}
	}
}

// HARBOR.md §7.1: a scan by digest names the artifact's newest tag; by tag, that tag; the default severity is
// None with nothing found.
func TestScanTags(t *testing.T) {
	clock := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := newRecorder()
	s := standIn(t, rec, harbortest.WithClock(clock.now))
	s.CreateProject(t, "p", false, nil)
	subscribe(t, s, "p", "SCANNING_COMPLETED")
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:a", image(nil))
	push(t, s, src, "src/app:a", "p/app:a")
	want(t, call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/a/tags", admin, pass, map[string]string{"name": "b"}), http.StatusCreated)

	want(t, call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/"+img.Digest+"/scan", admin, pass, nil), http.StatusAccepted)
	e := rec.waitScans(t, 1)[0]
	if e.Tag != "b" {
		t.Errorf("scan by digest: tag %q, want the newest, b", e.Tag)
	}
	ov := overviewOf(t, e)
	if ov["severity"] != "None" || ov["summary"].(map[string]any)["total"] != 0 {
		t.Errorf("default overview %v", ov)
	}
	want(t, call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/a/scan", admin, pass, nil), http.StatusAccepted)
	if e := rec.waitScans(t, 2)[1]; e.Tag != "a" {
		t.Errorf("scan by tag: tag %q, want a", e.Tag)
	}
}

// HARBOR.md §7.1: a copy into a project with auto_scan scans again, operator the caller, and the new report
// replaces the overview the source project shows; a copy elsewhere shows the report at once.
func TestScanCopy(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "stage", false, nil)
	s.CreateProject(t, "prod", false, map[string]string{"auto_scan": "true"})
	s.CreateProject(t, "other", false, nil)
	subscribe(t, s, "stage", "SCANNING_COMPLETED")
	subscribe(t, s, "prod", "SCANNING_COMPLETED")
	src := registrytest.New(t)
	src.PushImage(t, "src/app:1", image(map[string]string{harbortest.LabelSeverity: "Low"}))
	push(t, s, src, "src/app:1", "stage/app:1")
	want(t, call(t, s, http.MethodPost, "/projects/stage/repositories/app/artifacts/1/scan", admin, pass, nil), http.StatusAccepted)
	first := overviewOf(t, rec.waitScans(t, 1)[0])["report_id"]

	want(t, call(t, s, http.MethodPost, "/projects/other/repositories/app/artifacts?from=stage/app:1", admin, pass, nil), http.StatusCreated)
	if ov := apiOverview(t, s, "/projects/other/repositories/app/artifacts/1"); ov == nil || ov["report_id"] != first {
		t.Errorf("copy without auto_scan: overview %v, want the source's", ov)
	}

	want(t, call(t, s, http.MethodPost, "/projects/prod/repositories/app/artifacts?from=stage/app:1", admin, pass, nil), http.StatusCreated)
	e := rec.waitScans(t, 2)[1]
	if e.Project != "prod" || e.Tag != "1" || e.Operator != admin {
		t.Errorf("copy scan event %+v", e)
	}
	second := overviewOf(t, e)["report_id"]
	if second == first {
		t.Fatal("the copy was not scanned again")
	}
	if ov := apiOverview(t, s, "/projects/stage/repositories/app/artifacts/1"); ov["report_id"] != second || ov["severity"] != "Low" {
		t.Errorf("the source project's overview %v, want the new report %v", ov, second)
	}
}

// HARBOR.md §7.1: POST …/scan/stop is 202 (again when repeated) and the scan ends with SCANNING_STOPPED,
// shaped like a failure.
func TestScanStop(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec, harbortest.WithScanDelay(time.Hour))
	s.CreateProject(t, "p", false, nil)
	subscribe(t, s, "p", "SCANNING_STOPPED")
	src := registrytest.New(t)
	src.PushImage(t, "src/app:1", image(nil))
	push(t, s, src, "src/app:1", "p/app:1")
	const art = "/projects/p/repositories/app/artifacts/1"
	want(t, call(t, s, http.MethodPost, art+"/scan", admin, pass, nil), http.StatusAccepted)
	want(t, call(t, s, http.MethodPost, art+"/scan/stop", admin, pass, map[string]string{"scan_type": "vulnerability"}), http.StatusAccepted)
	want(t, call(t, s, http.MethodPost, art+"/scan/stop", admin, pass, map[string]string{"scan_type": "vulnerability"}), http.StatusAccepted)
	e := rec.waitScans(t, 1)[0]
	ov := overviewOf(t, e)
	if e.Type != "SCANNING_STOPPED" || e.Tag != "1" || ov["scan_status"] != "Stopped" || ov["severity"] != "" || ov["summary"] != nil {
		t.Errorf("stopped event %+v overview %v", e, ov)
	}
	if ov := apiOverview(t, s, art); ov["scan_status"] != "Stopped" {
		t.Errorf("API overview %v", ov)
	}
	// A new scan may start now.
	want(t, call(t, s, http.MethodPost, art+"/scan", admin, pass, nil), http.StatusAccepted)
}

// HARBOR.md §7.1: the scanner's own pull fires PULL_ARTIFACT before the scan's event, by digest (tag = the
// digest), as the scan's robot account robot$<project>+<prefix>-<scanner>-<uuid>; one per scanned platform of
// an index, none for the index.
func TestScannerPullFires(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "auto", false, map[string]string{"auto_scan": "true"})
	subscribe(t, s, "auto", "PULL_ARTIFACT", "SCANNING_COMPLETED")
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:1", image(nil))
	push(t, s, src, "src/app:1", "auto/app:1")
	evs := rec.wait(t, 2)
	if len(evs) != 2 || evs[0].Type != "PULL_ARTIFACT" || evs[1].Type != "SCANNING_COMPLETED" {
		t.Fatalf("events %+v, want the scanner's pull, then the scan", evs)
	}
	pull := evs[0]
	robot, ok := strings.CutPrefix(pull.Operator, "robot$auto+")
	if !ok || !strings.Contains(robot, "-harbortest-") || !uuidLike(robot[strings.Index(robot, "-harbortest-")+len("-harbortest-"):]) ||
		pull.Digest != img.Digest || pull.Tag != img.Digest || pull.Repository != "auto/app" {
		t.Errorf("scanner pull %+v", pull)
	}

	idx := src.PushIndex(t, "src/multi:1", twoPlatforms())
	push(t, s, src, "src/multi:1", "auto/multi:1")
	// Each platform is scanned at its push and maybe again at the index's (2 or 4 scans); a scan's pull is
	// recorded before its result, so once the scans are there so are their pulls.
	scans := rec.waitScans(t, 3)
	pulls := ofType(rec.wait(t, 0), "PULL_ARTIFACT")[1:]
	for _, e := range pulls {
		if (e.Digest != idx.Children[0].Digest && e.Digest != idx.Children[1].Digest) || e.Tag != e.Digest ||
			!strings.HasPrefix(e.Operator, "robot$auto+") {
			t.Errorf("pull %+v, want a platform's, by digest, by the scanner", e)
		}
	}
	if len(pulls) < len(scans)-1 {
		t.Errorf("%d scanner pulls for %d platform scans, want one each", len(pulls), len(scans)-1)
	}
}
