package harbortest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Payload formats of a webhook target (HARBOR.md §1.1): an http target with no format is stored as Default.
const (
	formatDefault     = "Default"
	formatCloudEvents = "CloudEvents"
)

// Content types of the two formats (HARBOR.md §1.2).
const (
	contentTypeDefault     = "application/json"
	contentTypeCloudEvents = "application/cloudevents+json"
)

// cloudEventTypes maps the Harbor event types the stand-in fires to their CloudEvents types (HARBOR.md §1.3,
// Harbor's formats/cloudevents.go eventTypeMapping).
var cloudEventTypes = map[string]string{
	"PUSH_ARTIFACT":      "harbor.artifact.pushed",
	"PULL_ARTIFACT":      "harbor.artifact.pulled",
	"DELETE_ARTIFACT":    "harbor.artifact.deleted",
	"SCANNING_COMPLETED": "harbor.scan.completed",
	"SCANNING_FAILED":    "harbor.scan.failed",
	"SCANNING_STOPPED":   "harbor.scan.stopped",
}

// isScanEvent reports whether typ is one of the scan events, whose event_data carries scan (HARBOR.md §1.4).
func isScanEvent(typ string) bool { return strings.HasPrefix(typ, "SCANNING_") }

// The wire structs below follow Harbor's src/pkg/notifier/model/event.go field for field and in order, since
// encoding/json writes struct fields in declaration order: HARBOR.md §1.4 gives that order and the omitempty rules.

// defaultPayload is a Default body: Payload{type, occur_at, operator, event_data}.
type defaultPayload struct {
	Type      string     `json:"type"`
	OccurAt   int64      `json:"occur_at"`
	Operator  string     `json:"operator"`
	EventData *eventData `json:"event_data,omitempty"`
}

// eventData is event_data (Default) and data (CloudEvents). Replication, retention and custom_attributes belong
// to events the stand-in does not fire.
type eventData struct {
	Resources  []*resource `json:"resources,omitempty"`
	Repository *repository `json:"repository,omitempty"`
	Scan       *scanInfo   `json:"scan,omitempty"`
}

type resource struct {
	Digest       string         `json:"digest,omitempty"`
	Tag          string         `json:"tag,omitempty"`
	ResourceURL  string         `json:"resource_url,omitempty"`
	ScanOverview map[string]any `json:"scan_overview,omitempty"`
}

// repository has no omitempty but on date_created: Harbor always writes the names, even empty.
type repository struct {
	DateCreated  int64  `json:"date_created,omitempty"`
	Name         string `json:"name"`
	Namespace    string `json:"namespace"`
	RepoFullName string `json:"repo_full_name"`
	RepoType     string `json:"repo_type"`
}

type scanInfo struct {
	ScanType string `json:"scan_type,omitempty"`
}

// cloudEvent is a structured-mode CloudEvent in sdk-go's wire order (HARBOR.md §1.5): the attributes, data, then
// the two extensions. sdk-go writes the extensions in map order, so a real Harbor sends them either way round
// (§7); operatorFirst picks the order (see cloudEventsBody).
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	DataContentType string          `json:"datacontenttype"`
	Time            string          `json:"time"`
	Data            json.RawMessage `json:"data"`
}

// buildEventData is the event_data of ev: one resource, the repository, and scan on scan events.
func buildEventData(extHost string, ev Event) (*eventData, error) {
	if _, ok := cloudEventTypes[ev.Type]; !ok {
		return nil, fmt.Errorf("event type %q is not one the stand-in fires", ev.Type)
	}
	res := &resource{
		Digest:       ev.Digest,
		Tag:          ev.Tag,
		ResourceURL:  resourceURL(extHost, ev),
		ScanOverview: ev.ScanOverview,
	}
	repo := &repository{
		Name:         repositoryName(ev.Repository),
		Namespace:    ev.Project,
		RepoFullName: ev.Repository,
		RepoType:     "private",
	}
	if ev.Public {
		repo.RepoType = "public"
	}
	if !ev.RepoCreated.IsZero() {
		repo.DateCreated = ev.RepoCreated.Unix()
	}
	data := &eventData{Resources: []*resource{res}, Repository: repo}
	if isScanEvent(ev.Type) {
		// Present even with an empty scan_type: a Scan All event has "scan":{} (§1.4).
		data.Scan = &scanInfo{ScanType: ev.ScanType}
	}
	return data, nil
}

// resourceURL is <extHost>/<repo_full_name>:<tag>, or …@<digest> when the tag is a digest or absent (§1.4,
// §7.1: an index child's scan event has no tag and an @digest URL). There is no scheme.
func resourceURL(extHost string, ev Event) string {
	if ev.Tag == "" || isDigest(ev.Tag) {
		return extHost + "/" + ev.Repository + "@" + ev.Digest
	}
	return extHost + "/" + ev.Repository + ":" + ev.Tag
}

// repositoryName is repo_full_name after the first "/": wso2-apim/base/am gives base/am (§1.4).
func repositoryName(full string) string {
	if _, rest, ok := strings.Cut(full, "/"); ok {
		return rest
	}
	return full
}

// isDigest reports whether s has the form algorithm:hex, as a digest Harbor puts in tag does.
func isDigest(s string) bool {
	alg, hexPart, ok := strings.Cut(s, ":")
	if !ok || alg == "" || len(hexPart) < 32 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// defaultBody renders ev as a Default body: compact JSON, no trailing newline (§1.2, §1.4).
func defaultBody(extHost string, ev Event) ([]byte, error) {
	data, err := buildEventData(extHost, ev)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(defaultPayload{Type: ev.Type, OccurAt: ev.OccurAt.Unix(), Operator: ev.Operator, EventData: data})
	if err != nil {
		return nil, fmt.Errorf("encoding %s payload: %w", ev.Type, err)
	}
	return b, nil
}

// cloudEventsBody renders ev as a structured-mode CloudEvent for policy policyID of project projectID, with id as
// its id (§1.5): data is exactly the Default event_data; type and occur_at become type and time.
//
// The extensions requestid and operator come last, in an order taken from the id: sdk-go writes them in map
// order, so Harbor's order varies (§1.5, §7), and a receiver that depends on it should fail here too, while the
// bytes stay a function of the id for golden tests.
func cloudEventsBody(extHost string, projectID, policyID int64, id string, ev Event) ([]byte, error) {
	data, err := buildEventData(extHost, ev)
	if err != nil {
		return nil, err
	}
	rawData, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encoding %s data: %w", ev.Type, err)
	}
	b, err := json.Marshal(cloudEvent{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          fmt.Sprintf("/projects/%d/webhook/policies/%d", projectID, policyID),
		Type:            cloudEventTypes[ev.Type],
		DataContentType: "application/json",
		Time:            ev.OccurAt.UTC().Truncate(time.Second).Format(time.RFC3339),
		Data:            rawData,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding %s CloudEvent: %w", ev.Type, err)
	}
	requestID, err := json.Marshal(ev.RequestID)
	if err != nil {
		return nil, fmt.Errorf("encoding requestid: %w", err)
	}
	operator, err := json.Marshal(ev.Operator)
	if err != nil {
		return nil, fmt.Errorf("encoding operator: %w", err)
	}
	first, second := `"requestid":`+string(requestID), `"operator":`+string(operator)
	if operatorFirst(id) {
		first, second = second, first
	}
	// b ends with the closing brace of the attributes; the extensions go before it.
	out := make([]byte, 0, len(b)+len(first)+len(second)+2)
	out = append(out, b[:len(b)-1]...)
	out = append(out, ',')
	out = append(out, first...)
	out = append(out, ',')
	out = append(out, second...)
	out = append(out, '}')
	return out, nil
}

// operatorFirst decides the order of the two extensions from the id's last hex digit.
func operatorFirst(id string) bool {
	return id != "" && strings.IndexByte("13579bdfBDF", id[len(id)-1]) >= 0
}

// newUUID returns a random (version 4) UUID, as the CloudEvents id Harbor gives each delivery (§1.5).
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
