package imagetag

import (
	"fmt"
	"strings"
	"text/template"
)

// DefaultTemplate is the rebuilder's tag template: 4.2.0.15.3, 4.2.0.15.3-rocky.
const DefaultTemplate = "{{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}}"

// Template is a text/template that makes a tag from a Tag's fields, such as DefaultTemplate.
type Template struct {
	src string
	t   *template.Template
}

// ParseTemplate parses a tag template and tries it on a sample tag (4.2.0.15.3-rocky), so that a template
// naming a field a Tag does not have, or making something that cannot be a tag, fails here rather than at
// the first build.
func ParseTemplate(s string) (*Template, error) {
	t, err := template.New("tag").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("tag template %q: %w", s, err)
	}
	tt := &Template{src: s, t: t}
	sample, _ := Parse("4.2.0.15.3-rocky")
	if _, err := tt.Execute(sample); err != nil {
		return nil, err
	}
	return tt, nil
}

// Execute makes the tag for t and checks that it is a valid OCI tag.
func (tt *Template) Execute(t Tag) (string, error) {
	var b strings.Builder
	if err := tt.t.Execute(&b, t); err != nil {
		return "", fmt.Errorf("tag template %q: %w", tt.src, err)
	}
	s := b.String()
	if reason := checkOCI(s); reason != "" {
		return "", fmt.Errorf("tag template %q made %q: %w: %s", tt.src, s, ErrInvalidTag, reason)
	}
	return s, nil
}

// String is the template's source.
func (tt *Template) String() string { return tt.src }
