package imageref

import (
	"strings"
	"testing"

	"github.com/regclient/regclient/types/ref"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// TestFast holds the fast parser to ref.New's answers, and makes sure it leaves to ref.New what it does not
// handle.
func TestFast(t *testing.T) {
	t.Parallel()
	dig := "sha256:" + hexA
	for _, s := range []string{
		"registry.wso2.com/wso2-apim/am:4.2.0.15",
		"registry.wso2.com/wso2-apim/am",
		"127.0.0.1:5000/proj/app@" + dig,
		"127.0.0.1:5000/proj/app:1.0@" + dig,
		"localhost/app:1",
		"harbor.acme.example/wso2-dev/acme-am:4.2.0.15.3-rocky",
		"h.example/a__b/c.d/e--f/g_h:Tag_1",
		"h.example/" + strings.Repeat("a", 200) + ":" + strings.Repeat("t", 128),
		"Harbor.Example:443/proj/app:1",
	} {
		f, ok := fast(s)
		if !ok {
			t.Errorf("fast(%q) declined", s)
			continue
		}
		slow, err := ref.New(s)
		if err != nil || f.RegClient().CommonName() != slow.CommonName() {
			t.Errorf("fast(%q) = %+v; ref.New = %+v, %v", s, f, slow, err)
		}
		if p, err := Parse(s); err != nil || p != f {
			t.Errorf("Parse(%q) = %+v, %v; fast = %+v", s, p, err, f)
		}
	}
	for _, s := range []string{
		"", "app", "proj/app:1", "docker.io/library/alpine", "registry-1.docker.io/x/y", "ocidir:///tmp/x",
		"h.example/Proj/app", "h.example/proj//app", "h.example/proj/app:", "h.example/proj/app:-x",
		"h.example/proj/app@sha256:12", "h.example/proj/app@md5:" + hexA[:32], "h.example/-app", "h.example/a_-b",
		"h.example/a___b", "h.example/app.", "h.example/proj/app:" + strings.Repeat("t", 129), "h_x.example/app",
	} {
		if r, ok := fast(s); ok {
			t.Errorf("fast(%q) = %+v, want it left to ref.New", s, r)
		}
	}
}
