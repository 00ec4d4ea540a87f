package provenance_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/provenance"
)

// FuzzParse checks that Parse, which reads statements from registries (anyone who can push can write one),
// never panics, names a base whenever it accepts, and that what it accepts and Statement can write again
// reads back the same.
func FuzzParse(f *testing.F) {
	st, err := provenance.Statement(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(st)
	// What cosign attest writes around the same predicate.
	f.Add([]byte(strings.Replace(string(st), "https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1", 1)))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"aa"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"x"}}}`))
	f.Fuzz(func(t *testing.T, statement []byte) {
		b, err := provenance.Parse(statement)
		if err != nil {
			return
		}
		if b.BaseImage == "" {
			t.Fatalf("Parse accepted a statement without a base: %+v", b)
		}
		again, err := provenance.Statement(b)
		if err != nil {
			return // accepted, but not something harborflow writes (a base without a digest, say)
		}
		back, err := provenance.Parse(again)
		if err != nil || !reflect.DeepEqual(back, b) {
			t.Fatalf("Statement(Parse(s)) read back as %+v (%v), want %+v", back, err, b)
		}
	})
}
