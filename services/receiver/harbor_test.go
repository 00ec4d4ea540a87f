package receiver

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Digests used by the payloads below.
const (
	digIndex  = "sha256:f8a9e7dec6abcdaf7a44ff4b49dc9d95d528557605e5aacac46b2150d2352e6b"
	digAmd64  = "sha256:5e9ae1bd156eec2503fb996a513df76e5f4e244922df62f6fc6889dd2ab6687a"
	digArm64  = "sha256:78356d2a6273b49a4a50ac43318fb582782d272ab61d7238217dd828992e5c7a"
	digSingle = "sha256:3dc0fc5ef426111a26e84583edbc55f4247b95505818a1655d0955f6b5aa3c6c"
	digOld    = "sha256:689f6653d8d684ea52963f750ec7130cf2c956fbd73d502030db9517042d8675"
	digQuota  = "sha256:fda679cbd0d7610daa2983ad027182f358923fcf5084e1a3d44b10c1c6c8c5aa"
)

var harborTestOrigin = Origin{Source: "harbor", Host: "harbor.acme.example"}

// harborTestTypes is HARBOR.md §1.3: every Harbor type with its CloudEvents type and kind.
var harborTestTypes = map[string]struct{ ce, kind string }{
	"PUSH_ARTIFACT":      {"harbor.artifact.pushed", "push"},
	"PULL_ARTIFACT":      {"harbor.artifact.pulled", "pull"},
	"DELETE_ARTIFACT":    {"harbor.artifact.deleted", "delete"},
	"SCANNING_COMPLETED": {"harbor.scan.completed", "scan"},
	"SCANNING_FAILED":    {"harbor.scan.failed", "scan"},
	"SCANNING_STOPPED":   {"harbor.scan.stopped", "scan"},
	"QUOTA_EXCEED":       {"harbor.quota.exceeded", "quota"},
	"QUOTA_WARNING":      {"harbor.quota.warned", "quota"},
	"REPLICATION":        {"harbor.replication.status.changed", "replication"},
	"TAG_RETENTION":      {"harbor.tag_retention.finished", "retention"},
}

// Repository objects as Harbor writes them (keys in struct order).
const (
	repoAM      = `"repository":{"date_created":1749000000,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}`
	repoAMNoAge = `"repository":{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}`
	repoAcme    = `"repository":{"date_created":1749500000,"name":"acme-am","namespace":"wso2-dev","repo_full_name":"wso2-dev/acme-am","repo_type":"public"}`
	repoAcmeQ   = `"repository":{"name":"acme-am","namespace":"wso2-dev","repo_full_name":"wso2-dev/acme-am","repo_type":"private"}`
)

// Scan overviews (NativeReportSummary keyed by report MIME type).
const (
	trivyScanner = `"scanner":{"name":"Trivy","vendor":"Aqua Security","version":"v0.61.0"}`

	overviewVulns = `"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{` +
		`"report_id":"5e1bd6d6-8f6c-4b5a-9f59-1c1c1d6f8a42","scan_status":"Success","severity":"Critical","duration":12,` +
		`"summary":{"total":42,"fixable":30,"summary":{"Critical":2,"High":10,"Low":20,"Medium":10}},` +
		`"start_time":"2025-06-15T15:06:41.123456789Z","end_time":"2025-06-15T15:06:53Z",` + trivyScanner + `,"complete_percent":100}}`
	overviewClean = `"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{` +
		`"report_id":"0b7e6d1f-3c59-4a0e-8d2c-6f4b0f0e9a11","scan_status":"Success","severity":"None","duration":4,` +
		`"summary":{"total":0,"fixable":0,"summary":{}},` +
		`"start_time":"2025-06-15T15:10:00Z","end_time":"2025-06-15T15:10:04Z",` + trivyScanner + `,"complete_percent":100}}`
	overviewFailed = `"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{` +
		`"report_id":"7a4f2c1e-9d3b-4e6a-b1c0-2f8e7d6c5b4a","scan_status":"Error","severity":"","duration":3,"summary":null,` +
		`"start_time":"2025-06-15T15:20:00Z","end_time":"2025-06-15T15:20:03Z",` + trivyScanner + `,"complete_percent":0}}`
	overviewStopped = `"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{` +
		`"report_id":"c3d2e1f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f","scan_status":"Stopped","severity":"","duration":0,"summary":null,` +
		`"start_time":"2025-06-15T15:30:00Z","end_time":"0001-01-01T00:00:00Z",` + trivyScanner + `,"complete_percent":40}}`
	// Two reports: the preferred MIME type wins even though it sorts second.
	overviewNative = `"scan_overview":{"application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0":{` +
		`"report_id":"9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a","scan_status":"Success","severity":"High","duration":20,` +
		`"summary":{"total":3,"fixable":1,"summary":{"High":1,"Low":2}},` +
		`"start_time":"2025-06-15T15:40:00Z","end_time":"2025-06-15T15:40:20Z",` + trivyScanner + `,"complete_percent":100},` +
		`"application/vnd.security.vulnerability.report; version=1.1":{` +
		`"report_id":"1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","scan_status":"Success","severity":"Low","duration":18,` +
		`"summary":{"total":2,"fixable":0,"summary":{"Low":2}},` +
		`"start_time":"2025-06-15T15:40:00Z","end_time":"2025-06-15T15:40:18Z",` + trivyScanner + `,"complete_percent":100}}`
	// Only an unknown report type: taken as it is.
	overviewOther = `"scan_overview":{"application/vnd.example.report; version=2.0":{` +
		`"report_id":"r-1","scan_status":"Success","severity":"Medium","duration":5,"summary":{"total":1,"fixable":1,"summary":{"Medium":1}},` +
		`"start_time":"2025-06-15T15:50:00Z","end_time":"2025-06-15T15:50:05Z","complete_percent":100}}`
	sbomOverview = `"sbom_overview":{"start_time":"2025-06-15T16:00:00Z","end_time":"2025-06-15T16:00:06Z","scan_status":"Success",` +
		`"sbom_digest":"sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0","report_id":"sbom-1","duration":6,` +
		`"scanner":{"name":"Trivy","vendor":"Aqua Security","version":"v0.61.0"}}`
)

// Replication objects (HARBOR.md §1.4; pull mode: src is the remote, dest the local Harbor).
const (
	replRunning = `{"harbor_hostname":"harbor.acme.example","job_status":"Running","description":"mirror WSO2 API Manager",` +
		`"artifact_type":"image","authentication_type":"basic","override_mode":true,"trigger_type":"SCHEDULE","policy_creator":"admin",` +
		`"execution_timestamp":1750000990,` +
		`"src_resource":{"registry_name":"wso2","registry_type":"harbor","endpoint":"https://registry.wso2.com","namespace":"wso2-apim"},` +
		`"dest_resource":{"registry_type":"harbor","endpoint":"https://harbor.acme.example","namespace":"wso2-mirror"},` +
		`"execution_id":17,"task_id":204}`
	replSuccess = `{"harbor_hostname":"harbor.acme.example","job_status":"Success","description":"mirror WSO2 API Manager",` +
		`"artifact_type":"image","authentication_type":"basic","override_mode":true,"trigger_type":"SCHEDULE","policy_creator":"admin",` +
		`"execution_timestamp":1750000990,` +
		`"src_resource":{"registry_name":"wso2","registry_type":"harbor","endpoint":"https://registry.wso2.com","namespace":"wso2-apim"},` +
		`"dest_resource":{"registry_type":"harbor","endpoint":"https://harbor.acme.example","namespace":"wso2-mirror"},` +
		`"successful_artifact":[{"type":"image","status":"Success","name_tag":"am [2 item(s) in total]","references":["4.2.0.15","4.2.0"]}],` +
		`"execution_id":17,"task_id":204}`
	// Harbor 2.12: no execution_id/task_id.
	replPre213 = `{"harbor_hostname":"harbor.acme.example","job_status":"Success","description":"",` +
		`"artifact_type":"image","authentication_type":"basic","trigger_type":"MANUAL","policy_creator":"admin",` +
		`"execution_timestamp":1740000000,` +
		`"src_resource":{"registry_name":"wso2","registry_type":"harbor","endpoint":"https://registry.wso2.com","namespace":"wso2-is"},` +
		`"dest_resource":{"registry_type":"harbor","endpoint":"https://harbor.acme.example","namespace":"wso2-mirror"},` +
		`"successful_artifact":[{"type":"image","status":"Success","name_tag":"is [1 item(s) in total]","references":["7.1.0.0"]}]}`
	// Push mode: Harbor swaps the namespaces, so dest_resource.namespace is the local project (HARBOR.md §7).
	replPushMode = `{"harbor_hostname":"harbor.acme.example","job_status":"Error","description":"copy prod to the DR site",` +
		`"artifact_type":"image","authentication_type":"basic","trigger_type":"EVENT","policy_creator":"ops",` +
		`"execution_timestamp":1750004000,` +
		`"src_resource":{"registry_type":"harbor","endpoint":"https://harbor.acme.example","namespace":"wso2-prod-dr"},` +
		`"dest_resource":{"registry_name":"dr-harbor","registry_type":"harbor","endpoint":"https://dr.acme.example","namespace":"wso2-prod"},` +
		`"failed_artifact":[{"type":"image","status":"Error","name_tag":"acme-am [1 item(s) in total]","references":null}],` +
		`"execution_id":31,"task_id":912}`
)

// retentionReport is a TAG_RETENTION retention object.
const retentionReport = `{"total":5,"retained":3,"harbor_hostname":"harbor.acme.example","project_name":"wso2-dev","retention_policy_id":3,` +
	`"retention_rule":[{"template":"latestPushedK","params":{"latestPushedK":3},` +
	`"tag_selectors":[{"kind":"doublestar","decoration":"matches","pattern":"4.2.0.*","extras":"{\"untagged\":false}"}],` +
	`"scope_selectors":{"repository":[{"kind":"doublestar","decoration":"repoMatches","pattern":"**","extras":""}]}}],` +
	`"result":"SUCCESS","deleted_artifact":[` +
	`{"type":"image","status":"SUCCESS","name_tag":"acme-am:4.2.0.12.1","references":null},` +
	`{"type":"image","status":"SUCCESS","name_tag":"acme-am@` + digOld + `","references":null}]}`

// harborCase is one Default payload and the event it must give.
type harborCase struct {
	name string
	body string
	want *harborflowv1.RegistryEvent
}

func harborTS(sec int64) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: sec} }

// harborCases covers every Harbor event type (HARBOR.md §1.3-1.4), Harbor 2.13 shapes.
func harborCases() []harborCase {
	const at = 1750000000
	trivy := &harborflowv1.Scanner{Name: "Trivy", Vendor: "Aqua Security", Version: "v0.61.0"}
	base := func(typ, kind string, sec int64, operator string) *harborflowv1.RegistryEvent {
		return &harborflowv1.RegistryEvent{
			Source: "harbor", Kind: kind, Type: typ, Registry: "harbor.acme.example",
			OccurredAt: harborTS(sec), Operator: operator, Format: "harbor-default",
		}
	}
	am := func(ev *harborflowv1.RegistryEvent, created bool) *harborflowv1.RegistryEvent {
		ev.Project, ev.Repository, ev.RepositoryType = "wso2-apim", "wso2-apim/base/am", "private"
		if created {
			ev.RepositoryCreatedAt = harborTS(1749000000)
		}
		return ev
	}
	artifact := func(ev *harborflowv1.RegistryEvent, digest, tag, url string) *harborflowv1.RegistryEvent {
		ev.Digest, ev.Tag, ev.ResourceUrl = digest, tag, url
		ev.Id = event.ArtifactID(ev.Source, ev.Type, ev.Repository, digest, tag, ev.OccurredAt.Seconds)
		return ev
	}
	withScan := func(ev *harborflowv1.RegistryEvent, s *harborflowv1.ScanSummary) *harborflowv1.RegistryEvent {
		ev.Scan = s
		return ev
	}
	replication := func(ev *harborflowv1.RegistryEvent, raw string, project string, r *harborflowv1.Replication) *harborflowv1.RegistryEvent {
		ev.Project, ev.Replication = project, r
		ev.Id = event.ReplicationID(ev.Source, r.ExecutionId, r.TaskId, r.JobStatus, json.RawMessage(raw), ev.OccurredAt.Seconds)
		return ev
	}
	wso2 := &harborflowv1.ReplicationResource{RegistryName: "wso2", RegistryType: "harbor", Endpoint: "https://registry.wso2.com", Namespace: "wso2-apim"}
	mirror := &harborflowv1.ReplicationResource{RegistryType: "harbor", Endpoint: "https://harbor.acme.example", Namespace: "wso2-mirror"}
	quota := func(ev *harborflowv1.RegistryEvent, details string) *harborflowv1.RegistryEvent {
		ev.Project, ev.Repository, ev.RepositoryType = "wso2-dev", "wso2-dev/acme-am", "private"
		ev.Quota = &harborflowv1.Quota{Details: details}
		return ev
	}
	const warnDetails = "quota usage reach 85%: resource storage used 12.6 MiB of 14.0 MiB"
	const exceedDetails = "adding 2.1 MiB of storage resource, which when updated to current usage of 8.3 MiB will exceed the configured upper limit of 10.0 MiB."

	params, err := structpb.NewStruct(map[string]any{"latestPushedK": 3})
	if err != nil {
		panic(err)
	}
	retention := base("TAG_RETENTION", "retention", at+2000, "admin")
	retention.Project = "wso2-dev"
	retention.Retention = &harborflowv1.Retention{
		Total: 5, Retained: 3, HarborHostname: "harbor.acme.example", ProjectName: "wso2-dev", RetentionPolicyId: 3,
		Rules: []*harborflowv1.RetentionRule{{
			Template:     "latestPushedK",
			Params:       params,
			TagSelectors: []*harborflowv1.Selector{{Kind: "doublestar", Decoration: "matches", Pattern: "4.2.0.*", Extras: `{"untagged":false}`}},
			ScopeSelectors: map[string]*harborflowv1.SelectorList{
				"repository": {Selectors: []*harborflowv1.Selector{{Kind: "doublestar", Decoration: "repoMatches", Pattern: "**"}}},
			},
		}},
		Result: "SUCCESS",
		DeletedArtifacts: []*harborflowv1.ArtifactInfo{
			{Type: "image", Status: "SUCCESS", NameTag: "acme-am:4.2.0.12.1"},
			{Type: "image", Status: "SUCCESS", NameTag: "acme-am@" + digOld},
		},
	}
	retention.Id = event.RetentionID("harbor", json.RawMessage(retentionReport), at+2000)

	return []harborCase{
		{
			name: "push by tag",
			body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"robot$wso2-apim+ci","event_data":{"resources":[{"digest":"` + digIndex +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"}],` + repoAM + `}}`,
			want: artifact(am(base("PUSH_ARTIFACT", "push", at, "robot$wso2-apim+ci"), true), digIndex, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
		},
		{
			name: "push by digest: digest in tag",
			body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"robot$wso2-apim+ci","event_data":{"resources":[{"digest":"` + digAmd64 +
				`","tag":"` + digAmd64 + `","resource_url":"harbor.acme.example:8443/wso2-apim/base/am@` + digAmd64 + `"}],` + repoAM + `}}`,
			want: artifact(am(base("PUSH_ARTIFACT", "push", at, "robot$wso2-apim+ci"), true), digAmd64, "", "harbor.acme.example:8443/wso2-apim/base/am@"+digAmd64),
		},
		{
			name: "push with the digest only in tag",
			body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"admin","event_data":{"resources":[{"tag":"` + digArm64 +
				`","resource_url":"harbor.acme.example/wso2-apim/base/am@` + digArm64 + `"}],` + repoAM + `}}`,
			want: artifact(am(base("PUSH_ARTIFACT", "push", at, "admin"), true), digArm64, "", "harbor.acme.example/wso2-apim/base/am@"+digArm64),
		},
		{
			name: "anonymous pull of a public repository",
			body: `{"type":"PULL_ARTIFACT","occur_at":1750000100,"operator":"","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15.1","resource_url":"harbor.acme.example/wso2-dev/acme-am:4.2.0.15.1"}],` + repoAcme + `}}`,
			want: func() *harborflowv1.RegistryEvent {
				ev := base("PULL_ARTIFACT", "pull", at+100, "")
				ev.Project, ev.Repository, ev.RepositoryType, ev.RepositoryCreatedAt = "wso2-dev", "wso2-dev/acme-am", "public", harborTS(1749500000)
				return artifact(ev, digSingle, "4.2.0.15.1", "harbor.acme.example/wso2-dev/acme-am:4.2.0.15.1")
			}(),
		},
		{
			name: "retention delete",
			body: `{"type":"DELETE_ARTIFACT","occur_at":1750000200,"operator":"harbor-jobservice","event_data":{"resources":[{"digest":"` + digOld +
				`","tag":"4.2.0","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0"}],` + repoAM + `}}`,
			want: artifact(am(base("DELETE_ARTIFACT", "delete", at+200, "harbor-jobservice"), true), digOld, "4.2.0", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0"),
		},
		{
			name: "delete after the repository is gone: no date_created",
			body: `{"type":"DELETE_ARTIFACT","occur_at":1750000201,"operator":"admin","event_data":{"resources":[{"digest":"` + digOld +
				`","tag":"` + digOld + `","resource_url":"harbor.acme.example:8443/wso2-apim/base/am@` + digOld + `"}],` + repoAMNoAge + `}}`,
			want: artifact(am(base("DELETE_ARTIFACT", "delete", at+201, "admin"), false), digOld, "", "harbor.acme.example:8443/wso2-apim/base/am@"+digOld),
		},
		{
			name: "scan completed with vulnerabilities",
			body: `{"type":"SCANNING_COMPLETED","occur_at":1750000300,"operator":"auto","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15",` + overviewVulns + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"vulnerability"}}}`,
			want: withScan(artifact(am(base("SCANNING_COMPLETED", "scan", at+300, "auto"), false), digSingle, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
				&harborflowv1.ScanSummary{
					ScanType: "vulnerability", ReportMimeType: "application/vnd.security.vulnerability.report; version=1.1",
					ReportId: "5e1bd6d6-8f6c-4b5a-9f59-1c1c1d6f8a42", Status: "Success", Severity: "Critical", Total: 42, Fixable: 30,
					Counts:  map[string]int64{"Critical": 2, "High": 10, "Medium": 10, "Low": 20},
					Scanner: trivy, DurationSeconds: 12, CompletePercent: 100,
					StartTime: &timestamppb.Timestamp{Seconds: time.Date(2025, 6, 15, 15, 6, 41, 0, time.UTC).Unix(), Nanos: 123456789},
					EndTime:   timestamppb.New(time.Date(2025, 6, 15, 15, 6, 53, 0, time.UTC)),
				}),
		},
		{
			name: "scan completed without vulnerabilities",
			body: `{"type":"SCANNING_COMPLETED","occur_at":1750000301,"operator":"admin","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15",` + overviewClean + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"vulnerability"}}}`,
			want: withScan(artifact(am(base("SCANNING_COMPLETED", "scan", at+301, "admin"), false), digSingle, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
				&harborflowv1.ScanSummary{
					ScanType: "vulnerability", ReportMimeType: "application/vnd.security.vulnerability.report; version=1.1",
					ReportId: "0b7e6d1f-3c59-4a0e-8d2c-6f4b0f0e9a11", Status: "Success", Severity: "None",
					Scanner: trivy, DurationSeconds: 4, CompletePercent: 100,
					StartTime: timestamppb.New(time.Date(2025, 6, 15, 15, 10, 0, 0, time.UTC)),
					EndTime:   timestamppb.New(time.Date(2025, 6, 15, 15, 10, 4, 0, time.UTC)),
				}),
		},
		{
			name: "scan failed: summary null, severity empty, no tag",
			body: `{"type":"SCANNING_FAILED","occur_at":1750000302,"operator":"auto","event_data":{"resources":[{"digest":"` + digAmd64 +
				`","resource_url":"harbor.acme.example:8443/wso2-apim/base/am@` + digAmd64 + `",` + overviewFailed + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"vulnerability"}}}`,
			want: withScan(artifact(am(base("SCANNING_FAILED", "scan", at+302, "auto"), false), digAmd64, "", "harbor.acme.example:8443/wso2-apim/base/am@"+digAmd64),
				&harborflowv1.ScanSummary{
					ScanType: "vulnerability", ReportMimeType: "application/vnd.security.vulnerability.report; version=1.1",
					ReportId: "7a4f2c1e-9d3b-4e6a-b1c0-2f8e7d6c5b4a", Status: "Error", Scanner: trivy, DurationSeconds: 3,
					StartTime: timestamppb.New(time.Date(2025, 6, 15, 15, 20, 0, 0, time.UTC)),
					EndTime:   timestamppb.New(time.Date(2025, 6, 15, 15, 20, 3, 0, time.UTC)),
				}),
		},
		{
			name: "scan stopped: zero end time",
			body: `{"type":"SCANNING_STOPPED","occur_at":1750000303,"operator":"admin","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15",` + overviewStopped + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"vulnerability"}}}`,
			want: withScan(artifact(am(base("SCANNING_STOPPED", "scan", at+303, "admin"), false), digSingle, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
				&harborflowv1.ScanSummary{
					ScanType: "vulnerability", ReportMimeType: "application/vnd.security.vulnerability.report; version=1.1",
					ReportId: "c3d2e1f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f", Status: "Stopped", Scanner: trivy, CompletePercent: 40,
					StartTime: timestamppb.New(time.Date(2025, 6, 15, 15, 30, 0, 0, time.UTC)),
				}),
		},
		{
			name: "Scan All: scan {} and no scan_overview",
			body: `{"type":"SCANNING_COMPLETED","occur_at":1750000304,"operator":"admin","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"}],` + repoAMNoAge + `,"scan":{}}}`,
			want: withScan(artifact(am(base("SCANNING_COMPLETED", "scan", at+304, "admin"), false), digSingle, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
				&harborflowv1.ScanSummary{}),
		},
		{
			name: "scan of an index child: no tag, two reports, preferred one taken",
			body: `{"type":"SCANNING_COMPLETED","occur_at":1750000305,"operator":"auto","event_data":{"resources":[{"digest":"` + digArm64 +
				`","resource_url":"harbor.acme.example:8443/wso2-apim/base/am@` + digArm64 + `",` + overviewNative + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"vulnerability"}}}`,
			want: withScan(artifact(am(base("SCANNING_COMPLETED", "scan", at+305, "auto"), false), digArm64, "", "harbor.acme.example:8443/wso2-apim/base/am@"+digArm64),
				&harborflowv1.ScanSummary{
					ScanType: "vulnerability", ReportMimeType: "application/vnd.security.vulnerability.report; version=1.1",
					ReportId: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Status: "Success", Severity: "Low", Total: 2,
					Counts: map[string]int64{"Low": 2}, Scanner: trivy, DurationSeconds: 18, CompletePercent: 100,
					StartTime: timestamppb.New(time.Date(2025, 6, 15, 15, 40, 0, 0, time.UTC)),
					EndTime:   timestamppb.New(time.Date(2025, 6, 15, 15, 40, 18, 0, time.UTC)),
				}),
		},
		{
			name: "scan with an unknown report type only",
			body: `{"type":"SCANNING_COMPLETED","occur_at":1750000306,"operator":"auto","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15",` + overviewOther + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"vulnerability"}}}`,
			want: withScan(artifact(am(base("SCANNING_COMPLETED", "scan", at+306, "auto"), false), digSingle, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
				&harborflowv1.ScanSummary{
					ScanType: "vulnerability", ReportMimeType: "application/vnd.example.report; version=2.0",
					ReportId: "r-1", Status: "Success", Severity: "Medium", Total: 1, Fixable: 1,
					Counts: map[string]int64{"Medium": 1}, DurationSeconds: 5, CompletePercent: 100,
					StartTime: timestamppb.New(time.Date(2025, 6, 15, 15, 50, 0, 0, time.UTC)),
					EndTime:   timestamppb.New(time.Date(2025, 6, 15, 15, 50, 5, 0, time.UTC)),
				}),
		},
		{
			name: "SBOM scan: sbom_overview only",
			body: `{"type":"SCANNING_COMPLETED","occur_at":1750000307,"operator":"admin","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15",` + sbomOverview + `}],` + repoAMNoAge +
				`,"scan":{"scan_type":"sbom"}}}`,
			want: withScan(artifact(am(base("SCANNING_COMPLETED", "scan", at+307, "admin"), false), digSingle, "4.2.0.15", "harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"),
				&harborflowv1.ScanSummary{ScanType: "sbom"}),
		},
		{
			name: "quota warning of a manifest: digest and tag, no resource_url",
			body: `{"type":"QUOTA_WARNING","occur_at":1750003000,"operator":"robot$wso2-dev+ci","event_data":{"resources":[{"digest":"` + digQuota +
				`","tag":"4.2.0.16"}],` + repoAcmeQ + `,"custom_attributes":{"Details":"` + warnDetails + `"}}}`,
			want: artifact(quota(base("QUOTA_WARNING", "quota", at+3000, "robot$wso2-dev+ci"), warnDetails), digQuota, "4.2.0.16", ""),
		},
		{
			name: "quota exceeded by a blob upload: no resources",
			body: `{"type":"QUOTA_EXCEED","occur_at":1750003000,"operator":"robot$wso2-dev+ci","event_data":{` + repoAcmeQ +
				`,"custom_attributes":{"Details":"` + exceedDetails + `"}}}`,
			want: artifact(quota(base("QUOTA_EXCEED", "quota", at+3000, "robot$wso2-dev+ci"), exceedDetails), "", "", ""),
		},
		{
			name: "quota exceeded by a manifest",
			body: `{"type":"QUOTA_EXCEED","occur_at":1750003000,"operator":"robot$wso2-dev+ci","event_data":{"resources":[{"digest":"` + digQuota +
				`","tag":"4.2.0.16"}],` + repoAcmeQ + `,"custom_attributes":{"Details":"` + exceedDetails + `"}}}`,
			want: artifact(quota(base("QUOTA_EXCEED", "quota", at+3000, "robot$wso2-dev+ci"), exceedDetails), digQuota, "4.2.0.16", ""),
		},
		{
			name: "replication task running (2.13: execution and task ids)",
			body: `{"type":"REPLICATION","occur_at":1750001000,"operator":"admin","event_data":{"replication":` + replRunning + `}}`,
			want: replication(base("REPLICATION", "replication", at+1000, "admin"), replRunning, "wso2-mirror", &harborflowv1.Replication{
				HarborHostname: "harbor.acme.example", JobStatus: "Running", Description: "mirror WSO2 API Manager", ArtifactType: "image",
				AuthenticationType: "basic", OverrideMode: true, TriggerType: "SCHEDULE", PolicyCreator: "admin",
				ExecutionTimestamp: harborTS(1750000990), SrcResource: wso2, DestResource: mirror, ExecutionId: 17, TaskId: 204,
			}),
		},
		{
			name: "replication task succeeded",
			body: `{"type":"REPLICATION","occur_at":1750001060,"operator":"admin","event_data":{"replication":` + replSuccess + `}}`,
			want: replication(base("REPLICATION", "replication", at+1060, "admin"), replSuccess, "wso2-mirror", &harborflowv1.Replication{
				HarborHostname: "harbor.acme.example", JobStatus: "Success", Description: "mirror WSO2 API Manager", ArtifactType: "image",
				AuthenticationType: "basic", OverrideMode: true, TriggerType: "SCHEDULE", PolicyCreator: "admin",
				ExecutionTimestamp: harborTS(1750000990), SrcResource: wso2, DestResource: mirror, ExecutionId: 17, TaskId: 204,
				SuccessfulArtifacts: []*harborflowv1.ArtifactInfo{{Type: "image", Status: "Success", NameTag: "am [2 item(s) in total]", References: []string{"4.2.0.15", "4.2.0"}}},
			}),
		},
		{
			name: "replication before 2.13: no ids, id from the whole object",
			body: `{"type":"REPLICATION","occur_at":1740000030,"operator":"admin","event_data":{"replication":` + replPre213 + `}}`,
			want: replication(base("REPLICATION", "replication", 1740000030, "admin"), replPre213, "wso2-mirror", &harborflowv1.Replication{
				HarborHostname: "harbor.acme.example", JobStatus: "Success", ArtifactType: "image",
				AuthenticationType: "basic", TriggerType: "MANUAL", PolicyCreator: "admin",
				ExecutionTimestamp:  harborTS(1740000000),
				SrcResource:         &harborflowv1.ReplicationResource{RegistryName: "wso2", RegistryType: "harbor", Endpoint: "https://registry.wso2.com", Namespace: "wso2-is"},
				DestResource:        mirror,
				SuccessfulArtifacts: []*harborflowv1.ArtifactInfo{{Type: "image", Status: "Success", NameTag: "is [1 item(s) in total]", References: []string{"7.1.0.0"}}},
			}),
		},
		{
			name: "push-mode replication failed: project from dest_resource.namespace",
			body: `{"type":"REPLICATION","occur_at":1750004010,"operator":"ops","event_data":{"replication":` + replPushMode + `}}`,
			want: replication(base("REPLICATION", "replication", at+4010, "ops"), replPushMode, "wso2-prod", &harborflowv1.Replication{
				HarborHostname: "harbor.acme.example", JobStatus: "Error", Description: "copy prod to the DR site", ArtifactType: "image",
				AuthenticationType: "basic", TriggerType: "EVENT", PolicyCreator: "ops", ExecutionTimestamp: harborTS(1750004000),
				SrcResource:     &harborflowv1.ReplicationResource{RegistryType: "harbor", Endpoint: "https://harbor.acme.example", Namespace: "wso2-prod-dr"},
				DestResource:    &harborflowv1.ReplicationResource{RegistryName: "dr-harbor", RegistryType: "harbor", Endpoint: "https://dr.acme.example", Namespace: "wso2-prod"},
				FailedArtifacts: []*harborflowv1.ArtifactInfo{{Type: "image", Status: "Error", NameTag: "acme-am [1 item(s) in total]"}},
				ExecutionId:     31, TaskId: 912,
			}),
		},
		{
			name: "tag retention",
			body: `{"type":"TAG_RETENTION","occur_at":1750002000,"operator":"admin","event_data":{"retention":` + retentionReport + `}}`,
			want: retention,
		},
	}
}

// harborCloudEventTwin builds the CloudEvents copy of a Default body the way Harbor does (HARBOR.md §1.5): data is
// exactly event_data, type and occur_at become type and time, operator and requestid are extensions. Attributes
// are in sdk-go's wire order; the extensions come last.
func harborCloudEventTwin(t testing.TB, def []byte, requestID string) []byte {
	t.Helper()
	var p struct {
		Type      string          `json:"type"`
		OccurAt   int64           `json:"occur_at"`
		Operator  string          `json:"operator"`
		EventData json.RawMessage `json:"event_data"`
	}
	if err := json.Unmarshal(def, &p); err != nil {
		t.Fatalf("Default body: %v", err)
	}
	typ, ok := harborTestTypes[p.Type]
	if !ok {
		t.Fatalf("no CloudEvents type for %q", p.Type)
	}
	ce := struct {
		SpecVersion     string          `json:"specversion"`
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		DataContentType string          `json:"datacontenttype"`
		Time            string          `json:"time"`
		Data            json.RawMessage `json:"data,omitempty"`
		RequestID       string          `json:"requestid"`
		Operator        string          `json:"operator"`
	}{
		SpecVersion:     "1.0",
		ID:              "3b0f5a8e-6d0c-4f43-9a55-0c9b3c7e2d11",
		Source:          "/projects/7/webhook/policies/3",
		Type:            typ.ce,
		DataContentType: "application/json",
		Time:            time.Unix(p.OccurAt, 0).UTC().Format(time.RFC3339),
		Data:            p.EventData,
		RequestID:       requestID,
		Operator:        p.Operator,
	}
	b, err := json.Marshal(ce)
	if err != nil {
		t.Fatalf("CloudEvents body: %v", err)
	}
	return b
}

func TestParseHarborDefault(t *testing.T) {
	for _, tc := range harborCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHarborDefault(harborTestOrigin, []byte(tc.body))
			if err != nil {
				t.Fatalf("ParseHarborDefault: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("event mismatch (-want +got):\n%s", diff)
			}
			again, err := ParseHarborDefault(harborTestOrigin, []byte(tc.body))
			if err != nil || again.GetId() != got.GetId() {
				t.Errorf("second parse of the same body: id %q, err %v; want id %q", again.GetId(), err, got.GetId())
			}
		})
	}
}

// TestParseHarborCloudEventTwin: the CloudEvents copy of every Default payload gives the same event, id
// included, apart from format and request_id.
func TestParseHarborCloudEventTwin(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range harborCases() {
		t.Run(tc.name, func(t *testing.T) {
			seen[tc.want.GetType()] = true
			def, err := ParseHarborDefault(harborTestOrigin, []byte(tc.body))
			if err != nil {
				t.Fatalf("ParseHarborDefault: %v", err)
			}
			body := harborCloudEventTwin(t, []byte(tc.body), "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b")
			ce, err := ParseHarborCloudEvent(harborTestOrigin, body)
			if err != nil {
				t.Fatalf("ParseHarborCloudEvent(%s): %v", body, err)
			}
			if diff := cmp.Diff(def, ce, protocmp.Transform(),
				protocmp.IgnoreFields(&harborflowv1.RegistryEvent{}, "format", "request_id")); diff != "" {
				t.Errorf("CloudEvents event differs from the Default one (-default +cloudevents):\n%s", diff)
			}
			if ce.GetFormat() != "harbor-cloudevents" || ce.GetRequestId() != "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b" {
				t.Errorf("format %q, request_id %q; want harbor-cloudevents and the requestid extension", ce.GetFormat(), ce.GetRequestId())
			}
			if def.GetRequestId() != "" {
				t.Errorf("Default event has request_id %q, want none", def.GetRequestId())
			}
		})
	}
	for typ := range harborTestTypes {
		if !seen[typ] {
			t.Errorf("no case for %s", typ)
		}
	}
}

// TestParseHarborCloudEventWire parses CloudEvents bodies written as they come off the wire: extensions in either
// order, data keys reordered and indented. Ids must match the Default copies.
func TestParseHarborCloudEventWire(t *testing.T) {
	cases := []struct {
		name    string
		ce      string
		def     string
		request string
	}{
		{
			name: "push, extensions operator first",
			ce: `{"specversion":"1.0","id":"0e4b5c6d-7e8f-4091-a2b3-c4d5e6f70819","source":"/projects/7/webhook/policies/3","type":"harbor.artifact.pushed",` +
				`"datacontenttype":"application/json","time":"2025-06-15T15:06:40Z","data":{"resources":[{"digest":"` + digIndex +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"}],` + repoAM + `},` +
				`"operator":"robot$wso2-apim+ci","requestid":"b9f0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d"}`,
			def: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"robot$wso2-apim+ci","event_data":{"resources":[{"digest":"` + digIndex +
				`","tag":"4.2.0.15","resource_url":"harbor.acme.example:8443/wso2-apim/base/am:4.2.0.15"}],` + repoAM + `}}`,
			request: "b9f0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d",
		},
		{
			name: "replication before 2.13, object reordered and indented",
			ce: `{"specversion":"1.0","id":"5d6e7f80-9a1b-4c2d-8e3f-405162738495","source":"/projects/9/webhook/policies/4",` +
				`"type":"harbor.replication.status.changed","datacontenttype":"application/json","time":"2025-02-19T21:20:30Z",` +
				`"data":{"replication":{
				  "successful_artifact": [{"references": ["7.1.0.0"], "name_tag": "is [1 item(s) in total]", "status": "Success", "type": "image"}],
				  "dest_resource": {"namespace": "wso2-mirror", "endpoint": "https://harbor.acme.example", "registry_type": "harbor"},
				  "src_resource": {"namespace": "wso2-is", "endpoint": "https://registry.wso2.com", "registry_type": "harbor", "registry_name": "wso2"},
				  "execution_timestamp": 1740000000, "policy_creator": "admin", "trigger_type": "MANUAL", "authentication_type": "basic",
				  "artifact_type": "image", "description": "", "job_status": "Success", "harbor_hostname": "harbor.acme.example"}},` +
				`"requestid":"","operator":"admin"}`,
			def: `{"type":"REPLICATION","occur_at":1740000030,"operator":"admin","event_data":{"replication":` + replPre213 + `}}`,
		},
		{
			name: "retention, keys reordered",
			ce: `{"specversion":"1.0","id":"6e7f8091-a2b3-4c4d-9e5f-607182930a4b","source":"/projects/12/webhook/policies/5",` +
				`"type":"harbor.tag_retention.finished","datacontenttype":"application/json","time":"2025-06-15T15:40:00Z","requestid":"",` +
				`"operator":"admin","data":{"retention":{"deleted_artifact":[{"references":null,"name_tag":"acme-am:4.2.0.12.1","status":"SUCCESS","type":"image"},` +
				`{"type":"image","status":"SUCCESS","name_tag":"acme-am@` + digOld + `","references":null}],"result":"SUCCESS",` +
				`"retention_rule":[{"scope_selectors":{"repository":[{"extras":"","pattern":"**","decoration":"repoMatches","kind":"doublestar"}]},` +
				`"tag_selectors":[{"extras":"{\"untagged\":false}","pattern":"4.2.0.*","decoration":"matches","kind":"doublestar"}],` +
				`"params":{"latestPushedK":3},"template":"latestPushedK"}],"retention_policy_id":3,"project_name":"wso2-dev",` +
				`"harbor_hostname":"harbor.acme.example","retained":3,"total":5}}}`,
			def: `{"type":"TAG_RETENTION","occur_at":1750002000,"operator":"admin","event_data":{"retention":` + retentionReport + `}}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			def, err := ParseHarborDefault(harborTestOrigin, []byte(tc.def))
			if err != nil {
				t.Fatalf("ParseHarborDefault: %v", err)
			}
			ce, err := ParseHarborCloudEvent(harborTestOrigin, []byte(tc.ce))
			if err != nil {
				t.Fatalf("ParseHarborCloudEvent: %v", err)
			}
			if diff := cmp.Diff(def, ce, protocmp.Transform(),
				protocmp.IgnoreFields(&harborflowv1.RegistryEvent{}, "format", "request_id")); diff != "" {
				t.Errorf("CloudEvents event differs from the Default one (-default +cloudevents):\n%s", diff)
			}
			if ce.GetRequestId() != tc.request {
				t.Errorf("request_id = %q, want %q", ce.GetRequestId(), tc.request)
			}
		})
	}
}

// TestParseHarborMultiArchPush: buildx pushes each platform manifest by digest, then the index by tag (HARBOR.md
// §1.6). The children carry no tag, each event has its own id, and a retry of any body keeps its id.
func TestParseHarborMultiArchPush(t *testing.T) {
	push := func(digest, ref, sep string) string {
		return `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"robot$wso2-apim+ci","event_data":{"resources":[{"digest":"` + digest +
			`","tag":"` + ref + `","resource_url":"harbor.acme.example:8443/wso2-apim/base/am` + sep + ref + `"}],` + repoAM + `}}`
	}
	bodies := []string{push(digAmd64, digAmd64, "@"), push(digArm64, digArm64, "@"), push(digIndex, "4.2.0.15", ":")}
	ids := map[string]bool{}
	for i, body := range bodies {
		ev, err := ParseHarborDefault(harborTestOrigin, []byte(body))
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		if ids[ev.GetId()] {
			t.Errorf("push %d: id %s already given to another push", i, ev.GetId())
		}
		ids[ev.GetId()] = true
		wantTag, wantDigest := "", []string{digAmd64, digArm64, digIndex}[i]
		if i == 2 {
			wantTag = "4.2.0.15"
		}
		if ev.GetTag() != wantTag || ev.GetDigest() != wantDigest {
			t.Errorf("push %d: tag %q digest %q, want tag %q digest %q", i, ev.GetTag(), ev.GetDigest(), wantTag, wantDigest)
		}
		if ev.GetProject() != "wso2-apim" || ev.GetRepository() != "wso2-apim/base/am" {
			t.Errorf("push %d: project %q repository %q, want wso2-apim and wso2-apim/base/am", i, ev.GetProject(), ev.GetRepository())
		}
		retry, err := ParseHarborDefault(harborTestOrigin, []byte(body))
		if err != nil || retry.GetId() != ev.GetId() {
			t.Errorf("push %d: retried body gives id %q (err %v), want %q", i, retry.GetId(), err, ev.GetId())
		}
	}
}

// TestParseHarborIDs pins what the id depends on (DESIGN.md principle 3).
func TestParseHarborIDs(t *testing.T) {
	parse := func(body string) string {
		t.Helper()
		ev, err := ParseHarborDefault(harborTestOrigin, []byte(body))
		if err != nil {
			t.Fatalf("ParseHarborDefault(%s): %v", body, err)
		}
		return ev.GetId()
	}
	warn := `{"type":"QUOTA_WARNING","occur_at":1750003000,"operator":"robot$wso2-dev+ci","event_data":{"resources":[{"digest":"` + digQuota +
		`","tag":"4.2.0.16"}],` + repoAcmeQ + `,"custom_attributes":{"Details":"quota usage reach 85%: resource storage used 12.6 MiB of 14.0 MiB"}}}`
	exceed := strings.Replace(warn, "QUOTA_WARNING", "QUOTA_EXCEED", 1)
	warnLater := strings.Replace(warn, "1750003000", "1750003001", 1)
	warnOtherUsage := strings.Replace(warn, "12.6 MiB", "12.7 MiB", 1)
	if parse(warn) == parse(exceed) {
		t.Error("QUOTA_WARNING and QUOTA_EXCEED of the same second share an id")
	}
	if first, second := parse(warn), parse(string([]byte(warn))); first != second {
		t.Error("identical QUOTA_WARNINGs have different ids")
	}
	if parse(warn) != parse(warnOtherUsage) {
		t.Error("QUOTA_WARNINGs of one second and one manifest have different ids; they should fold into one message")
	}
	if parse(warn) == parse(warnLater) {
		t.Error("QUOTA_WARNINGs of different seconds share an id")
	}
	other := Origin{Source: "harbor-dr", Host: "harbor.acme.example"}
	ev, err := ParseHarborDefault(other, []byte(warn))
	if err != nil || ev.GetId() == parse(warn) || ev.GetSource() != "harbor-dr" {
		t.Errorf("another source: id %q source %q err %v; want a different id", ev.GetId(), ev.GetSource(), err)
	}
	// The registry comes from the configuration, never from the payload.
	if ev.GetRegistry() != "harbor.acme.example" {
		t.Errorf("registry = %q, want the configured host", ev.GetRegistry())
	}
}

func TestParseHarborRepositoryNames(t *testing.T) {
	cases := []struct {
		name, repo, wantProject, wantRepository string
	}{
		{"nested", `{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}`, "wso2-apim", "wso2-apim/base/am"},
		{"no namespace", `{"name":"base/am","repo_full_name":"wso2-apim/base/am","repo_type":"private"}`, "wso2-apim", "wso2-apim/base/am"},
		{"no full name", `{"name":"base/am","namespace":"wso2-apim","repo_type":"private"}`, "wso2-apim", "wso2-apim/base/am"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"admin","event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15"}],"repository":` + tc.repo + `}}`
			ev, err := ParseHarborDefault(harborTestOrigin, []byte(body))
			if err != nil {
				t.Fatalf("ParseHarborDefault: %v", err)
			}
			if ev.GetProject() != tc.wantProject || ev.GetRepository() != tc.wantRepository {
				t.Errorf("project %q repository %q, want %q %q", ev.GetProject(), ev.GetRepository(), tc.wantProject, tc.wantRepository)
			}
		})
	}
}

func TestParseHarborInvalid(t *testing.T) {
	const repo = `"repository":{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}`
	res := `"resources":[{"digest":"` + digSingle + `","tag":"4.2.0.15"}]`
	cases := []struct {
		name    string
		body    string
		unknown bool   // ErrUnknownEventType as well
		want    string // in the message
	}{
		{name: "empty body", body: ``, want: "body is empty"},
		{name: "blank body", body: " \n", want: "body is empty"},
		{name: "malformed JSON", body: `{"type":"PUSH_ARTIFACT",`, want: "body is not valid JSON"},
		{name: "not JSON", body: `type=PUSH_ARTIFACT`, want: "body is not valid JSON"},
		{name: "array", body: `[{"type":"PUSH_ARTIFACT"}]`, want: "body is not a JSON object (it is an array)"},
		{name: "null", body: `null`, want: "body is not a JSON object (it is null)"},
		{name: "string", body: `"PUSH_ARTIFACT"`, want: "body is not a JSON object (it is a string)"},
		{name: "number", body: `42`, want: "body is not a JSON object (it is a number)"},
		{name: "trailing garbage", body: `{"type":"PUSH_ARTIFACT"} x`, want: "not valid JSON"},
		{name: "missing type", body: `{"occur_at":1750000000,"event_data":{` + res + `,` + repo + `}}`, want: "type is missing"},
		{name: "empty type", body: `{"type":"","occur_at":1750000000}`, want: "type is missing"},
		{name: "type not a string", body: `{"type":1,"occur_at":1750000000}`, want: "type is a JSON number, want string"},
		{name: "unknown type", body: `{"type":"CREATE_TAG","occur_at":1750000000}`, unknown: true, want: `unknown event type "CREATE_TAG"`},
		{name: "Harbor 1.x chart type", body: `{"type":"UPLOAD_CHART","occur_at":1750000000}`, unknown: true, want: "chart"},
		{name: "CloudEvents type in a Default body", body: `{"type":"harbor.artifact.pushed","occur_at":1750000000}`, unknown: true, want: "CloudEvents type of PUSH_ARTIFACT"},
		{name: "lower-case type", body: `{"type":"push_artifact","occur_at":1750000000}`, unknown: true, want: `"push_artifact"`},
		{name: "missing occur_at", body: `{"type":"PUSH_ARTIFACT","operator":"admin","event_data":{` + res + `,` + repo + `}}`, want: "occur_at is missing"},
		{name: "occur_at zero", body: `{"type":"PUSH_ARTIFACT","occur_at":0,"event_data":{` + res + `,` + repo + `}}`, want: "occur_at is missing"},
		{name: "occur_at in milliseconds", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000000000,"event_data":{` + res + `,` + repo + `}}`, want: "occur_at 1750000000000000 is not a time"},
		{name: "occur_at a string", body: `{"type":"PUSH_ARTIFACT","occur_at":"1750000000"}`, want: "occur_at is a JSON string, want integer"},
		{name: "occur_at fractional", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000.5}`, want: "occur_at is a JSON number 1750000000.5, want integer"},
		{name: "push without event_data", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"admin"}`, want: "event_data is missing for PUSH_ARTIFACT"},
		{name: "event_data not an object", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":[]}`, want: "event_data is a JSON array, want object"},
		{name: "push without repository", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":{` + res + `}}`, want: "event_data.repository is missing for PUSH_ARTIFACT"},
		{name: "pull with an empty repository", body: `{"type":"PULL_ARTIFACT","occur_at":1750000000,"event_data":{` + res + `,"repository":{"repo_type":"private"}}}`, want: "event_data.repository.repo_full_name is missing for PULL_ARTIFACT"},
		{name: "delete without resources", body: `{"type":"DELETE_ARTIFACT","occur_at":1750000000,"event_data":{` + repo + `}}`, want: "event_data.resources[0] is missing for DELETE_ARTIFACT"},
		{name: "push without digest", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":{"resources":[{"tag":"4.2.0.15"}],` + repo + `}}`, want: "event_data.resources[0].digest is missing for PUSH_ARTIFACT"},
		{name: "push with a bad digest", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":{"resources":[{"digest":"sha256:abc","tag":"x"}],` + repo + `}}`, want: `event_data.resources[0].digest "sha256:abc" is not a digest`},
		{name: "scan without digest", body: `{"type":"SCANNING_COMPLETED","occur_at":1750000000,"event_data":{"resources":[{"tag":"4.2.0.15"}],` + repo + `,"scan":{}}}`, want: "event_data.resources[0].digest is missing for SCANNING_COMPLETED"},
		{name: "scan without repository", body: `{"type":"SCANNING_FAILED","occur_at":1750000000,"event_data":{` + res + `}}`, want: "event_data.repository is missing for SCANNING_FAILED"},
		{name: "scan overview of the wrong shape", body: `{"type":"SCANNING_COMPLETED","occur_at":1750000000,"event_data":{"resources":[{"digest":"` + digSingle + `","scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{"summary":{"total":"many"}}}}],` + repo + `}}`, want: `event_data.resources[0].scan_overview["application/vnd.security.vulnerability.report; version=1.1"].summary.total is a JSON string, want integer`},
		{name: "resources not an array", body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"event_data":{"resources":{"digest":"` + digSingle + `"},` + repo + `}}`, want: "event_data.resources is a JSON object, want array"},
		{name: "replication missing", body: `{"type":"REPLICATION","occur_at":1750000000,"operator":"admin","event_data":{}}`, want: "event_data.replication is missing for REPLICATION"},
		{name: "replication null", body: `{"type":"REPLICATION","occur_at":1750000000,"event_data":{"replication":null}}`, want: "event_data.replication is missing for REPLICATION"},
		{name: "replication not an object", body: `{"type":"REPLICATION","occur_at":1750000000,"event_data":{"replication":"Running"}}`, want: "event_data.replication is a JSON string, want object"},
		{name: "replication field of the wrong type", body: `{"type":"REPLICATION","occur_at":1750000000,"event_data":{"replication":{"execution_id":"17"}}}`, want: "event_data.replication.execution_id is a JSON string, want integer"},
		{name: "retention missing", body: `{"type":"TAG_RETENTION","occur_at":1750000000,"event_data":{}}`, want: "event_data.retention is missing for TAG_RETENTION"},
		{name: "retention rule params not an object", body: `{"type":"TAG_RETENTION","occur_at":1750000000,"event_data":{"retention":{"retention_rule":[{"params":[1]}]}}}`, want: "event_data.retention.retention_rule.params is a JSON array, want object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseHarborDefault(harborTestOrigin, []byte(tc.body))
			if err == nil {
				t.Fatalf("ParseHarborDefault accepted it: %v", ev)
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("error %q is not ErrInvalidPayload", err)
			}
			if got := errors.Is(err, ErrUnknownEventType); got != tc.unknown {
				t.Errorf("errors.Is(%q, ErrUnknownEventType) = %v, want %v", err, got, tc.unknown)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestParseHarborCloudEventInvalid(t *testing.T) {
	attrs := func(extra string) string {
		return `{"specversion":"1.0","id":"0e4b5c6d-7e8f-4091-a2b3-c4d5e6f70819","source":"/projects/7/webhook/policies/3",` + extra + `}`
	}
	data := `"data":{"resources":[{"digest":"` + digSingle + `","tag":"4.2.0.15"}],` + repoAMNoAge + `}`
	cases := []struct {
		name    string
		body    string
		unknown bool
		want    string
	}{
		{name: "empty body", body: ``, want: "body is empty"},
		{name: "malformed JSON", body: `{"specversion":"1.0"`, want: "body is not valid JSON"},
		{name: "array", body: `[]`, want: "body is not a JSON object (it is an array)"},
		{name: "null", body: `null`, want: "(it is null)"},
		{name: "no specversion", body: `{"type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z",` + data + `}`, want: "specversion is missing"},
		{name: "wrong specversion", body: `{"specversion":"0.3","type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z",` + data + `}`, want: `specversion "0.3" is not supported, want 1.0`},
		{name: "specversion a number", body: `{"specversion":1.0,"type":"harbor.artifact.pushed"}`, want: "specversion is a JSON number, want string"},
		{name: "no type", body: attrs(`"time":"2025-06-15T15:06:40Z",` + data), want: "type is missing"},
		{name: "unknown type", body: attrs(`"type":"harbor.artifact.labeled","time":"2025-06-15T15:06:40Z",` + data), unknown: true, want: `unknown event type "harbor.artifact.labeled"`},
		{name: "Default type in a CloudEvents body", body: attrs(`"type":"PUSH_ARTIFACT","time":"2025-06-15T15:06:40Z",` + data), unknown: true, want: "harbor.artifact.pushed"},
		{name: "no time", body: attrs(`"type":"harbor.artifact.pushed",` + data), want: "time is missing"},
		{name: "time not RFC 3339", body: attrs(`"type":"harbor.artifact.pushed","time":"1750000000",` + data), want: `time "1750000000" is not an RFC 3339 time`},
		{name: "time before 1970", body: attrs(`"type":"harbor.artifact.pushed","time":"1969-12-31T23:59:59Z",` + data), want: "out of range"},
		{name: "no data", body: attrs(`"type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z"`), want: "data is missing for PUSH_ARTIFACT"},
		{name: "data null", body: attrs(`"type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z","data":null`), want: "data is missing for PUSH_ARTIFACT"},
		{name: "data a string", body: attrs(`"type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z","data":"{\"resources\":[]}"`), want: "data is a JSON string, want object"},
		{name: "data an array", body: attrs(`"type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z","data":[]`), want: "data is a JSON array, want object"},
		{name: "data without repository", body: attrs(`"type":"harbor.artifact.pulled","time":"2025-06-15T15:06:40Z","data":{"resources":[{"digest":"` + digSingle + `"}]}`), want: "data.repository is missing for PULL_ARTIFACT"},
		{name: "data without digest", body: attrs(`"type":"harbor.artifact.deleted","time":"2025-06-15T15:06:40Z","data":{"resources":[{"tag":"4.2.0"}],` + repoAMNoAge + `}`), want: "data.resources[0].digest is missing for DELETE_ARTIFACT"},
		{name: "operator not a string", body: attrs(`"type":"harbor.artifact.pushed","time":"2025-06-15T15:06:40Z",` + data + `,"operator":7`), want: "operator is a JSON number, want string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseHarborCloudEvent(harborTestOrigin, []byte(tc.body))
			if err == nil {
				t.Fatalf("ParseHarborCloudEvent accepted it: %v", ev)
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrInvalidPayload) {
				t.Errorf("error %q is not ErrInvalidPayload", err)
			}
			if got := errors.Is(err, ErrUnknownEventType); got != tc.unknown {
				t.Errorf("errors.Is(%q, ErrUnknownEventType) = %v, want %v", err, got, tc.unknown)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestParseHarborLenient: what Harbor may legitimately leave out, and unknown fields, are accepted.
func TestParseHarborLenient(t *testing.T) {
	cases := []struct {
		name string
		body string
		want func(t *testing.T, ev *harborflowv1.RegistryEvent)
	}{
		{
			name: "unknown fields anywhere",
			body: `{"type":"PUSH_ARTIFACT","occur_at":1750000000,"operator":"admin","future":{"x":[1,2]},"event_data":{"resources":[{"digest":"` + digSingle +
				`","tag":"4.2.0.15","size":1234,"media_type":"application/vnd.oci.image.manifest.v1+json"}],` + repoAM + `,"labels":["a"]}}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				if ev.GetDigest() != digSingle || ev.GetTag() != "4.2.0.15" {
					t.Errorf("digest %q tag %q", ev.GetDigest(), ev.GetTag())
				}
			},
		},
		{
			name: "quota without event_data",
			body: `{"type":"QUOTA_EXCEED","occur_at":1750000000,"operator":"admin"}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				if ev.GetKind() != "quota" || ev.GetQuota() == nil || ev.GetRepository() != "" {
					t.Errorf("kind %q quota %v repository %q", ev.GetKind(), ev.GetQuota(), ev.GetRepository())
				}
			},
		},
		{
			name: "quota without repository",
			body: `{"type":"QUOTA_WARNING","occur_at":1750000000,"operator":"admin","event_data":{"custom_attributes":{"Details":"quota usage reach 85%"}}}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				if ev.GetQuota().GetDetails() != "quota usage reach 85%" {
					t.Errorf("details %q", ev.GetQuota().GetDetails())
				}
			},
		},
		{
			name: "replication with a repository",
			body: `{"type":"REPLICATION","occur_at":1750001000,"operator":"admin","event_data":{` + repoAMNoAge + `,"replication":` + replRunning + `}}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				if ev.GetRepository() != "wso2-apim/base/am" || ev.GetProject() != "wso2-mirror" {
					t.Errorf("repository %q project %q; want wso2-apim/base/am and dest_resource.namespace", ev.GetRepository(), ev.GetProject())
				}
			},
		},
		{
			name: "replication without dest_resource",
			body: `{"type":"REPLICATION","occur_at":1750001000,"operator":"admin","event_data":{"replication":{"job_status":"Running","execution_id":1,"task_id":2}}}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				if ev.GetProject() != "" || ev.GetId() != event.ReplicationID("harbor", 1, 2, "Running", nil, 1750001000) {
					t.Errorf("project %q id %q", ev.GetProject(), ev.GetId())
				}
			},
		},
		{
			name: "out-of-range date_created and execution_timestamp are dropped",
			body: `{"type":"REPLICATION","occur_at":1750001000,"event_data":{"repository":{"date_created":999999999999999,"repo_full_name":"a/b"},"replication":{"execution_timestamp":-5}}}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				if ev.GetRepositoryCreatedAt() != nil || ev.GetReplication().GetExecutionTimestamp() != nil {
					t.Errorf("repository_created_at %v execution_timestamp %v", ev.GetRepositoryCreatedAt(), ev.GetReplication().GetExecutionTimestamp())
				}
			},
		},
		{
			name: "retention params of every JSON type",
			body: `{"type":"TAG_RETENTION","occur_at":1750002000,"event_data":{"retention":{"project_name":"p","retention_rule":[{"template":"x","params":{"n":1.5,"s":"a","b":true,"z":null,"l":[1,"x"],"o":{"k":2}}}]}}}`,
			want: func(t *testing.T, ev *harborflowv1.RegistryEvent) {
				p := ev.GetRetention().GetRules()[0].GetParams().AsMap()
				if len(p) != 6 || p["n"] != 1.5 || p["s"] != "a" || p["b"] != true {
					t.Errorf("params %v", p)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseHarborDefault(harborTestOrigin, []byte(tc.body))
			if err != nil {
				t.Fatalf("ParseHarborDefault: %v", err)
			}
			tc.want(t, ev)
		})
	}
}

func TestPayloadIsDigest(t *testing.T) {
	cases := map[string]bool{
		digIndex:                                  true,
		"sha512:" + strings.Repeat("ab", 64):      true,
		"sha256:" + strings.ToUpper(digIndex[7:]): false,
		"sha256:abc":                              false,
		"sha256:" + digIndex[7:] + "0":            false,
		"sha512:" + strings.Repeat("ab", 32):      false,
		"blake3:" + strings.Repeat("a1", 32):      true,
		"multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8": true,
		"sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564":         true,
		"+sha256:" + strings.Repeat("a", 40):                              false,
		"sha256-:" + strings.Repeat("a", 40):                              false,
		"SHA256:" + digIndex[7:]:                                          false,
		"4.2.0.15":                                                        false,
		"latest":                                                          false,
		"":                                                                false,
		":" + digIndex[7:]:                                                false,
		"sha256:":                                                         false,
		"x:" + strings.Repeat("a", 31):                                    false,
		"x:" + strings.Repeat("a", 31) + "/":                              false,
	}
	for s, want := range cases {
		if got := imageref.IsDigest(s); got != want {
			t.Errorf("imageref.IsDigest(%q) = %v, want %v", s, got, want)
		}
	}
}
