package harbortest

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/harborflow/harborflow/pkg/mediatype"
)

// The stand-in's vulnerability scanner behaves as a real Harbor 2.13.5 with a scanner adapter was seen doing
// (HARBOR.md §7.1). What it reports comes from the image itself, so that tests stay black-box: the config label
// harbortest.severity names the highest severity (default None) and harbortest.scan: error makes the scan fail.
const (
	// LabelSeverity is the OCI config label giving a scanned image's highest severity: None, Low, Medium, High
	// or Critical (also Unknown, Negligible).
	LabelSeverity = "harbortest.severity"
	// LabelScan set to "error" makes a scan of the image fail (SCANNING_FAILED).
	LabelScan = "harbortest.scan"

	// ReportMIME is the key of scan_overview (HARBOR.md §1.4, §7.1).
	ReportMIME = "application/vnd.security.vulnerability.report; version=1.1"
	// ScanType is event_data.scan.scan_type of the scanner's events.
	ScanType = "vulnerability"

	defaultScanDelay = 50 * time.Millisecond
)

// Scan statuses (Harbor's job statuses, HARBOR.md §7.1).
const (
	scanRunning = "Running"
	scanSuccess = "Success"
	scanError   = "Error"
	scanStopped = "Stopped"
)

// The scanner the reports name (scanner{name, vendor, version}).
var scannerInfo = map[string]any{"name": "harbortest", "vendor": "harborflow", "version": "1.0"}

// severities from lowest to highest (Harbor's src/pkg/scan/vuln/severity.go).
var severities = []string{"None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical"}

func severityRank(s string) int { return slices.Index(severities, s) }

// WithScanDelay sets how long a scan runs before its result appears and its event fires (default 50 ms;
// a real Harbor takes seconds, HARBOR.md §7.1).
func WithScanDelay(d time.Duration) Option { return func(o *options) { o.scanDelay = d } }

// scanReport is the vulnerability report of one digest. Reports belong to the digest, not to a project or
// repository: a rescan replaces what every project shows (HARBOR.md §7.1).
type scanReport struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"`
	Severity string    `json:"severity,omitempty"`
	CVEs     []string  `json:"cves,omitempty"` // one per vulnerability, named after its severity
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`

	stop    bool          // a stop was asked for while running
	stopped chan struct{} // closed with stop: the scan ends now
}

// overview is NativeReportSummary (HARBOR.md §1.4), of one report or merged over an index's children.
type overview struct {
	reportID   string
	status     string
	severity   string
	start, end time.Time
	cves       []string // nil: summary null
	scanner    bool
	complete   int // complete_percent
}

func (r *scanReport) overview() overview {
	o := overview{reportID: r.ID, status: r.Status, start: r.Start, end: r.End}
	switch r.Status {
	case scanSuccess:
		o.severity, o.cves, o.scanner, o.complete = r.Severity, append([]string{}, r.CVEs...), true, 100
	case scanRunning:
		o.scanner = true
	}
	return o
}

// mergeOverviews merges the children's overviews of an index as Harbor's NativeReportSummary.Merge does
// (HARBOR.md §7.1): report_id is base64 of the ids joined by "|", earliest start, latest end, highest
// severity, a CVE counted once; the status is Running when one runs, else Success when one succeeded — so an
// index with one failed child shows Success, with complete_percent the share of children that succeeded.
func mergeOverviews(parts []overview) overview {
	m := overview{start: parts[0].start, end: parts[0].end}
	var ids []string
	var succeeded int
	seen := map[string]bool{}
	statuses := map[string]bool{}
	for _, o := range parts {
		ids = append(ids, o.reportID)
		statuses[o.status] = true
		if o.start.Before(m.start) {
			m.start = o.start
		}
		if o.end.After(m.end) {
			m.end = o.end
		}
		if o.severity != "" && severityRank(o.severity) > severityRank(m.severity) {
			m.severity = o.severity
		}
		if o.cves != nil && m.cves == nil {
			m.cves = []string{}
		}
		for _, c := range o.cves {
			if !seen[c] {
				seen[c] = true
				m.cves = append(m.cves, c)
			}
		}
		m.scanner = m.scanner || o.scanner
		if o.status == scanSuccess {
			succeeded++
		}
	}
	m.reportID = base64.StdEncoding.EncodeToString([]byte(strings.Join(ids, "|")))
	switch {
	case statuses[scanRunning]:
		m.status = scanRunning
	case statuses[scanSuccess]:
		m.status = scanSuccess
	case statuses[scanError]:
		m.status = scanError
	default:
		m.status = scanStopped
	}
	m.complete = succeeded * 100 / len(parts)
	return m
}

// summary is summary{total, fixable, summary{<Severity>: n}}; every vulnerability the stand-in reports is
// fixable.
func summary(cves []string) map[string]any {
	by := map[string]int{}
	for _, c := range cves {
		by[c[strings.LastIndexByte(c, '-')+1:]]++
	}
	return map[string]any{"total": len(cves), "fixable": len(cves), "summary": by}
}

// webhook renders the overview as a scan event carries it: Harbor marshals NativeReportSummary itself, so
// severity "", summary null and complete_percent 0 are written, scanner omitted when empty; times in whole
// seconds (HARBOR.md §7.1).
func (o overview) webhook() map[string]any {
	out := map[string]any{
		"report_id": o.reportID, "scan_status": o.status, "severity": o.severity, "duration": o.duration(),
		"summary": nil, "start_time": o.start.UTC().Format(time.RFC3339), "end_time": o.end.UTC().Format(time.RFC3339),
		"complete_percent": o.complete,
	}
	if o.cves != nil {
		out["summary"] = summary(o.cves)
	}
	if o.scanner {
		out["scanner"] = scannerInfo
	}
	return out
}

// api renders the overview as the API shows it: go-swagger's model omits empty values, so a failed scan shows
// only {duration, end_time, report_id, scan_status, start_time}; times with milliseconds, a running scan's
// end_time the zero time and its duration hugely negative (HARBOR.md §7.1).
func (o overview) api() map[string]any {
	out := map[string]any{
		"report_id": o.reportID, "scan_status": o.status, "duration": o.duration(),
		"start_time": apiTime(o.start.Truncate(time.Second)), "end_time": apiTime(o.end.Truncate(time.Second)),
	}
	if o.severity != "" {
		out["severity"] = o.severity
	}
	if o.cves != nil {
		out["summary"] = summary(o.cves)
	}
	if o.scanner {
		out["scanner"] = scannerInfo
	}
	if o.complete != 0 {
		out["complete_percent"] = o.complete
	}
	return out
}

func (o overview) duration() int64 { return o.end.Unix() - o.start.Unix() }

// scanOverviewLocked is the API's scan_overview of a: its own report, or for an index the merge of its
// children's; nil when none was ever scanned (the key is then absent, HARBOR.md §7.1).
func (s *Server) scanOverviewLocked(a *artifact) map[string]any {
	var o overview
	if a.isIndex() {
		var parts []overview
		for _, ch := range a.Children {
			if r := s.st.Reports[ch.Digest]; r != nil {
				parts = append(parts, r.overview())
			}
		}
		if len(parts) == 0 {
			return nil
		}
		o = mergeOverviews(parts)
	} else {
		r := s.st.Reports[a.Digest]
		if r == nil {
			return nil
		}
		o = r.overview()
	}
	return map[string]any{ReportMIME: o.api()}
}

// acceptsReport reports whether X-Accept-Vulnerabilities (default: both of Harbor's report types) names
// ReportMIME (HARBOR.md §3.2).
func acceptsReport(r *http.Request) bool {
	h := r.Header.Get("X-Accept-Vulnerabilities")
	if h == "" {
		return true
	}
	// Each MIME type has a "; version=…" parameter, so a comma separates types.
	for _, mt := range strings.Split(h, ",") {
		if strings.EqualFold(strings.Join(strings.Fields(mt), " "), ReportMIME) {
			return true
		}
	}
	return false
}

// scanJob is one running scan of one digest.
type scanJob struct {
	reportID            string
	digest              string
	projectID           int64
	repository          string
	tag                 string // "" omits the event's tag (an index child, HARBOR.md §7.1)
	operator, requestID string
	fail                bool
	severity            string
}

// scanTarget is an artifact to scan with the tag its event names.
type scanTarget struct {
	a   *artifact
	tag string
}

// scannable reports whether the scanner scans a: an image or an index of images, not an accessory (HARBOR.md
// §7.1: accessories are not scanned).
func scannable(a *artifact) bool {
	if a.accessory() {
		return false
	}
	return a.isIndex() || a.ConfigMediaType == mediatype.OCIConfig || a.ConfigMediaType == mediatype.DockerConfig
}

// scanTargetsLocked is what scanning a means: a itself, or for an index each platform manifest it has,
// without a tag — the index itself is never scanned (HARBOR.md §1.7, §7.1). tagName is the tag a single
// image's event names.
func scanTargetsLocked(repo *repoRecord, a *artifact, tagName string) []scanTarget {
	if !a.isIndex() {
		return []scanTarget{{a, tagName}}
	}
	var out []scanTarget
	for _, ch := range a.Children {
		if c := repo.Artifacts[ch.Digest]; c != nil && scannable(c) && !c.isIndex() {
			out = append(out, scanTarget{c, ""})
		}
	}
	return out
}

// scanTag is the tag a scan event of a names when reference was pushed or requested: the tag itself, or a's
// newest tag for a digest, or none (HARBOR.md §1.4, §7.1).
func scanTag(a *artifact, reference string) string {
	if !isDigest(reference) {
		return reference
	}
	if ts := a.newestTags(); len(ts) > 0 {
		return ts[0].Name
	}
	return ""
}

// running reports whether a scan of digest is under way.
func (s *Server) runningLocked(digest string) bool {
	r := s.st.Reports[digest]
	return r != nil && r.Status == scanRunning
}

// beginScanLocked starts a report for a target and returns its job; startScans runs it.
func (s *Server) beginScanLocked(p *project, repo *repoRecord, t scanTarget, operator, requestID string) scanJob {
	id := newUUID()
	s.st.Reports[t.a.Digest] = &scanReport{ID: id, Status: scanRunning, Start: s.now(), stopped: make(chan struct{})}
	j := scanJob{
		reportID: id, digest: t.a.Digest, projectID: p.ID, repository: repo.Name, tag: t.tag,
		operator: operator, requestID: requestID, severity: "None",
	}
	labels, _ := configLabels(t.a)
	if v, _ := labels[LabelScan].(string); strings.EqualFold(v, "error") {
		j.fail = true
	}
	if v, _ := labels[LabelSeverity].(string); v != "" {
		if i := slices.IndexFunc(severities, func(sv string) bool { return strings.EqualFold(sv, v) }); i >= 0 {
			j.severity = severities[i]
		}
	}
	return j
}

// configLabels are the OCI config labels of an image (extra_attrs.config.Labels).
func configLabels(a *artifact) (map[string]any, bool) {
	cfg, ok := a.ExtraAttrs["config"].(map[string]any)
	if !ok {
		return nil, false
	}
	l, ok := cfg["Labels"].(map[string]any)
	return l, ok
}

// autoScanLocked starts the scans a push or copy of a into a project with auto_scan causes (HARBOR.md §7.1):
// none for an artifact the scanner does not scan, and a scan still running is not started again (the
// duplicate is dropped).
func (s *Server) autoScanLocked(p *project, repo *repoRecord, a *artifact, reference, operator, requestID string) []scanJob {
	if p.Metadata["auto_scan"] != "true" || !scannable(a) {
		return nil
	}
	var jobs []scanJob
	for _, t := range scanTargetsLocked(repo, a, scanTag(a, reference)) {
		if !s.runningLocked(t.a.Digest) {
			jobs = append(jobs, s.beginScanLocked(p, repo, t, operator, requestID))
		}
	}
	if len(jobs) > 0 {
		_ = s.saveLocked()
	}
	return jobs
}

// startScans runs jobs in the background; each ends after the scan delay, or when the server closes. s.mu
// must not be held.
func (s *Server) startScans(jobs []scanJob) {
	if len(jobs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scansClosed {
		return
	}
	s.scans.Add(len(jobs))
	for _, j := range jobs {
		go s.runScan(j)
	}
}

// scannerRobotPrefix is the middle of the name of the robot account Harbor makes for each scan:
// robot$<project>+<prefix>-<scanner>-<uuid> (HARBOR.md §7.1 names its shape, not the prefix).
const scannerRobotPrefix = "scanner"

// runScan fires PULL_ARTIFACT for the scanner's own pull, waits the scan delay, then records the result and
// fires SCANNING_COMPLETED, SCANNING_FAILED or SCANNING_STOPPED. Scan events carry no date_created and have
// scan_type "vulnerability" (HARBOR.md §7.1).
func (s *Server) runScan(j scanJob) {
	defer s.scans.Done()
	s.mu.Lock()
	var stopped chan struct{}
	if r := s.st.Reports[j.digest]; r != nil && r.ID == j.reportID {
		stopped = r.stopped
	}
	pull, pulled := s.scannerPullLocked(j)
	s.mu.Unlock()
	if pulled {
		s.fire(pull)
	}
	wait := time.NewTimer(s.opts.scanDelay)
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-stopped: // nil when the report is gone: never
	case <-s.scanStop:
		return
	}
	s.mu.Lock()
	r := s.st.Reports[j.digest]
	p := s.st.Projects[j.projectID]
	if r == nil || r.ID != j.reportID || r.Status != scanRunning {
		s.mu.Unlock()
		return
	}
	r.End = s.now()
	typ := "SCANNING_COMPLETED"
	switch {
	case r.stop:
		r.Status, typ = scanStopped, "SCANNING_STOPPED"
	case j.fail:
		r.Status, typ = scanError, "SCANNING_FAILED"
	default:
		r.Status, r.Severity = scanSuccess, j.severity
		if j.severity != "None" {
			r.CVEs = []string{"CVE-0000-" + j.severity}
		}
	}
	_ = s.saveLocked()
	if p == nil {
		s.mu.Unlock()
		return
	}
	ev := Event{
		Type: typ, OccurAt: r.End, Operator: j.operator, RequestID: j.requestID,
		ProjectID: p.ID, Project: p.Name, Public: p.public(), Repository: j.repository,
		Digest: j.digest, Tag: j.tag, ScanType: ScanType,
		ScanOverview: map[string]any{ReportMIME: r.overview().webhook()},
	}
	s.mu.Unlock()
	s.fire(ev)
}

// scannerPullLocked is the PULL_ARTIFACT of the scanner pulling what j scans, by digest, as its robot
// account (HARBOR.md §7.1: tag = the digest). Only the event: the stand-in's scanner reads the artifact's
// config labels, not the registry, and pull times stay as they were.
func (s *Server) scannerPullLocked(j scanJob) (Event, bool) {
	p := s.st.Projects[j.projectID]
	if p == nil {
		return Event{}, false
	}
	repo := p.Repos[j.repository]
	if repo == nil || repo.Artifacts[j.digest] == nil {
		return Event{}, false
	}
	robot := "robot$" + p.Name + "+" + scannerRobotPrefix + "-" + scannerInfo["name"].(string) + "-" + newUUID()
	return Event{
		Type: "PULL_ARTIFACT", OccurAt: s.now(), Operator: robot, RequestID: newUUID(),
		ProjectID: p.ID, Project: p.Name, Public: p.public(),
		Repository: repo.Name, RepoCreated: repo.Created, Digest: j.digest, Tag: j.digest,
	}, true
}

// stopScans ends the background scans: no result is recorded for those still running.
func (s *Server) stopScans() {
	s.mu.Lock()
	if !s.scansClosed {
		s.scansClosed = true
		close(s.scanStop)
	}
	s.mu.Unlock()
	s.scans.Wait()
}

// scanRequest is the optional body of a scan request.
type scanRequest struct {
	ScanType string `json:"scan_type"`
}

func readScanRequest(c *call) *apiError {
	if c.r.ContentLength == 0 {
		return nil
	}
	var req scanRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.ScanType != "" && req.ScanType != ScanType {
		return errBadRequest("the configured scanner harbortest does not support scan type %s", req.ScanType)
	}
	return nil
}

// scanArtifact is POST …/artifacts/{ref}/scan: 202 with an empty body in any project; 409 while a scan of it
// is pending; 400 for what the scanner does not scan, an accessory among them (HARBOR.md §7.1).
func (s *Server) scanArtifact(c *call) *apiError {
	if err := readScanRequest(c); err != nil {
		return err
	}
	s.mu.Lock()
	p, repo, a, err := s.artifactFor(c, accessWrite)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if !scannable(a) {
		s.mu.Unlock()
		return errBadRequest("the configured scanner harbortest does not support scanning artifact with mime type %s", a.ManifestMediaType)
	}
	targets := scanTargetsLocked(repo, a, scanTag(a, c.r.PathValue("ref")))
	for _, t := range targets {
		if s.runningLocked(t.a.Digest) {
			s.mu.Unlock()
			return errConflict("a previous scan process is Pending")
		}
	}
	var jobs []scanJob
	for _, t := range targets {
		jobs = append(jobs, s.beginScanLocked(p, repo, t, c.user.name, c.reqID))
	}
	_ = s.saveLocked()
	s.mu.Unlock()
	s.startScans(jobs)
	c.w.WriteHeader(http.StatusAccepted)
	return nil
}

// stopScan is POST …/artifacts/{ref}/scan/stop: 202, again 202 when repeated; the running scans end as
// Stopped, with SCANNING_STOPPED (HARBOR.md §7.1).
func (s *Server) stopScan(c *call) *apiError {
	if err := readScanRequest(c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, repo, a, err := s.artifactFor(c, accessWrite)
	if err != nil {
		return err
	}
	for _, t := range scanTargetsLocked(repo, a, "") {
		if r := s.st.Reports[t.a.Digest]; r != nil && r.Status == scanRunning && !r.stop {
			r.stop = true
			close(r.stopped)
		}
	}
	c.w.WriteHeader(http.StatusAccepted)
	return nil
}
