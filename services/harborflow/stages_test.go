package harborflow_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/harborflow"
)

// TestStagesInSeparateProcesses runs every stage alone, each in its own process (here, its own Process) on one
// NATS: a receiver, a watcher, two inspectors and a rebuilder. Webhooks and a poll end as inspected and rebuilt
// images, the two inspectors share the durable consumer (each image inspected once, both doing part of the
// work), and a process without the receiver serves its probes and its consumer's metrics on ops.listen.
func TestStagesInSeparateProcesses(t *testing.T) {
	srv := bustest.Start(t)
	reg := registrytest.New(t)
	const images = 24
	digests := map[string]int{}
	for i := 1; i <= images; i++ {
		pushed := reg.PushImage(t, fmt.Sprintf("wso2-apim/am:4.2.0.%d", i), registrytest.Image{
			Labels: map[string]string{"update_level": fmt.Sprint(i)},
			Files:  map[string]string{"home/wso2carbon/README": fmt.Sprint("am ", i)}})
		digests[pushed.Digest] = i
	}
	polled := reg.PushImage(t, "wso2-is/is:7.1.0.4", registrytest.Image{Labels: map[string]string{"update_level": "4"}})
	overlay := t.TempDir()
	if err := os.WriteFile(filepath.Join(overlay, "acme.conf"), []byte("acme"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := func() *config.Config {
		c := config.Default()
		c.NATS.URL = srv.URL()
		c.HTTP.Listen, c.Ops.Listen = "127.0.0.1:0", "127.0.0.1:0"
		c.Registries = []config.Registry{reg.Config()}
		c.Sources = []config.Source{
			{Name: "harbor", Kind: config.SourceHarbor, Host: reg.Host, Secrets: []config.Secret{"Bearer p"}},
			{Name: "upstream", Kind: config.SourcePoll, Interval: time.Hour, Initial: "publish",
				Repositories: []config.PollRepository{{Repository: reg.Ref("wso2-is/is")}}},
		}
		c.Rebuilds = []config.Rebuild{{Name: "acme-am", Base: reg.Ref("wso2-apim/am:4.2.0"), Builder: config.BuilderOverlay,
			Context: overlay, Owner: "802:802", Target: reg.Ref("acme/am"), Tag: imagetag.DefaultTemplate, Timeout: time.Minute}}
		return &c
	}
	start := func(stages ...string) *harborflow.Process { return startStages(t, cfg(), stages...) }
	receiver := start(event.StageReceiver)
	start(event.StageWatcher)
	inspectors := []*harborflow.Process{start(event.StageInspector), start(event.StageInspector)}
	start(event.StageRebuilder)

	for d, i := range digests {
		postWebhook(t, receiver.ReceiverAddr(), "Bearer p", harborPush(d, fmt.Sprintf("4.2.0.%d", i), time.Now().Unix()))
	}

	// Every image is inspected once: the pushed ones and the polled one.
	inspected := readMessages[*harborflowv1.ImageInspected](t, srv.URL(), event.SubjectImageInspected, images+1, true)
	seen := map[string]int{}
	for _, ii := range inspected {
		seen[ii.GetDigest()]++
	}
	for d, i := range digests {
		if seen[d] != 1 {
			t.Errorf("4.2.0.%d (%s) inspected %d times, want once", i, d, seen[d])
		}
	}
	if seen[polled.Digest] != 1 {
		t.Errorf("the polled image was inspected %d times, want once", seen[polled.Digest])
	}
	// The rebuilder, alone in its process, built from what the inspectors published.
	if rebuilt := readMessages[*harborflowv1.ImageRebuilt](t, srv.URL(), event.SubjectImageRebuilt, 1, false); rebuilt[0].GetRecipe() != "acme-am" {
		t.Errorf("image.rebuilt %v", rebuilt[0])
	}

	// The two inspectors split the work; each process's metrics count its own part.
	var total float64
	for i, p := range inspectors {
		n := metricValue(t, p.Metrics, "harborflow_consumer_messages_total", map[string]string{"stage": event.StageInspector, "outcome": "handled"})
		t.Logf("inspector %d handled %v messages", i+1, n)
		if n == 0 {
			t.Errorf("inspector %d handled nothing: the durable consumer is not shared", i+1)
		}
		total += n
	}
	if total != images+1 {
		t.Errorf("the inspectors handled %v messages together, want %d", total, images+1)
	}

	// A process without the receiver serves its probes on ops.listen, with its stage's consumer metrics.
	probes := inspectors[0].ProbeAddr()
	for path, want := range map[string]string{
		"/healthz": `"ok"`,
		"/readyz":  `"ready"`,
		"/metrics": `harborflow_consumer_messages_total{outcome="handled",stage="inspector"}`,
	} {
		code, body := get(t, "http://"+probes+path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 with %s\n%.2000s", path, code, want, body)
		}
	}
	if _, body := get(t, "http://"+probes+"/metrics"); strings.Contains(body, "harborflow_receiver_") {
		t.Errorf("the inspector's /metrics has the receiver's series")
	}
}

// startStages runs the stages called names of cfg (every stage without names) in this process, and shuts it
// down, checking the shutdown, when the test ends.
func startStages(t *testing.T, cfg *config.Config, names ...string) *harborflow.Process {
	t.Helper()
	p, err := harborflow.Start(context.Background(), cfg, names, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(); err != nil {
			t.Errorf("shutdown of %v: %v", names, err)
		}
	})
	return p
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readMessages reads n messages of subject from its stream, waiting up to 60 s; with exactly, it fails if
// another comes within a second of the n-th.
func readMessages[T interface {
	*E
	proto.Message
}, E any](t *testing.T, url, subject string, n int, exactly bool) []T {
	t.Helper()
	nc, err := bus.Connect(context.Background(), url, "stages-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []T
	var more *bus.Message
	for m, err := range b.Read(ctx, bus.ReadConfig{Subject: subject, Follow: true}) {
		if err != nil {
			t.Fatalf("reading %s (have %d of %d): %v", subject, len(out), n, err)
		}
		if len(out) == n {
			more = m
			break
		}
		v := T(new(E))
		if err := m.Decode(v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
		if len(out) == n && !exactly {
			break
		}
		if len(out) == n {
			// One too many would come within a second; the read ends without an error when ctx does.
			time.AfterFunc(time.Second, cancel)
		}
	}
	if len(out) < n {
		t.Fatalf("read %d %s of %d within 60 s", len(out), subject, n)
	}
	if more != nil {
		t.Errorf("one %s more than the %d expected: %s", subject, n, more.Data)
	}
	return out
}

// metricValue is the value of the counter or gauge name with labels in reg; 0 when there is none.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// A port that is taken stops the start at once with an error naming the key to change.
func TestTakenPortNamesTheKey(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		key    string
		stages []string
		set    func(c *config.Config)
	}{
		{"nats.listen", []string{event.StageInspector}, func(c *config.Config) { c.NATS.Listen = taken.Addr().String() }},
		{"http.listen", []string{event.StageReceiver}, func(c *config.Config) { c.HTTP.Listen = taken.Addr().String() }},
		{"ops.listen", []string{event.StageInspector}, func(c *config.Config) { c.Ops.Listen = taken.Addr().String() }},
	} {
		t.Run(tc.key, func(t *testing.T) {
			c := config.Default()
			c.NATS.Listen, c.NATS.StoreDir, c.NATS.SyncAlways = "127.0.0.1:0", t.TempDir(), false
			c.HTTP.Listen, c.Ops.Listen = "127.0.0.1:0", "127.0.0.1:0"
			tc.set(&c)
			start := time.Now()
			p, err := harborflow.Start(context.Background(), &c, tc.stages, zap.NewNop())
			if err == nil {
				_ = p.Shutdown()
				t.Fatal("started on a taken port")
			}
			if !strings.Contains(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), "address already in use") {
				t.Errorf("error %q, want it to name %q and give the cause", err, tc.key)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("failing took %s", took)
			}
		})
	}
}

// An inspector-only process starts without the receiver's webhook secret; the whole process would not.
func TestInspectorStartsWithoutTheReceiversSecrets(t *testing.T) {
	srv := bustest.Start(t)
	dir := t.TempDir()
	path := writeYAML(t, dir, fmt.Sprintf(`nats: {url: %q}
ops: {listen: "127.0.0.1:0"}
sources:
  - {name: harbor, kind: harbor, host: harbor.acme.example, secrets: ["${HARBORFLOW_TEST_UNSET_SECRET}"]}
`, srv.URL()))
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "HARBORFLOW_TEST_UNSET_SECRET") {
		t.Fatalf("loading for every stage: %v, want the unset variable named", err)
	}
	cfg, err := config.Load(path, event.StageInspector)
	if err != nil {
		t.Fatalf("loading for the inspector: %v", err)
	}
	p := startStages(t, cfg, event.StageInspector)
	if code, body := get(t, "http://"+p.ProbeAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz of the inspector: %d %s", code, body)
	}
}
