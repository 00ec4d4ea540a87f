package imagetag_test

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/imagetag"
)

// reference is an independent statement of the grammar in the package comment, for FuzzParse to check Parse
// against: three to five numbers without leading zeros, then dash-separated suffixes of OCI tag characters.
var reference = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){2,4}(-[A-Za-z0-9_.]+)*$`)

// referenceAccepts reports whether s is a version tag by the reference grammar, length and number ranges.
func referenceAccepts(s string) bool {
	if len(s) > imagetag.MaxLen || !reference.MatchString(s) {
		return false
	}
	numbers, _, _ := strings.Cut(s, "-")
	for _, n := range strings.Split(numbers, ".") {
		if _, err := strconv.ParseInt(n, 10, 64); err != nil {
			return false
		}
	}
	return true
}

// FuzzParse checks that Parse never panics, agrees with the reference grammar, round-trips every version tag
// exactly, and that Compare is antisymmetric and zero only for equal tags.
func FuzzParse(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzParse.
	f.Add("4.2.0.15-alpine-jdk17", "4.2.0.15.3")
	f.Fuzz(func(t *testing.T, a, b string) {
		ta := checkParse(t, a)
		tb := checkParse(t, b)

		ab, ba := imagetag.Compare(ta, tb), imagetag.Compare(tb, ta)
		if ab != -ba {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d, want -1, 0 or +1", a, b, ab)
		}
		if (ab == 0) != (a == b) {
			t.Fatalf("Compare(%q, %q) = %d", a, b, ab)
		}
		if imagetag.Compare(ta, ta) != 0 {
			t.Fatalf("Compare(%q, itself) != 0", a)
		}
		if imagetag.Less(ta, tb) != (ab < 0) {
			t.Fatalf("Less(%q, %q) disagrees with Compare", a, b)
		}
		if ta.SameLine(tb) != tb.SameLine(ta) {
			t.Fatalf("SameLine(%q, %q) is not symmetric", a, b)
		}
	})
}

func checkParse(t *testing.T, s string) imagetag.Tag {
	t.Helper()
	tag, err := imagetag.Parse(s)
	if tag.Raw != s {
		t.Fatalf("Parse(%q).Raw = %q", s, tag.Raw)
	}
	if want := referenceAccepts(s); (err == nil) != want {
		t.Fatalf("Parse(%q) error %v, but the reference grammar accepts it: %v", s, err, want)
	}
	if err != nil {
		if !errors.Is(err, imagetag.ErrNotVersion) {
			t.Fatalf("Parse(%q) error %v is not ErrNotVersion", s, err)
		}
		if tag.IsVersion() || tag.String() != s || !tag.Moving() {
			t.Fatalf("Parse(%q) failed but gave %+v", s, tag)
		}
		return tag
	}
	if !tag.IsVersion() {
		t.Fatalf("Parse(%q) = %+v, not a version", s, tag)
	}
	if got := tag.String(); got != s {
		t.Fatalf("Parse(%q).String() = %q", s, got)
	}
	if got := imagetag.Format(tag.Version, tag.UpdateLevel, tag.Build, tag.Suffix); got != s {
		t.Fatalf("Format(fields of %q) = %q", s, got)
	}
	again, err := imagetag.Parse(tag.String())
	if err != nil || !reflect.DeepEqual(again, tag) {
		t.Fatalf("Parse(Parse(%q).String()) = %+v, %v; want %+v", s, again, err, tag)
	}
	if v := imagetag.Format(strconv.Itoa(tag.Major)+"."+strconv.Itoa(tag.Minor)+"."+strconv.Itoa(tag.Patch), -1, -1, ""); v != tag.Version {
		t.Fatalf("Parse(%q): Version %q but numbers %s", s, tag.Version, v)
	}
	if tag.Floating && (tag.UpdateLevel != 0 || tag.Build >= 0) || tag.Timestamp && tag.UpdateLevel < 1e12 {
		t.Fatalf("Parse(%q): inconsistent %+v", s, tag)
	}
	if (tag.Suffix == "") != (tag.Suffixes == nil) || tag.Suffix != "" && tag.Suffix != "-"+strings.Join(tag.Suffixes, "-") {
		t.Fatalf("Parse(%q): Suffix %q but Suffixes %q", s, tag.Suffix, tag.Suffixes)
	}
	return tag
}
