// Package imagetag parses, formats and orders the tags of WSO2 product images and of harborflow's rebuilds of
// them (HARBOR.md §5.3). A tag is parsed into a plain value, Tag; tags are ordered by their numbers, never as
// strings, so 4.2.0.9 comes before 4.2.0.10.
//
// A version tag is three to five dot-separated decimal numbers, optionally followed by dash-separated suffixes:
//
//	4.2.0                  3 numbers: a moving tag for the newest update level of 4.2.0 (also 4.2.0-rocky)
//	4.2.0.0                WSO2's floating "latest update level" tag
//	4.2.0.15               Updates 2.0: product version 4.2.0, update level 15, Ubuntu (the unsuffixed default)
//	4.2.0.15-rocky         the same on Rocky Linux; the pipeline's OS suffixes are alpine, centos and rocky
//	4.2.0.15-alpine-jdk17  OS flavour and JDK, in the order WSO2's pipeline writes them
//	4.2.0.15.3             harborflow's third rebuild of 4.2.0.15 (the rebuilder's {{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}})
//	3.2.0.1612370755920.2  legacy WUM: an epoch-millisecond timestamp, then the docker-resources release
//	3.2.0.3-spec1-alpine   the old docker.wso2.com form; spec1 is just another suffix
//
// Anything else — latest, main, sha-abc, 4.2, v4.2.0 — is not a version tag: Parse returns ErrNotVersion
// together with a Tag that holds only Raw, so such tags can still be kept, sorted and protected.
//
// The rules, exactly:
//   - a tag is at most 128 characters of [A-Za-z0-9_.-] and does not start with '.' or '-' (the OCI
//     distribution grammar); anything else is ErrInvalidTag, which is also ErrNotVersion;
//   - a number is "0" or a digit 1-9 followed by digits, with no sign, space or leading zero ("04" is not a
//     number), and it fits an int64 (the first three fit an int); so every version tag formats back to itself;
//   - a leading 'v' is not accepted: WSO2 image tags never carry one (the v4.7.0.1 of the
//     com.wso2.docker.source label is a git release tag, not an image tag);
//   - after the numbers comes the end of the tag or '-'; each suffix is one or more of [A-Za-z0-9_.] and
//     suffixes are separated by single dashes ("4.2.0-", "4.2.0--rocky" and "4.2.0.15rocky" are not versions);
//   - a 4th number of exactly 13 digits is a WUM epoch-ms timestamp (13 digits cover 2001 to 2286; no product
//     has that many update levels);
//   - 4.2.0.0 (exactly four numbers, the 4th 0) is the floating tag; 4.2.0.0.3 is a build, not floating.
package imagetag

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Errors returned by Parse, always wrapped with the tag; test them with errors.Is.
var (
	// ErrNotVersion means the tag is not a version tag of the forms this package knows (latest, 4.2, v4.2.0).
	ErrNotVersion = errors.New("not a version tag")
	// ErrInvalidTag means the string cannot be an OCI image tag at all (empty, longer than 128 characters, a
	// character outside [A-Za-z0-9_.-], or a digest such as sha256:…). It wraps ErrNotVersion, so
	// errors.Is(err, ErrNotVersion) holds for every error Parse returns.
	ErrInvalidTag = fmt.Errorf("invalid tag%.0w", ErrNotVersion)
)

// MaxLen is the longest tag the OCI distribution specification allows.
const MaxLen = 128

// timestampDigits is the length of a WUM epoch-millisecond timestamp.
const timestampDigits = 13

// osFlavours are the suffixes that name an OS flavour: the pipeline's alpine|centos|rocky, ubuntu (the
// unsuffixed default, sometimes written out) and two common bases.
var osFlavours = [...]string{"alpine", "centos", "rocky", "ubuntu", "debian", "ubi"}

// Tag is a parsed image tag. Parse fills every field; a Tag for a non-version tag (latest) has only Raw set,
// with UpdateLevel and Build -1. The fields are named for text/template: the rebuilder's
// {{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}} executes directly on a Tag.
type Tag struct {
	// Raw is the tag as given to Parse.
	Raw string
	// Version is the first three numbers, "4.2.0"; "" for a non-version tag (and so IsVersion is false).
	Version string
	// Major, Minor and Patch are the numbers of Version.
	Major, Minor, Patch int
	// UpdateLevel is the 4th number: the WSO2 update level, or the epoch-ms of a Timestamp tag; -1 when the tag
	// has three numbers.
	UpdateLevel int64
	// Floating is set for WSO2's floating "latest update level" tag: exactly four numbers, the 4th 0 (4.2.0.0).
	Floating bool
	// Timestamp is set when the 4th number is a 13-digit legacy WUM epoch-ms timestamp (3.2.0.1612370755920.2).
	Timestamp bool
	// Build is the 5th number: harborflow's rebuild counter, or the docker-resources release of a WUM tag;
	// -1 when absent.
	Build int64
	// Suffixes are the dash-separated parts after the numbers: "-rocky-jdk17" gives ["rocky", "jdk17"]; nil
	// when there are none.
	Suffixes []string
	// Suffix is the suffixes as written, with the leading dash: "-alpine-jdk17"; "" when there are none.
	Suffix string
	// OS is the first suffix naming an OS flavour (alpine, centos, rocky, ubuntu, debian, ubi), or "". An
	// unsuffixed WSO2 tag is Ubuntu for am/is and Alpine for micro-gw/choreo-connect; the package does not guess.
	OS string
}

// Parse parses an image tag. For a version tag it returns the Tag and nil. Otherwise it returns a Tag holding
// only Raw (UpdateLevel and Build -1) and an error wrapping ErrNotVersion, or ErrInvalidTag when s cannot be an
// OCI tag; the error names the tag and the reason. The package comment lists the rules.
func Parse(s string) (Tag, error) {
	t := Tag{Raw: s, UpdateLevel: -1, Build: -1}
	if reason := checkOCI(s); reason != "" {
		return t, fmt.Errorf("parse image tag %q: %w: %s", s, ErrInvalidTag, reason)
	}
	var nums [5]int64
	n, i, verEnd, digits4 := 0, 0, 0, 0
	for {
		if n == len(nums) {
			return t, notVersion(s, "more than five numbers")
		}
		start := i
		var v int64
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			d := int64(s[i] - '0')
			if v > (math.MaxInt64-d)/10 {
				return t, notVersion(s, "number out of range")
			}
			v = v*10 + d
			i++
		}
		switch {
		case i == start:
			return t, notVersion(s, "want a number at offset "+strconv.Itoa(start))
		case s[start] == '0' && i-start > 1:
			return t, notVersion(s, "number with a leading zero")
		case n < 3 && v > math.MaxInt:
			return t, notVersion(s, "number out of range")
		}
		switch n {
		case 2:
			verEnd = i
		case 3:
			digits4 = i - start
		}
		nums[n] = v
		n++
		if i == len(s) || s[i] == '-' {
			break
		}
		if s[i] != '.' {
			return t, notVersion(s, fmt.Sprintf("unexpected %q after a number", s[i]))
		}
		i++
	}
	if n < 3 {
		return t, notVersion(s, "fewer than three numbers")
	}
	if i < len(s) {
		suffix := s[i:]
		parts := strings.Split(suffix[1:], "-")
		for _, p := range parts {
			if p == "" {
				return t, notVersion(s, "empty suffix")
			}
		}
		t.Suffix, t.Suffixes = suffix, parts
		for _, p := range parts {
			if slices.Contains(osFlavours[:], p) {
				t.OS = p
				break
			}
		}
	}
	t.Version = s[:verEnd]
	t.Major, t.Minor, t.Patch = int(nums[0]), int(nums[1]), int(nums[2])
	if n > 3 {
		t.UpdateLevel = nums[3]
		t.Floating = n == 4 && nums[3] == 0
		t.Timestamp = digits4 == timestampDigits
	}
	if n > 4 {
		t.Build = nums[4]
	}
	return t, nil
}

// checkOCI returns why s cannot be an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}), or "".
func checkOCI(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > MaxLen {
		return "longer than " + strconv.Itoa(MaxLen) + " characters"
	}
	if s[0] == '.' || s[0] == '-' {
		return fmt.Sprintf("starts with %q", s[0])
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Sprintf("character %q at offset %d", c, i)
		}
	}
	return ""
}

func notVersion(s, reason string) error {
	return fmt.Errorf("parse image tag %q: %w: %s", s, ErrNotVersion, reason)
}

// IsVersion reports whether t is a version tag, that is whether Parse accepted it.
func (t Tag) IsVersion() bool { return t.Version != "" }

// Moving reports whether t is a tag that is moved to newer images: a non-version tag (latest), a tag of three
// numbers (4.2.0, 4.2.0-rocky) or the floating 4.2.0.0. WSO2's pipeline calls the floating ones "stable"
// tags. A tag with a build number (4.2.0.0.3) is never moving.
func (t Tag) Moving() bool { return !t.IsVersion() || t.UpdateLevel < 0 || t.Floating }

// String formats t back into a tag: Raw for a non-version tag, otherwise Format(t.Version, t.UpdateLevel,
// t.Build, t.Suffix) (Major, Minor, Patch, Suffixes and Raw are not consulted). Parse(s).String() == s for
// every version tag s.
func (t Tag) String() string {
	if !t.IsVersion() {
		return t.Raw
	}
	return Format(t.Version, t.UpdateLevel, t.Build, t.Suffix)
}

// Line is the flavour line of a version tag, Version followed by Suffix ("4.2.0-rocky", "4.2.0"); "" for a
// non-version tag. Retention keeps the newest builds per line; use it as a map key.
func (t Tag) Line() string {
	if !t.IsVersion() {
		return ""
	}
	return t.Version + t.Suffix
}

// SameLine reports whether t and u are version tags of the same flavour line: the same Version and the same
// Suffix. 4.2.0.15-rocky and 4.2.0.16.2-rocky are; 4.2.0.15 and 4.2.0.15-rocky are not.
func (t Tag) SameLine(u Tag) bool {
	return t.IsVersion() && t.Version == u.Version && t.Suffix == u.Suffix
}

// Format builds a tag: version ("4.7.0"), then "."+updateLevel when updateLevel >= 0, then "."+build when
// build >= 0 and updateLevel >= 0, then suffix. A suffix without its leading dash gets one ("rocky" and
// "-rocky" give the same tag). Format does not validate: Parse the result when the inputs are not trusted.
func Format(version string, updateLevel, build int64, suffix string) string {
	b := make([]byte, 0, len(version)+len(suffix)+24)
	b = append(b, version...)
	if updateLevel >= 0 {
		b = append(b, '.')
		b = strconv.AppendInt(b, updateLevel, 10)
		if build >= 0 {
			b = append(b, '.')
			b = strconv.AppendInt(b, build, 10)
		}
	}
	if suffix != "" && suffix[0] != '-' {
		b = append(b, '-')
	}
	b = append(b, suffix...)
	return string(b)
}

// Compare orders two tags, oldest first, returning -1, 0 or +1:
//   - non-version tags come before every version tag and are ordered by Raw among themselves;
//   - version tags are ordered by Major, Minor, Patch; then a tag of three numbers (4.2.0, the moving tag)
//     comes first, then legacy WUM timestamp tags (WUM preceded Updates 2.0), then update levels, each by
//     UpdateLevel; then by Build, absent first (4.2.0.15 < 4.2.0.15.3 < 4.2.0.15.10); then by Suffix as a
//     string, unsuffixed first ("" < "-alpine" < "-alpine-jdk17" < "-rocky").
//
// Numbers are compared as numbers, never as strings: 4.2.0.9 < 4.2.0.10. Compare(a, b) == 0 exactly when
// a.String() == b.String(), so for tags from Parse it is a total order.
func Compare(a, b Tag) int {
	av, bv := a.IsVersion(), b.IsVersion()
	switch {
	case !av && !bv:
		return strings.Compare(a.Raw, b.Raw)
	case !av:
		return -1
	case !bv:
		return +1
	}
	if c := cmp.Compare(a.Major, b.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Minor, b.Minor); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Patch, b.Patch); c != 0 {
		return c
	}
	if c := cmp.Compare(a.scheme(), b.scheme()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.UpdateLevel, b.UpdateLevel); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Build, b.Build); c != 0 {
		return c
	}
	return strings.Compare(a.Suffix, b.Suffix)
}

// scheme ranks the kinds of 4th number for Compare: none, WUM timestamp, Updates 2.0 update level.
func (t Tag) scheme() int {
	switch {
	case t.UpdateLevel < 0:
		return 0
	case t.Timestamp:
		return 1
	default:
		return 2
	}
}

// Less reports whether a orders before b: Compare(a, b) < 0.
func Less(a, b Tag) bool { return Compare(a, b) < 0 }

// Sort sorts tags in place by Compare, oldest first.
func Sort(tags []Tag) { slices.SortFunc(tags, Compare) }
