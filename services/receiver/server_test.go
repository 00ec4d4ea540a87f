package receiver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/receiver"
)

const (
	secret    = "Bearer s3cr3t-value"
	oldSecret = "Bearer old-s3cr3t"
	digestA   = "sha256:5e1f7b1c8e3ae0a1a2c7d1b0e6b2f3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
)

// pushDefault is a Harbor 2.13 PUSH_ARTIFACT in the Default format (HARBOR.md §1.4).
func pushDefault(tag string, occurAt int64) string {
	return fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":%d,"operator":"admin","event_data":{"resources":[{"digest":%q,"tag":%q,"resource_url":"harbor.acme.example:443/wso2-apim/base/am:%s"}],"repository":{"date_created":1700000000,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}}}`,
		occurAt, digestA, tag, tag)
}

// pushCloudEvent is the CloudEvents twin of pushDefault, as a second policy on the same project sends it.
func pushCloudEvent(tag string, occurAt int64) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":"0b0a4f2e-6c1d-4a52-9a36-3f1f0e9c2a11","source":"/projects/7/webhook/policies/4","type":"harbor.artifact.pushed","datacontenttype":"application/json","time":%q,"data":{"resources":[{"digest":%q,"tag":%q,"resource_url":"harbor.acme.example:443/wso2-apim/base/am:%s"}],"repository":{"date_created":1700000000,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}},"operator":"admin","requestid":"req-1"}`,
		time.Unix(occurAt, 0).UTC().Format(time.RFC3339), digestA, tag, tag)
}

type fixture struct {
	t    *testing.T
	js   *bustest.Server
	srv  *receiver.Server
	http *httptest.Server
	logs *observer.ObservedLogs
}

func newFixture(t *testing.T, pub receiver.Publisher) *fixture {
	t.Helper()
	js := bustest.Start(t)
	if pub == nil {
		pub = js.Bus
	}
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := receiver.New(receiver.Config{
		MaxBodyBytes:   64 << 10,
		PublishTimeout: time.Second,
		Sources: []config.Source{
			{Name: "harbor", Kind: config.SourceHarbor, Host: "harbor.acme.example", Secrets: []config.Secret{oldSecret, secret}, IgnoreOperators: []string{"robot$harborflow"}},
			{Name: "registry", Kind: config.SourceDistribution, Host: "localhost:5000", Secrets: []config.Secret{secret}},
		},
	}, receiver.Deps{Bus: pub, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)
	return &fixture{t: t, js: js, srv: srv, http: h, logs: logs}
}

type answer struct {
	Code  int
	Body  map[string]any
	Raw   string
	Retry string
}

func (f *fixture) post(path, contentType, auth, body string) answer {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.http.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Code: resp.StatusCode, Raw: string(raw), Retry: resp.Header.Get("Retry-After")}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		f.t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return a
}

func (f *fixture) harbor(contentType, body string) answer {
	return f.post("/webhooks/harbor/harbor", contentType, secret, body)
}

// stored returns the messages of stream on subjects matching filter.
func (f *fixture) stored(stream, filter string) []*bus.Message {
	f.t.Helper()
	return f.js.Messages(stream, filter)
}

func decodeEvent(t *testing.T, m *bus.Message) *harborflowv1.RegistryEvent {
	t.Helper()
	ev := &harborflowv1.RegistryEvent{}
	if err := (&bus.Message{Subject: m.Subject, Data: m.Data}).Decode(ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestPushIsStoredOnceWithItsSubjectIDAndHeaders(t *testing.T) {
	f := newFixture(t, nil)
	a := f.harbor("application/json", pushDefault("4.2.0.15", 1763855000))
	if a.Code != http.StatusAccepted || a.Body["accepted"] != float64(1) {
		t.Fatalf("first delivery: %d %s", a.Code, a.Raw)
	}
	// Harbor retries a slow delivery with the same body: one message.
	b := f.harbor("application/json", pushDefault("4.2.0.15", 1763855000))
	if b.Code != http.StatusAccepted || b.Body["duplicates"] != float64(1) {
		t.Fatalf("retry: %d %s", b.Code, b.Raw)
	}
	msgs := f.stored(event.StreamRegistry, "registry.>")
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "registry.harbor.push" {
		t.Errorf("subject %q", m.Subject)
	}
	ev := decodeEvent(t, m)
	id := a.Body["ids"].([]any)[0].(string)
	if ev.GetId() != id || m.Header.Get(event.HeaderMsgID) != id || m.Header.Get(event.HeaderCorrelationID) != id || ev.GetCorrelationId() != id {
		t.Errorf("id %q, msg-id %q, correlation %q/%q", ev.GetId(), m.Header.Get(event.HeaderMsgID), m.Header.Get(event.HeaderCorrelationID), ev.GetCorrelationId())
	}
	if ev.GetRepository() != "wso2-apim/base/am" || ev.GetProject() != "wso2-apim" || ev.GetTag() != "4.2.0.15" || ev.GetDigest() != digestA || ev.GetRegistry() != "harbor.acme.example" {
		t.Errorf("event %v", ev)
	}
	if m.Header.Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", m.Header.Get("Content-Type"))
	}
}

func TestDefaultAndCloudEventsCopiesAreOneMessage(t *testing.T) {
	f := newFixture(t, nil)
	a := f.harbor("application/json; charset=utf-8", pushDefault("4.2.0.15", 1763855001))
	b := f.harbor("application/cloudevents+json", pushCloudEvent("4.2.0.15", 1763855001))
	if a.Code != 202 || b.Code != 202 {
		t.Fatalf("%d %s / %d %s", a.Code, a.Raw, b.Code, b.Raw)
	}
	if a.Body["ids"].([]any)[0] != b.Body["ids"].([]any)[0] {
		t.Errorf("ids differ: %v %v", a.Body["ids"], b.Body["ids"])
	}
	if n := len(f.stored(event.StreamRegistry, "registry.>")); n != 1 {
		t.Errorf("stored %d messages, want 1", n)
	}
}

func TestBadInputIsRefusedClearlyAndStoresNothing(t *testing.T) {
	f := newFixture(t, nil)
	big := pushDefault("x", 1) + strings.Repeat(" ", 70<<10)
	for _, tc := range []struct {
		name, path, ct, auth, body string
		code                       int
		says                       string
	}{
		{"malformed JSON", "/webhooks/harbor/harbor", "application/json", secret, `{"type":"PUSH_ARTIFACT",`, 400, "invalid payload"},
		{"JSON array", "/webhooks/harbor/harbor", "application/json", secret, `[` + pushDefault("a", 1) + `]`, 400, "invalid payload"},
		{"unknown event type", "/webhooks/harbor/harbor", "application/json", secret, `{"type":"UPLOAD_CHART","occur_at":1,"operator":"a","event_data":{}}`, 400, "UPLOAD_CHART"},
		{"push without repository", "/webhooks/harbor/harbor", "application/json", secret, `{"type":"PUSH_ARTIFACT","occur_at":1,"operator":"a","event_data":{"resources":[{"digest":"` + digestA + `","tag":"1"}]}}`, 400, "repository"},
		{"push without digest", "/webhooks/harbor/harbor", "application/json", secret, `{"type":"PUSH_ARTIFACT","occur_at":1,"operator":"a","event_data":{"resources":[{"tag":"1"}],"repository":{"name":"am","namespace":"p","repo_full_name":"p/am"}}}`, 400, "digest"},
		{"delete without resources", "/webhooks/harbor/harbor", "application/json", secret, `{"type":"DELETE_ARTIFACT","occur_at":1,"operator":"a","event_data":{"repository":{"name":"am","namespace":"p","repo_full_name":"p/am"}}}`, 400, "resources"},
		{"pull without repository or digest", "/webhooks/harbor/harbor", "application/json", secret, `{"type":"PULL_ARTIFACT","occur_at":1,"operator":"a","event_data":{}}`, 400, "invalid payload"},
		{"wrong content type", "/webhooks/harbor/harbor", "text/plain", secret, pushDefault("a", 1), 415, "text/plain"},
		{"no content type", "/webhooks/harbor/harbor", "", secret, pushDefault("a", 1), 415, "Content-Type"},
		{"oversize body", "/webhooks/harbor/harbor", "application/json", secret, big, 413, "over the limit"},
		{"unknown source", "/webhooks/harbor/nope", "application/json", secret, pushDefault("a", 1), 404, `unknown harbor source "nope"`},
		{"source of another kind", "/webhooks/harbor/registry", "application/json", secret, pushDefault("a", 1), 404,
			`source "registry" is of kind distribution, not harbor: post its events to /webhooks/distribution/registry`},
		{"source of another kind, the other way", "/webhooks/distribution/harbor", "application/vnd.docker.distribution.events.v2+json", secret, `{"events":[]}`, 404,
			`source "harbor" is of kind harbor, not distribution: post its events to /webhooks/harbor/harbor`},
		{"no Authorization", "/webhooks/harbor/harbor", "application/json", "", pushDefault("a", 1), 401, "missing Authorization"},
		{"wrong Authorization", "/webhooks/harbor/harbor", "application/json", "Bearer s3cr3t-valuX", pushDefault("a", 1), 401, "does not match"},
		{"distribution wrong Authorization", "/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", "Bearer nope", `{"events":[]}`, 401, "does not match"},
		{"distribution oversize", "/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", secret, `{"events":[` + strings.Repeat(" ", 70<<10) + `]}`, 413, "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.post(tc.path, tc.ct, tc.auth, tc.body)
			if a.Code != tc.code {
				t.Errorf("status %d, want %d: %s", a.Code, tc.code, a.Raw)
			}
			msg, _ := a.Body["error"].(string)
			if !strings.Contains(msg, tc.says) {
				t.Errorf("error %q does not say %q", msg, tc.says)
			}
		})
	}
	if n := len(f.stored(event.StreamRegistry, "registry.>")) + len(f.stored(event.StreamDLQ, "dlq.>")); n != 0 {
		t.Errorf("bad input stored %d messages", n)
	}
	for _, e := range f.logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, "s3cr3t") {
			t.Errorf("a secret reached the log: %s", line)
		}
	}
}

func TestEventsThatLegitimatelyLackFieldsAreAccepted(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct{ name, body string }{
		{"quota exceed without resources", `{"type":"QUOTA_EXCEED","occur_at":1763855100,"operator":"admin","event_data":{"repository":{"name":"am","namespace":"wso2-apim","repo_full_name":"wso2-apim/am","repo_type":"private"},"custom_attributes":{"Details":"adding 2.1 MiB of storage resource, which when updated to current usage of 8.3 MiB will exceed the configured upper limit of 10.0 MiB."}}}`},
		{"replication without repository", `{"type":"REPLICATION","occur_at":1763855101,"operator":"admin","event_data":{"replication":{"harbor_hostname":"harbor.acme.example","job_status":"Running","description":"","artifact_type":"image","authentication_type":"basic","override_mode":true,"trigger_type":"MANUAL","policy_creator":"admin","execution_timestamp":1763855090,"src_resource":{"registry_name":"wso2","registry_type":"harbor","endpoint":"https://registry.wso2.com","namespace":"wso2-apim"},"dest_resource":{"registry_type":"harbor","endpoint":"https://harbor.acme.example","namespace":"mirror"},"execution_id":12,"task_id":34}}}`},
		{"retention without repository", `{"type":"TAG_RETENTION","occur_at":1763855102,"operator":"admin","event_data":{"retention":{"total":3,"retained":1,"harbor_hostname":"harbor.acme.example","project_name":"wso2-dev","retention_policy_id":5,"retention_rule":[{"template":"latestPushedK","params":{"latestPushedK":1},"tag_selectors":[{"kind":"doublestar","decoration":"matches","pattern":"**","extras":"{\"untagged\":false}"}],"scope_selectors":{"repository":[{"kind":"doublestar","decoration":"repoMatches","pattern":"**","extras":""}]}}],"result":"SUCCESS","deleted_artifact":[{"type":"image","status":"SUCCESS","name_tag":"acme-am:4.2.0.14.1","references":null}]}}}`},
		{"scan without tag", `{"type":"SCANNING_COMPLETED","occur_at":1763855103,"operator":"auto","event_data":{"resources":[{"digest":"` + digestA + `","resource_url":"harbor.acme.example/wso2-apim/am@` + digestA + `","scan_overview":{"application/vnd.security.vulnerability.report; version=1.1":{"report_id":"r1","scan_status":"Success","severity":"High","duration":3,"summary":{"total":2,"fixable":1,"summary":{"High":1,"Low":1}},"start_time":"2026-11-22T10:00:00Z","end_time":"2026-11-22T10:00:03Z","scanner":{"name":"Trivy","vendor":"Aqua Security","version":"v0.50"},"complete_percent":100}}}],"repository":{"name":"am","namespace":"wso2-apim","repo_full_name":"wso2-apim/am","repo_type":"private"},"scan":{"scan_type":"vulnerability"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a := f.harbor("application/json", tc.body); a.Code != 202 || a.Body["accepted"] != float64(1) {
				t.Errorf("%d %s", a.Code, a.Raw)
			}
		})
	}
	kinds := map[string]bool{}
	for _, m := range f.stored(event.StreamRegistry, "registry.>") {
		kinds[m.Subject] = true
	}
	for _, s := range []string{"registry.harbor.quota", "registry.harbor.replication", "registry.harbor.retention", "registry.harbor.scan"} {
		if !kinds[s] {
			t.Errorf("nothing stored on %s (have %v)", s, kinds)
		}
	}
}

func TestOwnOperatorIsCountedNotPublished(t *testing.T) {
	f := newFixture(t, nil)
	body := strings.Replace(pushDefault("4.2.0.16", 1763855200), `"operator":"admin"`, `"operator":"robot$harborflow"`, 1)
	a := f.harbor("application/json", body)
	if a.Code != 202 || a.Body["accepted"] != float64(0) || a.Body["ignored"] != float64(1) {
		t.Fatalf("%d %s", a.Code, a.Raw)
	}
	if n := len(f.stored(event.StreamRegistry, "registry.>")); n != 0 {
		t.Errorf("stored %d", n)
	}
	if m := f.metrics(); !strings.Contains(m, `harborflow_receiver_events_dropped_total{reason="ignored_operator",source="harbor"} 1`) {
		t.Errorf("ignored operator not counted:\n%s", grep(m, "dropped"))
	}
}

func (f *fixture) metrics() string {
	resp, err := http.Get(f.http.URL + "/metrics")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestMetricsCountRequestsAndRejectionsWithoutSecrets(t *testing.T) {
	f := newFixture(t, nil)
	f.harbor("application/json", pushDefault("4.2.0.17", 1763855300))
	f.post("/webhooks/harbor/harbor", "application/json", "Bearer wrong-s3cr3t", pushDefault("a", 1))
	f.post("/webhooks/harbor/no-such-source-"+strings.Repeat("x", 10), "application/json", secret, "{}")
	m := f.metrics()
	for _, want := range []string{
		`harborflow_receiver_requests_total{code="202",kind="push",source="harbor"} 1`,
		`harborflow_receiver_requests_total{code="401",kind="unknown",source="harbor"} 1`,
		`harborflow_receiver_rejections_total{reason="unauthorized",source="harbor"} 1`,
		`harborflow_receiver_rejections_total{reason="unknown_source",source="unknown"} 1`,
		`harborflow_receiver_events_published_total{duplicate="false",kind="push",source="harbor"} 1`,
		`harborflow_receiver_publish_duration_seconds_count{result="ok"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s\n%s", want, grep(m, "harborflow_"))
		}
	}
	if strings.Contains(m, "s3cr3t") || strings.Contains(m, "no-such-source") {
		t.Error("metrics carry a secret or an unbounded label")
	}
}

func TestNATSDownGives503AndTheRetryIsAccepted(t *testing.T) {
	f := newFixture(t, nil)
	if resp, _ := http.Get(f.http.URL + "/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz %d before the outage", resp.StatusCode)
	}
	f.js.Stop()
	body := pushDefault("4.2.0.18", 1763855400)
	a := f.harbor("application/json", body)
	if a.Code != http.StatusServiceUnavailable || !strings.Contains(a.Body["error"].(string), "could not be stored") || a.Retry == "" {
		t.Fatalf("with NATS down: %d %s (Retry-After %q)", a.Code, a.Raw, a.Retry)
	}
	if resp, _ := http.Get(f.http.URL + "/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz %d with NATS down", resp.StatusCode)
	}
	f.js.Restart()
	// The client reconnects by itself; Harbor's retry comes 16-74 s later. Retry until accepted, with a deadline.
	deadline := time.Now().Add(15 * time.Second)
	for {
		a = f.harbor("application/json", body)
		if a.Code == 202 || time.Now().After(deadline) {
			break
		}
		waitReconnect(f.js)
	}
	if a.Code != 202 {
		t.Fatalf("retry after restart: %d %s", a.Code, a.Raw)
	}
	if n := len(f.stored(event.StreamRegistry, "registry.>")); n != 1 {
		t.Errorf("stored %d, want 1", n)
	}
	if resp, _ := http.Get(f.http.URL + "/readyz"); resp.StatusCode != 200 {
		t.Errorf("readyz %d after the restart", resp.StatusCode)
	}
}

// waitReconnect blocks until the bus connection is back, or briefly.
func waitReconnect(s *bustest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for !s.Conn.IsConnected() && ctx.Err() == nil {
		s.Conn.FlushTimeout(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestDistributionEnvelopeStoresManifestsAndDeadLettersTheRest(t *testing.T) {
	f := newFixture(t, nil)
	env := `{
   "events": [
      {"id":"e1","timestamp":"2026-11-22T10:00:00.123456789Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digestA + `","size":1000,"length":1000,"repository":"acme/am","url":"http://localhost:5000/v2/acme/am/manifests/` + digestA + `","tag":"4.2.0.15.1"},"request":{"id":"r1","addr":"127.0.0.1:1","host":"localhost:5000","method":"PUT","useragent":"buildah"},"actor":{"name":"ci"},"source":{"addr":"reg:5000","instanceID":"i"}},
      {"id":"e2","timestamp":"2026-11-22T10:00:00.2Z","action":"push","target":{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digestA + `","size":5,"length":5,"repository":"acme/am","url":"http://x"},"request":{"method":"PUT","useragent":"buildah"},"actor":{},"source":{}},
      {"id":"e3","timestamp":"2026-11-22T10:00:00.3Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":5,"repository":"acme/am"},"request":{"method":"PUT"},"actor":{},"source":{}}
   ]
}`
	a := f.post("/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", secret, env)
	if a.Code != 202 || a.Body["accepted"] != float64(1) || a.Body["deadLettered"] != float64(1) {
		t.Fatalf("%d %s", a.Code, a.Raw)
	}
	reg := f.stored(event.StreamRegistry, "registry.registry.push")
	if len(reg) != 1 {
		t.Fatalf("stored %d pushes", len(reg))
	}
	if ev := decodeEvent(t, reg[0]); ev.GetTag() != "4.2.0.15.1" || ev.GetRepository() != "acme/am" || ev.GetProject() != "acme" || ev.GetRegistry() != "localhost:5000" {
		t.Errorf("event %v", ev)
	}
	dlq := f.stored(event.StreamDLQ, "dlq.receiver")
	if len(dlq) != 1 || dlq[0].Header.Get(event.HeaderDLQReason) == "" {
		t.Fatalf("DLQ %v", dlq)
	}
	// Even an envelope that is not JSON, or of another media type, is answered 202 and kept in the DLQ: a
	// registry would retry a refusal for ever.
	for _, ct := range []string{"application/vnd.docker.distribution.events.v1+json", "text/plain"} {
		a = f.post("/webhooks/distribution/registry", ct, secret, "not json "+ct)
		if a.Code != 202 || a.Body["deadLettered"] != float64(1) {
			t.Errorf("%s: %d %s", ct, a.Code, a.Raw)
		}
	}
	if n := len(f.stored(event.StreamDLQ, "dlq.receiver")); n != 3 {
		t.Errorf("DLQ has %d, want 3", n)
	}
	if m := f.metrics(); !strings.Contains(m, `harborflow_receiver_events_dropped_total{reason="blob",source="registry"} 1`) {
		t.Errorf("blob event not counted:\n%s", grep(m, "dropped"))
	}
}

// gate is a Publisher that holds every publish until released, to have requests in flight.
type gate struct {
	next    receiver.Publisher
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Publish(ctx context.Context, m *bus.Message) (bus.Ack, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.next.Publish(ctx, m)
}

func (g *gate) Ready(ctx context.Context) error { return g.next.Ready(ctx) }

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	js := bustest.Start(t)
	g := &gate{next: js.Bus, entered: make(chan struct{}, 16), release: make(chan struct{})}
	srv, err := receiver.New(receiver.Config{Listen: "127.0.0.1:0", PublishTimeout: 10 * time.Second, Sources: []config.Source{
		{Name: "harbor", Kind: config.SourceHarbor, Host: "h", Secrets: []config.Secret{secret}},
	}}, receiver.Deps{Bus: g})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/webhooks/harbor/harbor", bytes.NewReader([]byte(pushDefault(fmt.Sprint("t", i), 1763855500))))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range n {
		<-g.entered // every request is inside its publish
	}
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned with requests in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(g.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 202 {
			t.Errorf("request in flight answered %d", c)
		}
	}
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := js.Bus.StreamInfo(ctx, event.StreamRegistry)
	if err != nil || info.Messages != n {
		t.Errorf("stored %+v of %d: %v", info, n, err)
	}
}

func TestEventIsStoredWhenTheSenderHangsUp(t *testing.T) {
	js := bustest.Start(t)
	g := &gate{next: js.Bus, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := receiver.New(receiver.Config{PublishTimeout: 10 * time.Second, Sources: []config.Source{
		{Name: "harbor", Kind: config.SourceHarbor, Host: "h", Secrets: []config.Secret{secret}},
	}}, receiver.Deps{Bus: g})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/webhooks/harbor/harbor", strings.NewReader(pushDefault("4.2.0.19", 1763855600)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", secret)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-g.entered
	cancel() // Harbor's 3 s timeout: the sender is gone while the event is being stored
	if err := <-done; err == nil {
		t.Fatal("the request was not cut off")
	}
	close(g.release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		info, err := js.Bus.StreamInfo(sctx, event.StreamRegistry)
		scancel()
		if err == nil && info.Messages == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event of a sender that hung up was not stored: %v %+v", err, info)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// TestRefusedAuthIsLoggedOnceWithoutTheSecret: a Harbor or registry with a wrong secret must leave a trace in
// the log, naming the source and who sent it, never what it sent.
func TestRefusedAuthIsLoggedOnceWithoutTheSecret(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct{ name, path, ct, auth, body, reason string }{
		{"harbor, wrong secret", "/webhooks/harbor/harbor", "application/json", "Bearer s3cr3t-valuX", pushDefault("a", 1), "does not match any secret"},
		{"harbor, no secret", "/webhooks/harbor/harbor", "application/json", "", pushDefault("a", 1), "missing Authorization header"},
		{"distribution, wrong secret", "/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", "Bearer s3cr3t-nope", `{"events":[]}`, "does not match any secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.logs.Len()
			if a := f.post(tc.path, tc.ct, tc.auth, tc.body); a.Code != 401 {
				t.Fatalf("%d %s", a.Code, a.Raw)
			}
			var warns []observer.LoggedEntry
			for _, e := range f.logs.All()[before:] {
				if e.Level == zapcore.WarnLevel {
					warns = append(warns, e)
				}
			}
			if len(warns) != 1 {
				t.Fatalf("%d warnings for a refused request, want 1: %v", len(warns), warns)
			}
			fields := warns[0].ContextMap()
			source := strings.Split(tc.path, "/")[3]
			if fields["source"] != source || !strings.HasPrefix(fmt.Sprint(fields["remote"]), "127.0.0.1:") ||
				!strings.Contains(fmt.Sprint(fields["reason"]), tc.reason) {
				t.Errorf("warning %q %v, want source %s, the remote address and %q", warns[0].Message, fields, source, tc.reason)
			}
			if line := fmt.Sprint(warns[0].Message, fields); tc.auth != "" && strings.Contains(line, tc.auth) {
				t.Errorf("the Authorization header reached the log: %s", line)
			}
		})
	}
}

// TestOwnPullsAreRecognised: a pull a registry reports with the User-Agent the registry client sends is
// harborflow's own read, and is dropped; the same pull by another client is stored.
func TestOwnPullsAreRecognised(t *testing.T) {
	f := newFixture(t, nil)
	pull := func(id, ua string) string {
		return `{"events":[{"id":"` + id + `","timestamp":"2026-11-22T10:00:00Z","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digestA + `","size":1000,"length":1000,"repository":"acme/am","url":"http://localhost:5000/v2/acme/am/manifests/` + digestA + `"},"request":{"id":"r-` + id + `","addr":"127.0.0.1:1","host":"localhost:5000","method":"GET","useragent":"` + ua + `"},"actor":{},"source":{"addr":"reg:5000"}}]}`
	}
	own := registry.UserAgent("1.2.3") // what pkg/registry sends on every request
	if a := f.post("/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", secret, pull("own", own)); a.Code != 202 || a.Body["accepted"] != float64(0) {
		t.Errorf("own pull: %d %s", a.Code, a.Raw)
	}
	if a := f.post("/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", secret, pull("other", "containerd/2.0.0")); a.Code != 202 || a.Body["accepted"] != float64(1) {
		t.Errorf("other pull: %d %s", a.Code, a.Raw)
	}
	if m := f.metrics(); !strings.Contains(m, `harborflow_receiver_events_dropped_total{reason="own-pull",source="registry"} 1`) {
		t.Errorf("own pull not counted:\n%s", grep(m, "dropped"))
	}
}

// TestBlobEventsAreBlobsWhateverTheirURL: distribution reports a layer or config push with the media type of
// the blob; a URL that says /manifests/ (a proxy rewriting URLs, a registry building them its own way) must not
// turn it into a manifest push.
func TestBlobEventsAreBlobsWhateverTheirURL(t *testing.T) {
	f := newFixture(t, nil)
	const layer = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	const config = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	ev := func(id, mediaType, digest, url string) string {
		return `{"id":"` + id + `","timestamp":"2026-11-22T10:00:00.1Z","action":"push","target":{"mediaType":"` + mediaType + `","digest":"` + digest + `","size":31337,"length":31337,"repository":"acme/am","url":"` + url + `"},"request":{"id":"r-` + id + `","addr":"10.0.0.7:53122","host":"localhost:5000","method":"PUT","useragent":"buildah/1.39.3"},"actor":{"name":"ci"},"source":{"addr":"reg:5000","instanceID":"i"}}`
	}
	env := `{"events":[` +
		ev("l1", "application/vnd.oci.image.layer.v1.tar+gzip", layer, "http://localhost:5000/v2/acme/am/manifests/"+layer) + `,` +
		ev("l2", "application/vnd.docker.image.rootfs.diff.tar.gzip", layer, "http://localhost:5000/v2/acme/am/manifests/"+layer) + `,` +
		ev("c1", "application/vnd.oci.image.config.v1+json", config, "http://localhost:5000/v2/acme/am/manifests/"+config) + `,` +
		ev("m1", "application/vnd.oci.image.manifest.v1+json", digestA, "http://localhost:5000/v2/acme/am/blobs/"+digestA) + `,` +
		ev("u1", "application/vnd.example.unknown.manifest+json", digestA, "http://localhost:5000/v2/acme/am/manifests/"+digestA) +
		`]}`
	a := f.post("/webhooks/distribution/registry", "application/vnd.docker.distribution.events.v2+json", secret, env)
	if a.Code != 202 || a.Body["accepted"] != float64(2) {
		t.Fatalf("%d %s", a.Code, a.Raw)
	}
	for _, m := range f.stored(event.StreamRegistry, "registry.registry.push") {
		if ev := decodeEvent(t, m); ev.GetDigest() != digestA {
			t.Errorf("a blob was stored as a manifest push: %v", ev)
		}
	}
	if m := f.metrics(); !strings.Contains(m, `harborflow_receiver_events_dropped_total{reason="blob",source="registry"} 3`) {
		t.Errorf("blob events not counted:\n%s", grep(m, "dropped"))
	}
}
