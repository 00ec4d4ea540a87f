package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/event"
)

func TestIDIsStableAndSeparatesParts(t *testing.T) {
	first := event.ID("a", "b")
	if again := event.ID("a", "b"); again != first {
		t.Fatal("same parts, different ids")
	}
	if event.ID("ab", "c") == event.ID("a", "bc") {
		t.Fatal("length prefix missing: (ab,c) == (a,bc)")
	}
	if got := len(event.ID("x")); got != 32 {
		t.Fatalf("id length %d, want 32 hex characters", got)
	}
}

func TestArtifactIDUsesTheEventTypeNotTheKind(t *testing.T) {
	warn := event.ArtifactID("harbor", "QUOTA_WARNING", "p/r", "sha256:1", "t", 100)
	exceed := event.ArtifactID("harbor", "QUOTA_EXCEED", "p/r", "sha256:1", "t", 100)
	if warn == exceed {
		t.Fatal("a QUOTA_EXCEED folds into the QUOTA_WARNING of the same second")
	}
	if warn != event.ArtifactID("harbor", "QUOTA_WARNING", "p/r", "sha256:1", "t", 100) {
		t.Fatal("identical warnings of one second must fold")
	}
	if warn == event.ArtifactID("harbor", "QUOTA_WARNING", "p/r", "sha256:1", "t", 101) {
		t.Fatal("occurred-at ignored")
	}
	if warn == event.ArtifactID("other", "QUOTA_WARNING", "p/r", "sha256:1", "t", 100) {
		t.Fatal("source ignored")
	}
}

func TestReplicationAndRetentionIDs(t *testing.T) {
	a := json.RawMessage(`{"job_status":"Running","src_resource":{"namespace":"x","endpoint":"e"}}`)
	b := json.RawMessage(`{ "src_resource": {"endpoint":"e", "namespace":"x"}, "job_status":"Running" }`)
	if event.ReplicationID("h", 0, 0, "Running", a, 1) != event.ReplicationID("h", 0, 0, "Running", b, 1) {
		t.Error("key order or spacing changes a pre-2.13 replication id")
	}
	if event.ReplicationID("h", 1, 2, "Running", a, 1) == event.ReplicationID("h", 1, 2, "Success", a, 1) {
		t.Error("job status ignored")
	}
	if event.ReplicationID("h", 1, 2, "Running", a, 1) != event.ReplicationID("h", 1, 2, "Running", b, 1) {
		t.Error("with ids, the object must not matter")
	}
	if event.RetentionID("h", a, 1) != event.RetentionID("h", b, 1) || event.RetentionID("h", a, 1) == event.RetentionID("h", a, 2) {
		t.Error("retention id")
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		`{"b":1,"a":{"d":2.50,"c":[3,"x"]}}`: `{"a":{"c":[3,"x"],"d":2.50},"b":1}`,
		` null `:                             `null`,
		`not json`:                           `not json`,
		``:                                   ``,
	} {
		if got := event.Canonical(json.RawMessage(in)); got != want {
			t.Errorf("Canonical(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestSubjects(t *testing.T) {
	if event.RegistrySubject("harbor", event.KindPush) != "registry.harbor.push" || event.DLQSubject("inspector") != "dlq.inspector" {
		t.Error("subject names changed")
	}
	for name, ok := range map[string]bool{"harbor": true, "wso2-2": true, "Harbor": false, "a.b": false, "": false, "a>": false} {
		if event.ValidSource(name) != ok {
			t.Errorf("ValidSource(%q) = %v", name, !ok)
		}
	}
}

func TestStreamsFollowTheOptions(t *testing.T) {
	streams := event.Streams(event.StreamOptions{Replicas: 3, DuplicateWindow: 600e9, MaxAge: 30 * 24 * time.Hour})
	if len(streams) != len(event.StreamNames) {
		t.Fatalf("%d streams, %d names", len(streams), len(event.StreamNames))
	}
	for i, s := range streams {
		if s.Name != event.StreamNames[i] || s.Replicas != 3 || s.Duplicates != 600e9 || s.MaxBytes != -1 {
			t.Errorf("%s: %+v", s.Name, s)
		}
		// A task is asked for again by whoever asked: TASK keeps one a day at most.
		if want := map[bool]time.Duration{true: 24 * time.Hour, false: 30 * 24 * time.Hour}[s.Name == event.StreamTask]; s.MaxAge != want {
			t.Errorf("%s: max age %s, want %s", s.Name, s.MaxAge, want)
		}
	}
}

func TestKeyEscapesWhatKVKeysCannotHold(t *testing.T) {
	for parts, want := range map[[3]string]string{
		{"registry.wso2.com", "wso2-apim/am", "sha256:abc"}: "registry=2Ewso2=2Ecom.wso2-apim/am.sha256=3Aabc",
		{"localhost:5000", "a/b", ""}:                       "localhost=3A5000.a/b.=",
		{"x=y", "ü", "a b"}:                                 "x=3Dy.=C3=BC.a=20b",
	} {
		if got := event.Key(parts[0], parts[1], parts[2]); got != want {
			t.Errorf("Key(%q) = %q, want %q", parts, got, want)
		}
	}
	if event.Key("a.b", "c") == event.Key("a", "b.c") {
		t.Error("a dot inside a part splits it")
	}
}

// TestOutputIDsArePinned pins the ids of the stages' outputs: a change would publish, within the duplicate
// window, a second copy of every message a redelivery publishes again.
func TestOutputIDsArePinned(t *testing.T) {
	const repo, digest = "harbor.acme.example/wso2-dev/acme-am", "sha256:ab"
	for _, tc := range []struct{ name, got, want string }{
		{"inspected", event.InspectedID(repo, digest, "4.2.0.15"), "42a473043fdd3a1ae2c98740a5725a1c"},
		{"rejected", event.RejectedID(repo, digest, "4.2.0.15"), "c7533f2c9b08b1df26429697be00930a"},
		{"rebuilt", event.RebuiltID("acme-am", digest, "4.2.0.15.1"), "caf9beb69e323be5fc80f6687b20e1a7"},
		{"poll", event.PollID("wso2", "registry.wso2.com/wso2-apim/am", "4.2.0", "sha256:00", digest), "f5e95091413cb9327e475b82a7dfd7e5"},
		{"promoted", event.PromotedID("acme-am", digest, "dev", "staging"), "b5c7493e2f99c9abb9b31846ce2e308b"},
		{"blocked", event.BlockedID("acme-am", digest, "dev", "staging", "pending"), "1297639d0f05a0ac0015aedaaddfa241"},
		{"promotion task", event.PromotionTaskID("acme-am", digest, 7), "15f5aa359dd87e3bba20562d28aae728"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s id = %s, want %s", tc.name, tc.got, tc.want)
		}
	}
	if event.InspectedID(repo, digest, "a") == event.RejectedID(repo, digest, "a") {
		t.Error("an image.inspected and an image.rejected of the same image share an id")
	}
}
