package promoter

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/glob"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/imageref"
)

// Verdict is what a gate (or all of them) says about entering a stage.
type Verdict string

// Verdicts, from best to worst.
const (
	// Passed: the gate holds; for the whole evaluation: promote.
	Passed Verdict = "passed"
	// Pending: not yet, and it may come without anyone fixing anything (a scan, a soak, an approval).
	Pending Verdict = "pending"
	// Blocked: not without someone acting (a failed scan, a finding, no signature, root).
	Blocked Verdict = "blocked"
)

func (v Verdict) worse(than Verdict) bool { return rank(v) > rank(than) }

func rank(v Verdict) int {
	switch v {
	case Passed:
		return 0
	case Pending:
		return 1
	}
	return 2
}

// Scan statuses Harbor reports in scan_overview (HARBOR.md §7.1).
const (
	ScanSuccess = "Success"
	ScanError   = "Error"
	ScanStopped = "Stopped"
	ScanRunning = "Running"
)

// Scan is one scan result Harbor reported for one platform digest (a SCANNING_COMPLETED, _FAILED or _STOPPED
// event, or a child's own report). There is none for an index: its merged overview is never a fact here.
type Scan struct {
	Digest   string
	Status   string
	Severity string
	// At is when the scan ended (started, while running); the newest per digest wins.
	At time.Time
}

// Platform is one platform image: an index's child, or the image itself.
type Platform struct {
	// Platform is os/arch[/variant].
	Platform string
	Digest   string
	// User is the config's User ("" when unset).
	User string
	// ExposedPorts are the config's ExposedPorts keys (9443/tcp).
	ExposedPorts []string
}

// Approval is a person's harborflow approve of the digest for one stage.
type Approval struct {
	By    string
	At    time.Time
	Stage string
}

// Facts are what is known about the exact digest an image wants to promote.
type Facts struct {
	// Digest is the image's digest: an index or a single image.
	Digest string
	// Platforms are every child of an index, or the image itself.
	Platforms []Platform
	// Scans are the scan results known for the platform digests, in any order, older ones included.
	Scans []Scan
	// ScanRequested is when harborflow asked Harbor to scan the digest; zero: never.
	ScanRequested time.Time
	// Signed says a cosign signature of the digest verifies with a configured public key; SignatureProblem
	// says why not, when it does not (no signature, tampered, another key).
	Signed           bool
	SignatureProblem string
	// BaseImage is the base the digest was built on, registry/repository@digest, as its SLSA provenance
	// attestation (cosign's sha256-<hex>.att) names it once verified with a configured public key and found to be
	// about the digest; ProvenanceProblem says why there is none (no attestation, tampered, another key, not
	// harborflow's provenance).
	BaseImage         string
	ProvenanceProblem string
	// Labels are the Harbor labels on the artifact.
	Labels []string
	// Entered is when the digest entered the stage it is leaving.
	Entered   time.Time
	Approvals []Approval
	Now       time.Time
}

// Target is the stage an image wants to enter.
type Target struct {
	Chain string
	// Stage is the stage's name (approvals are for it); From is the name of the stage the image leaves.
	Stage, From string
	Gates       config.Gates
	ScanTimeout time.Duration
}

// GateResult is one gate's verdict, why, and what would unblock it.
type GateResult struct {
	// Name is the gate's key: max_severity, signed, provenance, labels, min_age, approval, non_root, allowed_ports.
	Name    string
	Verdict Verdict
	Reason  string
	// Unblock says what would make the gate pass; empty when it passed.
	Unblock string
}

// Evaluation is every gate of a stage on one digest.
type Evaluation struct {
	// Verdict is Passed (promote) when every gate passed, Blocked when one is blocked, else Pending.
	Verdict Verdict
	Gates   []GateResult
	// RequestScan asks the stage to ask Harbor to scan the digest now (a scan result is overdue) and to record
	// when it did as Facts.ScanRequested.
	RequestScan bool
	// Next is the earliest time a gate may change without any event (a soak ends, a scan times out): evaluate
	// again then. Zero: only an event can change a verdict.
	Next time.Time
}

// Evaluate evaluates the gates of t on f. It reads nothing but its arguments.
func Evaluate(t Target, f Facts) Evaluation {
	e := Evaluation{Verdict: Passed}
	g := t.Gates
	add := func(r GateResult, next time.Time) {
		e.Gates = append(e.Gates, r)
		if r.Verdict.worse(e.Verdict) {
			e.Verdict = r.Verdict
		}
		if !next.IsZero() && (e.Next.IsZero() || next.Before(e.Next)) {
			e.Next = next
		}
	}
	if g.MaxSeverity != "" {
		r, next, request := maxSeverity(t, f)
		e.RequestScan = request
		add(r, next)
	}
	if g.Signed {
		add(signed(f), time.Time{})
	}
	if g.Provenance != nil {
		add(provenanceGate(*g.Provenance, f), time.Time{})
	}
	if len(g.Labels) > 0 {
		add(labels(g.Labels, f), time.Time{})
	}
	if g.MinAge > 0 {
		add(minAge(t, g.MinAge, f))
	}
	if g.Approval {
		add(approval(t, f), time.Time{})
	}
	if g.NonRoot {
		add(nonRoot(f), time.Time{})
	}
	if g.AllowedPorts != nil {
		add(allowedPorts(g.AllowedPorts, f), time.Time{})
	}
	return e
}

// noPlatforms is the verdict of a per-platform gate when no platform is known: never a pass.
func noPlatforms(name string, f Facts) GateResult {
	return GateResult{Name: name, Verdict: Blocked,
		Reason:  fmt.Sprintf("no platform digests known for %s", short(f.Digest)),
		Unblock: "inspect the image again so that its platforms are known"}
}

// newestScans is the newest scan per digest; of two at the same time, the later in the list.
func newestScans(scans []Scan) map[string]Scan {
	out := map[string]Scan{}
	for _, s := range scans {
		if old, ok := out[s.Digest]; !ok || !s.At.Before(old.At) {
			out[s.Digest] = s
		}
	}
	return out
}

// maxSeverity passes when every platform digest's newest scan succeeded at or below the maximum. It also says
// when to look again and whether to ask Harbor for a scan.
func maxSeverity(t Target, f Facts) (GateResult, time.Time, bool) {
	const name = "max_severity"
	if len(f.Platforms) == 0 {
		return noPlatforms(name, f), time.Time{}, false
	}
	limit, err := harbor.ParseSeverity(t.Gates.MaxSeverity)
	if err != nil { // config check refuses it; fail closed anyway
		return GateResult{Name: name, Verdict: Blocked, Reason: fmt.Sprintf("max_severity %q is not a severity", t.Gates.MaxSeverity),
			Unblock: "fix max_severity in the configuration"}, time.Time{}, false
	}
	newest := newestScans(f.Scans)
	verdict := Passed
	var reasons, unblocks, found, unscanned []string
	note := func(v Verdict, reason, unblock string) {
		if v.worse(verdict) {
			verdict = v
		}
		reasons = append(reasons, reason)
		if unblock != "" && !slices.Contains(unblocks, unblock) {
			unblocks = append(unblocks, unblock)
		}
	}
	rescan := fmt.Sprintf("scan %s again in Harbor; a successful result resumes the promotion", short(f.Digest))
	for _, p := range f.Platforms {
		s, ok := newest[p.Digest]
		switch {
		case !ok:
			unscanned = append(unscanned, p.Platform)
		case s.Status == ScanSuccess:
			sev, err := harbor.ParseSeverity(s.Severity)
			switch {
			case err != nil:
				note(Blocked, fmt.Sprintf("platform %s (%s) scan reported severity %q", p.Platform, short(p.Digest), s.Severity), rescan)
			case sev > limit:
				note(Blocked, fmt.Sprintf("%s vulnerability on %s, max %s", sev, p.Platform, limit),
					fmt.Sprintf("a build without findings above %s (or a higher max_severity)", limit))
			default:
				found = append(found, fmt.Sprintf("%s %s", p.Platform, sev))
			}
		case s.Status == ScanError:
			note(Blocked, fmt.Sprintf("platform %s (%s) scan failed", p.Platform, short(p.Digest)), rescan)
		case s.Status == ScanStopped:
			note(Blocked, fmt.Sprintf("platform %s (%s) scan was stopped", p.Platform, short(p.Digest)), rescan)
		case s.Status == ScanRunning:
			note(Pending, fmt.Sprintf("platform %s (%s) scan running since %s", p.Platform, short(p.Digest), stamp(s.At)),
				"time: the running scan's result")
		default:
			note(Blocked, fmt.Sprintf("platform %s (%s) scan status %q", p.Platform, short(p.Digest), s.Status), rescan)
		}
	}
	var next time.Time
	request := false
	if len(unscanned) > 0 {
		which := fmt.Sprintf("%s of %s", strings.Join(unscanned, ", "), short(f.Digest))
		timeout := t.ScanTimeout
		switch {
		case verdict == Blocked:
			// Another platform's scan failed or found too much: waiting for, or asking for, this one changes
			// nothing by itself.
			note(Blocked, "no scan result for "+which, "")
		case f.ScanRequested.IsZero() && f.Now.Before(f.Entered.Add(timeout)):
			next = f.Entered.Add(timeout)
			note(Pending, fmt.Sprintf("no scan result yet for %s; a scan will be requested at %s", which, stamp(next)),
				"time: Harbor's scan of every platform (a scan on push, or the one harborflow requests at "+stamp(next)+")")
		case f.ScanRequested.IsZero():
			request, next = true, f.Now.Add(timeout)
			note(Pending, fmt.Sprintf("no scan result for %s within scan_timeout %s; requesting a scan", which, dur(timeout)),
				"time: the requested scan's result, by "+stamp(next))
		case f.Now.Before(f.ScanRequested.Add(timeout)):
			next = f.ScanRequested.Add(timeout)
			note(Pending, fmt.Sprintf("no scan result yet for %s; scan requested at %s", which, stamp(f.ScanRequested)),
				"time: the requested scan's result, by "+stamp(next))
		default:
			note(Blocked, fmt.Sprintf("no scan result for %s; scan requested at %s, none within scan_timeout %s", which, stamp(f.ScanRequested), dur(timeout)),
				fmt.Sprintf("scan %s in Harbor (is a scanner configured?); a result resumes the promotion", short(f.Digest)))
		}
	}
	if verdict == Passed {
		return GateResult{Name: name, Verdict: Passed, Reason: fmt.Sprintf("every platform scanned: %s (max %s)", strings.Join(found, ", "), limit)}, time.Time{}, false
	}
	if verdict == Blocked {
		next, request = time.Time{}, false // a timeout blocked it: nothing changes with time any more
	}
	return GateResult{Name: name, Verdict: verdict, Reason: strings.Join(reasons, "; "), Unblock: strings.Join(unblocks, "; ")}, next, request
}

func signed(f Facts) GateResult {
	if f.Signed {
		return GateResult{Name: "signed", Verdict: Passed, Reason: "signature verified with a key of signing.public_keys"}
	}
	reason := f.SignatureProblem
	if reason == "" {
		reason = fmt.Sprintf("no cosign signature for %s", short(f.Digest))
	}
	return GateResult{Name: "signed", Verdict: Blocked, Reason: reason,
		Unblock: fmt.Sprintf("sign it with a key of signing.public_keys: cosign sign --key cosign.key <repository>@%s", f.Digest)}
}

// provenanceGate passes when the digest's verified provenance names a base whose repository (registry/repository)
// matches one of g.Base. A missing attestation blocks, as a missing signature does: someone has to attest it.
func provenanceGate(g config.ProvenanceGate, f Facts) GateResult {
	const name = "provenance"
	if f.BaseImage == "" {
		reason := f.ProvenanceProblem
		if reason == "" {
			reason = "no SLSA provenance attestation for " + short(f.Digest)
		}
		return GateResult{Name: name, Verdict: Blocked, Reason: reason,
			Unblock: "rebuild it with harborflow with signing.key set (the rebuilder attests what it builds), or attest it with a key of " +
				"signing.public_keys: cosign attest --key cosign.key --type slsaprovenance1 --predicate provenance.json <repository>@" + f.Digest}
	}
	base, err := imageref.Parse(f.BaseImage)
	if err != nil || base.Digest == "" {
		return GateResult{Name: name, Verdict: Blocked,
			Reason:  fmt.Sprintf("the provenance of %s names base %q, not registry/repository@digest", short(f.Digest), f.BaseImage),
			Unblock: "a build whose provenance names its base by digest (harborflow's rebuilder writes it so)"}
	}
	allowed, err := glob.CompileAll(g.Base)
	if err != nil || len(allowed) == 0 { // config check refuses it; fail closed anyway
		return GateResult{Name: name, Verdict: Blocked, Reason: fmt.Sprintf("provenance.base %q is not a list of globs", g.Base),
			Unblock: "fix provenance.base in the configuration"}
	}
	for _, p := range allowed {
		if p.Match(base.Name()) {
			return GateResult{Name: name, Verdict: Passed,
				Reason: fmt.Sprintf("provenance verified: built on %s@%s, allowed by %s", base.Name(), short(base.Digest), p)}
		}
	}
	list := strings.Join(g.Base, ", ")
	return GateResult{Name: name, Verdict: Blocked,
		Reason:  fmt.Sprintf("base %s is not from an allowed repository: allowed %s", base.Name(), list),
		Unblock: fmt.Sprintf("a build on a base from %s (or add %s to provenance.base)", list, base.Name())}
}

func labels(want []string, f Facts) GateResult {
	var missing []string
	for _, l := range want {
		if !slices.Contains(f.Labels, l) {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return GateResult{Name: "labels", Verdict: Passed, Reason: "labelled " + strings.Join(want, ", ")}
	}
	return GateResult{Name: "labels", Verdict: Blocked, Reason: "missing label " + strings.Join(missing, ", "),
		Unblock: fmt.Sprintf("add label %s to %s in Harbor", strings.Join(missing, ", "), short(f.Digest))}
}

func minAge(t Target, soak time.Duration, f Facts) (GateResult, time.Time) {
	const name = "min_age"
	if f.Entered.IsZero() {
		return GateResult{Name: name, Verdict: Blocked, Reason: fmt.Sprintf("not known when %s entered %s", short(f.Digest), t.From),
			Unblock: "promote it again into " + t.From}, time.Time{}
	}
	age := f.Now.Sub(f.Entered)
	if age >= soak {
		return GateResult{Name: name, Verdict: Passed, Reason: fmt.Sprintf("soaked %s of %s in %s", dur(age), dur(soak), t.From)}, time.Time{}
	}
	end := f.Entered.Add(soak)
	return GateResult{Name: name, Verdict: Pending, Reason: fmt.Sprintf("soaking: %s of %s", dur(max(age, 0)), dur(soak)),
		Unblock: "time: the soak ends at " + stamp(end)}, end
}

func approval(t Target, f Facts) GateResult {
	for _, a := range f.Approvals {
		if a.Stage == t.Stage {
			return GateResult{Name: "approval", Verdict: Passed, Reason: fmt.Sprintf("approved by %s at %s", a.By, stamp(a.At))}
		}
	}
	cmd := fmt.Sprintf("harborflow approve %s %s --stage %s --by NAME", t.Chain, f.Digest, t.Stage)
	return GateResult{Name: "approval", Verdict: Pending, Reason: "waiting for approval: " + cmd, Unblock: cmd}
}

// isRoot reports whether a config User runs as root: unset, root or uid 0, with any group.
func isRoot(user string) bool {
	u, _, _ := strings.Cut(user, ":")
	if u == "" || u == "root" {
		return true
	}
	n, err := strconv.Atoi(u)
	return err == nil && n == 0
}

func nonRoot(f Facts) GateResult {
	const name = "non_root"
	if len(f.Platforms) == 0 {
		return noPlatforms(name, f)
	}
	var roots, users []string
	for _, p := range f.Platforms {
		if isRoot(p.User) {
			roots = append(roots, fmt.Sprintf("runs as root (User %q on %s)", p.User, p.Platform))
		} else {
			users = append(users, fmt.Sprintf("%s on %s", p.User, p.Platform))
		}
	}
	if len(roots) > 0 {
		return GateResult{Name: name, Verdict: Blocked, Reason: strings.Join(roots, "; "),
			Unblock: "a build with USER set to a non-root user (WSO2 images: 802:802)"}
	}
	return GateResult{Name: name, Verdict: Passed, Reason: "runs as " + strings.Join(users, ", ")}
}

// normalPort is an ExposedPorts key as allowed_ports writes it: 9443 means 9443/tcp, as in Docker.
func normalPort(p string) string {
	if !strings.Contains(p, "/") {
		return p + "/tcp"
	}
	n, proto, _ := strings.Cut(p, "/")
	return n + "/" + strings.ToLower(proto)
}

func allowedPorts(allowed []string, f Facts) GateResult {
	const name = "allowed_ports"
	if len(f.Platforms) == 0 {
		return noPlatforms(name, f)
	}
	var bad, all []string
	for _, p := range f.Platforms {
		for _, port := range p.ExposedPorts {
			port = normalPort(port)
			if !slices.Contains(allowed, port) {
				if !slices.Contains(bad, port) {
					bad = append(bad, port)
				}
			} else if !slices.Contains(all, port) {
				all = append(all, port)
			}
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		var reasons []string
		for _, port := range bad {
			reasons = append(reasons, fmt.Sprintf("port %s not in allowed_ports", port))
		}
		return GateResult{Name: name, Verdict: Blocked, Reason: strings.Join(reasons, "; "),
			Unblock: fmt.Sprintf("a build that does not EXPOSE %s (or list it in allowed_ports)", strings.Join(bad, ", "))}
	}
	if len(all) == 0 {
		return GateResult{Name: name, Verdict: Passed, Reason: "exposes no ports"}
	}
	slices.Sort(all)
	return GateResult{Name: name, Verdict: Passed, Reason: "exposes only " + strings.Join(all, ", ")}
}

// short is a digest as people read it: sha256: and 12 hex digits.
func short(digest string) string {
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok || len(hex) <= 12 {
		return digest
	}
	return algo + ":" + hex[:12]
}

// stamp is a time in UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// dur is a duration as people write it: 3h, 1h30m, 10m, 45s.
func dur(d time.Duration) string {
	d = d.Round(time.Second)
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
