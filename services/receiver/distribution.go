package receiver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/mediatype"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// DistributionResult is what one distribution notification envelope gave. Every event of the envelope lands in
// exactly one of Events, Unusable and Skipped; a malformed envelope gives one Unusable and nothing else.
type DistributionResult struct {
	// Events are the manifest events to store, in envelope order.
	Events []*harborflowv1.RegistryEvent
	// Unusable are events (or the whole envelope) that cannot be used; they go to the DLQ with their Reason.
	Unusable []Unusable
	// Skipped counts the events dropped on purpose, by reason: "blob" (a push or pull whose target is not a
	// manifest), "mount" (a cross-repository blob mount), "head" (a pull made with HEAD), "own-pull" (a pull made
	// with harborflow's own User-Agent). An event is counted once, under the first of these reasons that applies.
	// Nil when nothing was skipped.
	Skipped map[string]int
}

// Unusable is an event (or a whole envelope) that cannot be used.
type Unusable struct {
	// Reason is a sentence a person can act on.
	Reason string
	// Raw is the event's JSON, or the whole body when the envelope itself is bad; in that case it is the body as
	// received, which need not be valid JSON.
	Raw json.RawMessage
}

// Reasons an event is skipped: the keys of DistributionResult.Skipped.
const (
	distSkipBlob    = "blob"
	distSkipMount   = "mount"
	distSkipHead    = "head"
	distSkipOwnPull = "own-pull"
)

// distFormat is RegistryEvent.format of distribution events.
const distFormat = "distribution"

// distEnvelope is a notification envelope (distribution notifications/event.go Envelope). The events stay raw so
// that one bad event can go to the DLQ as it was while the others are kept.
type distEnvelope struct {
	Events []json.RawMessage `json:"events"`
}

// distEvent is one event of an envelope (notifications/event.go Event); only what the receiver uses.
type distEvent struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Action    string `json:"action"`
	Target    struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		ID        string `json:"id"`
		Method    string `json:"method"`
		UserAgent string `json:"useragent"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name"`
	} `json:"actor"`
}

// ParseDistribution parses a CNCF distribution notification envelope (application/vnd.docker.distribution.events
// v1 or v2: the same shape, HARBOR.md §2). It never fails: a registry retries a refused delivery forever, so a
// malformed envelope becomes one Unusable carrying the whole body.
//
// Per event: manifest push and pull events become push and pull events; blob pushes and pulls, blob mounts, pulls
// made with HEAD and pulls whose User-Agent starts with ownUserAgentPrefix (harborflow's own reads; an empty
// prefix skips nothing) are skipped. Every delete is stored as a delete event: a manifest delete names the
// digest, a tag delete only the tag, and a repository delete neither (digest and tag empty: the whole repository
// is gone). Distribution sends a blob delete with the same shape as a manifest delete, so a delete's digest may
// name a blob. Push and pull events without a repository or a digest, deletes without a repository, events with
// an unknown action and events that are not objects are Unusable. A missing or unparsable timestamp leaves
// occurred_at unset. A digest-shaped tag (never sent by distribution) is handled as Harbor's: moved to digest.
// correlation_id and received_at are left for the caller.
func ParseDistribution(o Origin, body []byte, ownUserAgentPrefix string) DistributionResult {
	var res DistributionResult
	whole := func(reason string) DistributionResult {
		res.Unusable = append(res.Unusable, Unusable{Reason: reason, Raw: bytes.Clone(body)})
		return res
	}
	const want = `expected a distribution notification envelope {"events":[...]}`
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 {
		return whole("body is empty; " + want)
	}
	if b[0] != '{' {
		if !json.Valid(b) {
			return whole("body is not valid JSON; " + want)
		}
		return whole(fmt.Sprintf("body is %s, not a JSON object; %s", payloadJSONKindOf(b), want))
	}
	var env distEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return whole(fmt.Sprintf("body cannot be read as an envelope (%s); %s", distErrorText(err), want))
	}
	if env.Events == nil {
		return whole(`body has no "events" array; ` + want)
	}
	for i, raw := range env.Events {
		ev, skip, reason := distParseEvent(o, i, raw, ownUserAgentPrefix)
		switch {
		case ev != nil:
			res.Events = append(res.Events, ev)
		case skip != "":
			if res.Skipped == nil {
				res.Skipped = make(map[string]int, 2)
			}
			res.Skipped[skip]++
		default:
			res.Unusable = append(res.Unusable, Unusable{Reason: reason, Raw: raw})
		}
	}
	return res
}

// distParseEvent maps events[i]: it gives an event to store, a reason to skip it, or a reason it is unusable.
func distParseEvent(o Origin, i int, raw json.RawMessage, ownUserAgentPrefix string) (*harborflowv1.RegistryEvent, string, string) {
	b := bytes.TrimLeft(raw, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return nil, "", fmt.Sprintf("events[%d] is %s, not an event object", i, payloadJSONKindOf(b))
	}
	var e distEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, "", fmt.Sprintf("events[%d] cannot be read as a distribution event: %s", i, distErrorText(err))
	}
	t := &e.Target
	var kind string
	switch e.Action {
	case "mount":
		return nil, distSkipMount, ""
	case "push":
		kind = event.KindPush
	case "pull":
		kind = event.KindPull
	case "delete":
		kind = event.KindDelete
	case "":
		return nil, "", fmt.Sprintf("events[%d] has no action; want push, pull, mount or delete", i)
	default:
		return nil, "", fmt.Sprintf("events[%d] has the unknown action %q; want push, pull, mount or delete", i, e.Action)
	}
	if kind != event.KindDelete {
		if !distIsManifest(t.MediaType, t.URL) {
			return nil, distSkipBlob, ""
		}
		if kind == event.KindPull {
			if strings.EqualFold(e.Request.Method, "HEAD") {
				return nil, distSkipHead, ""
			}
			if ownUserAgentPrefix != "" && strings.HasPrefix(e.Request.UserAgent, ownUserAgentPrefix) {
				return nil, distSkipOwnPull, ""
			}
		}
	}
	if t.Repository == "" {
		return nil, "", fmt.Sprintf("events[%d] (%s) has no target.repository, so it cannot be tied to an image", i, e.Action)
	}
	if t.Digest != "" && !imageref.IsDigest(t.Digest) {
		return nil, "", fmt.Sprintf("events[%d] (%s of %s) has target.digest %q, which is not a digest", i, e.Action, t.Repository, t.Digest)
	}
	if imageref.IsDigest(t.Tag) {
		// Distribution never sends one (a tag cannot contain ':'); treated as Harbor's digest-in-tag.
		if t.Digest == "" {
			t.Digest = t.Tag
		}
		t.Tag = ""
	}
	if kind != event.KindDelete && t.Digest == "" {
		return nil, "", fmt.Sprintf("events[%d] (%s of %s) has no target.digest", i, e.Action, t.Repository)
	}
	ev := &harborflowv1.RegistryEvent{
		Id:         event.DistributionID(o.Source, e.ID, e.Action, t.Repository, t.Digest, t.Tag),
		Source:     o.Source,
		Kind:       kind,
		Type:       e.Action,
		Registry:   o.Host,
		Project:    imageref.Project(t.Repository),
		Repository: t.Repository,
		Digest:     t.Digest,
		Tag:        t.Tag,
		OccurredAt: payloadTimestamp(e.Timestamp),
		Operator:   e.Actor.Name,
		Format:     distFormat,
		RequestId:  e.Request.ID,
	}
	if kind != event.KindDelete {
		ev.MediaType = t.MediaType
	}
	return ev, "", ""
}

// distIsManifest reports whether a push or pull target is a manifest. The media type decides when it is a
// known one: a manifest type is a manifest and a layer or config type is a blob, whatever the URL says. An
// unknown media type (or none) falls back to the target URL of the manifests endpoint (distribution builds
// /v2/<name>/manifests/<digest> for manifests and /v2/<name>/blobs/<digest> for blobs), which also catches
// manifest media types the list does not know.
func distIsManifest(mediaType, url string) bool {
	switch {
	case mediatype.IsManifest(mediaType):
		return true
	case mediatype.IsBlob(mediaType):
		return false
	}
	return strings.Contains(url, "/manifests/")
}

// distErrorText describes an encoding/json error of an envelope or event without the Go type names.
func distErrorText(err error) string {
	e := payloadDecodeError("", err)
	return strings.TrimPrefix(e.Error(), ErrInvalidPayload.Error()+": ")
}
