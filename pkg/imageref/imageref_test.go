package imageref_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/imageref"
)

var dig = "sha256:" + strings.Repeat("a", 64)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want imageref.Ref
	}{
		{"registry.wso2.com/wso2-apim/am:4.2.0", imageref.Ref{Registry: "registry.wso2.com", Repository: "wso2-apim/am", Tag: "4.2.0"}},
		{"localhost:5000/app", imageref.Ref{Registry: "localhost:5000", Repository: "app"}},
		{"h.example/p/a:1@" + dig, imageref.Ref{Registry: "h.example", Repository: "p/a", Tag: "1", Digest: dig}},
		{"h.example/p/a@" + dig, imageref.Ref{Registry: "h.example", Repository: "p/a", Digest: dig}},
		// Left to regclient: Docker Hub, named in full.
		{"docker.io/library/alpine:3", imageref.Ref{Registry: "docker.io", Repository: "library/alpine", Tag: "3"}},
		{"docker.io/library/alpine", imageref.Ref{Registry: "docker.io", Repository: "library/alpine"}},
	} {
		got, err := imageref.Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("Parse(%q).String() = %q", tc.in, got.String())
		}
	}
	for _, in := range []string{"", "alpine", "library/alpine:3", "proj/app:1", "ocidir:///tmp/x:1", "h.example/Proj/App:1",
		"h.example/p/a@sha256:12", "h.example/p/a:"} {
		if r, err := imageref.Parse(in); !errors.Is(err, imageref.ErrInvalid) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrInvalid", in, r, err)
		}
	}
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	r, err := imageref.Parse("harbor.acme.example/wso2-dev/acme-am:4.2.0.15.1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != "harbor.acme.example/wso2-dev/acme-am" || r.Project() != "wso2-dev" || r.Registry != "harbor.acme.example" {
		t.Errorf("Name %q, Project %q, Registry %q", r.Name(), r.Project(), r.Registry)
	}
	if r.Digest = dig; r.String() != r.Name()+":4.2.0.15.1@"+dig {
		t.Errorf("String with a digest: %s", r.String())
	}
	if rc := (imageref.Ref{Registry: "h.example", Repository: "a"}).RegClient(); rc.Tag != "latest" || rc.CommonName() != "h.example/a:latest" {
		t.Errorf("RegClient of a bare repository: %+v", rc)
	}
	if imageref.Project("single") != "single" {
		t.Error("Project of a one-segment repository")
	}
}

func TestParseRepositoryAndTagged(t *testing.T) {
	t.Parallel()
	if r, err := imageref.ParseRepository("h.example/p/a"); err != nil || r.Name() != "h.example/p/a" {
		t.Errorf("ParseRepository: %+v, %v", r, err)
	}
	for _, in := range []string{"h.example/p/a:1", "h.example/p/a@" + dig, "a"} {
		if _, err := imageref.ParseRepository(in); !errors.Is(err, imageref.ErrInvalid) {
			t.Errorf("ParseRepository(%q): %v", in, err)
		}
	}
	if r, err := imageref.ParseTagged("h.example/p/a:4.2.0"); err != nil || r.Tag != "4.2.0" {
		t.Errorf("ParseTagged: %+v, %v", r, err)
	}
	for _, in := range []string{"h.example/p/a", "h.example/p/a:1@" + dig} {
		if _, err := imageref.ParseTagged(in); !errors.Is(err, imageref.ErrInvalid) {
			t.Errorf("ParseTagged(%q): %v", in, err)
		}
	}
}

func TestIsDigest(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		dig: true, "sha512:" + strings.Repeat("b", 128): true, "blake3+x:" + strings.Repeat("A", 32): true,
		"sha256:12": false, "latest": false, "": false, ":x": false, "sha256:" + strings.Repeat("A", 64): false,
	} {
		if got := imageref.IsDigest(s); got != want {
			t.Errorf("IsDigest(%q) = %v", s, got)
		}
	}
}
