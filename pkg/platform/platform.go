// Package platform formats and parses the platform of an image as harborflow writes it everywhere:
// os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8.
package platform

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Format returns os/architecture, with /variant when variant is set.
func Format(os, architecture, variant string) string {
	s := os + "/" + architecture
	if variant != "" {
		s += "/" + variant
	}
	return s
}

// part is what each of os, architecture and variant may hold: OCI's values are lower case (linux, arm64, v8).
var part = regexp.MustCompile(`^[a-z0-9_]+$`)

// Parse splits os/architecture[/variant], each part lower-case letters, digits or _.
func Parse(s string) (os, architecture, variant string, err error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.ContainsFunc(parts, func(p string) bool { return !part.MatchString(p) }) {
		return "", "", "", fmt.Errorf("platform %q: want os/architecture[/variant] in lower case, e.g. linux/amd64", s)
	}
	if len(parts) == 3 {
		variant = parts[2]
	}
	return parts[0], parts[1], variant, nil
}
