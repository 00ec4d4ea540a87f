package platform_test

import (
	"testing"

	"github.com/harborflow/harborflow/pkg/platform"
)

func TestFormatAndParse(t *testing.T) {
	for _, tc := range []struct{ s, os, arch, variant string }{
		{"linux/amd64", "linux", "amd64", ""},
		{"linux/arm64/v8", "linux", "arm64", "v8"},
	} {
		if got := platform.Format(tc.os, tc.arch, tc.variant); got != tc.s {
			t.Errorf("Format(%q, %q, %q) = %q, want %q", tc.os, tc.arch, tc.variant, got, tc.s)
		}
		os, arch, variant, err := platform.Parse(tc.s)
		if err != nil || os != tc.os || arch != tc.arch || variant != tc.variant {
			t.Errorf("Parse(%q) = %q, %q, %q, %v", tc.s, os, arch, variant, err)
		}
	}
	for _, s := range []string{"", "linux", "linux/", "/amd64", "linux/arm64/", "linux/arm64/v8/x", "Linux/amd64", "linux/amd 64"} {
		if _, _, _, err := platform.Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
