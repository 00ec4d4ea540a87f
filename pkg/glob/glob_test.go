package glob_test

import (
	"testing"

	"github.com/harborflow/harborflow/pkg/glob"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"registry.wso2.com/**", "registry.wso2.com/wso2-apim/am", true},
		{"registry.wso2.com/**", "registry.wso2.com/am", true},
		{"registry.wso2.com/**", "registry-wso2.com/am", false}, // the dot is a dot
		{"registry.wso2.com/**", "evil.example/registry.wso2.com/am", false},
		{"harbor.acme.example/wso2-*/acme-am", "harbor.acme.example/wso2-dev/acme-am", true},
		{"harbor.acme.example/wso2-*/acme-am", "harbor.acme.example/wso2-dev/x/acme-am", false},
		{"harbor.acme.example/**/acme-am", "harbor.acme.example/acme-am", true},
		{"harbor.acme.example/**/acme-am", "harbor.acme.example/a/b/acme-am", true},
		{"localhost:5000/a?c", "localhost:5000/abc", true},
		{"localhost:5000/a?c", "localhost:5000/a/c", false},
		{"h/exact", "h/exact", true},
		{"h/exact", "h/exactly", false},
	} {
		p, err := glob.Compile(tc.glob)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(tc.name); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
	if _, err := glob.Compile(""); err == nil {
		t.Error("empty pattern accepted")
	}
	set, _ := glob.CompileAll([]string{"a/*", "b/**"})
	if !set.Match("b/c/d") || set.Match("a/c/d") || set.Match("c/d") {
		t.Error("set")
	}
}
