package harbor

import (
	"fmt"
	"slices"
)

// Severity is a vulnerability severity in Harbor's order (src/pkg/scan/vuln/severity.go): None < Unknown <
// Negligible < Low < Medium < High < Critical. A scan report's severity is the highest it found.
type Severity int

// Severities, lowest first.
const (
	SeverityNone Severity = iota
	SeverityUnknown
	SeverityNegligible
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = []string{"None", "Unknown", "Negligible", "Low", "Medium", "High", "Critical"}

// ParseSeverity reads a severity as Harbor writes it (None, Unknown, Negligible, Low, Medium, High, Critical);
// anything else, "" included (a failed scan's), is an error.
func ParseSeverity(s string) (Severity, error) {
	i := slices.Index(severityNames, s)
	if i < 0 {
		return 0, fmt.Errorf("severity %q is not one of %v", s, severityNames)
	}
	return Severity(i), nil
}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return severityNames[s]
}
