package receiver

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

var distTestOrigin = Origin{Source: "dev-registry", Host: "registry.acme.example:5000"}

// distTestUserAgentPrefix is what the server passes: the prefix of the registry client's own User-Agent.
const distTestUserAgentPrefix = registry.UserAgentPrefix

// distTestEvent mirrors distribution's notifications.Event JSON (field order and omitempty as in
// notifications/event.go, v3.1.1).
type distTestEvent struct {
	ID        string         `json:"id,omitempty"`
	Timestamp string         `json:"timestamp,omitempty"`
	Action    string         `json:"action,omitempty"`
	Target    distTestTarget `json:"target"`
	Request   struct {
		ID        string `json:"id"`
		Addr      string `json:"addr,omitempty"`
		Host      string `json:"host,omitempty"`
		Method    string `json:"method"`
		UserAgent string `json:"useragent"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name,omitempty"`
	} `json:"actor"`
	Source struct {
		Addr       string `json:"addr,omitempty"`
		InstanceID string `json:"instanceID,omitempty"`
	} `json:"source"`
}

type distTestTarget struct {
	MediaType      string `json:"mediaType,omitempty"`
	Digest         string `json:"digest,omitempty"`
	Size           int64  `json:"size,omitempty"`
	Length         int64  `json:"length,omitempty"`
	Repository     string `json:"repository,omitempty"`
	FromRepository string `json:"fromRepository,omitempty"`
	URL            string `json:"url,omitempty"`
	Tag            string `json:"tag,omitempty"`
}

const (
	distMTIndex    = "application/vnd.oci.image.index.v1+json"
	distMTManifest = "application/vnd.oci.image.manifest.v1+json"
	distMTDocker2  = "application/vnd.docker.distribution.manifest.v2+json"
	distMTLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	distDockerUA   = "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0 os/linux arch/amd64 UpstreamClient(Docker-Client/27.3.1 \\(linux\\))"
	distOwnUA      = "harborflow/0.1.0 regclient/v0.8.2" // registry.UserAgent("0.1.0"), as distribution records it
	distTimestamp  = "2025-06-15T15:04:05.123456789Z"
)

// distTestEv builds one event the way a registry would.
func distTestEv(id, action string, target distTestTarget, method, ua, actor string) distTestEvent {
	e := distTestEvent{ID: id, Timestamp: distTimestamp, Action: action, Target: target}
	e.Request.ID = "req-" + id
	e.Request.Addr = "10.0.0.7:53122"
	e.Request.Host = "registry.acme.example:5000"
	e.Request.Method = method
	e.Request.UserAgent = ua
	e.Actor.Name = actor
	e.Source.Addr = "registry-0:5000"
	e.Source.InstanceID = "0f7b0a1c-1e5d-4a5f-8d0e-3b9c1f2a4e6d"
	return e
}

func distManifestURL(repo, digest string) string {
	return "https://registry.acme.example:5000/v2/" + repo + "/manifests/" + digest
}

func distBlobURL(repo, digest string) string {
	return "https://registry.acme.example:5000/v2/" + repo + "/blobs/" + digest
}

// distEnvelopeBody renders an envelope as distribution does: json.MarshalIndent(envelope, "", "   ").
func distEnvelopeBody(t testing.TB, events ...any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(struct {
		Events []any `json:"events"`
	}{events}, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseDistributionEnvelope(t *testing.T) {
	const repo = "acme/base/am"
	const layer = "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	events := []any{
		distTestEv("e01", "push", distTestTarget{MediaType: distMTManifest, Digest: digAmd64, Size: 1234, Length: 1234, Repository: repo, URL: distManifestURL(repo, digAmd64)}, "PUT", distDockerUA, "ci"),
		distTestEv("e02", "push", distTestTarget{MediaType: distMTLayer, Digest: layer, Size: 31457280, Length: 31457280, Repository: repo, URL: distBlobURL(repo, layer)}, "PUT", distDockerUA, "ci"),
		distTestEv("e03", "push", distTestTarget{MediaType: "application/octet-stream", Digest: layer, Size: 31457280, Length: 31457280, Repository: repo, URL: distBlobURL(repo, layer)}, "PUT", distDockerUA, "ci"),
		distTestEv("e04", "push", distTestTarget{MediaType: distMTIndex, Digest: digIndex, Size: 856, Length: 856, Repository: repo, URL: distManifestURL(repo, digIndex), Tag: "4.2.0.15"}, "PUT", distDockerUA, "ci"),
		distTestEv("e05", "pull", distTestTarget{MediaType: distMTIndex, Digest: digIndex, Size: 856, Length: 856, Repository: repo, URL: distManifestURL(repo, digIndex), Tag: "4.2.0.15"}, "HEAD", distDockerUA, "ci"),
		distTestEv("e06", "pull", distTestTarget{MediaType: distMTIndex, Digest: digIndex, Size: 856, Length: 856, Repository: repo, URL: distManifestURL(repo, digIndex), Tag: "4.2.0.15"}, "GET", distOwnUA, "harborflow"),
		distTestEv("e07", "pull", distTestTarget{MediaType: distMTDocker2, Digest: digSingle, Size: 1570, Length: 1570, Repository: "acme/tools", URL: distManifestURL("acme/tools", digSingle), Tag: "latest"}, "GET", distDockerUA, ""),
		distTestEv("e08", "mount", distTestTarget{MediaType: distMTLayer, Digest: layer, Size: 31457280, Length: 31457280, Repository: "acme/other", FromRepository: repo, URL: distBlobURL("acme/other", layer)}, "POST", distDockerUA, "ci"),
		distTestEv("e09", "delete", distTestTarget{Digest: digOld, Repository: repo}, "DELETE", "curl/8.5.0", "admin"),
		distTestEv("e10", "delete", distTestTarget{Repository: repo, Tag: "4.2.0.14"}, "DELETE", "curl/8.5.0", "admin"),
		distTestEv("e11", "delete", distTestTarget{Repository: "acme/retired"}, "DELETE", "curl/8.5.0", "admin"),
		distTestEv("e12", "push", distTestTarget{MediaType: distMTManifest, Digest: digArm64, Size: 1234, Length: 1234, URL: "https://registry.acme.example:5000/v2/manifests/" + digArm64}, "PUT", distDockerUA, "ci"),
		distTestEv("e13", "copy", distTestTarget{MediaType: distMTManifest, Digest: digArm64, Repository: repo}, "PUT", distDockerUA, "ci"),
		42,
		distTestEv("e15", "pull", distTestTarget{MediaType: distMTManifest, Digest: "sha256:nothex", Repository: repo}, "GET", distDockerUA, "ci"),
		distTestEv("e16", "push", distTestTarget{MediaType: distMTManifest, Repository: repo, Tag: "x"}, "PUT", distDockerUA, "ci"),
		distTestEv("e17", "", distTestTarget{MediaType: distMTManifest, Digest: digArm64, Repository: repo}, "PUT", distDockerUA, "ci"),
		map[string]any{"id": "e18", "action": "push", "target": "acme/base/am"},
	}
	body := distEnvelopeBody(t, events...)
	got := ParseDistribution(distTestOrigin, body, distTestUserAgentPrefix)

	at := timestamppb.New(time.Date(2025, 6, 15, 15, 4, 5, 123456789, time.UTC))
	ev := func(id, action, kind, project, repository, digest, tag, mediaType, operator string) *harborflowv1.RegistryEvent {
		return &harborflowv1.RegistryEvent{
			Id:     event.DistributionID("dev-registry", id, action, repository, digest, tag),
			Source: "dev-registry", Kind: kind, Type: action, Registry: "registry.acme.example:5000",
			Project: project, Repository: repository, Digest: digest, Tag: tag, OccurredAt: at, Operator: operator,
			Format: "distribution", MediaType: mediaType, RequestId: "req-" + id,
		}
	}
	wantEvents := []*harborflowv1.RegistryEvent{
		ev("e01", "push", "push", "acme", repo, digAmd64, "", distMTManifest, "ci"),
		ev("e04", "push", "push", "acme", repo, digIndex, "4.2.0.15", distMTIndex, "ci"),
		ev("e07", "pull", "pull", "acme", "acme/tools", digSingle, "latest", distMTDocker2, ""),
		ev("e09", "delete", "delete", "acme", repo, digOld, "", "", "admin"),
		ev("e10", "delete", "delete", "acme", repo, "", "4.2.0.14", "", "admin"),
		ev("e11", "delete", "delete", "acme", "acme/retired", "", "", "", "admin"),
	}
	if diff := cmp.Diff(wantEvents, got.Events, protocmp.Transform()); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"blob": 2, "head": 1, "own-pull": 1, "mount": 1}, got.Skipped); diff != "" {
		t.Errorf("skipped mismatch (-want +got):\n%s", diff)
	}
	wantUnusable := []struct{ id, reason string }{
		{"e12", "events[11] (push) has no target.repository"},
		{"e13", `events[12] has the unknown action "copy"`},
		{"", "events[13] is a number, not an event object"},
		{"e15", `events[14] (pull of acme/base/am) has target.digest "sha256:nothex", which is not a digest`},
		{"e16", "events[15] (push of acme/base/am) has no target.digest"},
		{"e17", "events[16] has no action"},
		{"e18", "events[17] cannot be read as a distribution event: target is a JSON string, want object"},
	}
	if len(got.Unusable) != len(wantUnusable) {
		t.Fatalf("%d unusable, want %d: %+v", len(got.Unusable), len(wantUnusable), got.Unusable)
	}
	for i, w := range wantUnusable {
		u := got.Unusable[i]
		if !strings.Contains(u.Reason, w.reason) {
			t.Errorf("unusable %d: reason %q, want it to say %q", i, u.Reason, w.reason)
		}
		if !json.Valid(u.Raw) {
			t.Errorf("unusable %d: raw is not JSON: %s", i, u.Raw)
		}
		if w.id != "" && !strings.Contains(string(u.Raw), `"id": "`+w.id+`"`) {
			t.Errorf("unusable %d: raw is not event %s: %s", i, w.id, u.Raw)
		}
	}
	total := len(got.Events) + len(got.Unusable)
	for _, n := range got.Skipped {
		total += n
	}
	if total != len(events) {
		t.Errorf("%d events accounted for, envelope had %d", total, len(events))
	}

	// The registry re-sends an undelivered envelope unchanged: same ids.
	again := ParseDistribution(distTestOrigin, body, distTestUserAgentPrefix)
	if diff := cmp.Diff(got.Events, again.Events, protocmp.Transform()); diff != "" {
		t.Errorf("second parse differs:\n%s", diff)
	}
}

// TestParseDistributionV3 is distribution 3.x: one event per envelope, v2 events media type, descriptor fields.
func TestParseDistributionV3(t *testing.T) {
	body := []byte(`{
   "events": [
      {
         "id": "7c2b3f4e-5a6d-4e8f-9a0b-1c2d3e4f5a6b",
         "timestamp": "2025-06-15T15:04:05.987654321+02:00",
         "action": "push",
         "target": {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": "` + digIndex + `",
            "size": 856,
            "artifactType": "",
            "length": 856,
            "repository": "team-a/api",
            "url": "http://localhost:5000/v2/team-a/api/manifests/` + digIndex + `",
            "tag": "1.4.2",
            "references": [
               {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + digAmd64 + `", "size": 1234,
                "platform": {"architecture": "amd64", "os": "linux"}}
            ]
         },
         "request": {
            "id": "4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a",
            "addr": "172.17.0.1:39584",
            "host": "localhost:5000",
            "method": "PUT",
            "useragent": "buildkit/v0.16"
         },
         "actor": {},
         "source": {
            "addr": "6b1f2c3d4e5f:5000",
            "instanceID": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
         }
      }
   ]
}`)
	got := ParseDistribution(distTestOrigin, body, distTestUserAgentPrefix)
	want := DistributionResult{Events: []*harborflowv1.RegistryEvent{{
		Id:     event.DistributionID("dev-registry", "7c2b3f4e-5a6d-4e8f-9a0b-1c2d3e4f5a6b", "push", "team-a/api", digIndex, "1.4.2"),
		Source: "dev-registry", Kind: "push", Type: "push", Registry: "registry.acme.example:5000",
		Project: "team-a", Repository: "team-a/api", Digest: digIndex, Tag: "1.4.2",
		OccurredAt: timestamppb.New(time.Date(2025, 6, 15, 13, 4, 5, 987654321, time.UTC)),
		Format:     "distribution", MediaType: distMTIndex, RequestId: "4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a",
	}}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDistributionEdges(t *testing.T) {
	man := func(id string, mutate func(e *distTestEvent)) distTestEvent {
		e := distTestEv(id, "push", distTestTarget{MediaType: distMTManifest, Digest: digSingle, Repository: "library/app", URL: distManifestURL("library/app", digSingle), Tag: "v1"}, "PUT", distDockerUA, "ci")
		if mutate != nil {
			mutate(&e)
		}
		return e
	}
	cases := []struct {
		name        string
		body        []byte
		prefix      string
		wantEvents  int
		wantSkipped map[string]int
		check       func(t *testing.T, r DistributionResult)
	}{
		{
			name: "no event id: still stored, id from the content",
			body: distEnvelopeBody(t, man("", nil)), prefix: distTestUserAgentPrefix, wantEvents: 1,
			check: func(t *testing.T, r DistributionResult) {
				if r.Events[0].GetId() != event.DistributionID("dev-registry", "", "push", "library/app", digSingle, "v1") {
					t.Errorf("id %q", r.Events[0].GetId())
				}
			},
		},
		{
			name: "missing and bad timestamps leave occurred_at unset",
			body: distEnvelopeBody(t,
				man("a", func(e *distTestEvent) { e.Timestamp = "" }),
				man("b", func(e *distTestEvent) { e.Timestamp = "yesterday" }),
				man("c", func(e *distTestEvent) { e.Timestamp = "0001-01-01T00:00:00Z" })),
			prefix: distTestUserAgentPrefix, wantEvents: 3,
			check: func(t *testing.T, r DistributionResult) {
				for i, ev := range r.Events {
					if ev.GetOccurredAt() != nil {
						t.Errorf("event %d: occurred_at %v", i, ev.GetOccurredAt())
					}
				}
			},
		},
		{
			name:   "manifest of a media type not in the list, recognised by its URL",
			body:   distEnvelopeBody(t, man("a", func(e *distTestEvent) { e.Target.MediaType = "application/vnd.example.manifest.v9+json" })),
			prefix: distTestUserAgentPrefix, wantEvents: 1,
		},
		{
			name: "media type with parameters and odd case",
			body: distEnvelopeBody(t, man("a", func(e *distTestEvent) {
				e.Target.MediaType = "Application/VND.OCI.image.manifest.v1+json; charset=utf-8"
				e.Target.URL = ""
			})),
			prefix: distTestUserAgentPrefix, wantEvents: 1,
		},
		{
			name: "Docker schema 1 manifest",
			body: distEnvelopeBody(t, man("a", func(e *distTestEvent) {
				e.Target.MediaType = "application/vnd.docker.distribution.manifest.v1+prettyjws"
				e.Target.URL = ""
			})),
			prefix: distTestUserAgentPrefix, wantEvents: 1,
		},
		{
			name:   "blob without media type or URL is skipped",
			body:   distEnvelopeBody(t, man("a", func(e *distTestEvent) { e.Target.MediaType, e.Target.URL, e.Target.Tag = "", "", "" })),
			prefix: distTestUserAgentPrefix, wantSkipped: map[string]int{"blob": 1},
		},
		{
			name: "own pushes are kept; only own pulls are skipped",
			body: distEnvelopeBody(t,
				man("a", func(e *distTestEvent) { e.Request.UserAgent = distOwnUA }),
				man("b", func(e *distTestEvent) { e.Action, e.Request.Method, e.Request.UserAgent = "pull", "GET", distOwnUA })),
			prefix: distTestUserAgentPrefix, wantEvents: 1, wantSkipped: map[string]int{"own-pull": 1},
		},
		{
			name:   "an empty prefix skips no pull",
			body:   distEnvelopeBody(t, man("b", func(e *distTestEvent) { e.Action, e.Request.Method, e.Request.UserAgent = "pull", "GET", distOwnUA })),
			prefix: "", wantEvents: 1,
		},
		{
			name:   "own HEAD pull counts as head",
			body:   distEnvelopeBody(t, man("b", func(e *distTestEvent) { e.Action, e.Request.Method, e.Request.UserAgent = "pull", "HEAD", distOwnUA })),
			prefix: distTestUserAgentPrefix, wantSkipped: map[string]int{"head": 1},
		},
		{
			name:   "a digest in tag is moved to digest",
			body:   distEnvelopeBody(t, distTestEv("d", "delete", distTestTarget{Repository: "library/app", Tag: digOld}, "DELETE", "curl/8.5.0", "admin")),
			prefix: distTestUserAgentPrefix, wantEvents: 1,
			check: func(t *testing.T, r DistributionResult) {
				if ev := r.Events[0]; ev.GetDigest() != digOld || ev.GetTag() != "" {
					t.Errorf("digest %q tag %q", ev.GetDigest(), ev.GetTag())
				}
			},
		},
		{
			name: "empty events array: nothing to do",
			body: []byte(`{"events":[]}`), prefix: distTestUserAgentPrefix,
		},
		{
			name: "compact body, unknown fields",
			body: []byte(`{"events":[{"id":"x","action":"pull","target":{"mediaType":"` + distMTIndex + `","digest":"` + digIndex +
				`","repository":"a/b","tag":"t","annotations":{"k":"v"}},"request":{"method":"GET","useragent":"containerd/2.0"},"extra":1}],"more":true}`),
			prefix: distTestUserAgentPrefix, wantEvents: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ParseDistribution(distTestOrigin, tc.body, tc.prefix)
			if len(r.Unusable) != 0 {
				t.Errorf("unusable: %+v", r.Unusable)
			}
			if len(r.Events) != tc.wantEvents {
				t.Errorf("%d events, want %d", len(r.Events), tc.wantEvents)
			}
			if diff := cmp.Diff(tc.wantSkipped, r.Skipped); diff != "" {
				t.Errorf("skipped mismatch (-want +got):\n%s", diff)
			}
			if tc.check != nil && len(r.Events) == tc.wantEvents {
				tc.check(t, r)
			}
		})
	}
}

// TestParseDistributionBadEnvelope: a malformed envelope is one Unusable carrying the whole body.
func TestParseDistributionBadEnvelope(t *testing.T) {
	cases := []struct{ name, body, reason string }{
		{"empty", ``, "body is empty"},
		{"not JSON", `events=1`, "body is not valid JSON"},
		{"truncated", `{"events":[{"id":"a"`, "body cannot be read as an envelope (body is not valid JSON"},
		{"array", `[{"id":"a","action":"push"}]`, "body is an array, not a JSON object"},
		{"null", `null`, "body is null, not a JSON object"},
		{"no events", `{"event":[]}`, `body has no "events" array`},
		{"events null", `{"events":null}`, `body has no "events" array`},
		{"events an object", `{"events":{"id":"a"}}`, "events is a JSON object, want array"},
		{"Harbor payload", `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":{}}`, `body has no "events" array`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ParseDistribution(distTestOrigin, []byte(tc.body), distTestUserAgentPrefix)
			if len(r.Events) != 0 || len(r.Skipped) != 0 || len(r.Unusable) != 1 {
				t.Fatalf("got %+v, want one unusable", r)
			}
			u := r.Unusable[0]
			t.Logf("reason: %s", u.Reason)
			if !strings.Contains(u.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", u.Reason, tc.reason)
			}
			if string(u.Raw) != tc.body {
				t.Errorf("raw = %q, want the whole body", u.Raw)
			}
		})
	}
}
