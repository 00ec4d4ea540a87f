package retention

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/harborflow/harborflow/pkg/imagetag"
)

// Artifact is one artifact of a repository as the planner sees it.
type Artifact struct {
	Digest string
	Tags   []string
	// Pushed is when the artifact entered the repository (min_age); zero when unknown, which counts as young.
	Pushed time.Time
	// Children are the digests an index refers to; Subjects are the digests an accessory (a signature, an
	// attestation, an SBOM) belongs to, none for an image. An accessory is deleted with its subjects, never
	// alone: most have one; an SBOM identical for two builds is tagged for both.
	Children []string
	Subjects []string
}

// Policy is what the planner applies to one repository.
type Policy struct {
	// KeepPerVersion is how many builds of each version line are kept, newest first.
	KeepPerVersion int
	// Protect are the patterns of tags never deleted, each matched against the whole tag.
	Protect []*regexp.Regexp
	// Rolling are the literal rolling tags of every promotion chain (latest): what they point to is kept.
	Rolling []string
	// RollingTemplates are the templated rolling tags of every chain ({{.Version}}, {{.Version}}.{{.UpdateLevel}}):
	// an artifact one of them rendered over its own version tag points to is kept (4.2.0 on 4.2.0.16.3).
	RollingTemplates []*imagetag.Template
	// Busy are the digests a promotion is working on.
	Busy map[string]bool
	// MinAge: nothing younger is deleted.
	MinAge time.Duration
	// Pruned are digests retention deleted from the repository before (its records): an accessory of one, left
	// behind by a run that stopped between the subject's deletion and the accessory's, goes too.
	Pruned map[string]bool
}

// Decision is the plan for one artifact: kept or deleted, and the rule that decided.
type Decision struct {
	Digest string
	Tags   []string
	Delete bool
	Reason string
	// Subjects are an accessory's subjects: a deleted accessory is deleted only after those the plan deletes.
	Subjects []string
}

// Plan is what retention does to one repository: each artifact's decision, the deleted first, each part in
// digest order.
type Plan struct {
	Deleted, Kept []Decision
}

// Reasons, each followed by details.
const (
	reasonNewest    = "newest"                // one of the newest keep_per_version of its version line
	reasonOlder     = "older than the newest" // deleted
	reasonProtected = "protected"             // a tag matches protect, or is a rolling tag
	reasonNoVersion = "no version tag"        // not retention's to judge
	reasonChild     = "referred to by kept"   // a child or accessory of a kept artifact
	reasonWith      = "an accessory of deleted"
	reasonBusy      = "a promotion is working on it"
	reasonYoung     = "younger than min_age"
)

// ParseProtect compiles protect patterns, each matched against the whole tag.
func ParseProtect(patterns []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		// Anchored as a whole: ^ and $ of the pattern itself are harmless inside the group, so a pattern
		// config check compiles compiles here too.
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return nil, fmt.Errorf("protect pattern %q: %w", p, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// Make plans one repository's artifacts under policy p at time now.
func Make(p Policy, arts []Artifact, now time.Time) Plan {
	type candidate struct {
		i   int
		tag *imagetag.Tag // its newest fixed version tag
	}
	newestTags := make([]imagetag.Tag, len(arts))
	decided := make([]Decision, len(arts))
	lines := map[string][]candidate{}
	for i, a := range arts {
		decided[i] = Decision{Digest: a.Digest, Tags: a.Tags, Subjects: a.Subjects}
		if len(a.Subjects) > 0 {
			continue // decided with its subjects, last
		}
		var newest imagetag.Tag
		found := false
		for _, s := range a.Tags {
			t, err := imagetag.Parse(s)
			if err != nil || t.Moving() {
				continue
			}
			if !found || imagetag.Compare(t, newest) > 0 {
				newest, found = t, true
			}
		}
		if !found {
			decided[i].Reason = reasonNoVersion
			continue
		}
		newestTags[i] = newest
		lines[newest.Line()] = append(lines[newest.Line()], candidate{i: i, tag: &newestTags[i]})
	}
	// Each line newest first (update level, then build; the digest breaks a tie of equal tags).
	for line, cs := range lines {
		slices.SortFunc(cs, func(a, b candidate) int {
			if c := imagetag.Compare(*b.tag, *a.tag); c != 0 {
				return c
			}
			return strings.Compare(arts[a.i].Digest, arts[b.i].Digest)
		})
		keep := strconv.Itoa(p.KeepPerVersion)
		for rank, c := range cs {
			d := &decided[c.i]
			if rank < p.KeepPerVersion {
				d.Reason = reasonNewest + " " + strconv.Itoa(rank+1) + " of " + line + ": " + c.tag.Raw
				continue
			}
			d.Delete = true
			d.Reason = reasonOlder + " " + keep + " of " + line + ": " + c.tag.Raw + " is number " + strconv.Itoa(rank+1)
		}
	}
	// The guards that override a deletion by age order; then what any kept artifact refers to stays.
	for i, a := range arts {
		if d := &decided[i]; d.Delete {
			if why := p.guarded(a, now); why != "" {
				keepFor(d, why)
			}
		}
	}
	referred := map[string]string{}
	for i, a := range arts {
		if !decided[i].Delete && len(a.Subjects) == 0 {
			for _, c := range a.Children {
				referred[c] = a.Digest
			}
		}
	}
	for i, a := range arts {
		if by, ok := referred[a.Digest]; ok && decided[i].Delete {
			keepFor(&decided[i], reasonChild+" "+by)
		}
	}
	// An accessory goes with its subjects, never alone.
	acc := accessories{p: p, arts: arts, decided: decided, now: now, index: make(map[string]int, len(arts)),
		state: make([]uint8, len(arts))}
	for i, a := range arts {
		acc.index[a.Digest] = i
	}
	for i, a := range arts {
		if len(a.Subjects) > 0 {
			acc.decide(i)
		}
	}
	var plan Plan
	for _, d := range decided {
		if d.Delete {
			plan.Deleted = append(plan.Deleted, d)
		} else {
			plan.Kept = append(plan.Kept, d)
		}
	}
	byDigest := func(a, b Decision) int { return strings.Compare(a.Digest, b.Digest) }
	slices.SortFunc(plan.Deleted, byDigest)
	slices.SortFunc(plan.Kept, byDigest)
	return plan
}

// guarded is why a must stay though the plan deletes it — a protected tag, a promotion working on it, its
// age —, "" when nothing guards it.
func (p Policy) guarded(a Artifact, now time.Time) string {
	if tag, ok := p.protected(a.Tags); ok {
		return reasonProtected + ": tag " + tag
	}
	if p.Busy[a.Digest] {
		return reasonBusy
	}
	if a.Pushed.IsZero() || now.Sub(a.Pushed) < p.MinAge {
		return fmt.Sprintf("%s (%s)", reasonYoung, p.MinAge)
	}
	return ""
}

// keepFor keeps d for why, saying what would have deleted it.
func keepFor(d *Decision, why string) { d.Delete, d.Reason = false, why+"; else "+d.Reason }

// accessories decides the accessories of one plan, once every other artifact is decided.
type accessories struct {
	p       Policy
	arts    []Artifact
	decided []Decision
	index   map[string]int // arts by digest
	state   []uint8        // of each of arts: undecided, deciding, settled
	now     time.Time
}

const (
	undecided uint8 = iota
	deciding
	settled
)

// decide decides accessory i, deciding first a subject that is an accessory too: deleted when every subject
// is deleted — by this plan, or by retention before (Policy.Pruned) — and no guard keeps it; kept when a
// subject is kept, is not in the repository, or is an accessory of i in turn (tags can say anything).
func (x *accessories) decide(i int) {
	if x.state[i] != undecided {
		return
	}
	x.state[i] = deciding
	defer func() { x.state[i] = settled }()
	d := &x.decided[i]
	var gone []string
	for _, s := range x.arts[i].Subjects {
		j, ok := x.index[s]
		switch {
		case !ok && x.p.Pruned[s]:
			gone = append(gone, s+" (by an earlier run)")
			continue
		case !ok:
			d.Reason = "an accessory of " + s + ", which is not in this repository: never deleted alone"
			return
		case x.state[j] == deciding:
			d.Reason = "an accessory of " + s + ", an accessory of it in turn: never deleted alone"
			return
		case len(x.arts[j].Subjects) > 0:
			x.decide(j)
		}
		if !x.decided[j].Delete {
			d.Reason = reasonChild + " " + s
			return
		}
		gone = append(gone, s)
	}
	d.Delete, d.Reason = true, reasonWith+" "+strings.Join(gone, ", ")
	if why := x.p.guarded(x.arts[i], x.now); why != "" {
		keepFor(d, why)
	}
}

// protected returns the first of tags that a protect pattern matches or that is a rolling tag.
func (p Policy) protected(tags []string) (string, bool) {
	for _, t := range tags {
		if slices.Contains(p.Rolling, t) {
			return t, true
		}

		for _, re := range p.Protect {
			if re.MatchString(t) {
				return t, true
			}
		}
	}
	// A chain's templated rolling tag, rendered over one of the artifact's version tags, among its tags.
	for _, s := range tags {
		v, err := imagetag.Parse(s)
		if err != nil || !v.IsVersion() {
			continue
		}
		for _, tpl := range p.RollingTemplates {
			if r, err := tpl.Execute(v); err == nil && r != s && slices.Contains(tags, r) {
				return r, true
			}
		}
	}
	return "", false
}
