package harborflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/secret"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/promoter"
	"github.com/harborflow/harborflow/services/receiver"
)

// benchCalls counts the HTTP requests a client sends: token requests apart from the rest, by method.
type benchCalls struct {
	token, get, head, put, post, other atomic.Int64
	// took is the time spent waiting on the requests, in nanoseconds.
	took atomic.Int64
}

func (c *benchCalls) wrap(next http.RoundTripper) http.RoundTripper {
	return benchRoundTripper{c: c, next: next}
}

func (c *benchCalls) total() int64 {
	return c.token.Load() + c.get.Load() + c.head.Load() + c.put.Load() + c.post.Load() + c.other.Load()
}

func (c *benchCalls) reset() {
	for _, n := range []*atomic.Int64{&c.token, &c.get, &c.head, &c.put, &c.post, &c.other} {
		n.Store(0)
	}
	c.took.Store(0)
}

type benchRoundTripper struct {
	c    *benchCalls
	next http.RoundTripper
}

func (t benchRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/service/token"):
		t.c.token.Add(1)
	case r.Method == http.MethodGet:
		t.c.get.Add(1)
	case r.Method == http.MethodHead:
		t.c.head.Add(1)
	case r.Method == http.MethodPut:
		t.c.put.Add(1)
	case r.Method == http.MethodPost:
		t.c.post.Add(1)
	default:
		t.c.other.Add(1)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.c.took.Add(int64(time.Since(start)))
	return resp, err
}

// BenchmarkPromote measures the promoter (issue 11, "Performance"): a two-platform image in the stand-in's dev
// project, scanned on push by its scanner, goes dev → staging on a chain with max_severity and the rolling tags
// {{.Version}} and latest. An op is the promoter's Handle of the image's last SCANNING_COMPLETED (parsed from
// the stand-in's webhook as the receiver parses it), which returns image.promoted once the copy is made and
// every tag put and verified. Side by side, the same image is carried by a "script" doing the minimal work
// directly: Harbor's copy API by digest into another project, then a PUT of each tag, each verified by a HEAD.
//
// Every op pushes a new image (a label varies, so a new digest, unique tag 4.2.0.<n>) so nothing is skipped as
// already done; the push, the scans and the events before the last scan are outside the timer. The promoter
// and the script take turns in going first.
//
// Reported: promoter-ns/op and script-ns/op (wall time), ratio (promoter/script; target ≤ 1.5), and the HTTP
// requests each made per op, registry and Harbor API apart (token requests included in the registry's and
// also shown alone), and the time each spent waiting on them (http-ns/op): the promoter's time beyond it is
// its own work, mostly its state in the KV buckets.
func BenchmarkPromote(b *testing.B) {
	ctx := context.Background()
	hb := harbortest.New(b)
	user, password := hb.Admin()
	hb.CreateProject(b, "wso2-dev", false, map[string]string{"auto_scan": "true"})
	hb.CreateProject(b, "wso2-staging", false, nil)
	hb.CreateProject(b, "wso2-script", false, nil)
	h := hb.Host()
	src := registrytest.New(b)

	// Scan events, as the stand-in delivers them, by digest.
	var mu sync.Mutex
	scans := map[string]*harborflowv1.RegistryEvent{}
	arrived := make(chan struct{}, 64)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := receiver.ParseHarborDefault(receiver.Origin{Source: "harbor", Host: h}, body)
		if err == nil && ev.GetType() == "SCANNING_COMPLETED" {
			mu.Lock()
			scans[ev.GetDigest()] = ev
			mu.Unlock()
			arrived <- struct{}{}
		}
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(hook.Close)
	policy, _ := json.Marshal(map[string]any{"name": "bench", "enabled": true, "event_types": []string{"SCANNING_COMPLETED"},
		"targets": []map[string]any{{"type": "http", "address": hook.URL, "payload_format": "Default"}}})
	req, _ := http.NewRequest(http.MethodPost, hb.URL()+"/api/v2.0/projects/wso2-dev/webhook/policies", bytes.NewReader(policy))
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("creating the webhook policy: %s", resp.Status)
	}

	// The promoter's clients and the script's, each counted.
	var pReg, pAPI, sReg, sAPI benchCalls
	regHost := []registry.Host{{Name: h, Username: user, Password: secret.Secret(password), PlainHTTP: true}}
	apiHost := harbor.Host{Name: h, Username: user, Password: secret.Secret(password), PlainHTTP: true}
	newClients := func(reg, api *benchCalls) (*registry.Client, *harbor.Client) {
		rc, err := registry.New(regHost, registry.WithTransport(reg.wrap))
		if err != nil {
			b.Fatal(err)
		}
		hc, err := harbor.New(apiHost, harbor.WithTransport(api.wrap))
		if err != nil {
			b.Fatal(err)
		}
		return rc, hc
	}
	promReg, promAPI := newClients(&pReg, &pAPI)
	scriptReg, scriptAPI := newClients(&sReg, &sAPI)

	js := bustest.Start(b)
	promotions, err := js.Bus.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		b.Fatal(err)
	}
	scanKV, err := js.Bus.KeyValue(ctx, event.BucketScans)
	if err != nil {
		b.Fatal(err)
	}
	chain := config.Promotion{Name: "acme-am", RollingTags: []string{"{{.Version}}", "latest"}, ScanTimeout: time.Minute,
		Stages: []config.PromotionStage{
			{Name: "wso2-dev", Repository: h + "/wso2-dev/am"},
			{Name: "wso2-staging", Repository: h + "/wso2-staging/am", Gates: config.Gates{MaxSeverity: "Medium"}},
		}}
	p, err := promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: promReg, Harbors: map[string]*harbor.Client{h: promAPI},
		Promotions: promotions, Scans: scanKV})
	if err != nil {
		b.Fatal(err)
	}
	handle := func(m *bus.Message) []*bus.Message {
		b.Helper()
		m.Deliveries = 1
		out, err := p.Handle(ctx, m)
		if err != nil {
			b.Fatalf("handling %s: %v", m.Subject, err)
		}
		return out
	}

	// The pushes into dev go through a plain regclient, not counted.
	pusher := regclient.New(regclient.WithConfigHost(
		rcconfig.Host{Name: h, TLS: rcconfig.TLSDisabled, User: user, Pass: password},
		rcconfig.Host{Name: src.Host, TLS: rcconfig.TLSDisabled}))

	var promoterTook, scriptTook, promoterHTTP, scriptHTTP time.Duration
	var promoterReg, promoterAPI, promoterToken, scriptRegN, scriptAPIN, scriptToken int64
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		n := 100 + i
		tag := "4.2.0." + strconv.Itoa(n)
		level := map[string]string{"update_level": strconv.Itoa(n), "bench_op": strconv.Itoa(n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)}
		pushed := src.PushIndex(b, "am:"+tag, registrytest.Index{Images: []registrytest.Image{
			{Platform: "linux/amd64", User: "802", Labels: level},
			{Platform: "linux/arm64", User: "802", Labels: level},
		}})
		f, _ := ref.New(src.Host + "/am:" + tag)
		d, _ := ref.New(h + "/wso2-dev/am:" + tag)
		if err := pusher.ImageCopy(ctx, f, d); err != nil {
			b.Fatalf("pushing %s into wso2-dev: %v", tag, err)
		}
		plats := []*harborflowv1.Platform{
			{Os: "linux", Architecture: "amd64", Digest: pushed.Children[0].Digest},
			{Os: "linux", Architecture: "arm64", Digest: pushed.Children[1].Digest},
		}
		// Both platforms' scans in.
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			have := scans[plats[0].Digest] != nil && scans[plats[1].Digest] != nil
			mu.Unlock()
			if have {
				break
			}
			select {
			case <-arrived:
			case <-deadline:
				b.Fatalf("op %d: the scans of %s did not arrive", i, tag)
			}
		}
		mu.Lock()
		first, last := scans[plats[0].Digest], scans[plats[1].Digest]
		mu.Unlock()

		// The inspector's image.inspected, then the first scan: pending on the second.
		ii, err := bus.NewMessage(event.SubjectImageInspected, "ii-"+tag, "corr-"+tag, &harborflowv1.ImageInspected{Registry: h,
			Repository: "wso2-dev/am", Digest: pushed.Digest, Tags: []string{tag}, Platforms: plats, InspectedAt: timestamppb.Now()})
		if err != nil {
			b.Fatal(err)
		}
		if out := handle(ii); len(out) != 0 {
			b.Fatalf("op %d: image.inspected published %d messages before the scans", i, len(out))
		}
		scanMsg := func(ev *harborflowv1.RegistryEvent) *bus.Message {
			m, err := bus.NewMessage(event.RegistrySubject("harbor", event.KindScan), ev.GetId(), "corr-"+tag, ev)
			if err != nil {
				b.Fatal(err)
			}
			return m
		}
		if out := handle(scanMsg(first)); len(out) != 0 {
			b.Fatalf("op %d: the first scan published %d messages", i, len(out))
		}
		lastMsg := scanMsg(last)

		runPromoter := func() {
			pReg.reset()
			pAPI.reset()
			start := time.Now()
			b.StartTimer()
			out := handle(lastMsg)
			b.StopTimer()
			promoterTook += time.Since(start)
			promoterReg += pReg.total()
			promoterAPI += pAPI.total()
			promoterToken += pReg.token.Load() + pAPI.token.Load()
			promoterHTTP += time.Duration(pReg.took.Load() + pAPI.took.Load())
			if len(out) != 1 || out[0].Subject != event.SubjectImagePromoted {
				b.Fatalf("op %d: the last scan published %v, want image.promoted", i, out)
			}
			pr := &harborflowv1.ImagePromoted{}
			if err := out[0].Decode(pr); err != nil || strings.Join(pr.GetTags(), ",") != tag+",4.2.0,latest" {
				b.Fatalf("op %d: image.promoted %v %v", i, pr, err)
			}
		}
		runScript := func() {
			sReg.reset()
			sAPI.reset()
			start := time.Now()
			if err := scriptAPI.CopyArtifact(ctx, "wso2-script", "am", "wso2-dev/am@"+pushed.Digest); err != nil {
				b.Fatalf("op %d: script copy: %v", i, err)
			}
			dst := h + "/wso2-script/am"
			for _, t := range []string{tag, "4.2.0", "latest"} {
				if err := scriptReg.Tag(ctx, dst+"@"+pushed.Digest, t); err != nil {
					b.Fatalf("op %d: script tag %s: %v", i, t, err)
				}
				got, err := scriptReg.Resolve(ctx, dst+":"+t)
				if err != nil || got.Digest != pushed.Digest {
					b.Fatalf("op %d: script verify %s: %v %v", i, t, got, err)
				}
			}
			scriptTook += time.Since(start)
			scriptRegN += sReg.total()
			scriptAPIN += sAPI.total()
			scriptToken += sReg.token.Load() + sAPI.token.Load()
			scriptHTTP += time.Duration(sReg.took.Load() + sAPI.took.Load())
		}
		if i%2 == 0 {
			runPromoter()
			runScript()
		} else {
			runScript()
			runPromoter()
		}
	}
	ops := float64(b.N)
	b.ReportMetric(float64(promoterTook.Nanoseconds())/ops, "promoter-ns/op")
	b.ReportMetric(float64(scriptTook.Nanoseconds())/ops, "script-ns/op")
	if scriptTook > 0 {
		b.ReportMetric(float64(promoterTook)/float64(scriptTook), "ratio")
	}
	b.ReportMetric(float64(promoterHTTP.Nanoseconds())/ops, "promoter-http-ns/op")
	b.ReportMetric(float64(scriptHTTP.Nanoseconds())/ops, "script-http-ns/op")
	b.ReportMetric(float64(promoterReg)/ops, "promoter-registry-calls/op")
	b.ReportMetric(float64(promoterAPI)/ops, "promoter-api-calls/op")
	b.ReportMetric(float64(promoterToken)/ops, "promoter-token-calls/op")
	b.ReportMetric(float64(scriptRegN)/ops, "script-registry-calls/op")
	b.ReportMetric(float64(scriptAPIN)/ops, "script-api-calls/op")
	b.ReportMetric(float64(scriptToken)/ops, "script-token-calls/op")
}
