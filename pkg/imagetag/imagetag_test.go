package imagetag_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/harborflow/harborflow/pkg/imagetag"
)

func TestParseVersionTags(t *testing.T) {
	long := "1.2.3-" + strings.Repeat("a", imagetag.MaxLen-len("1.2.3-"))
	tests := []struct {
		in   string
		want imagetag.Tag
	}{
		{"4.2.0", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: -1, Build: -1}},
		{"4.2.0.0", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 0, Floating: true, Build: -1}},
		{"4.7.0.0", imagetag.Tag{Version: "4.7.0", Major: 4, Minor: 7, UpdateLevel: 0, Floating: true, Build: -1}},
		{"4.2.0.15", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1}},
		{"4.2.0.15-rocky", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1,
			Suffixes: []string{"rocky"}, Suffix: "-rocky", OS: "rocky",
		}},
		{"4.2.0.15-alpine-jdk17", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1,
			Suffixes: []string{"alpine", "jdk17"}, Suffix: "-alpine-jdk17", OS: "alpine",
		}},
		{"4.2.0.15-rocky-jdk17", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1,
			Suffixes: []string{"rocky", "jdk17"}, Suffix: "-rocky-jdk17", OS: "rocky",
		}},
		{"4.2.0.15-jdk17", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1,
			Suffixes: []string{"jdk17"}, Suffix: "-jdk17",
		}},
		{"4.2.0.15-ubuntu", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1,
			Suffixes: []string{"ubuntu"}, Suffix: "-ubuntu", OS: "ubuntu",
		}},
		{"4.2.0.15.3", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: 3}},
		{"4.2.0.15.3-rocky", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: 3,
			Suffixes: []string{"rocky"}, Suffix: "-rocky", OS: "rocky",
		}},
		// A build of the floating tag is a unique tag, not a floating one.
		{"4.2.0.0.3", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 0, Build: 3}},
		{"3.2.0.1612370755920.2", imagetag.Tag{
			Version: "3.2.0", Major: 3, Minor: 2, UpdateLevel: 1612370755920, Timestamp: true, Build: 2,
		}},
		{"5.7.0.1770447688453.8", imagetag.Tag{
			Version: "5.7.0", Major: 5, Minor: 7, UpdateLevel: 1770447688453, Timestamp: true, Build: 8,
		}},
		{"3.2.0.1612370755920", imagetag.Tag{
			Version: "3.2.0", Major: 3, Minor: 2, UpdateLevel: 1612370755920, Timestamp: true, Build: -1,
		}},
		// 12 and 14 digits are large update levels, not timestamps.
		{"4.2.0.999999999999", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 999999999999, Build: -1}},
		{"4.2.0.10000000000000", imagetag.Tag{Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 10000000000000, Build: -1}},
		{"3.2.0.3-spec1-alpine", imagetag.Tag{
			Version: "3.2.0", Major: 3, Minor: 2, UpdateLevel: 3, Build: -1,
			Suffixes: []string{"spec1", "alpine"}, Suffix: "-spec1-alpine", OS: "alpine",
		}},
		{"4.2.0-rocky", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: -1, Build: -1,
			Suffixes: []string{"rocky"}, Suffix: "-rocky", OS: "rocky",
		}},
		{"4.0.0.0-alpine", imagetag.Tag{
			Version: "4.0.0", Major: 4, UpdateLevel: 0, Floating: true, Build: -1,
			Suffixes: []string{"alpine"}, Suffix: "-alpine", OS: "alpine",
		}},
		{"0.0.0", imagetag.Tag{Version: "0.0.0", UpdateLevel: -1, Build: -1}},
		{"10.20.30.40.50", imagetag.Tag{Version: "10.20.30", Major: 10, Minor: 20, Patch: 30, UpdateLevel: 40, Build: 50}},
		{"7.1.0-centos-jdk11-ubuntu", imagetag.Tag{
			Version: "7.1.0", Major: 7, Minor: 1, UpdateLevel: -1, Build: -1,
			Suffixes: []string{"centos", "jdk11", "ubuntu"}, Suffix: "-centos-jdk11-ubuntu", OS: "centos",
		}},
		// Suffixes take every OCI tag character but the dash; case is kept, and OS names are lower case only.
		{"4.2.0-SNAPSHOT", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: -1, Build: -1,
			Suffixes: []string{"SNAPSHOT"}, Suffix: "-SNAPSHOT",
		}},
		{"4.2.0.15-Rocky", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: 15, Build: -1,
			Suffixes: []string{"Rocky"}, Suffix: "-Rocky",
		}},
		{"4.2.0-rc.1-jdk_17", imagetag.Tag{
			Version: "4.2.0", Major: 4, Minor: 2, UpdateLevel: -1, Build: -1,
			Suffixes: []string{"rc.1", "jdk_17"}, Suffix: "-rc.1-jdk_17",
		}},
		{"1.2.3.9223372036854775807.9223372036854775807", imagetag.Tag{
			Version: "1.2.3", Major: 1, Minor: 2, Patch: 3, UpdateLevel: 9223372036854775807, Build: 9223372036854775807,
		}},
		{long, imagetag.Tag{
			Version: "1.2.3", Major: 1, Minor: 2, Patch: 3, UpdateLevel: -1, Build: -1,
			Suffixes: []string{long[6:]}, Suffix: long[5:],
		}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := imagetag.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			tt.want.Raw = tt.in
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
			if !got.IsVersion() {
				t.Errorf("IsVersion() = false")
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q (round trip)", s, tt.in)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		in      string
		invalid bool // ErrInvalidTag as well as ErrNotVersion
	}{
		{"latest", false},
		{"main", false},
		{"sha-abc", false},
		{"4.2", false},
		{"4", false},
		{"4.2-rocky", false},
		{"4.2.0.", false},
		{"4..2.0", false},
		{"4.2.0..15", false},
		{"4.2.0.x", false},
		{"v4.2.0", false},
		{"V4.2.0", false},
		{"_4.2.0", false},
		{"04.2.0", false},
		{"4.02.0", false},
		{"4.2.00", false},
		{"4.2.0.015", false},
		{"4.2.0.15.03", false},
		{"4.2.0.00", false},
		{"4.2.0.15.3.1", false},
		{"4.2.0.15.3.1.2-rocky", false},
		{"4.2.0-", false},
		{"4.2.0--rocky", false},
		{"4.2.0-rocky-", false},
		{"4.2.0.15rocky", false},
		{"4.2.0_rocky", false},
		{"4.2.0.15.", false},
		{"4.2.0.9223372036854775808", false},
		{"4.2.0.15.99999999999999999999", false},
		{"99999999999999999999.0.0", false},
		{"4.2.0.15-" + strings.Repeat("a", imagetag.MaxLen+1-len("4.2.0.15-")), true /* 129 characters */},
		{"", true},
		{"sha256:" + strings.Repeat("a", 64), true},
		{".4.2.0", true},
		{"-4.2.0", true},
		{"+4.2.0", true},
		{" 4.2.0", true},
		{"4.2.0 ", true},
		{"4.2.0\n", true},
		{"4.2.0-rocky:latest", true},
		{"4.2.0/x", true},
		{"4.2.0-ä", true},
		{"4.2.0\x00", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := imagetag.Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.in, got)
			}
			if !errors.Is(err, imagetag.ErrNotVersion) {
				t.Errorf("error %v is not ErrNotVersion", err)
			}
			if errors.Is(err, imagetag.ErrInvalidTag) != tt.invalid {
				t.Errorf("errors.Is(%v, ErrInvalidTag) = %v, want %v", err, !tt.invalid, tt.invalid)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
				t.Errorf("error %q does not name the tag", err)
			}
			want := imagetag.Tag{Raw: tt.in, UpdateLevel: -1, Build: -1}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, want)
			}
			if got.IsVersion() || !got.Moving() || got.String() != tt.in || got.Line() != "" {
				t.Errorf("non-version tag: IsVersion %v, Moving %v, String %q, Line %q", got.IsVersion(), got.Moving(), got.String(), got.Line())
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	for in, want := range map[string]string{
		"latest":       `parse image tag "latest": not a version tag: want a number at offset 0`,
		"4.2":          `parse image tag "4.2": not a version tag: fewer than three numbers`,
		"4.2.0.1.2.3":  `parse image tag "4.2.0.1.2.3": not a version tag: more than five numbers`,
		"4.02.0":       `parse image tag "4.02.0": not a version tag: number with a leading zero`,
		"4.2.0rc1":     `parse image tag "4.2.0rc1": not a version tag: unexpected 'r' after a number`,
		"4.2.0--rocky": `parse image tag "4.2.0--rocky": not a version tag: empty suffix`,
		"":             `parse image tag "": invalid tag: empty`,
		"sha256:ab":    `parse image tag "sha256:ab": invalid tag: character ':' at offset 6`,
	} {
		if _, err := imagetag.Parse(in); err == nil || err.Error() != want {
			t.Errorf("Parse(%q) error\n got %v\nwant %s", in, err, want)
		}
	}
}

// ordered is a list of tags in the order Compare must give, oldest first.
var ordered = []string{
	"latest",
	"main",
	"sha-abc",
	"3.2.0",
	"3.2.0-alpine",
	"3.2.0.1612370755920",
	"3.2.0.1612370755920.2",
	"3.2.0.1612370755920.10",
	"3.2.0.1712370755920.1",
	"3.2.0.0",
	"3.2.0.3",
	"3.2.0.3-spec1-alpine",
	"3.2.0.10-alpine",
	"4.2.0",
	"4.2.0-rocky",
	"4.2.0.0",
	"4.2.0.0-rocky",
	"4.2.0.0.1",
	"4.2.0.9",
	"4.2.0.10",
	"4.2.0.15",
	"4.2.0.15-alpine",
	"4.2.0.15-alpine-jdk17",
	"4.2.0.15-rocky",
	"4.2.0.15.3",
	"4.2.0.15.3-rocky",
	"4.2.0.15.10",
	"4.2.0.16",
	"4.2.0.100",
	"4.2.1",
	"4.10.0.0",
	"10.0.0.1",
}

func mustParse(t testing.TB, s string) imagetag.Tag {
	t.Helper()
	tag, err := imagetag.Parse(s)
	if err != nil && !errors.Is(err, imagetag.ErrNotVersion) {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return tag
}

func strs(tags []imagetag.Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.String()
	}
	return out
}

func TestSortIsNumeric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(ordered)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		tags := make([]imagetag.Tag, len(shuffled))
		for i, s := range shuffled {
			tags[i] = mustParse(t, s)
		}
		imagetag.Sort(tags)
		if got := strs(tags); !slices.Equal(got, ordered) {
			t.Fatalf("Sort(%q)\n got %q\nwant %q", shuffled, got, ordered)
		}
	}
	// The same list in string order is wrong, which is the point.
	if slices.IsSorted(ordered) {
		t.Fatal("the expected order is also the string order; the test proves nothing")
	}
}

func TestCompareIsATotalOrder(t *testing.T) {
	tags := make([]imagetag.Tag, len(ordered))
	for i, s := range ordered {
		tags[i] = mustParse(t, s)
	}
	sign := func(i, j int) int {
		switch {
		case i < j:
			return -1
		case i > j:
			return +1
		}
		return 0
	}
	for i, a := range tags {
		for j, b := range tags {
			if got, want := imagetag.Compare(a, b), sign(i, j); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, want)
			}
			if got, want := imagetag.Less(a, b), i < j; got != want {
				t.Errorf("Less(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestCompareNumbersNotStrings(t *testing.T) {
	for _, p := range [][2]string{
		{"4.2.0.9", "4.2.0.10"},
		{"4.2.0.15", "4.2.0.15.3"},
		{"4.2.0.15.3", "4.2.0.15.10"},
		{"4.9.0", "4.10.0"},
		{"9.0.0", "10.0.0"},
		{"4.2.0.15.9-rocky", "4.2.0.15.10-rocky"},
	} {
		a, b := mustParse(t, p[0]), mustParse(t, p[1])
		if !imagetag.Less(a, b) || imagetag.Less(b, a) {
			t.Errorf("want %s < %s", p[0], p[1])
		}
	}
}

func TestMoving(t *testing.T) {
	for in, want := range map[string]bool{
		"latest":                true,
		"4.2.0":                 true,
		"4.2.0-rocky":           true,
		"4.2.0.0":               true,
		"4.7.0.0-alpine-jdk17":  true,
		"4.2.0.0.3":             false,
		"4.2.0.15":              false,
		"4.2.0.15-rocky":        false,
		"4.2.0.15.3":            false,
		"3.2.0.1612370755920.2": false,
	} {
		if got := mustParse(t, in).Moving(); got != want {
			t.Errorf("%s: Moving() = %v, want %v", in, got, want)
		}
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"4.2.0.15-rocky", "4.2.0.16.2-rocky", true},
		{"4.2.0.15", "4.2.0.15.3", true},
		{"4.2.0", "4.2.0.0", true},
		{"4.2.0.15", "4.2.0.15-rocky", false},
		{"4.2.0.15-alpine", "4.2.0.15-alpine-jdk17", false},
		{"4.2.0.15", "4.2.1.15", false},
		{"4.2.0.15", "4.20.0.15", false},
		{"latest", "latest", false},
		{"latest", "4.2.0", false},
	}
	for _, tt := range tests {
		a, b := mustParse(t, tt.a), mustParse(t, tt.b)
		if got := a.SameLine(b); got != tt.same {
			t.Errorf("%s.SameLine(%s) = %v, want %v", tt.a, tt.b, got, tt.same)
		}
		if got := b.SameLine(a); got != tt.same {
			t.Errorf("%s.SameLine(%s) = %v, want %v", tt.b, tt.a, got, tt.same)
		}
		if a.IsVersion() && b.IsVersion() && (a.Line() == b.Line()) != tt.same {
			t.Errorf("Line() %q and %q disagree with SameLine", a.Line(), b.Line())
		}
	}
	for in, want := range map[string]string{
		"4.2.0.15.3-alpine-jdk17": "4.2.0-alpine-jdk17",
		"4.2.0.0":                 "4.2.0",
		"3.2.0.3-spec1-alpine":    "3.2.0-spec1-alpine",
		"latest":                  "",
	} {
		if got := mustParse(t, in).Line(); got != want {
			t.Errorf("%s: Line() = %q, want %q", in, got, want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		version            string
		updateLevel, build int64
		suffix, want       string
	}{
		{"4.7.0", 12, 3, "-rocky", "4.7.0.12.3-rocky"},
		{"4.7.0", 12, 3, "rocky", "4.7.0.12.3-rocky"},
		{"4.7.0", 12, -1, "", "4.7.0.12"},
		{"4.7.0", 0, -1, "", "4.7.0.0"},
		{"4.7.0", 0, 1, "", "4.7.0.0.1"},
		{"4.7.0", -1, -1, "-alpine-jdk17", "4.7.0-alpine-jdk17"},
		{"4.7.0", -1, 5, "", "4.7.0"}, // no build without an update level
		{"3.2.0", 1612370755920, 2, "", "3.2.0.1612370755920.2"},
	}
	for _, tt := range tests {
		if got := imagetag.Format(tt.version, tt.updateLevel, tt.build, tt.suffix); got != tt.want {
			t.Errorf("Format(%q, %d, %d, %q) = %q, want %q", tt.version, tt.updateLevel, tt.build, tt.suffix, got, tt.want)
		}
	}
}

func TestStringFormatsTheFields(t *testing.T) {
	tag := mustParse(t, "4.2.0.15-rocky")
	tag.Build = 4
	if got := tag.String(); got != "4.2.0.15.4-rocky" {
		t.Errorf("String() = %q, want 4.2.0.15.4-rocky", got)
	}
	if got := (imagetag.Tag{}).String(); got != "" {
		t.Errorf("zero Tag String() = %q", got)
	}
}

func ExampleParse() {
	for _, s := range []string{"4.2.0.15-alpine-jdk17", "4.7.0.0", "3.2.0.1612370755920.2", "latest"} {
		t, err := imagetag.Parse(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s: version %s, update level %d, build %d, OS %q, floating %v, timestamp %v\n",
			t, t.Version, t.UpdateLevel, t.Build, t.OS, t.Floating, t.Timestamp)
	}
	// Output:
	// 4.2.0.15-alpine-jdk17: version 4.2.0, update level 15, build -1, OS "alpine", floating false, timestamp false
	// 4.7.0.0: version 4.7.0, update level 0, build -1, OS "", floating true, timestamp false
	// 3.2.0.1612370755920.2: version 3.2.0, update level 1612370755920, build 2, OS "", floating false, timestamp true
	// parse image tag "latest": not a version tag: want a number at offset 0
}

func ExampleSort() {
	var tags []imagetag.Tag
	for _, s := range []string{"4.2.0.10", "latest", "4.2.0.9", "4.2.0.15.10", "4.2.0.15.3", "4.2.0.0", "4.2.0"} {
		t, _ := imagetag.Parse(s) // a non-version tag comes back with Raw set
		tags = append(tags, t)
	}
	imagetag.Sort(tags)
	fmt.Println(tags)
	// Output: [latest 4.2.0 4.2.0.0 4.2.0.9 4.2.0.10 4.2.0.15.3 4.2.0.15.10]
}

// The rebuilder's tag template executes on a Tag.
func ExampleTag_template() {
	base, _ := imagetag.Parse("4.7.0.0-rocky")
	base.UpdateLevel = 12 // the floating tag's real update level, from the update_level label
	base.Build = 3
	tmpl := template.Must(template.New("tag").Parse("{{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}}\n"))
	if err := tmpl.Execute(os.Stdout, base); err != nil {
		fmt.Println(err)
	}
	// Output: 4.7.0.12.3-rocky
}

func BenchmarkParse(b *testing.B) {
	for _, s := range []string{"4.2.0.15", "4.2.0.15-alpine-jdk17", "3.2.0.1612370755920.2", "latest"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = imagetag.Parse(s)
			}
		})
	}
}

func BenchmarkSort(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	tags := make([]imagetag.Tag, 1000)
	for i := range tags {
		tags[i] = mustParse(b, imagetag.Format("4.2.0", r.Int64N(100), r.Int64N(20), []string{"", "-rocky", "-alpine"}[r.IntN(3)]))
	}
	work := make([]imagetag.Tag, len(tags))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, tags)
		imagetag.Sort(work)
	}
}
