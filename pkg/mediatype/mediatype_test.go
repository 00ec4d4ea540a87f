package mediatype_test

import (
	"testing"

	"github.com/harborflow/harborflow/pkg/mediatype"
)

func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		mt                    string
		index, manifest, blob bool
	}{
		{mediatype.OCIIndex, true, true, false},
		{mediatype.DockerList + "; charset=utf-8", true, true, false},
		{mediatype.OCIManifest, false, true, false},
		{"Application/Vnd.Docker.Distribution.Manifest.V2+json", false, true, false},
		{mediatype.Docker1Signed, false, true, false},
		{mediatype.OCILayerGzip, false, false, true},
		{mediatype.DockerLayer, false, false, true},
		{mediatype.OCIConfig, false, false, true},
		{mediatype.DockerConfig, false, false, true},
		{"application/vnd.example.unknown", false, false, false},
		{"", false, false, false},
	} {
		if got := mediatype.IsIndex(tc.mt); got != tc.index {
			t.Errorf("IsIndex(%q) = %v", tc.mt, got)
		}
		if got := mediatype.IsManifest(tc.mt); got != tc.manifest {
			t.Errorf("IsManifest(%q) = %v", tc.mt, got)
		}
		if got := mediatype.IsBlob(tc.mt); got != tc.blob {
			t.Errorf("IsBlob(%q) = %v", tc.mt, got)
		}
	}
}
