// Package glob matches image references against the patterns of harborflow.yaml: `*` matches within one path
// segment, `**` across segments, `?` one character other than `/`. "registry.wso2.com/**" matches every
// repository of that registry; "harbor.acme.example/wso2-*/acme-am" one repository in every wso2- project.
package glob

import (
	"fmt"
	"regexp"
	"strings"
)

// Pattern is a compiled glob.
type Pattern struct {
	text string
	re   *regexp.Regexp
}

// Compile compiles a glob. Everything but `*`, `**` and `?` matches itself.
func Compile(glob string) (*Pattern, error) {
	if glob == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '*':
			if i+1 < len(glob) && glob[i+1] == '*' {
				i++
				// "a/**/b" also matches "a/b".
				if i+1 < len(glob) && glob[i+1] == '/' && (i-1 == 0 || glob[i-2] == '/') {
					i++
					b.WriteString("(?:.*/)?")
					continue
				}
				b.WriteString(".*")
				continue
			}
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("compiling pattern %q: %w", glob, err)
	}
	return &Pattern{text: glob, re: re}, nil
}

// Match reports whether name (registry/repository) matches the pattern.
func (p *Pattern) Match(name string) bool { return p.re.MatchString(name) }

// String returns the glob as written.
func (p *Pattern) String() string { return p.text }

// Set is a list of patterns; it matches what any of them matches.
type Set []*Pattern

// CompileAll compiles every glob of globs.
func CompileAll(globs []string) (Set, error) {
	set := make(Set, 0, len(globs))
	for _, g := range globs {
		p, err := Compile(g)
		if err != nil {
			return nil, err
		}
		set = append(set, p)
	}
	return set, nil
}

// Match reports whether any pattern of s matches name.
func (s Set) Match(name string) bool {
	for _, p := range s {
		if p.Match(name) {
			return true
		}
	}
	return false
}
