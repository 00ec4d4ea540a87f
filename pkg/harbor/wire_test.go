package harbor

import (
	"testing"
	"time"
)

// Harbor's times read as time.Parse reads them; its "never" and what cannot be read are the zero time.
func TestWireTime(t *testing.T) {
	for in, want := range map[string]string{
		`"2026-11-22T23:53:49.674Z"`:       "2026-11-22T23:53:49.674Z",
		`"2026-11-22T23:53:49Z"`:           "2026-11-22T23:53:49Z",
		`"2026-11-22T23:53:49.123456789Z"`: "2026-11-22T23:53:49.123456789Z",
		`"2026-11-22T23:53:49.5+02:00"`:    "2026-11-22T21:53:49.5Z",
		`"0001-01-01T00:00:00.000Z"`:       "",
		`"2026-02-31T00:00:00Z"`:           "",
		`"yesterday"`:                      "",
		`null`:                             "",
		`17`:                               "",
	} {
		var wt wireTime
		if err := wt.UnmarshalJSON([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
		got := ""
		if !wt.IsZero() {
			got = wt.UTC().Format(time.RFC3339Nano)
		}
		if got != want {
			t.Errorf("%s → %q, want %q", in, got, want)
		}
	}
}
