package harbor_test

import (
	"testing"

	"github.com/harborflow/harborflow/pkg/harbor"
)

func TestSeverityOrderIsHarbors(t *testing.T) {
	order := []string{"None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical"}
	prev := harbor.Severity(-1)
	for _, name := range order {
		s, err := harbor.ParseSeverity(name)
		if err != nil {
			t.Fatalf("ParseSeverity(%q): %v", name, err)
		}
		if s <= prev {
			t.Errorf("%s is not above %s", s, prev)
		}
		if s.String() != name {
			t.Errorf("String() = %q, want %q", s, name)
		}
		prev = s
	}
}

func TestParseSeverityRefusesWhatHarborDoesNotWrite(t *testing.T) {
	for _, s := range []string{"", "high", "HIGH", "Moderate"} {
		if _, err := harbor.ParseSeverity(s); err == nil {
			t.Errorf("ParseSeverity(%q) accepted", s)
		}
	}
}
