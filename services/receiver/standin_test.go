package receiver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/receiver"
)

// The receiver fed by the Harbor stand-in's real deliveries (issue 10's cross-check): the stand-in builds its
// bodies from HARBOR.md on its own and the receiver parses them on its own, so a disagreement between the two
// readings of HARBOR.md fails here.

const (
	standinHost   = "harbor.acme.example"
	standinAuth   = "Bearer standin-s3cr3t"
	standinRepo   = "wso2-apim/base/am"
	standinImage  = "sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"
	standinIndex  = "sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6"
	standinChild1 = "sha256:c56d62f1e317670d153efd4673f39b7141249845c6d885f974aca96ae66858c0"
	standinChild2 = "sha256:2c7c4f92b804280c22e7c3c6386322f12f16296942fd7a3b450c2eed107aa5ab"
	standinOther  = "sha256:d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa"
	standinVuln   = "application/vnd.security.vulnerability.report; version=1.1"
)

// standinReceiver is a receiver with two harbor sources on one embedded JetStream: "harbor" takes the Default
// policy's deliveries and "harbor-ce" the CloudEvents policy's.
type standinReceiver struct {
	js  *bustest.Server
	url string
}

func newStandinReceiver(t *testing.T) *standinReceiver {
	t.Helper()
	js := bustest.Start(t)
	srv, err := receiver.New(receiver.Config{
		PublishTimeout: 2 * time.Second,
		Sources: []config.Source{
			{Name: "harbor", Kind: config.SourceHarbor, Host: standinHost, Secrets: []config.Secret{standinAuth}},
			{Name: "harbor-ce", Kind: config.SourceHarbor, Host: standinHost, Secrets: []config.Secret{standinAuth}},
		},
	}, receiver.Deps{Bus: js.Bus, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)
	return &standinReceiver{js: js, url: h.URL}
}

func (r *standinReceiver) target(source, format, auth string) harbortest.Target {
	return harbortest.Target{Type: "http", Address: r.url + "/webhooks/harbor/" + source, AuthHeader: auth, PayloadFormat: format}
}

// newStandinNotifier is the stand-in's notifier with Harbor's rules and a millisecond backoff.
func newStandinNotifier(t *testing.T) *harbortest.Notifier {
	t.Helper()
	n := harbortest.NewNotifier(standinHost, harbortest.NotifierOptions{Backoff: func(int) time.Duration { return time.Millisecond }})
	t.Cleanup(n.Close)
	return n
}

func standinWait(t *testing.T, n *harbortest.Notifier) []harbortest.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return n.Deliveries()
}

// standinOverview is a scanner's scan_overview as §7.1 shows it.
func standinOverview(status, severity string, summary map[string]any) map[string]any {
	s := map[string]any{
		"report_id": "5b1d0c4e-9f0a-4c43-8f6b-2f5f3f0b8d11", "scan_status": status, "severity": severity, "duration": 3,
		"summary": nil, "start_time": "2026-12-01T09:59:57Z", "end_time": "2026-12-01T10:00:00Z", "complete_percent": 0,
	}
	if summary != nil {
		s["summary"] = summary
		s["scanner"] = map[string]any{"name": "harbortest", "vendor": "harborflow", "version": "1.0"}
		s["complete_percent"] = 100
	}
	return map[string]any{standinVuln: s}
}

// standinWant is what the receiver must make of one event.
type standinWant struct {
	kind, digest, tag, operator string
	scanStatus, severity        string
}

func TestReceiverTakesTheStandInsRealDeliveries(t *testing.T) {
	rc := newStandinReceiver(t)
	n := newStandinNotifier(t)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	created := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	ev := func(typ, operator, digest, tag string, sec int) harbortest.Event {
		return harbortest.Event{
			Type: typ, OccurAt: at.Add(time.Duration(sec) * time.Second), Operator: operator, RequestID: "req-" + typ,
			ProjectID: 7, Project: "wso2-apim", Repository: standinRepo, RepoCreated: created, Digest: digest, Tag: tag,
		}
	}
	scan := func(typ, digest, tag string, overview map[string]any) harbortest.Event {
		e := ev(typ, "admin", digest, tag, 9)
		e.RepoCreated = time.Time{} // scan events have no date_created (§7.1)
		e.ScanType, e.ScanOverview = "vulnerability", overview
		return e
	}
	high := map[string]any{"total": 2, "fixable": 1, "summary": map[string]any{"High": 1, "Low": 1}}
	cases := []struct {
		ev   harbortest.Event
		want standinWant
	}{
		// A push by tag, and by digest: the digest in tag (§1.4).
		{ev("PUSH_ARTIFACT", "admin", standinImage, "4.2.0.15", 0), standinWant{kind: event.KindPush, digest: standinImage, tag: "4.2.0.15", operator: "admin"}},
		{ev("PUSH_ARTIFACT", "robot$wso2-apim+ci", standinOther, standinOther, 0), standinWant{kind: event.KindPush, digest: standinOther, operator: "robot$wso2-apim+ci"}},
		// A two-platform push: N+1 events, the children by digest, the index by tag (§1.6).
		{ev("PUSH_ARTIFACT", "admin", standinChild1, standinChild1, 1), standinWant{kind: event.KindPush, digest: standinChild1, operator: "admin"}},
		{ev("PUSH_ARTIFACT", "admin", standinChild2, standinChild2, 1), standinWant{kind: event.KindPush, digest: standinChild2, operator: "admin"}},
		{ev("PUSH_ARTIFACT", "admin", standinIndex, "4.2.0", 1), standinWant{kind: event.KindPush, digest: standinIndex, tag: "4.2.0", operator: "admin"}},
		// Pulls: an anonymous one by tag, one by digest.
		{ev("PULL_ARTIFACT", "", standinImage, "4.2.0.15", 2), standinWant{kind: event.KindPull, digest: standinImage, tag: "4.2.0.15"}},
		{ev("PULL_ARTIFACT", "admin", standinImage, standinImage, 2), standinWant{kind: event.KindPull, digest: standinImage, operator: "admin"}},
		{ev("DELETE_ARTIFACT", "admin", standinOther, "b", 3), standinWant{kind: event.KindDelete, digest: standinOther, tag: "b", operator: "admin"}},
		// Scans (§7.1): an index child's without a tag, a single image's with its tag, a failed one.
		{scan("SCANNING_COMPLETED", standinChild1, "", standinOverview("Success", "High", high)),
			standinWant{kind: event.KindScan, digest: standinChild1, operator: "admin", scanStatus: "Success", severity: "High"}},
		{scan("SCANNING_COMPLETED", standinImage, "4.2.0.15", standinOverview("Success", "None", map[string]any{"total": 0, "fixable": 0, "summary": map[string]any{}})),
			standinWant{kind: event.KindScan, digest: standinImage, tag: "4.2.0.15", operator: "admin", scanStatus: "Success", severity: "None"}},
		{scan("SCANNING_FAILED", standinChild2, "", standinOverview("Error", "", nil)),
			standinWant{kind: event.KindScan, digest: standinChild2, operator: "admin", scanStatus: "Error"}},
	}
	// Two policies of the project, one per format, as the stand-in notifies them.
	def := []harbortest.Target{rc.target("harbor", "Default", standinAuth)}
	ce := []harbortest.Target{rc.target("harbor-ce", "CloudEvents", standinAuth)}
	for _, c := range cases {
		n.Notify(7, 1, def, c.ev)
		n.Notify(7, 2, ce, c.ev)
	}
	ds := standinWait(t, n)

	if len(ds) != 2*len(cases) {
		t.Errorf("%d deliveries, want %d (one attempt each)", len(ds), 2*len(cases))
	}
	for _, d := range ds {
		if d.Status != http.StatusAccepted || d.Attempt != 1 || !strings.Contains(string(d.Reply), `"accepted":1`) || strings.Contains(string(d.Reply), "duplicates") {
			t.Errorf("%s %s/%s to %s: attempt %d, %d %s (err %v)\nbody %s", d.Event.Type, d.Event.Digest, d.Event.Tag, d.Target.Address, d.Attempt, d.Status, d.Reply, d.Err, d.Body)
		}
	}

	stored := map[string]map[standinWant]*harborflowv1.RegistryEvent{}
	for _, source := range []string{"harbor", "harbor-ce"} {
		stored[source] = map[standinWant]*harborflowv1.RegistryEvent{}
		msgs := rc.js.Messages(event.StreamRegistry, "registry."+source+".>")
		if len(msgs) != len(cases) {
			t.Errorf("%s: %d events stored, want %d", source, len(msgs), len(cases))
		}
		for _, m := range msgs {
			e := decodeEvent(t, m)
			got := standinWant{kind: e.GetKind(), digest: e.GetDigest(), tag: e.GetTag(), operator: e.GetOperator(),
				scanStatus: e.GetScan().GetStatus(), severity: e.GetScan().GetSeverity()}
			if want := event.RegistrySubject(source, e.GetKind()); m.Subject != want {
				t.Errorf("%s: subject %q, want %q", source, m.Subject, want)
			}
			if e.GetRepository() != standinRepo || e.GetProject() != "wso2-apim" || e.GetRegistry() != standinHost || e.GetSource() != source {
				t.Errorf("%s %+v: repository %q project %q registry %q source %q", source, got, e.GetRepository(), e.GetProject(), e.GetRegistry(), e.GetSource())
			}
			stored[source][got] = e
		}
	}
	for _, c := range cases {
		d, c2 := stored["harbor"][c.want], stored["harbor-ce"][c.want]
		if d == nil || c2 == nil {
			t.Errorf("%s %s/%s: stored as Default %v, as CloudEvents %v; want %+v", c.ev.Type, c.ev.Digest, c.ev.Tag, d != nil, c2 != nil, c.want)
			continue
		}
		if d.GetType() != c.ev.Type || d.GetOccurredAt().GetSeconds() != c.ev.OccurAt.Unix() {
			t.Errorf("%s: type %q at %v", c.ev.Type, d.GetType(), d.GetOccurredAt().AsTime())
		}
		if d.GetFormat() != "harbor-default" || c2.GetFormat() != "harbor-cloudevents" || c2.GetRequestId() != c.ev.RequestID {
			t.Errorf("%s: formats %q %q, CloudEvents request id %q", c.ev.Type, d.GetFormat(), c2.GetFormat(), c2.GetRequestId())
		}
		if c.want.kind == event.KindScan {
			if s := d.GetScan(); s.GetScanType() != "vulnerability" || s.GetReportMimeType() != standinVuln {
				t.Errorf("%s: scan %v", c.ev.Type, s)
			}
			if d.GetRepositoryCreatedAt() != nil {
				t.Errorf("%s: repository created at %v on a scan event", c.ev.Type, d.GetRepositoryCreatedAt().AsTime())
			}
		} else if d.GetRepositoryCreatedAt().GetSeconds() != c.ev.RepoCreated.Unix() {
			t.Errorf("%s: repository created at %v", c.ev.Type, d.GetRepositoryCreatedAt().AsTime())
		}
		// §1.5: the two formats carry the same event; only what names the format or the source may differ.
		a, b := proto.Clone(d).(*harborflowv1.RegistryEvent), proto.Clone(c2).(*harborflowv1.RegistryEvent)
		for _, e := range []*harborflowv1.RegistryEvent{a, b} {
			e.Id, e.CorrelationId, e.Source, e.Format, e.RequestId, e.ReceivedAt = "", "", "", "", "", nil
		}
		if diff := cmp.Diff(a, b, protocmp.Transform()); diff != "" {
			t.Errorf("%s %s/%s: Default and CloudEvents differ (-Default +CloudEvents):\n%s", c.ev.Type, c.ev.Digest, c.ev.Tag, diff)
		}
	}
}

func TestReceiverRefusalsAreRetriedByTheStandIn(t *testing.T) {
	rc := newStandinReceiver(t)
	n := newStandinNotifier(t)
	ev := harbortest.Event{
		Type: "PUSH_ARTIFACT", OccurAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Operator: "admin",
		ProjectID: 7, Project: "wso2-apim", Repository: standinRepo, Digest: standinImage, Tag: "4.2.0.15",
	}
	// A wrong secret (401) and an unknown source (404) are failures: three attempts each, nothing stored.
	n.Notify(7, 1, []harbortest.Target{rc.target("harbor", "Default", "Bearer wrong")}, ev)
	n.Notify(7, 2, []harbortest.Target{rc.target("nope", "CloudEvents", standinAuth)}, ev)
	ds := standinWait(t, n)
	codes := map[int]int{}
	for _, d := range ds {
		codes[d.Status]++
	}
	if len(ds) != 6 || codes[http.StatusUnauthorized] != 3 || codes[http.StatusNotFound] != 3 {
		t.Errorf("answers %v over %d attempts", codes, len(ds))
	}
	if msgs := rc.js.Messages(event.StreamRegistry, "registry.>"); len(msgs) != 0 {
		t.Errorf("%d events stored", len(msgs))
	}
}
