package harbortest

import (
	"regexp"
	"slices"
	"strings"
)

// eventTypes are the event types a policy may subscribe to (HARBOR.md §1.1); any other is a 400.
var eventTypes = []string{
	"PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED", "QUOTA_WARNING", "SCANNING_FAILED",
	"SCANNING_STOPPED", "SCANNING_COMPLETED", "REPLICATION", "TAG_RETENTION",
}

// newEvent makes an artifact event of a request; s.mu is held.
func (s *Server) newEvent(typ string, c *call, p *project, repo *repoRecord, dig, tagName string) Event {
	return Event{
		Type: typ, OccurAt: s.now(), Operator: c.user.name, RequestID: c.reqID,
		ProjectID: p.ID, Project: p.Name, Public: p.public(),
		Repository: repo.Name, RepoCreated: repo.Created, Digest: dig, Tag: tagName,
	}
}

// fire hands each event to the notifier once for every enabled policy of its project that subscribes to
// its type. s.mu must not be held.
func (s *Server) fire(evs ...Event) {
	type job struct {
		policyID int64
		targets  []Target
		ev       Event
	}
	var jobs []job
	s.mu.Lock()
	for _, ev := range evs {
		p := s.st.Projects[ev.ProjectID]
		if p == nil {
			continue
		}
		for _, pol := range sortedPolicies(p) {
			if pol.Enabled && slices.Contains(pol.EventTypes, ev.Type) {
				jobs = append(jobs, job{pol.ID, slices.Clone(pol.Targets), ev})
			}
		}
	}
	s.mu.Unlock()
	for _, j := range jobs {
		if s.opts.eventHook != nil {
			s.opts.eventHook(j.policyID, j.ev)
		}
		s.notifier.Notify(j.ev.ProjectID, j.policyID, j.targets, j.ev)
	}
}

func sortedPolicies(p *project) []*policy {
	out := make([]*policy, 0, len(p.Policies))
	for _, pol := range p.Policies {
		out = append(out, pol)
	}
	slices.SortFunc(out, func(a, b *policy) int { return int(a.ID - b.ID) })
	return out
}

// immutableLocked reports whether an enabled immutable rule of p covers tag tagName of repository repoShort
// (the name without the project).
func (s *Server) immutableLocked(p *project, repoShort, tagName string) bool {
	for _, r := range p.Rules {
		if !r.Disabled && selectorsMatch(r.ScopeSelectors["repository"], repoShort) && selectorsMatch(r.TagSelectors, tagName) {
			return true
		}
	}
	return false
}

// selectorsMatch applies doublestar selectors as Harbor's (src/lib/selector/selectors/doublestar):
// matches/repoMatches must match, excludes/repoExcludes must not; no selector matches everything.
func selectorsMatch(sels []selector, name string) bool {
	for _, sel := range sels {
		m := doublestar(sel.Pattern, name)
		switch sel.Decoration {
		case "excludes", "repoExcludes":
			if m {
				return false
			}
		default:
			if !m {
				return false
			}
		}
	}
	return true
}

// doublestar matches name against a doublestar pattern: `**` across `/`, `*` and `?` within a segment,
// `[...]` classes (`[!...]` negated) and `{a,b}` alternatives.
func doublestar(pattern, name string) bool {
	var b strings.Builder
	b.WriteString("^")
	depth := 0
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			if i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
				b.WriteString(".*")
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := strings.IndexByte(pattern[i:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := pattern[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j
		case '{':
			depth++
			b.WriteString("(?:")
		case '}':
			if depth > 0 {
				depth--
				b.WriteString(")")
			} else {
				b.WriteString(`\}`)
			}
		case ',':
			if depth > 0 {
				b.WriteString("|")
			} else {
				b.WriteString(",")
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	for ; depth > 0; depth-- {
		b.WriteString(")")
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(name)
}
