package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// ErrInvalidPayload marks a webhook body that cannot be accepted: malformed JSON, a missing required field, a
// field of the wrong JSON type. The error text says what is wrong; the HTTP server answers 400 with it.
var ErrInvalidPayload = errors.New("invalid payload")

// ErrUnknownEventType marks an event type that is not in Harbor's webhook catalogue (HARBOR.md §1.3), such as a
// Harbor 1.x chart event or a CloudEvents type in a Default body. It wraps ErrInvalidPayload, so
// errors.Is(err, ErrInvalidPayload) holds for it too.
var ErrUnknownEventType = fmt.Errorf("unknown event type%.0w", ErrInvalidPayload)

// Origin is what the receiver knows about where a payload came from: the configured source, not anything the
// payload says about itself.
type Origin struct {
	// Source is the configured source name, e.g. "harbor": it becomes RegistryEvent.source and is part of the id.
	Source string
	// Host is the configured registry host of the source, e.g. "harbor.acme.example": it becomes
	// RegistryEvent.registry, whatever host resource_url or harbor_hostname name.
	Host string
}

// Payload formats, the values of RegistryEvent.format.
const (
	harborFormatDefault     = "harbor-default"
	harborFormatCloudEvents = "harbor-cloudevents"
)

// Report MIME types of a scan_overview, in the order a summary is taken from (Harbor's own default order of
// X-Accept-Vulnerabilities, HARBOR.md §3.2).
const (
	harborMimeVulnReport   = "application/vnd.security.vulnerability.report; version=1.1"
	harborMimeNativeReport = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
)

// harborKind maps a Harbor Default event type to the event kind; "" for a type Harbor does not send.
func harborKind(typ string) string {
	switch typ {
	case "PUSH_ARTIFACT":
		return event.KindPush
	case "PULL_ARTIFACT":
		return event.KindPull
	case "DELETE_ARTIFACT":
		return event.KindDelete
	case "SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED":
		return event.KindScan
	case "QUOTA_EXCEED", "QUOTA_WARNING":
		return event.KindQuota
	case "REPLICATION":
		return event.KindReplication
	case "TAG_RETENTION":
		return event.KindRetention
	}
	return ""
}

// harborCloudEventTypes maps each CloudEvents type to its Default name (src/pkg/notifier/formats/cloudevents.go
// eventTypeMapping).
var harborCloudEventTypes = map[string]string{
	"harbor.artifact.pushed":            "PUSH_ARTIFACT",
	"harbor.artifact.pulled":            "PULL_ARTIFACT",
	"harbor.artifact.deleted":           "DELETE_ARTIFACT",
	"harbor.scan.completed":             "SCANNING_COMPLETED",
	"harbor.scan.failed":                "SCANNING_FAILED",
	"harbor.scan.stopped":               "SCANNING_STOPPED",
	"harbor.quota.exceeded":             "QUOTA_EXCEED",
	"harbor.quota.warned":               "QUOTA_WARNING",
	"harbor.replication.status.changed": "REPLICATION",
	"harbor.tag_retention.finished":     "TAG_RETENTION",
}

// harborUnknownType explains an event type that is not in the catalogue of the format it came in.
func harborUnknownType(typ string, cloudEvents bool) error {
	if cloudEvents {
		if harborKind(typ) != "" {
			for ce, def := range harborCloudEventTypes {
				if def == typ {
					return fmt.Errorf("%w %q in a CloudEvents payload: the CloudEvents type of %s is %s", ErrUnknownEventType, typ, typ, ce)
				}
			}
		}
	} else if def, ok := harborCloudEventTypes[typ]; ok {
		return fmt.Errorf("%w %q in a Default payload: that is the CloudEvents type of %s; CloudEvents bodies must be sent as application/cloudevents+json", ErrUnknownEventType, typ, def)
	}
	switch typ {
	case "UPLOAD_CHART", "DOWNLOAD_CHART", "DELETE_CHART":
		return fmt.Errorf("%w %q: Harbor 1.x chart events are not supported", ErrUnknownEventType, typ)
	}
	return fmt.Errorf("%w %q: not one of Harbor's webhook event types", ErrUnknownEventType, typ)
}

// harborPayload is a Default body (src/pkg/notifier/model/event.go Payload).
type harborPayload struct {
	Type      string           `json:"type"`
	OccurAt   int64            `json:"occur_at"`
	Operator  string           `json:"operator"`
	EventData *harborEventData `json:"event_data"`
}

// harborCloudEvent is a CloudEvents structured-mode body: the attributes Harbor sets, its two extensions, and
// data, which is exactly the Default event_data.
type harborCloudEvent struct {
	SpecVersion string           `json:"specversion"`
	Type        string           `json:"type"`
	Time        string           `json:"time"`
	Data        *harborEventData `json:"data"`
	Operator    string           `json:"operator"`
	RequestID   string           `json:"requestid"`
}

// harborEventData is event_data (Default) or data (CloudEvents). replication and retention stay raw: their
// canonical JSON is part of the event id.
type harborEventData struct {
	Resources        []harborResource  `json:"resources"`
	Repository       *harborRepository `json:"repository"`
	Replication      json.RawMessage   `json:"replication"`
	Retention        json.RawMessage   `json:"retention"`
	Scan             *harborScan       `json:"scan"`
	CustomAttributes map[string]string `json:"custom_attributes"`
}

type harborResource struct {
	Digest       string                     `json:"digest"`
	Tag          string                     `json:"tag"`
	ResourceURL  string                     `json:"resource_url"`
	ScanOverview map[string]json.RawMessage `json:"scan_overview"`
}

type harborRepository struct {
	DateCreated  int64  `json:"date_created"`
	Name         string `json:"name"`
	Namespace    string `json:"namespace"`
	RepoFullName string `json:"repo_full_name"`
	RepoType     string `json:"repo_type"`
}

type harborScan struct {
	ScanType string `json:"scan_type"`
}

// harborReportSummary is a scan_overview value (src/pkg/scan/vuln/summary.go NativeReportSummary).
type harborReportSummary struct {
	ReportID   string `json:"report_id"`
	ScanStatus string `json:"scan_status"`
	Severity   string `json:"severity"`
	Duration   int64  `json:"duration"`
	Summary    *struct {
		Total   int64            `json:"total"`
		Fixable int64            `json:"fixable"`
		Summary map[string]int64 `json:"summary"`
	} `json:"summary"`
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
	Scanner   *struct {
		Name    string `json:"name"`
		Vendor  string `json:"vendor"`
		Version string `json:"version"`
	} `json:"scanner"`
	CompletePercent int64 `json:"complete_percent"`
}

type harborReplication struct {
	HarborHostname     string                     `json:"harbor_hostname"`
	JobStatus          string                     `json:"job_status"`
	Description        string                     `json:"description"`
	ArtifactType       string                     `json:"artifact_type"`
	AuthenticationType string                     `json:"authentication_type"`
	OverrideMode       bool                       `json:"override_mode"`
	TriggerType        string                     `json:"trigger_type"`
	PolicyCreator      string                     `json:"policy_creator"`
	ExecutionTimestamp int64                      `json:"execution_timestamp"`
	SrcResource        *harborReplicationResource `json:"src_resource"`
	DestResource       *harborReplicationResource `json:"dest_resource"`
	SuccessfulArtifact []harborArtifactInfo       `json:"successful_artifact"`
	FailedArtifact     []harborArtifactInfo       `json:"failed_artifact"`
	ExecutionID        int64                      `json:"execution_id"`
	TaskID             int64                      `json:"task_id"`
}

type harborReplicationResource struct {
	RegistryName string `json:"registry_name"`
	RegistryType string `json:"registry_type"`
	Endpoint     string `json:"endpoint"`
	Provider     string `json:"provider"`
	Namespace    string `json:"namespace"`
}

type harborArtifactInfo struct {
	Type       string   `json:"type"`
	Status     string   `json:"status"`
	NameTag    string   `json:"name_tag"`
	References []string `json:"references"`
	FailReason string   `json:"fail_reason"`
}

type harborRetention struct {
	Total             int64                 `json:"total"`
	Retained          int64                 `json:"retained"`
	HarborHostname    string                `json:"harbor_hostname"`
	ProjectName       string                `json:"project_name"`
	RetentionPolicyID int64                 `json:"retention_policy_id"`
	RetentionRule     []harborRetentionRule `json:"retention_rule"`
	Result            string                `json:"result"`
	DeletedArtifact   []harborArtifactInfo  `json:"deleted_artifact"`
}

type harborRetentionRule struct {
	Template       string                      `json:"template"`
	Params         map[string]any              `json:"params"`
	TagSelectors   []harborSelector            `json:"tag_selectors"`
	ScopeSelectors map[string][]harborSelector `json:"scope_selectors"`
}

type harborSelector struct {
	Kind       string `json:"kind"`
	Decoration string `json:"decoration"`
	Pattern    string `json:"pattern"`
	Extras     string `json:"extras"`
}

// ParseHarborDefault parses a Harbor "Default" webhook body (application/json, HARBOR.md §1.4) into a
// RegistryEvent with its content-derived id. The event's correlation_id and received_at are left for the caller.
//
// Every event needs type and occur_at. Push, pull, delete and scan events need event_data.repository and a
// digest in resources[0] (a digest Harbor put in tag counts; it is moved to digest and tag is left empty).
// REPLICATION needs event_data.replication and TAG_RETENTION event_data.retention. Quota events are taken with
// whatever they carry: a blob-level QUOTA_EXCEED has no resources. Unknown fields are ignored. An error wraps
// ErrInvalidPayload (and ErrUnknownEventType for a type Harbor does not send) and names the field that is wrong.
func ParseHarborDefault(o Origin, body []byte) (*harborflowv1.RegistryEvent, error) {
	if err := payloadCheckObject(body); err != nil {
		return nil, err
	}
	var p harborPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, payloadDecodeError("", err)
	}
	if p.Type == "" {
		return nil, fmt.Errorf("%w: type is missing", ErrInvalidPayload)
	}
	if harborKind(p.Type) == "" {
		return nil, harborUnknownType(p.Type, false)
	}
	if p.OccurAt == 0 {
		return nil, fmt.Errorf("%w: occur_at is missing", ErrInvalidPayload)
	}
	if p.OccurAt < 0 || p.OccurAt > harborMaxSeconds {
		return nil, fmt.Errorf("%w: occur_at %d is not a time in unix seconds", ErrInvalidPayload, p.OccurAt)
	}
	return harborBuild(o, harborEnvelope{
		format:   harborFormatDefault,
		typ:      p.Type,
		at:       p.OccurAt,
		operator: p.Operator,
		data:     p.EventData,
		dataName: "event_data",
	})
}

// ParseHarborCloudEvent parses a Harbor CloudEvents structured-mode body (application/cloudevents+json,
// HARBOR.md §1.5). The event equals the one ParseHarborDefault gives for the Default copy of the same Harbor
// event, id included, except for format and request_id (the CloudEvents requestid extension). Errors are as for
// ParseHarborDefault.
func ParseHarborCloudEvent(o Origin, body []byte) (*harborflowv1.RegistryEvent, error) {
	if err := payloadCheckObject(body); err != nil {
		return nil, err
	}
	var ce harborCloudEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		return nil, payloadDecodeError("", err)
	}
	switch ce.SpecVersion {
	case "1.0":
	case "":
		return nil, fmt.Errorf("%w: specversion is missing; a CloudEvents body needs specversion 1.0", ErrInvalidPayload)
	default:
		return nil, fmt.Errorf("%w: specversion %q is not supported, want 1.0", ErrInvalidPayload, ce.SpecVersion)
	}
	if ce.Type == "" {
		return nil, fmt.Errorf("%w: type is missing", ErrInvalidPayload)
	}
	typ, ok := harborCloudEventTypes[ce.Type]
	if !ok {
		return nil, harborUnknownType(ce.Type, true)
	}
	if ce.Time == "" {
		return nil, fmt.Errorf("%w: time is missing", ErrInvalidPayload)
	}
	t, err := time.Parse(time.RFC3339, ce.Time)
	if err != nil {
		return nil, fmt.Errorf("%w: time %q is not an RFC 3339 time", ErrInvalidPayload, ce.Time)
	}
	// Harbor's time is occur_at in whole seconds; the seconds are what the id and occurred_at use, in both formats.
	at := t.Unix()
	if at <= 0 || at > harborMaxSeconds {
		return nil, fmt.Errorf("%w: time %q is out of range", ErrInvalidPayload, ce.Time)
	}
	return harborBuild(o, harborEnvelope{
		format:    harborFormatCloudEvents,
		typ:       typ,
		at:        at,
		operator:  ce.Operator,
		requestID: ce.RequestID,
		data:      ce.Data,
		dataName:  "data",
	})
}

// harborMaxSeconds is the last second a google.protobuf.Timestamp can hold (9999-12-31T23:59:59Z).
const harborMaxSeconds = 253402300799

// harborEnvelope is what both formats carry around the event data.
type harborEnvelope struct {
	format    string
	typ       string // Default name, known
	at        int64  // unix seconds, > 0
	operator  string
	requestID string
	data      *harborEventData // nil when the body had none
	dataName  string           // event_data or data, for error messages
}

// harborBuild maps a decoded Harbor event to a RegistryEvent, checks what the kind requires and derives the id.
func harborBuild(o Origin, env harborEnvelope) (*harborflowv1.RegistryEvent, error) {
	kind := harborKind(env.typ)
	ev := &harborflowv1.RegistryEvent{
		Source:     o.Source,
		Kind:       kind,
		Type:       env.typ,
		Registry:   o.Host,
		OccurredAt: &timestamppb.Timestamp{Seconds: env.at},
		Operator:   env.operator,
		Format:     env.format,
		RequestId:  env.requestID,
	}
	data := env.data
	if data == nil {
		if kind != event.KindQuota {
			return nil, fmt.Errorf("%w: %s is missing for %s", ErrInvalidPayload, env.dataName, env.typ)
		}
		data = &harborEventData{}
	}
	var err error
	switch kind {
	case event.KindReplication:
		err = harborReplicationEvent(ev, data, env)
	case event.KindRetention:
		err = harborRetentionEvent(ev, data, env)
	default:
		err = harborArtifactEvent(ev, data, env)
	}
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// harborRepositoryNames gives the full repository name and the project of event_data.repository.
func harborRepositoryNames(r *harborRepository) (repository, project string) {
	if r == nil {
		return "", ""
	}
	repository = r.RepoFullName
	if repository == "" && r.Name != "" && r.Namespace != "" {
		repository = r.Namespace + "/" + r.Name
	}
	project = r.Namespace
	if project == "" {
		project = imageref.Project(repository)
	}
	return repository, project
}

// harborSetRepository copies event_data.repository into ev.
func harborSetRepository(ev *harborflowv1.RegistryEvent, r *harborRepository) {
	ev.Repository, ev.Project = harborRepositoryNames(r)
	if r == nil {
		return
	}
	ev.RepositoryType = r.RepoType
	if r.DateCreated > 0 && r.DateCreated <= harborMaxSeconds {
		ev.RepositoryCreatedAt = &timestamppb.Timestamp{Seconds: r.DateCreated}
	}
}

// harborArtifactEvent fills an artifact (push, pull, delete), scan or quota event. Artifact and scan events need a
// repository and a digest; quota events are taken with whatever they have (a blob-level QUOTA_EXCEED has no
// resources).
func harborArtifactEvent(ev *harborflowv1.RegistryEvent, data *harborEventData, env harborEnvelope) error {
	strict := ev.Kind != event.KindQuota
	if strict && data.Repository == nil {
		return fmt.Errorf("%w: %s.repository is missing for %s", ErrInvalidPayload, env.dataName, env.typ)
	}
	harborSetRepository(ev, data.Repository)
	if strict && ev.Repository == "" {
		return fmt.Errorf("%w: %s.repository.repo_full_name is missing for %s", ErrInvalidPayload, env.dataName, env.typ)
	}
	var res *harborResource
	if len(data.Resources) > 0 {
		res = &data.Resources[0]
	}
	if res == nil && strict {
		return fmt.Errorf("%w: %s.resources[0] is missing for %s", ErrInvalidPayload, env.dataName, env.typ)
	}
	if res != nil {
		if res.Digest != "" && !imageref.IsDigest(res.Digest) {
			return fmt.Errorf("%w: %s.resources[0].digest %q is not a digest", ErrInvalidPayload, env.dataName, res.Digest)
		}
		ev.Digest, ev.Tag = res.Digest, res.Tag
		if imageref.IsDigest(ev.Tag) {
			// A push or pull by digest: Harbor puts the digest in tag (HARBOR.md §1.4).
			if ev.Digest == "" {
				ev.Digest = ev.Tag
			}
			ev.Tag = ""
		}
		ev.ResourceUrl = res.ResourceURL
	}
	if strict && ev.Digest == "" {
		return fmt.Errorf("%w: %s.resources[0].digest is missing for %s", ErrInvalidPayload, env.dataName, env.typ)
	}
	switch ev.Kind {
	case event.KindScan:
		s, err := harborScanSummary(res, data.Scan, env.dataName)
		if err != nil {
			return err
		}
		ev.Scan = s
	case event.KindQuota:
		ev.Quota = &harborflowv1.Quota{Details: data.CustomAttributes["Details"]}
	}
	ev.Id = event.ArtifactID(ev.Source, ev.Type, ev.Repository, ev.Digest, ev.Tag, env.at)
	return nil
}

// harborScanSummary builds the summary of a scan event from resources[0].scan_overview (the preferred report
// MIME type, else the first in sorted order) and event_data.scan. A Scan All event has neither an overview nor a
// scan type: the summary is then empty.
func harborScanSummary(res *harborResource, scan *harborScan, dataName string) (*harborflowv1.ScanSummary, error) {
	s := &harborflowv1.ScanSummary{}
	if scan != nil {
		s.ScanType = scan.ScanType
	}
	if res == nil || len(res.ScanOverview) == 0 {
		return s, nil
	}
	mime := ""
	for _, m := range []string{harborMimeVulnReport, harborMimeNativeReport} {
		if _, ok := res.ScanOverview[m]; ok {
			mime = m
			break
		}
	}
	if mime == "" {
		keys := make([]string, 0, len(res.ScanOverview))
		for k := range res.ScanOverview {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		mime = keys[0]
	}
	var r harborReportSummary
	if err := json.Unmarshal(res.ScanOverview[mime], &r); err != nil {
		return nil, payloadDecodeError(fmt.Sprintf("%s.resources[0].scan_overview[%q]", dataName, mime), err)
	}
	s.ReportMimeType = mime
	s.ReportId = r.ReportID
	s.Status = r.ScanStatus
	s.Severity = r.Severity
	s.DurationSeconds = r.Duration
	s.CompletePercent = r.CompletePercent
	if r.Summary != nil {
		s.Total = r.Summary.Total
		s.Fixable = r.Summary.Fixable
		if len(r.Summary.Summary) > 0 {
			s.Counts = r.Summary.Summary
		}
	}
	if r.Scanner != nil {
		s.Scanner = &harborflowv1.Scanner{Name: r.Scanner.Name, Vendor: r.Scanner.Vendor, Version: r.Scanner.Version}
	}
	s.StartTime = payloadTimestamp(r.StartTime)
	s.EndTime = payloadTimestamp(r.EndTime)
	return s, nil
}

// harborReplicationEvent fills a REPLICATION event. Its project is dest_resource.namespace, the local project in
// both pull and push mode (HARBOR.md §7: push mode swaps the namespaces).
func harborReplicationEvent(ev *harborflowv1.RegistryEvent, data *harborEventData, env harborEnvelope) error {
	name := env.dataName + ".replication"
	if payloadIsNull(data.Replication) {
		return fmt.Errorf("%w: %s is missing for %s", ErrInvalidPayload, name, env.typ)
	}
	var r harborReplication
	if err := json.Unmarshal(data.Replication, &r); err != nil {
		return payloadDecodeError(name, err)
	}
	rep := &harborflowv1.Replication{
		HarborHostname:      r.HarborHostname,
		JobStatus:           r.JobStatus,
		Description:         r.Description,
		ArtifactType:        r.ArtifactType,
		AuthenticationType:  r.AuthenticationType,
		OverrideMode:        r.OverrideMode,
		TriggerType:         r.TriggerType,
		PolicyCreator:       r.PolicyCreator,
		SrcResource:         harborReplicationResourceProto(r.SrcResource),
		DestResource:        harborReplicationResourceProto(r.DestResource),
		SuccessfulArtifacts: harborArtifactInfos(r.SuccessfulArtifact),
		FailedArtifacts:     harborArtifactInfos(r.FailedArtifact),
		ExecutionId:         r.ExecutionID,
		TaskId:              r.TaskID,
	}
	if r.ExecutionTimestamp > 0 && r.ExecutionTimestamp <= harborMaxSeconds {
		rep.ExecutionTimestamp = &timestamppb.Timestamp{Seconds: r.ExecutionTimestamp}
	}
	ev.Replication = rep
	if data.Repository != nil {
		harborSetRepository(ev, data.Repository)
	}
	if r.DestResource != nil {
		ev.Project = r.DestResource.Namespace
	}
	ev.Id = event.ReplicationID(ev.Source, r.ExecutionID, r.TaskID, r.JobStatus, data.Replication, env.at)
	return nil
}

func harborReplicationResourceProto(r *harborReplicationResource) *harborflowv1.ReplicationResource {
	if r == nil {
		return nil
	}
	return &harborflowv1.ReplicationResource{
		RegistryName: r.RegistryName,
		RegistryType: r.RegistryType,
		Endpoint:     r.Endpoint,
		Provider:     r.Provider,
		Namespace:    r.Namespace,
	}
}

func harborArtifactInfos(in []harborArtifactInfo) []*harborflowv1.ArtifactInfo {
	if len(in) == 0 {
		return nil
	}
	out := make([]*harborflowv1.ArtifactInfo, len(in))
	for i, a := range in {
		out[i] = &harborflowv1.ArtifactInfo{
			Type:       a.Type,
			Status:     a.Status,
			NameTag:    a.NameTag,
			References: a.References,
			FailReason: a.FailReason,
		}
	}
	return out
}

// harborRetentionEvent fills a TAG_RETENTION event; its project is retention.project_name.
func harborRetentionEvent(ev *harborflowv1.RegistryEvent, data *harborEventData, env harborEnvelope) error {
	name := env.dataName + ".retention"
	if payloadIsNull(data.Retention) {
		return fmt.Errorf("%w: %s is missing for %s", ErrInvalidPayload, name, env.typ)
	}
	var r harborRetention
	if err := json.Unmarshal(data.Retention, &r); err != nil {
		return payloadDecodeError(name, err)
	}
	ret := &harborflowv1.Retention{
		Total:             r.Total,
		Retained:          r.Retained,
		HarborHostname:    r.HarborHostname,
		ProjectName:       r.ProjectName,
		RetentionPolicyId: r.RetentionPolicyID,
		Result:            r.Result,
		DeletedArtifacts:  harborArtifactInfos(r.DeletedArtifact),
	}
	for i, rule := range r.RetentionRule {
		pr := &harborflowv1.RetentionRule{
			Template:     rule.Template,
			TagSelectors: harborSelectors(rule.TagSelectors),
		}
		if rule.Params != nil {
			params, err := structpb.NewStruct(rule.Params)
			if err != nil {
				return fmt.Errorf("%w: %s.retention_rule[%d].params: %v", ErrInvalidPayload, name, i, err)
			}
			pr.Params = params
		}
		if len(rule.ScopeSelectors) > 0 {
			pr.ScopeSelectors = make(map[string]*harborflowv1.SelectorList, len(rule.ScopeSelectors))
			for scope, sel := range rule.ScopeSelectors {
				pr.ScopeSelectors[scope] = &harborflowv1.SelectorList{Selectors: harborSelectors(sel)}
			}
		}
		ret.Rules = append(ret.Rules, pr)
	}
	ev.Retention = ret
	if data.Repository != nil {
		harborSetRepository(ev, data.Repository)
	}
	ev.Project = r.ProjectName
	ev.Id = event.RetentionID(ev.Source, data.Retention, env.at)
	return nil
}

func harborSelectors(in []harborSelector) []*harborflowv1.Selector {
	if len(in) == 0 {
		return nil
	}
	out := make([]*harborflowv1.Selector, len(in))
	for i, s := range in {
		out[i] = &harborflowv1.Selector{Kind: s.Kind, Decoration: s.Decoration, Pattern: s.Pattern, Extras: s.Extras}
	}
	return out
}

// payloadCheckObject rejects a body that is empty or whose top-level value is not a JSON object, with a message
// saying what it is instead. (json.Unmarshal would accept null into a struct, and describe an array badly.)
func payloadCheckObject(body []byte) error {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 {
		return fmt.Errorf("%w: body is empty", ErrInvalidPayload)
	}
	if b[0] == '{' {
		return nil
	}
	if !json.Valid(b) {
		return fmt.Errorf("%w: body is not valid JSON", ErrInvalidPayload)
	}
	return fmt.Errorf("%w: body is not a JSON object (it is %s)", ErrInvalidPayload, payloadJSONKindOf(b))
}

// payloadJSONKindOf names the kind of the JSON value that b starts with.
func payloadJSONKindOf(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "empty"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// payloadIsNull reports whether a raw member is absent or JSON null.
func payloadIsNull(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	return len(b) == 0 || string(b) == "null"
}

// payloadDecodeError turns an encoding/json error into an ErrInvalidPayload that names the field. prefix is the
// path of the value that was decoded ("" for the whole body).
func payloadDecodeError(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		switch {
		case prefix == "" && field == "":
			field = "body"
		case prefix == "":
		case field == "":
			field = prefix
		default:
			field = prefix + "." + field
		}
		return fmt.Errorf("%w: %s is a JSON %s, want %s", ErrInvalidPayload, field, te.Value, payloadGoKindName(te.Type))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		what := "body"
		if prefix != "" {
			what = prefix
		}
		return fmt.Errorf("%w: %s is not valid JSON: %v (offset %d)", ErrInvalidPayload, what, se, se.Offset)
	}
	if prefix == "" {
		return fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrInvalidPayload, prefix, err)
}

// payloadGoKindName names the JSON type a Go type decodes from.
func payloadGoKindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Name() == "" {
			return "string"
		}
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}

// payloadTimestamp parses an RFC 3339 time; "" , an unparsable value, Go's zero time and times a Timestamp cannot
// hold give nil.
func payloadTimestamp(s string) *timestamppb.Timestamp {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return nil
	}
	ts := timestamppb.New(t)
	if ts.CheckValid() != nil {
		return nil
	}
	return ts
}
