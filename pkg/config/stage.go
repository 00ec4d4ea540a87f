package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/harborflow/harborflow/pkg/event"
)

// commonSections are the sections every process reads, whichever stages it runs: where NATS is, how it logs,
// and its ops listener and shutdown grace. The ops commands (events, status, history) read only nats and log.
var commonSections = []string{"nats", "log", "ops"}

// Use is a part of the file a stage reads: a section, a key within one, or the items of a list whose kind is
// one of Kinds.
type Use struct {
	// Key is a top-level section (rebuilds) or a key path in one (inspector.update_level_label).
	Key string
	// Kinds, when set, limits Key (a list) to its items of these kinds (sources of kind poll).
	Kinds []string
}

func (u Use) String() string {
	if len(u.Kinds) == 0 {
		return u.Key
	}
	return u.Key + " of kind " + strings.Join(u.Kinds, ", ")
}

// Stage is a stage a process can run and the parts of the file it reads besides nats, log and ops.
type Stage struct {
	Name string
	Uses []Use
}

// stages is the one table of who reads what. A process expands ${NAME} in, and validates, only what its stages
// use (and nats, log, ops); everything else is left out of the Config it gets.
//
// registries is used as a whole by every stage that talks to registries, not host by host: the inspector
// inspects whatever host an event names (a webhook or a poll source decides that at run time, not the file),
// the process builds one registry client from the whole section, and an entry loaded without its password
// would turn into anonymous access that fails later, far from the cause, as a 401. So a registries entry's
// ${NAME} is needed by the watcher, the inspector and the rebuilder alike; it is never needed by the receiver
// or the ops commands.
var stages = []Stage{
	{Name: event.StageReceiver, Uses: []Use{{Key: "http"}, {Key: "sources", Kinds: []string{SourceHarbor, SourceDistribution}}}},
	{Name: event.StageWatcher, Uses: []Use{{Key: "sources", Kinds: []string{SourcePoll}}, {Key: "registries"}}},
	{Name: event.StageInspector, Uses: []Use{{Key: "inspector"}, {Key: "registries"}}},
	{Name: event.StageRebuilder, Uses: []Use{{Key: "rebuilds"}, {Key: "inspector.update_level_label"}, {Key: "registries"}, {Key: "signing"}}},
	{Name: event.StagePromoter, Uses: []Use{{Key: "promotions"}, {Key: "registries"}, {Key: "signing.public_keys"}}},
	{Name: event.StageRetention, Uses: []Use{{Key: "retention"}, {Key: "promotions"}, {Key: "registries"}}},
}

// Stages returns every stage a process can run, in the order `harborflow run` starts them, with what each reads.
func Stages() []Stage {
	out := make([]Stage, len(stages))
	for i, s := range stages {
		out[i] = Stage{Name: s.Name, Uses: slices.Clone(s.Uses)}
	}
	return out
}

// StageNames returns the names of Stages.
func StageNames() []string {
	names := make([]string, len(stages))
	for i, s := range stages {
		names[i] = s.Name
	}
	return names
}

// CheckStages fails on a name that is not a stage, naming the stages there are.
func CheckStages(names []string) error {
	for _, n := range names {
		if !slices.Contains(StageNames(), n) {
			return fmt.Errorf("unknown stage %q (stages: %s)", n, strings.Join(StageNames(), ", "))
		}
	}
	return nil
}

// matches reports whether path is u or inside it; for a use limited to kinds, path must be an item of the list
// (or inside one) whose kind is one of them. An item of no known kind matches every kind, so that its error is
// reported by whichever stage reads the list.
func (u Use) matches(path string, kindOf func(item string) string) bool {
	if path != u.Key && !strings.HasPrefix(path, u.Key+".") && !strings.HasPrefix(path, u.Key+"[") {
		return false
	}
	if len(u.Kinds) == 0 {
		return true
	}
	rest, ok := strings.CutPrefix(path, u.Key+"[")
	if !ok {
		return false // the list itself: some of its items are read, not all
	}
	i := strings.IndexByte(rest, ']')
	if i < 0 {
		return false
	}
	kind := kindOf(path[:len(u.Key)+1+i+1])
	return slices.Contains(u.Kinds, kind) || !knownKind(kind)
}

// within reports whether some of path is read by u: u is inside path, or path is a list u reads some items of.
func (u Use) within(path string) bool {
	return strings.HasPrefix(u.Key, path+".") || (path == u.Key && len(u.Kinds) > 0)
}

func knownKind(k string) bool {
	return k == SourceHarbor || k == SourceDistribution || k == SourcePoll
}

// stagesUsing returns the stages that read path, in table order; every stage for a common section.
func stagesUsing(path string, kindOf func(string) string) []string {
	if slices.Contains(commonSections, section(path)) {
		return StageNames()
	}
	var out []string
	for _, s := range stages {
		for _, u := range s.Uses {
			if u.matches(path, kindOf) {
				out = append(out, s.Name)
				break
			}
		}
	}
	return out
}

// section is the top-level key of path: nats of nats.url, sources of sources[0].secrets[1].
func section(path string) string {
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return path
}

// scope is what one load reads of the file.
type scope struct {
	all      bool            // config check: everything
	sections map[string]bool // sections read whatever the stages: nats, log (and ops for a process)
	stages   map[string]bool
}

// forStages is the scope of a process running names; none means every stage.
func forStages(names []string) (scope, error) {
	if err := CheckStages(names); err != nil {
		return scope{}, err
	}
	if len(names) == 0 {
		names = StageNames()
	}
	s := scope{sections: map[string]bool{}, stages: map[string]bool{}}
	for _, c := range commonSections {
		s.sections[c] = true
	}
	for _, n := range names {
		s.stages[n] = true
	}
	return s, nil
}

// forOps is the scope of the ops commands: nats and log, no stage's section.
func forOps() scope {
	return scope{sections: map[string]bool{"nats": true, "log": true}}
}

type coverage int

const (
	none    coverage = iota
	partial          // some keys (or items) inside path are read
	full
)

// covers says how much of path the scope reads.
func (s scope) covers(path string, kindOf func(string) string) coverage {
	if s.all || s.sections[section(path)] {
		return full
	}
	c := none
	for _, st := range stages {
		if !s.stages[st.Name] {
			continue
		}
		for _, u := range st.Uses {
			if u.matches(path, kindOf) {
				return full
			}
			if u.within(path) {
				c = partial
			}
		}
	}
	return c
}
