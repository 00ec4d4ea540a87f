package promoter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/services/promoter"
)

var (
	now   = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	index = "sha256:" + strings.Repeat("0", 64)
	amd   = "sha256:" + strings.Repeat("a", 64)
	arm   = "sha256:" + strings.Repeat("b", 64)
)

func target(g config.Gates) promoter.Target {
	return promoter.Target{Chain: "acme-am", Stage: "prod", From: "staging", Gates: g, ScanTimeout: 10 * time.Minute}
}

// facts is a clean two-platform index that entered staging an hour ago, both platforms scanned None.
func facts() promoter.Facts {
	return promoter.Facts{
		Digest: index,
		Platforms: []promoter.Platform{
			{Platform: "linux/amd64", Digest: amd, User: "802:802", ExposedPorts: []string{"9443/tcp"}},
			{Platform: "linux/arm64", Digest: arm, User: "wso2carbon", ExposedPorts: []string{"9443/tcp", "8243/tcp"}},
		},
		Scans: []promoter.Scan{
			{Digest: amd, Status: "Success", Severity: "None", At: now.Add(-50 * time.Minute)},
			{Digest: arm, Status: "Success", Severity: "None", At: now.Add(-50 * time.Minute)},
		},
		Entered: now.Add(-time.Hour),
		Now:     now,
	}
}

func gate(t *testing.T, e promoter.Evaluation, name string) promoter.GateResult {
	t.Helper()
	for _, g := range e.Gates {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no %s in %+v", name, e.Gates)
	return promoter.GateResult{}
}

type gateCase struct {
	name    string
	gates   config.Gates
	change  func(f *promoter.Facts)
	verdict promoter.Verdict
	reason  string // the whole reason
	unblock string // a part of it
	next    time.Time
	request bool
}

func runGateCases(t *testing.T, gateName string, cases []gateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := facts()
			if tc.change != nil {
				tc.change(&f)
			}
			e := promoter.Evaluate(target(tc.gates), f)
			g := gate(t, e, gateName)
			if g.Verdict != tc.verdict || g.Reason != tc.reason {
				t.Errorf("%s = %s %q\nwant     %s %q", gateName, g.Verdict, g.Reason, tc.verdict, tc.reason)
			}
			if tc.verdict != promoter.Passed && (g.Unblock == "" || !strings.Contains(g.Unblock, tc.unblock)) {
				t.Errorf("unblock = %q, want it to contain %q", g.Unblock, tc.unblock)
			}
			if tc.verdict == promoter.Passed && g.Unblock != "" {
				t.Errorf("a passed gate says what would unblock it: %q", g.Unblock)
			}
			if !e.Next.Equal(tc.next) {
				t.Errorf("next = %s, want %s", e.Next, tc.next)
			}
			if e.RequestScan != tc.request {
				t.Errorf("request scan = %v, want %v", e.RequestScan, tc.request)
			}
			if e.Verdict != tc.verdict {
				t.Errorf("overall verdict = %s with one gate %s", e.Verdict, tc.verdict)
			}
		})
	}
}

func scans(s ...promoter.Scan) func(f *promoter.Facts) {
	return func(f *promoter.Facts) { f.Scans = s }
}

func TestMaxSeverity(t *testing.T) {
	medium := config.Gates{MaxSeverity: "Medium"}
	at := func(m int) time.Time { return now.Add(time.Duration(-m) * time.Minute) }
	runGateCases(t, "max_severity", []gateCase{
		{name: "every platform clean", gates: medium, verdict: promoter.Passed,
			reason: "every platform scanned: linux/amd64 None, linux/arm64 None (max Medium)"},
		{name: "at the maximum", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "Medium", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "Low", At: at(5)}),
			verdict: promoter.Passed, reason: "every platform scanned: linux/amd64 Medium, linux/arm64 Low (max Medium)"},
		{name: "High finding", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "High", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "None", At: at(5)}),
			verdict: promoter.Blocked, reason: "High vulnerability on linux/amd64, max Medium", unblock: "a build without findings above Medium"},
		{name: "Unknown is above None", gates: config.Gates{MaxSeverity: "None"}, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "Unknown", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "None", At: at(5)}),
			verdict: promoter.Blocked, reason: "Unknown vulnerability on linux/amd64, max None", unblock: "above None"},
		{name: "Negligible is below Low", gates: config.Gates{MaxSeverity: "Low"}, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "Negligible", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "Unknown", At: at(5)}),
			verdict: promoter.Passed, reason: "every platform scanned: linux/amd64 Negligible, linux/arm64 Unknown (max Low)"},
		{name: "Critical is above High", gates: config.Gates{MaxSeverity: "High"}, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "Critical", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "High", At: at(5)}),
			verdict: promoter.Blocked, reason: "Critical vulnerability on linux/amd64, max High", unblock: "above High"},
		{name: "one platform failed, the other clean", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "None", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Error", At: at(5)}),
			verdict: promoter.Blocked, reason: "platform linux/arm64 (sha256:bbbbbbbbbbbb) scan failed", unblock: "scan sha256:000000000000 again in Harbor"},
		{name: "one platform stopped", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Stopped", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "None", At: at(5)}),
			verdict: promoter.Blocked, reason: "platform linux/amd64 (sha256:aaaaaaaaaaaa) scan was stopped", unblock: "scan sha256:000000000000 again"},
		{name: "success with no severity", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", At: at(5)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "None", At: at(5)}),
			verdict: promoter.Blocked, reason: `platform linux/amd64 (sha256:aaaaaaaaaaaa) scan reported severity ""`, unblock: "again in Harbor"},
		{name: "newest result wins over an older failure", gates: medium, change: scans(
			promoter.Scan{Digest: arm, Status: "Success", Severity: "Low", At: at(2)},
			promoter.Scan{Digest: arm, Status: "Error", At: at(30)},
			promoter.Scan{Digest: amd, Status: "Success", Severity: "None", At: at(2)}),
			verdict: promoter.Passed, reason: "every platform scanned: linux/amd64 None, linux/arm64 Low (max Medium)"},
		{name: "newest result wins over an older clean one", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "None", At: at(30)},
			promoter.Scan{Digest: amd, Status: "Success", Severity: "High", At: at(2)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "None", At: at(2)}),
			verdict: promoter.Blocked, reason: "High vulnerability on linux/amd64, max Medium", unblock: "above Medium"},
		{name: "a rescan running", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "None", At: at(30)},
			promoter.Scan{Digest: amd, Status: "Running", At: at(1)},
			promoter.Scan{Digest: arm, Status: "Success", Severity: "None", At: at(2)}),
			verdict: promoter.Pending, reason: "platform linux/amd64 (sha256:aaaaaaaaaaaa) scan running since 2026-12-01T11:59:00Z"},
		{name: "a scan of another digest does not count", gates: medium, change: scans(
			promoter.Scan{Digest: amd, Status: "Success", Severity: "None", At: at(2)},
			promoter.Scan{Digest: index, Status: "Success", Severity: "None", At: at(2)}),
			verdict: promoter.Pending, reason: "no scan result for linux/arm64 of sha256:000000000000 within scan_timeout 10m; requesting a scan",
			next: now.Add(10 * time.Minute), request: true},
		{name: "one platform unscanned, within scan_timeout", gates: medium, change: func(f *promoter.Facts) {
			f.Entered = now.Add(-4 * time.Minute)
			f.Scans = f.Scans[:1]
		}, verdict: promoter.Pending,
			reason: "no scan result yet for linux/arm64 of sha256:000000000000; a scan will be requested at 2026-12-01T12:06:00Z",
			next:   now.Add(6 * time.Minute)},
		{name: "unscanned past scan_timeout: request a scan", gates: medium, change: scans(),
			verdict: promoter.Pending, reason: "no scan result for linux/amd64, linux/arm64 of sha256:000000000000 within scan_timeout 10m; requesting a scan",
			next: now.Add(10 * time.Minute), request: true},
		{name: "scan requested, still within scan_timeout", gates: medium, change: func(f *promoter.Facts) {
			f.Scans = nil
			f.ScanRequested = now.Add(-3 * time.Minute)
		}, verdict: promoter.Pending,
			reason: "no scan result yet for linux/amd64, linux/arm64 of sha256:000000000000; scan requested at 2026-12-01T11:57:00Z",
			next:   now.Add(7 * time.Minute)},
		{name: "scan requested, none after another scan_timeout: blocked", gates: medium, change: func(f *promoter.Facts) {
			f.Scans = f.Scans[1:]
			f.ScanRequested = now.Add(-10 * time.Minute)
		}, verdict: promoter.Blocked,
			reason:  "no scan result for linux/amd64 of sha256:000000000000; scan requested at 2026-12-01T11:50:00Z, none within scan_timeout 10m",
			unblock: "is a scanner configured?"},
		{name: "failed and unscanned: blocked, no scan asked for", gates: medium, change: scans(
			promoter.Scan{Digest: arm, Status: "Error", At: at(2)}),
			verdict: promoter.Blocked,
			reason:  "platform linux/arm64 (sha256:bbbbbbbbbbbb) scan failed; no scan result for linux/amd64 of sha256:000000000000",
			unblock: "scan sha256:000000000000 again"},
		{name: "no platforms known", gates: medium, change: func(f *promoter.Facts) { f.Platforms = nil },
			verdict: promoter.Blocked, reason: "no platform digests known for sha256:000000000000", unblock: "inspect the image again"},
	})
}

func TestSigned(t *testing.T) {
	runGateCases(t, "signed", []gateCase{
		{name: "signed", gates: config.Gates{Signed: true}, change: func(f *promoter.Facts) { f.Signed = true },
			verdict: promoter.Passed, reason: "signature verified with a key of signing.public_keys"},
		{name: "unsigned", gates: config.Gates{Signed: true}, verdict: promoter.Blocked,
			reason: "no cosign signature for sha256:000000000000", unblock: "cosign sign --key cosign.key <repository>@" + index},
		{name: "signed by another key", gates: config.Gates{Signed: true}, verdict: promoter.Blocked,
			change: func(f *promoter.Facts) {
				f.SignatureProblem = "sha256:000000000000 is signed, but by no key of signing.public_keys"
			},
			reason: "sha256:000000000000 is signed, but by no key of signing.public_keys"},
	})
}

func TestLabels(t *testing.T) {
	g := config.Gates{Labels: []string{"qa-approved", "sec-approved"}}
	runGateCases(t, "labels", []gateCase{
		{name: "all there", gates: g, change: func(f *promoter.Facts) { f.Labels = []string{"sec-approved", "other", "qa-approved"} },
			verdict: promoter.Passed, reason: "labelled qa-approved, sec-approved"},
		{name: "one missing", gates: g, change: func(f *promoter.Facts) { f.Labels = []string{"qa-approved"} },
			verdict: promoter.Blocked, reason: "missing label sec-approved", unblock: "add label sec-approved to sha256:000000000000 in Harbor"},
		{name: "none", gates: g, verdict: promoter.Blocked, reason: "missing label qa-approved, sec-approved", unblock: "add label qa-approved, sec-approved"},
	})
}

func TestMinAge(t *testing.T) {
	g := config.Gates{MinAge: 24 * time.Hour}
	runGateCases(t, "min_age", []gateCase{
		{name: "soaking", gates: g, change: func(f *promoter.Facts) { f.Entered = now.Add(-3 * time.Hour) },
			verdict: promoter.Pending, reason: "soaking: 3h of 24h", unblock: "the soak ends at 2026-12-02T09:00:00Z",
			next: now.Add(21 * time.Hour)},
		{name: "soaking, minutes", gates: config.Gates{MinAge: 2 * time.Hour}, change: func(f *promoter.Facts) { f.Entered = now.Add(-90 * time.Minute) },
			verdict: promoter.Pending, reason: "soaking: 1h30m of 2h", unblock: "2026-12-01T12:30:00Z", next: now.Add(30 * time.Minute)},
		{name: "soaked exactly", gates: g, change: func(f *promoter.Facts) { f.Entered = now.Add(-24 * time.Hour) },
			verdict: promoter.Passed, reason: "soaked 24h of 24h in staging"},
		{name: "soaked", gates: g, change: func(f *promoter.Facts) { f.Entered = now.Add(-30 * time.Hour) },
			verdict: promoter.Passed, reason: "soaked 30h of 24h in staging"},
		{name: "entry time unknown", gates: g, change: func(f *promoter.Facts) { f.Entered = time.Time{} },
			verdict: promoter.Blocked, reason: "not known when sha256:000000000000 entered staging", unblock: "staging"},
	})
}

func TestApproval(t *testing.T) {
	g := config.Gates{Approval: true}
	cmd := "harborflow approve acme-am " + index + " --stage prod --by NAME"
	runGateCases(t, "approval", []gateCase{
		{name: "none", gates: g, verdict: promoter.Pending, reason: "waiting for approval: " + cmd, unblock: cmd},
		{name: "approved for another stage does not count", gates: g, change: func(f *promoter.Facts) {
			f.Approvals = []promoter.Approval{{By: "alice", At: now.Add(-time.Hour), Stage: "staging"}}
		}, verdict: promoter.Pending, reason: "waiting for approval: " + cmd, unblock: cmd},
		{name: "approved for this stage", gates: g, change: func(f *promoter.Facts) {
			f.Approvals = []promoter.Approval{{By: "alice", At: now.Add(-2 * time.Hour), Stage: "staging"}, {By: "bob", At: now.Add(-time.Hour), Stage: "prod"}}
		}, verdict: promoter.Passed, reason: "approved by bob at 2026-12-01T11:00:00Z"},
	})
}

func TestNonRoot(t *testing.T) {
	g := config.Gates{NonRoot: true}
	user := func(u string) func(f *promoter.Facts) { return func(f *promoter.Facts) { f.Platforms[0].User = u } }
	cases := []gateCase{
		{name: "non-root everywhere", gates: g, verdict: promoter.Passed, reason: "runs as 802:802 on linux/amd64, wso2carbon on linux/arm64"},
		{name: "uid 802, gid 0", gates: g, change: user("802:0"), verdict: promoter.Passed, reason: "runs as 802:0 on linux/amd64, wso2carbon on linux/arm64"},
		{name: "root on both", gates: g, change: func(f *promoter.Facts) { f.Platforms[0].User, f.Platforms[1].User = "", "0" },
			verdict: promoter.Blocked, reason: `runs as root (User "" on linux/amd64); runs as root (User "0" on linux/arm64)`, unblock: "USER"},
	}
	for _, u := range []string{"", "root", "0", "0:0", "root:root", "root:802", "0:802", "00"} {
		cases = append(cases, gateCase{name: "User " + u, gates: g, change: user(u), verdict: promoter.Blocked,
			reason: `runs as root (User "` + u + `" on linux/amd64)`, unblock: "non-root user"})
	}
	runGateCases(t, "non_root", cases)
}

func TestAllowedPorts(t *testing.T) {
	g := config.Gates{AllowedPorts: []string{"9443/tcp", "8243/tcp"}}
	ports := func(arm ...string) func(f *promoter.Facts) {
		return func(f *promoter.Facts) { f.Platforms[1].ExposedPorts = arm }
	}
	runGateCases(t, "allowed_ports", []gateCase{
		{name: "only allowed", gates: g, verdict: promoter.Passed, reason: "exposes only 8243/tcp, 9443/tcp"},
		{name: "ssh on one platform", gates: g, change: ports("9443/tcp", "22/tcp"),
			verdict: promoter.Blocked, reason: "port 22/tcp not in allowed_ports", unblock: "EXPOSE 22/tcp"},
		{name: "udp is not tcp", gates: g, change: ports("9443/udp"),
			verdict: promoter.Blocked, reason: "port 9443/udp not in allowed_ports", unblock: "9443/udp"},
		{name: "two unlisted", gates: g, change: ports("9763/tcp", "22/tcp"),
			verdict: promoter.Blocked, reason: "port 22/tcp not in allowed_ports; port 9763/tcp not in allowed_ports", unblock: "22/tcp, 9763/tcp"},
		{name: "a bare port is tcp", gates: g, change: ports("8243"), verdict: promoter.Passed, reason: "exposes only 8243/tcp, 9443/tcp"},
		{name: "nothing exposed", gates: g, change: func(f *promoter.Facts) { f.Platforms[0].ExposedPorts, f.Platforms[1].ExposedPorts = nil, nil },
			verdict: promoter.Passed, reason: "exposes no ports"},
		{name: "set and empty allows none", gates: config.Gates{AllowedPorts: []string{}},
			verdict: promoter.Blocked, reason: "port 8243/tcp not in allowed_ports; port 9443/tcp not in allowed_ports", unblock: "8243/tcp, 9443/tcp"},
	})
}

func TestOverallVerdictAndNext(t *testing.T) {
	prod := config.Gates{MaxSeverity: "Low", Signed: true, Labels: []string{"qa-approved"}, MinAge: 24 * time.Hour, Approval: true}
	allPass := func(f *promoter.Facts) {
		f.Signed, f.Labels, f.Entered = true, []string{"qa-approved"}, now.Add(-25*time.Hour)
		f.Approvals = []promoter.Approval{{By: "alice", At: now, Stage: "prod"}}
	}
	for _, tc := range []struct {
		name    string
		gates   config.Gates
		change  func(f *promoter.Facts)
		verdict promoter.Verdict
		next    time.Time
	}{
		{"no gates: promote", config.Gates{}, nil, promoter.Passed, time.Time{}},
		{"every gate passed: promote", prod, allPass, promoter.Passed, time.Time{}},
		{"one pending: pending", prod, func(f *promoter.Facts) { allPass(f); f.Approvals = nil }, promoter.Pending, time.Time{}},
		{"one blocked beats pending", prod, func(f *promoter.Facts) { allPass(f); f.Approvals, f.Signed = nil, false }, promoter.Blocked, time.Time{}},
		{"soak and scan timeout: the earlier", prod, func(f *promoter.Facts) {
			allPass(f)
			f.Entered = now.Add(-23*time.Hour - 55*time.Minute)
			f.Scans = nil
			f.ScanRequested = now.Add(-2 * time.Minute)
		}, promoter.Pending, now.Add(5 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := facts()
			if tc.change != nil {
				tc.change(&f)
			}
			e := promoter.Evaluate(target(tc.gates), f)
			if e.Verdict != tc.verdict || !e.Next.Equal(tc.next) {
				t.Errorf("verdict %s next %s, want %s %s: %+v", e.Verdict, e.Next, tc.verdict, tc.next, e.Gates)
			}
		})
	}
}

func TestProvenance(t *testing.T) {
	wso2 := config.Gates{Provenance: &config.ProvenanceGate{Base: []string{"registry.wso2.com/**", "harbor.acme.example/base/jdk-*"}}}
	baseDigest := "sha256:" + strings.Repeat("c", 64)
	builtOn := func(base string) func(f *promoter.Facts) {
		return func(f *promoter.Facts) { f.BaseImage = base }
	}
	attest := "cosign attest --key cosign.key --type slsaprovenance1 --predicate provenance.json <repository>@" + index
	runGateCases(t, "provenance", []gateCase{
		{name: "base from an allowed registry", gates: wso2, change: builtOn("registry.wso2.com/wso2-apim/am@" + baseDigest),
			verdict: promoter.Passed,
			reason:  "provenance verified: built on registry.wso2.com/wso2-apim/am@sha256:cccccccccccc, allowed by registry.wso2.com/**"},
		{name: "base matching the second glob", gates: wso2, change: builtOn("harbor.acme.example/base/jdk-21@" + baseDigest),
			verdict: promoter.Passed,
			reason:  "provenance verified: built on harbor.acme.example/base/jdk-21@sha256:cccccccccccc, allowed by harbor.acme.example/base/jdk-*"},
		{name: "base from another repository", gates: wso2, change: builtOn("docker.io/library/eclipse-temurin@" + baseDigest),
			verdict: promoter.Blocked,
			reason:  "base docker.io/library/eclipse-temurin is not from an allowed repository: allowed registry.wso2.com/**, harbor.acme.example/base/jdk-*",
			unblock: "or add docker.io/library/eclipse-temurin to provenance.base"},
		{name: "a glob matches within one path segment only", gates: wso2, change: builtOn("harbor.acme.example/base/jdk-21/extra@" + baseDigest),
			verdict: promoter.Blocked,
			reason:  "base harbor.acme.example/base/jdk-21/extra is not from an allowed repository: allowed registry.wso2.com/**, harbor.acme.example/base/jdk-*",
			unblock: "a build on a base from registry.wso2.com/**, harbor.acme.example/base/jdk-*"},
		{name: "the registry is part of the repository", gates: wso2, change: builtOn("mirror.example/registry.wso2.com/am@" + baseDigest),
			verdict: promoter.Blocked,
			reason:  "base mirror.example/registry.wso2.com/am is not from an allowed repository: allowed registry.wso2.com/**, harbor.acme.example/base/jdk-*",
			unblock: "provenance.base"},
		{name: "not attested", gates: wso2, verdict: promoter.Blocked,
			reason: "no SLSA provenance attestation for sha256:000000000000", unblock: attest},
		{name: "attested by another key", gates: wso2, verdict: promoter.Blocked,
			change: func(f *promoter.Facts) {
				f.ProvenanceProblem = "sha256:000000000000 is attested, but by no key of signing.public_keys"
			},
			reason: "sha256:000000000000 is attested, but by no key of signing.public_keys", unblock: attest},
		{name: "tampered", gates: wso2, verdict: promoter.Blocked,
			change: func(f *promoter.Facts) {
				f.ProvenanceProblem = "the provenance attestation of sha256:000000000000 does not match it (tampered, or made for another image)"
			},
			reason: "the provenance attestation of sha256:000000000000 does not match it (tampered, or made for another image)", unblock: attest},
		{name: "a problem wins over a base", gates: wso2, verdict: promoter.Blocked,
			change: func(f *promoter.Facts) {
				f.ProvenanceProblem = "the provenance attestation of sha256:000000000000 is not harborflow's SLSA provenance: invalid provenance"
			},
			reason: "the provenance attestation of sha256:000000000000 is not harborflow's SLSA provenance: invalid provenance", unblock: "rebuild it with harborflow"},
		{name: "base without a digest", gates: wso2, change: builtOn("registry.wso2.com/wso2-apim/am:4.2.0"),
			verdict: promoter.Blocked,
			reason:  `the provenance of sha256:000000000000 names base "registry.wso2.com/wso2-apim/am:4.2.0", not registry/repository@digest`,
			unblock: "names its base by digest"},
		{name: "a glob config check refuses fails closed", gates: config.Gates{Provenance: &config.ProvenanceGate{Base: []string{""}}},
			change: builtOn("registry.wso2.com/wso2-apim/am@" + baseDigest), verdict: promoter.Blocked,
			reason: `provenance.base [""] is not a list of globs`, unblock: "fix provenance.base"},
		{name: "no glob fails closed", gates: config.Gates{Provenance: &config.ProvenanceGate{}},
			change: builtOn("registry.wso2.com/wso2-apim/am@" + baseDigest), verdict: promoter.Blocked,
			reason: `provenance.base [] is not a list of globs`, unblock: "fix provenance.base"},
	})
}

func TestEveryConfiguredGateReportedInOrder(t *testing.T) {
	g := config.Gates{MaxSeverity: "Low", Signed: true, Provenance: &config.ProvenanceGate{Base: []string{"registry.wso2.com/**"}},
		Labels: []string{"x"}, MinAge: time.Hour, Approval: true, NonRoot: true, AllowedPorts: []string{"9443/tcp"}}
	e := promoter.Evaluate(target(g), facts())
	var names []string
	for _, r := range e.Gates {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, " "); got != "max_severity signed provenance labels min_age approval non_root allowed_ports" {
		t.Errorf("gates = %s", got)
	}
}
