package retention_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/services/retention"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// old is an artifact pushed a day ago with tags; its digest is d:<first tag>.
func old(tags ...string) retention.Artifact {
	return retention.Artifact{Digest: "d:" + tags[0], Tags: tags, Pushed: now.Add(-24 * time.Hour)}
}

func deleted(p retention.Plan) []string {
	var out []string
	for _, d := range p.Deleted {
		out = append(out, d.Digest)
	}
	sort.Strings(out)
	return out
}

func reasonOf(p retention.Plan, digest string) string {
	for _, d := range slices.Concat(p.Deleted, p.Kept) {
		if d.Digest == digest {
			return d.Reason
		}
	}
	return "(not planned)"
}

func TestPlan(t *testing.T) {
	protect, err := retention.ParseProtect([]string{"latest", `^\d+\.\d+\.\d+$`})
	if err != nil {
		t.Fatal(err)
	}
	base := retention.Policy{KeepPerVersion: 3, Protect: protect, MinAge: time.Hour}
	for _, tc := range []struct {
		name    string
		policy  func(*retention.Policy)
		arts    []retention.Artifact
		deleted []string
		reasons map[string]string // digest → a part of its reason
	}{
		{
			name: "five numeric parts: the newest three builds of 4.2.0 by update level then build, never by push time",
			arts: []retention.Artifact{old("4.2.0.15.1"), old("4.2.0.16.2"), old("4.2.0.9.9"), old("4.2.0.16.3"), old("4.2.0.10.1")},
			// 16.3, 16.2, 15.1 kept; 10.1 and 9.9 go (9 < 10 as numbers).
			deleted: []string{"d:4.2.0.10.1", "d:4.2.0.9.9"},
			reasons: map[string]string{"d:4.2.0.16.3": "newest 1 of 4.2.0", "d:4.2.0.9.9": "older than the newest 3 of 4.2.0: 4.2.0.9.9 is number 5"},
		},
		{
			name:    "four numeric parts",
			arts:    []retention.Artifact{old("4.2.0.1"), old("4.2.0.2"), old("4.2.0.3"), old("4.2.0.4")},
			deleted: []string{"d:4.2.0.1"},
		},
		{
			name:    "three numeric parts are the stable tags, protected and never a build",
			arts:    []retention.Artifact{old("4.2.0"), old("4.1.0"), old("4.0.0"), old("3.2.0")},
			deleted: nil,
			reasons: map[string]string{"d:4.2.0": "no version tag"},
		},
		{
			name: "suffixes are lines of their own",
			arts: []retention.Artifact{old("4.2.0.1-rocky"), old("4.2.0.2-rocky"), old("4.2.0.3-rocky"), old("4.2.0.4-rocky"),
				old("4.2.0.1"), old("4.2.0.2")},
			deleted: []string{"d:4.2.0.1-rocky"},
			reasons: map[string]string{"d:4.2.0.1": "newest 2 of 4.2.0:", "d:4.2.0.1-rocky": "of 4.2.0-rocky"},
		},
		{
			name:    "WSO2 timestamp tags come before update levels",
			arts:    []retention.Artifact{old("3.2.0.1612370755920.2"), old("3.2.0.1"), old("3.2.0.2"), old("3.2.0.3")},
			deleted: []string{"d:3.2.0.1612370755920.2"},
		},
		{
			name: "a rolling tag on an old build protects it, and it still counts towards the newest",
			arts: []retention.Artifact{
				{Digest: "d:old", Tags: []string{"4.2.0.1.1", "latest"}, Pushed: now.Add(-48 * time.Hour)},
				old("4.2.0.2.2"), old("4.2.0.3.3"), old("4.2.0.4.4"), old("4.2.0.5.5"),
			},
			deleted: []string{"d:4.2.0.2.2"},
			reasons: map[string]string{"d:old": "protected: tag latest; else older than"},
		},
		{
			name:   "a chain's rolling tags protect too",
			policy: func(p *retention.Policy) { p.Rolling = []string{"stable"} },
			arts: []retention.Artifact{{Digest: "d:s", Tags: []string{"4.2.0.1.1", "stable"}, Pushed: now.Add(-48 * time.Hour)},
				old("4.2.0.2.2"), old("4.2.0.3.3"), old("4.2.0.4.4")},
			reasons: map[string]string{"d:s": "protected: tag stable"},
		},
		{
			name: "a chain's templated rolling tags protect what they were rendered onto",
			policy: func(p *retention.Policy) {
				p.Protect, p.RollingTemplates = nil, templates(t, "{{.Version}}", "{{.Version}}.{{.UpdateLevel}}")
			},
			arts: []retention.Artifact{
				{Digest: "d:v", Tags: []string{"4.2.0.1.1", "4.2.0"}, Pushed: now.Add(-48 * time.Hour)},
				{Digest: "d:l", Tags: []string{"4.2.0.2.2", "4.2.0.2"}, Pushed: now.Add(-48 * time.Hour)},
				old("4.2.0.3.3"), old("4.2.0.4.4"), old("4.2.0.5.5"), old("4.2.0.6.6"),
				old("test"), // no version: not retention's, and no template protects it either
			},
			deleted: []string{"d:4.2.0.3.3"},
			reasons: map[string]string{"d:v": "protected: tag 4.2.0;", "d:l": "protected: tag 4.2.0.2;", "d:test": "no version tag"},
		},
		{
			name: "the children of a kept index stay, even when tagged old",
			arts: []retention.Artifact{
				{Digest: "d:index", Tags: []string{"4.2.0.9.1"}, Pushed: now.Add(-48 * time.Hour), Children: []string{"d:4.2.0.1.1"}},
				old("4.2.0.1.1"), old("4.2.0.4.1"), old("4.2.0.5.1"), old("4.2.0.6.1"),
			},
			deleted: []string{"d:4.2.0.4.1"},
			reasons: map[string]string{"d:4.2.0.1.1": "referred to by kept d:index"},
		},
		{
			name: "an accessory goes with its subject, and stays with a kept one",
			arts: []retention.Artifact{
				old("4.2.0.1.1"), old("4.2.0.2.1"), old("4.2.0.3.1"), old("4.2.0.4.1"),
				{Digest: "d:sig-of-1", Subjects: []string{"d:4.2.0.1.1"}, Pushed: now.Add(-24 * time.Hour)},
				{Digest: "d:sig-of-4", Subjects: []string{"d:4.2.0.4.1"}, Pushed: now.Add(-24 * time.Hour)},
			},
			deleted: []string{"d:4.2.0.1.1", "d:sig-of-1"},
			reasons: map[string]string{"d:sig-of-4": "referred to by kept d:4.2.0.4.1", "d:sig-of-1": "an accessory of deleted d:4.2.0.1.1"},
		},
		{
			name: "an attestation, and an SBOM, go with their old subject and stay with a kept one",
			arts: []retention.Artifact{
				old("4.2.0.1.1"), old("4.2.0.2.1"), old("4.2.0.3.1"), old("4.2.0.4.1"),
				accessory("att", "d:4.2.0.1.1"), accessory("att", "d:4.2.0.4.1"),
				accessory("sbom", "d:4.2.0.1.1"), accessory("sbom", "d:4.2.0.4.1"),
			},
			deleted: []string{"d:4.2.0.1.1", "d:att-of-d:4.2.0.1.1", "d:sbom-of-d:4.2.0.1.1"},
			reasons: map[string]string{
				"d:att-of-d:4.2.0.1.1":  "an accessory of deleted d:4.2.0.1.1",
				"d:att-of-d:4.2.0.4.1":  "referred to by kept d:4.2.0.4.1",
				"d:sbom-of-d:4.2.0.1.1": "an accessory of deleted d:4.2.0.1.1",
				"d:sbom-of-d:4.2.0.4.1": "referred to by kept d:4.2.0.4.1",
			},
		},
		{
			name:   "an orphan attestation is never deleted alone, unless retention deleted its subject before",
			policy: func(p *retention.Policy) { p.Pruned = map[string]bool{"d:pruned": true} },
			arts: []retention.Artifact{old("4.2.0.1.1"), accessory("att", "d:elsewhere"), accessory("att", "d:pruned"),
				accessory("sbom", "d:elsewhere")},
			deleted: []string{"d:att-of-d:pruned"},
			reasons: map[string]string{
				"d:att-of-d:elsewhere":  "an accessory of d:elsewhere, which is not in this repository: never deleted alone",
				"d:sbom-of-d:elsewhere": "an accessory of d:elsewhere, which is not in this repository: never deleted alone",
				"d:att-of-d:pruned":     "an accessory of deleted d:pruned (by an earlier run)",
			},
		},
		{
			name: "the attestation of what a rolling tag points to stays",
			arts: []retention.Artifact{
				{Digest: "d:old", Tags: []string{"4.2.0.1.1", "latest"}, Pushed: now.Add(-48 * time.Hour)},
				old("4.2.0.2.2"), old("4.2.0.3.3"), old("4.2.0.4.4"), accessory("att", "d:old"),
			},
			reasons: map[string]string{"d:att-of-d:old": "referred to by kept d:old"},
		},
		{
			name: "an accessory of two builds goes only with both, an accessory of an accessory with its own",
			arts: []retention.Artifact{
				old("4.2.0.1.1"), old("4.2.0.2.1"), old("4.2.0.3.1"), old("4.2.0.4.1"), old("4.2.0.5.1"),
				{Digest: "d:sbom-of-1-and-2", Tags: []string{"sha256-1.sbom", "sha256-2.sbom"}, Subjects: []string{"d:4.2.0.1.1", "d:4.2.0.2.1"},
					Pushed: now.Add(-24 * time.Hour)},
				{Digest: "d:sbom-of-2-and-3", Tags: []string{"sha256-2.sbom", "sha256-3.sbom"}, Subjects: []string{"d:4.2.0.2.1", "d:4.2.0.3.1"},
					Pushed: now.Add(-24 * time.Hour)},
				accessory("sig", "d:att-of-d:4.2.0.1.1"), accessory("att", "d:4.2.0.1.1"),
			},
			deleted: []string{"d:4.2.0.1.1", "d:4.2.0.2.1", "d:att-of-d:4.2.0.1.1", "d:sbom-of-1-and-2", "d:sig-of-d:att-of-d:4.2.0.1.1"},
			reasons: map[string]string{
				"d:sbom-of-1-and-2":             "an accessory of deleted d:4.2.0.1.1, d:4.2.0.2.1",
				"d:sbom-of-2-and-3":             "referred to by kept d:4.2.0.3.1",
				"d:sig-of-d:att-of-d:4.2.0.1.1": "an accessory of deleted d:att-of-d:4.2.0.1.1",
			},
		},
		{
			name: "an accessory a guard keeps stays though its subject goes; accessories of each other stay",
			arts: []retention.Artifact{
				old("4.2.0.1.1"), old("4.2.0.2.1"), old("4.2.0.3.1"), old("4.2.0.4.1"),
				{Digest: "d:young-att", Tags: []string{"sha256-1.att"}, Subjects: []string{"d:4.2.0.1.1"}, Pushed: now.Add(-time.Minute)},
				{Digest: "d:a", Tags: []string{"sha256-b.att"}, Subjects: []string{"d:b"}, Pushed: now.Add(-24 * time.Hour)},
				{Digest: "d:b", Tags: []string{"sha256-a.att"}, Subjects: []string{"d:a"}, Pushed: now.Add(-24 * time.Hour)},
			},
			deleted: []string{"d:4.2.0.1.1"},
			reasons: map[string]string{
				"d:young-att": "younger than min_age (1h0m0s); else an accessory of deleted d:4.2.0.1.1",
				"d:a":         "referred to by kept d:b",
				"d:b":         "an accessory of d:a, an accessory of it in turn: never deleted alone",
			},
		},
		{
			name: "nothing younger than min_age, nor of unknown age",
			arts: []retention.Artifact{{Digest: "d:young", Tags: []string{"4.2.0.1.1"}, Pushed: now.Add(-time.Minute)},
				{Digest: "d:unknown", Tags: []string{"4.2.0.2.1"}},
				old("4.2.0.3.1"), old("4.2.0.4.1"), old("4.2.0.5.1")},
			reasons: map[string]string{"d:young": "younger than min_age (1h0m0s)", "d:unknown": "younger than min_age"},
		},
		{
			name:    "nothing a promotion is working on",
			policy:  func(p *retention.Policy) { p.Busy = map[string]bool{"d:4.2.0.1.1": true} },
			arts:    []retention.Artifact{old("4.2.0.1.1"), old("4.2.0.2.1"), old("4.2.0.3.1"), old("4.2.0.4.1")},
			reasons: map[string]string{"d:4.2.0.1.1": "a promotion is working on it"},
		},
		{
			name:    "a tag that parses as no version is not retention's to judge",
			arts:    []retention.Artifact{old("test"), old("sha256-abc.sig"), old("nightly-2026"), {Digest: "d:untagged", Pushed: now.Add(-48 * time.Hour)}},
			reasons: map[string]string{"d:test": "no version tag", "d:untagged": "no version tag"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			if tc.policy != nil {
				tc.policy(&p)
			}
			plan := retention.Make(p, tc.arts, now)
			if got := deleted(plan); !slices.Equal(got, tc.deleted) {
				t.Errorf("deleted %v, want %v\n%s", got, tc.deleted, dump(plan))
			}
			if len(plan.Deleted)+len(plan.Kept) != len(tc.arts) {
				t.Errorf("%d artifacts planned, want %d", len(plan.Deleted)+len(plan.Kept), len(tc.arts))
			}
			for digest, want := range tc.reasons {
				if r := reasonOf(plan, digest); !strings.Contains(r, want) {
					t.Errorf("%s: reason %q, want it to contain %q", digest, r, want)
				}
			}
		})
	}
}

// accessory is a cosign accessory (sig, att, sbom) of subject, pushed a day ago and tagged as cosign tags it;
// its digest is d:<kind>-of-<subject>.
func accessory(kind, subject string) retention.Artifact {
	return retention.Artifact{Digest: "d:" + kind + "-of-" + subject, Tags: []string{"sha256-" + strings.TrimPrefix(subject, "d:") + "." + kind},
		Subjects: []string{subject}, Pushed: now.Add(-24 * time.Hour)}
}

func templates(t *testing.T, ss ...string) []*imagetag.Template {
	t.Helper()
	var out []*imagetag.Template
	for _, s := range ss {
		tpl, err := imagetag.ParseTemplate(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tpl)
	}
	return out
}

func dump(p retention.Plan) string {
	var b strings.Builder
	for _, d := range p.Deleted {
		fmt.Fprintf(&b, "  delete %s %v: %s\n", d.Digest, d.Tags, d.Reason)
	}
	for _, d := range p.Kept {
		fmt.Fprintf(&b, "  keep   %s %v: %s\n", d.Digest, d.Tags, d.Reason)
	}
	return b.String()
}

// TestParseProtectTakesWhatConfigCheckTakes: every pattern Go's regexp compiles (what config check checks) is
// taken, anchored to the whole tag.
func TestParseProtectTakesWhatConfigCheckTakes(t *testing.T) {
	res, err := retention.ParseProtect([]string{`latest`, `^\d+\.\d+\.\d+$`, `latest\$`, `4\.2\.0\.1[0-9]\.\d+`})
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string][]bool{
		"latest":     {true, false, false, false},
		"latest-old": {false, false, false, false},
		"4.2.0":      {false, true, false, false},
		"latest$":    {false, false, true, false},
		"4.2.0.15.3": {false, false, false, true},
	} {
		for i, re := range res {
			if re.MatchString(tag) != want[i] {
				t.Errorf("pattern %d on %q: %v", i, tag, !want[i])
			}
		}
	}
}
