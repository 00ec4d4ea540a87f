package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// The fuzzers are seeded with the table-test bodies (f.Add) and with the corpus in testdata/fuzz/<FuzzName>/.
// Run one with: go test -run '^$' -fuzz '^FuzzParseHarborDefault$' -fuzztime 60s

// harborFuzzCheck holds for every event a parser returns without error.
func harborFuzzCheck(t *testing.T, ev *harborflowv1.RegistryEvent, o Origin, format string) {
	t.Helper()
	if ev == nil {
		t.Fatal("nil event without an error")
	}
	if ev.GetId() == "" || ev.GetSource() != o.Source || ev.GetRegistry() != o.Host || ev.GetType() == "" || !event.ValidKind(ev.GetKind()) {
		t.Fatalf("incomplete event: id %q source %q registry %q type %q kind %q", ev.GetId(), ev.GetSource(), ev.GetRegistry(), ev.GetType(), ev.GetKind())
	}
	if ev.GetFormat() != format {
		t.Fatalf("format %q, want %q", ev.GetFormat(), format)
	}
	if ev.GetCorrelationId() != "" || ev.GetReceivedAt() != nil {
		t.Fatalf("correlation_id %q / received_at %v set by the parser", ev.GetCorrelationId(), ev.GetReceivedAt())
	}
	if ev.GetDigest() != "" && !imageref.IsDigest(ev.GetDigest()) {
		t.Fatalf("digest %q is not a digest", ev.GetDigest())
	}
	if imageref.IsDigest(ev.GetTag()) {
		t.Fatalf("tag %q is a digest", ev.GetTag())
	}
	needDigest := false
	switch ev.GetKind() {
	case event.KindPush, event.KindPull, event.KindScan:
		needDigest = true
	case event.KindDelete:
		needDigest = format != distFormat // a distribution tag or repository delete has none
	}
	if needDigest && (ev.GetDigest() == "" || ev.GetRepository() == "") {
		t.Fatalf("%s event without digest (%q) or repository (%q)", ev.GetKind(), ev.GetDigest(), ev.GetRepository())
	}
	// What the server publishes must encode: valid timestamps, valid UTF-8.
	if _, err := protojson.Marshal(ev); err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	if _, err := proto.Marshal(ev); err != nil {
		t.Fatalf("proto.Marshal: %v", err)
	}
}

// harborFuzzError holds for every error a Harbor parser returns.
func harborFuzzError(t *testing.T, ev *harborflowv1.RegistryEvent, err error) {
	t.Helper()
	if ev != nil {
		t.Fatalf("event %v returned with error %v", ev, err)
	}
	if !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("error %q is not ErrInvalidPayload", err)
	}
}

func FuzzParseHarborDefault(f *testing.F) {
	for _, tc := range harborCases() {
		f.Add([]byte(tc.body))
	}
	f.Add([]byte(`{"type":"QUOTA_EXCEED","occur_at":1}`))
	f.Add([]byte(`{"type":"REPLICATION","occur_at":1750001000,"event_data":{"replication":{}}}`))
	f.Add([]byte(`{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":{"resources":[null],"repository":null}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o := harborTestOrigin
		ev, err := ParseHarborDefault(o, body)
		if err != nil {
			harborFuzzError(t, ev, err)
			return
		}
		harborFuzzCheck(t, ev, o, "harbor-default")
		again, err := ParseHarborDefault(o, body)
		if err != nil || !proto.Equal(ev, again) {
			t.Fatalf("second parse: %v, err %v; first %v", again, err, ev)
		}
		// The CloudEvents copy of the same Harbor event is the same event.
		twin := harborCloudEventTwin(t, body, "req")
		ce, err := ParseHarborCloudEvent(o, twin)
		if err != nil {
			t.Fatalf("CloudEvents twin %s: %v", twin, err)
		}
		ce.Format, ce.RequestId = ev.GetFormat(), ev.GetRequestId()
		if !proto.Equal(ev, ce) {
			t.Fatalf("CloudEvents twin differs (-default +cloudevents):\n%s", cmp.Diff(ev, ce, protocmp.Transform()))
		}
	})
}

func FuzzParseHarborCloudEvent(f *testing.F) {
	for _, tc := range harborCases() {
		f.Add(harborCloudEventTwin(f, []byte(tc.body), "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"))
	}
	f.Add([]byte(`{"specversion":"1.0","type":"harbor.quota.warned","time":"2025-06-15T15:06:40Z"}`))
	f.Add([]byte(`{"specversion":"1.0","type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40.5+14:00","data":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o := harborTestOrigin
		ev, err := ParseHarborCloudEvent(o, body)
		if err != nil {
			harborFuzzError(t, ev, err)
			return
		}
		harborFuzzCheck(t, ev, o, "harbor-cloudevents")
		again, err := ParseHarborCloudEvent(o, body)
		if err != nil || !proto.Equal(ev, again) {
			t.Fatalf("second parse: %v, err %v; first %v", again, err, ev)
		}
	})
}

func FuzzParseDistribution(f *testing.F) {
	f.Add(distEnvelopeBody(f,
		distTestEv("e01", "push", distTestTarget{MediaType: distMTManifest, Digest: digAmd64, Size: 1234, Length: 1234, Repository: "acme/base/am", URL: distManifestURL("acme/base/am", digAmd64)}, "PUT", distDockerUA, "ci"),
		distTestEv("e02", "pull", distTestTarget{MediaType: distMTIndex, Digest: digIndex, Repository: "acme/base/am", URL: distManifestURL("acme/base/am", digIndex), Tag: "4.2.0.15"}, "HEAD", distDockerUA, "ci"),
		distTestEv("e03", "pull", distTestTarget{MediaType: distMTIndex, Digest: digIndex, Repository: "acme/base/am", URL: distManifestURL("acme/base/am", digIndex), Tag: "4.2.0.15"}, "GET", distOwnUA, "hf"),
		distTestEv("e04", "mount", distTestTarget{MediaType: distMTLayer, Digest: digOld, Repository: "acme/x", FromRepository: "acme/base/am"}, "POST", distDockerUA, "ci"),
		distTestEv("e05", "delete", distTestTarget{Digest: digOld, Repository: "acme/base/am"}, "DELETE", "curl/8.5.0", "admin"),
		distTestEv("e06", "delete", distTestTarget{Repository: "acme/base/am", Tag: "old"}, "DELETE", "curl/8.5.0", "admin"),
		distTestEv("e07", "push", distTestTarget{MediaType: distMTLayer, Digest: digOld, Repository: "acme/base/am", URL: distBlobURL("acme/base/am", digOld)}, "PUT", distDockerUA, "ci"),
	))
	f.Add([]byte(`{"events":[{"action":"push","target":{"mediaType":"` + distMTManifest + `","digest":"` + digSingle + `","repository":"a/b","tag":"v1"}}]}`))
	f.Add([]byte(`{"events":[42,null,"x",{"action":"copy"},{"action":"delete","target":{"repository":"a"}}]}`))
	f.Add([]byte(`{"events":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o := distTestOrigin
		r := ParseDistribution(o, body, distTestUserAgentPrefix)

		var env distEnvelope
		b := bytes.TrimLeft(body, " \t\r\n")
		envelopeOK := len(b) > 0 && b[0] == '{' && json.Unmarshal(body, &env) == nil && env.Events != nil
		if !envelopeOK {
			if len(r.Events) != 0 || len(r.Skipped) != 0 || len(r.Unusable) != 1 || !bytes.Equal(r.Unusable[0].Raw, body) {
				t.Fatalf("bad envelope gave %+v, want one unusable with the body", r)
			}
			return
		}
		total := len(r.Events) + len(r.Unusable)
		for reason, n := range r.Skipped {
			switch reason {
			case distSkipBlob, distSkipMount, distSkipHead, distSkipOwnPull:
			default:
				t.Fatalf("unknown skip reason %q", reason)
			}
			if n <= 0 {
				t.Fatalf("skip count %q = %d", reason, n)
			}
			total += n
		}
		if total != len(env.Events) {
			t.Fatalf("%d events accounted for, envelope has %d", total, len(env.Events))
		}
		for _, u := range r.Unusable {
			if u.Reason == "" || !json.Valid(u.Raw) {
				t.Fatalf("unusable without reason or with invalid raw: %+v", u)
			}
		}
		for _, ev := range r.Events {
			harborFuzzCheck(t, ev, o, "distribution")
			if ev.GetType() != ev.GetKind() || ev.GetRepository() == "" {
				t.Fatalf("event type %q kind %q repository %q", ev.GetType(), ev.GetKind(), ev.GetRepository())
			}
		}
		again := ParseDistribution(o, body, distTestUserAgentPrefix)
		if len(again.Events) != len(r.Events) {
			t.Fatalf("second parse gave %d events, first %d", len(again.Events), len(r.Events))
		}
		for i := range r.Events {
			if !proto.Equal(r.Events[i], again.Events[i]) {
				t.Fatalf("second parse differs:\n%s", cmp.Diff(r.Events[i], again.Events[i], protocmp.Transform()))
			}
		}
	})
}
