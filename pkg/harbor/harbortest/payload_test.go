package harbortest

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

const (
	testHost    = "harbor.acme.example"
	digestImage = "sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"
	digestChild = "sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0"
	mimeVuln    = "application/vnd.security.vulnerability.report; version=1.1"
)

var (
	// 2026-12-01T10:00:00.700Z: the wire keeps the whole seconds, 1796119200.
	testOccurAt = time.Date(2026, 12, 1, 10, 0, 0, 700e6, time.UTC)
	// 2026-11-30T08:00:00Z = 1796025600.
	testRepoCreated = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
)

// artifactEvent is an event on wso2-apim/base/am, a private project with id 7.
func artifactEvent(typ, operator, digest, tag string) Event {
	return Event{
		Type: typ, OccurAt: testOccurAt, Operator: operator, RequestID: "req-1",
		ProjectID: 7, Project: "wso2-apim", Repository: "wso2-apim/base/am", RepoCreated: testRepoCreated,
		Digest: digest, Tag: tag,
	}
}

// scanEvent is a scan event as §7.1 saw it: no date_created, scan_type vulnerability, operator who pushed.
func scanEvent(digest, tag string) Event {
	ev := artifactEvent("SCANNING_COMPLETED", "admin", digest, tag)
	ev.RepoCreated = time.Time{}
	ev.Public = true
	ev.ScanType = "vulnerability"
	// A scanner's summary in NativeReportSummary's field order (HARBOR.md §1.4, §7.1).
	ev.ScanOverview = map[string]any{mimeVuln: json.RawMessage(`{"report_id":"5b1d0c4e-9f0a-4c43-8f6b-2f5f3f0b8d11","scan_status":"Success","severity":"High",` +
		`"duration":3,"summary":{"total":2,"fixable":1,"summary":{"High":1,"Low":1}},"start_time":"2026-12-01T09:59:57Z","end_time":"2026-12-01T10:00:00Z",` +
		`"scanner":{"name":"harbortest","vendor":"harborflow","version":"1.0"},"complete_percent":100}`)}
	return ev
}

// The goldens are written from HARBOR.md §1.4 and §1.5, not from the builders' output.
var goldens = []struct {
	name    string
	ev      Event
	id      string
	def, ce string
}{
	{
		name: "push by tag",
		ev:   artifactEvent("PUSH_ARTIFACT", "admin", digestImage, "4.2.0.15"),
		id:   "0b0a4f2e-6c1d-4a52-9a36-3f1f0e9c2a10",
		def: `{"type":"PUSH_ARTIFACT","occur_at":1796119200,"operator":"admin","event_data":{"resources":[{"digest":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","tag":"4.2.0.15","resource_url":"harbor.acme.example/wso2-apim/base/am:4.2.0.15"}],` +
			`"repository":{"date_created":1796025600,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}}}`,
		ce: `{"specversion":"1.0","id":"0b0a4f2e-6c1d-4a52-9a36-3f1f0e9c2a10","source":"/projects/7/webhook/policies/3","type":"harbor.artifact.pushed","datacontenttype":"application/json","time":"2026-12-01T10:00:00Z",` +
			`"data":{"resources":[{"digest":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","tag":"4.2.0.15","resource_url":"harbor.acme.example/wso2-apim/base/am:4.2.0.15"}],` +
			`"repository":{"date_created":1796025600,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}},"requestid":"req-1","operator":"admin"}`,
	},
	{
		name: "push by digest: the digest in tag, an @ URL (§1.4, §1.6)",
		ev:   artifactEvent("PUSH_ARTIFACT", "robot$wso2-apim+ci", digestChild, digestChild),
		id:   "0b0a4f2e-6c1d-4a52-9a36-3f1f0e9c2a11",
		def: `{"type":"PUSH_ARTIFACT","occur_at":1796119200,"operator":"robot$wso2-apim+ci","event_data":{"resources":[{"digest":"sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0","tag":"sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0",` +
			`"resource_url":"harbor.acme.example/wso2-apim/base/am@sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0"}],` +
			`"repository":{"date_created":1796025600,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}}}`,
		// The id ends in an odd digit: the extensions come the other way round (§7).
		ce: `{"specversion":"1.0","id":"0b0a4f2e-6c1d-4a52-9a36-3f1f0e9c2a11","source":"/projects/7/webhook/policies/3","type":"harbor.artifact.pushed","datacontenttype":"application/json","time":"2026-12-01T10:00:00Z",` +
			`"data":{"resources":[{"digest":"sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0","tag":"sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0",` +
			`"resource_url":"harbor.acme.example/wso2-apim/base/am@sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0"}],` +
			`"repository":{"date_created":1796025600,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}},"operator":"robot$wso2-apim+ci","requestid":"req-1"}`,
	},
	{
		name: "delete",
		ev:   artifactEvent("DELETE_ARTIFACT", "admin", digestImage, "b"),
		id:   "7d3c41a0-1b7e-4c39-8e0f-5d6a2b9c4e82",
		def: `{"type":"DELETE_ARTIFACT","occur_at":1796119200,"operator":"admin","event_data":{"resources":[{"digest":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","tag":"b","resource_url":"harbor.acme.example/wso2-apim/base/am:b"}],` +
			`"repository":{"date_created":1796025600,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}}}`,
		ce: `{"specversion":"1.0","id":"7d3c41a0-1b7e-4c39-8e0f-5d6a2b9c4e82","source":"/projects/7/webhook/policies/3","type":"harbor.artifact.deleted","datacontenttype":"application/json","time":"2026-12-01T10:00:00Z",` +
			`"data":{"resources":[{"digest":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","tag":"b","resource_url":"harbor.acme.example/wso2-apim/base/am:b"}],` +
			`"repository":{"date_created":1796025600,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}},"requestid":"req-1","operator":"admin"}`,
	},
	{
		name: "an index child's scan: no tag key, an @ URL, no date_created (§7.1)",
		ev:   scanEvent(digestChild, ""),
		id:   "e4a1f6b2-0c3d-4e5f-8a9b-0c1d2e3f4a5b",
		def: `{"type":"SCANNING_COMPLETED","occur_at":1796119200,"operator":"admin","event_data":{"resources":[{"digest":"sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0",` +
			`"resource_url":"harbor.acme.example/wso2-apim/base/am@sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0",` +
			`"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{"report_id":"5b1d0c4e-9f0a-4c43-8f6b-2f5f3f0b8d11","scan_status":"Success","severity":"High","duration":3,` +
			`"summary":{"total":2,"fixable":1,"summary":{"High":1,"Low":1}},"start_time":"2026-12-01T09:59:57Z","end_time":"2026-12-01T10:00:00Z","scanner":{"name":"harbortest","vendor":"harborflow","version":"1.0"},"complete_percent":100}}}],` +
			`"repository":{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"public"},"scan":{"scan_type":"vulnerability"}}}`,
		ce: `{"specversion":"1.0","id":"e4a1f6b2-0c3d-4e5f-8a9b-0c1d2e3f4a5b","source":"/projects/7/webhook/policies/3","type":"harbor.scan.completed","datacontenttype":"application/json","time":"2026-12-01T10:00:00Z",` +
			`"data":{"resources":[{"digest":"sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0",` +
			`"resource_url":"harbor.acme.example/wso2-apim/base/am@sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0",` +
			`"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{"report_id":"5b1d0c4e-9f0a-4c43-8f6b-2f5f3f0b8d11","scan_status":"Success","severity":"High","duration":3,` +
			`"summary":{"total":2,"fixable":1,"summary":{"High":1,"Low":1}},"start_time":"2026-12-01T09:59:57Z","end_time":"2026-12-01T10:00:00Z","scanner":{"name":"harbortest","vendor":"harborflow","version":"1.0"},"complete_percent":100}}}],` +
			`"repository":{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"public"},"scan":{"scan_type":"vulnerability"}},"operator":"admin","requestid":"req-1"}`,
	},
	{
		name: "a single image's scan: its tag (§7.1)",
		ev:   scanEvent(digestImage, "4.2.0.15"),
		id:   "e4a1f6b2-0c3d-4e5f-8a9b-0c1d2e3f4a50",
		def: `{"type":"SCANNING_COMPLETED","occur_at":1796119200,"operator":"admin","event_data":{"resources":[{"digest":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","tag":"4.2.0.15",` +
			`"resource_url":"harbor.acme.example/wso2-apim/base/am:4.2.0.15",` +
			`"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{"report_id":"5b1d0c4e-9f0a-4c43-8f6b-2f5f3f0b8d11","scan_status":"Success","severity":"High","duration":3,` +
			`"summary":{"total":2,"fixable":1,"summary":{"High":1,"Low":1}},"start_time":"2026-12-01T09:59:57Z","end_time":"2026-12-01T10:00:00Z","scanner":{"name":"harbortest","vendor":"harborflow","version":"1.0"},"complete_percent":100}}}],` +
			`"repository":{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"public"},"scan":{"scan_type":"vulnerability"}}}`,
		ce: `{"specversion":"1.0","id":"e4a1f6b2-0c3d-4e5f-8a9b-0c1d2e3f4a50","source":"/projects/7/webhook/policies/3","type":"harbor.scan.completed","datacontenttype":"application/json","time":"2026-12-01T10:00:00Z",` +
			`"data":{"resources":[{"digest":"sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d","tag":"4.2.0.15",` +
			`"resource_url":"harbor.acme.example/wso2-apim/base/am:4.2.0.15",` +
			`"scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{"report_id":"5b1d0c4e-9f0a-4c43-8f6b-2f5f3f0b8d11","scan_status":"Success","severity":"High","duration":3,` +
			`"summary":{"total":2,"fixable":1,"summary":{"High":1,"Low":1}},"start_time":"2026-12-01T09:59:57Z","end_time":"2026-12-01T10:00:00Z","scanner":{"name":"harbortest","vendor":"harborflow","version":"1.0"},"complete_percent":100}}}],` +
			`"repository":{"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"public"},"scan":{"scan_type":"vulnerability"}},"requestid":"req-1","operator":"admin"}`,
	},
}

func TestBodiesMatchHarborByteForByte(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			def, err := defaultBody(testHost, g.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(def) != g.def {
				t.Errorf("Default body\n got %s\nwant %s", def, g.def)
			}
			ce, err := cloudEventsBody(testHost, 7, 3, g.id, g.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(ce) != g.ce {
				t.Errorf("CloudEvents body\n got %s\nwant %s", ce, g.ce)
			}
			// §1.5: data is exactly the Default event_data.
			var d struct {
				EventData json.RawMessage `json:"event_data"`
			}
			var c struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(def, &d); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ce, &c); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.EventData, c.Data) {
				t.Errorf("CloudEvents data differs from Default event_data:\n%s\n%s", c.Data, d.EventData)
			}
		})
	}
}

func TestEveryEventTypeHasItsCloudEventsType(t *testing.T) {
	for typ, want := range map[string]string{
		"PUSH_ARTIFACT": "harbor.artifact.pushed", "PULL_ARTIFACT": "harbor.artifact.pulled", "DELETE_ARTIFACT": "harbor.artifact.deleted",
		"SCANNING_COMPLETED": "harbor.scan.completed", "SCANNING_FAILED": "harbor.scan.failed", "SCANNING_STOPPED": "harbor.scan.stopped",
	} {
		ev := artifactEvent(typ, "", digestImage, "1")
		b, err := cloudEventsBody(testHost, 1, 2, "id", ev)
		if err != nil {
			t.Fatal(err)
		}
		var ce struct {
			Type string `json:"type"`
			Data struct {
				Scan *struct{} `json:"scan"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &ce); err != nil {
			t.Fatal(err)
		}
		if ce.Type != want {
			t.Errorf("%s: CloudEvents type %q, want %q", typ, ce.Type, want)
		}
		if scan := ce.Data.Scan != nil; scan != isScanEvent(typ) {
			t.Errorf("%s: event_data.scan present %v", typ, scan)
		}
	}
}

func TestAScanAllEventHasAnEmptyScan(t *testing.T) {
	// §1.4: a Scan All execution has no scan_type and no scan_overview.
	ev := scanEvent(digestImage, "1")
	ev.ScanType, ev.ScanOverview = "", nil
	b, err := defaultBody(testHost, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"scan":{}`)) || bytes.Contains(b, []byte("scan_overview")) {
		t.Errorf("body %s", b)
	}
}

func TestAnonymousOperatorAndEmptyRequestIDAreKept(t *testing.T) {
	// §1.4: operator is "" for an anonymous pull, and Harbor writes the key anyway; §1.5: requestid can be "".
	ev := artifactEvent("PULL_ARTIFACT", "", digestImage, digestImage)
	ev.RequestID = ""
	def, err := defaultBody(testHost, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(def, []byte(`"operator":""`)) {
		t.Errorf("Default body %s", def)
	}
	ce, err := cloudEventsBody(testHost, 1, 2, "x0", ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(ce, []byte(`,"requestid":"","operator":""}`)) {
		t.Errorf("CloudEvents body %s", ce)
	}
}

func TestAnUnknownEventTypeIsRefused(t *testing.T) {
	for _, typ := range []string{"", "UPLOAD_CHART", "harbor.artifact.pushed", "QUOTA_EXCEED"} {
		if _, err := defaultBody(testHost, artifactEvent(typ, "", digestImage, "1")); err == nil {
			t.Errorf("%q: Default body built", typ)
		}
		if _, err := cloudEventsBody(testHost, 1, 2, "id", artifactEvent(typ, "", digestImage, "1")); err == nil {
			t.Errorf("%q: CloudEvents body built", typ)
		}
	}
}

func TestNewUUIDIsVersion4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := newUUID(), newUUID()
	if !re.MatchString(a) || !re.MatchString(b) || a == b {
		t.Errorf("%q %q", a, b)
	}
}
