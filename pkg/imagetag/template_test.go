package imagetag_test

import (
	"errors"
	"testing"

	"github.com/harborflow/harborflow/pkg/imagetag"
)

func TestTemplate(t *testing.T) {
	base := func(s string) imagetag.Tag {
		t.Helper()
		tag, err := imagetag.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return tag
	}
	with := func(tag imagetag.Tag, level, build int64) imagetag.Tag {
		tag.UpdateLevel, tag.Build, tag.Floating = level, build, false
		return tag
	}
	for _, tc := range []struct {
		tmpl string
		tag  imagetag.Tag
		want string
	}{
		{imagetag.DefaultTemplate, with(base("4.2.0"), 16, 1), "4.2.0.16.1"},
		{imagetag.DefaultTemplate, with(base("4.7.0.0"), 3, 12), "4.7.0.3.12"},
		{imagetag.DefaultTemplate, with(base("4.2.0-rocky"), 16, 2), "4.2.0.16.2-rocky"},
		{imagetag.DefaultTemplate, with(base("4.2.0.15-alpine-jdk17"), 16, 2), "4.2.0.16.2-alpine-jdk17"},
		{"{{.Version}}-u{{.UpdateLevel}}-b{{.Build}}", with(base("4.2.0"), 16, 7), "4.2.0-u16-b7"},
		{"{{.Major}}.{{.Minor}}.{{.UpdateLevel}}{{if .OS}}-{{.OS}}{{end}}", with(base("4.2.0-rocky"), 16, 7), "4.2.16-rocky"},
	} {
		tt, err := imagetag.ParseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tc.tmpl, err)
		}
		got, err := tt.Execute(tc.tag)
		if err != nil || got != tc.want {
			t.Errorf("%q on %+v = %q, %v; want %q", tc.tmpl, tc.tag, got, err, tc.want)
		}
		if back, err := imagetag.Parse(got); tc.tmpl == imagetag.DefaultTemplate && (err != nil || back.Build != tc.tag.Build) {
			t.Errorf("%q does not parse back with build %d: %+v, %v", got, tc.tag.Build, back, err)
		}
	}

	for _, bad := range []string{
		"{{.Version",              // does not parse
		"{{.Flavour}}",            // no such field
		"{{.Version}}/{{.Build}}", // not a tag
		"",                        // empty tag
	} {
		_, err := imagetag.ParseTemplate(bad)
		if err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
	if _, err := imagetag.ParseTemplate("{{.Version}}:{{.Build}}"); !errors.Is(err, imagetag.ErrInvalidTag) {
		t.Errorf("a template making an invalid tag: %v, want ErrInvalidTag", err)
	}
}
