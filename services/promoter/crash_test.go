package promoter_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/promoter"
)

// The crash test stops a promotion at each write it sends the registry — the rolling tags in the first stage,
// each blob, the signature's and the attestation's manifests, the image's manifest, the unique tag, each
// rolling tag in the next — in two ways, and redelivers its trigger to another process (a promoter of its own
// on the same buckets and registry), as JetStream does after a crash:
//
//   - exit-before: the process dies while the request is on its way: the registry never sees it;
//   - exit-after: the process dies while the answer is on its way: the registry did the write.
//
// A dead process's request never returns and its NATS connection is closed: it writes no more state and no
// longer renews its turn of the destination repository, which the redelivery takes over once the lease runs
// out. Every case must end like a promotion nothing stopped: the image in the next stage under its unique tag
// and every rolling tag with its signature and attestation verifying there, the state done, one image.promoted
// (the same id), and never a dead letter.

// processHeader marks the requests of the process that dies.
const processHeader = "X-Test-Process"

// crashStep stops the n-th write of the process called name.
type crashStep struct {
	name, mode string
	n          int
	fired      chan struct{}
	stop       chan struct{}

	mu     sync.Mutex
	writes []string
}

type crashSteps struct{ m sync.Map }

func (cs *crashSteps) add(t *testing.T, name string, n int, mode string) *crashStep {
	s := &crashStep{name: name, n: n, mode: mode, fired: make(chan struct{}), stop: make(chan struct{})}
	cs.m.Store(name, s)
	t.Cleanup(func() { close(s.stop) })
	return s
}

func (cs *crashSteps) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v, ok := cs.m.Load(req.Header.Get(processHeader))
		if !ok || (req.Method != http.MethodPost && req.Method != http.MethodPut && req.Method != http.MethodPatch) {
			next.ServeHTTP(w, req)
			return
		}
		s := v.(*crashStep)
		s.mu.Lock()
		s.writes = append(s.writes, req.Method+" "+req.URL.Path)
		n := len(s.writes)
		s.mu.Unlock()
		if n != s.n {
			next.ServeHTTP(w, req)
			return
		}
		if s.mode == "exit-after" {
			next.ServeHTTP(discard{header: http.Header{}}, req)
		}
		close(s.fired)
		select { // the process is gone: its request never returns, until the case ends
		case <-req.Context().Done():
		case <-s.stop:
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
}

// discard is a response writer whose answer nobody reads.
type discard struct{ header http.Header }

func (d discard) Header() http.Header       { return d.header }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// crashFixture is a registry and NATS; each case pushes the image into a first stage of its own, signed and
// attested there by signer, so that the signature and the attestation are among the writes a crash stops.
type crashFixture struct {
	t      *testing.T
	js     *bustest.Server
	reg    *registrytest.Registry
	pushed registrytest.Pushed
	signer *signature.Signer
}

// image is what every case promotes.
var crashImage = registrytest.Image{User: "802", Layer: "15", Labels: map[string]string{"update_level": "15"}}

// push pushes the image into name-dev/am:4.2.0.15, the first stage of the case name, and signs and attests it
// there.
func (f *crashFixture) push(t *testing.T, name string) {
	f.pushed = f.reg.PushImage(t, name+"-dev/am:4.2.0.15", crashImage)
	rc, err := registry.New([]registry.Host{f.reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	img := f.reg.Ref(name + "-dev/am@" + f.pushed.Digest)
	if _, err := f.signer.Sign(context.Background(), rc, img); err != nil {
		t.Fatal(err)
	}
	attest(t, rc, f.signer, img, wso2Base)
}

// process is a promoter of its own (registry client, NATS connection) for the chain name-dev/am → name/am; its
// requests carry processHeader: name when marked. kill closes its NATS connection.
func (f *crashFixture) process(name string, marked bool) (p *promoter.Promoter, kill func()) {
	f.t.Helper()
	var opts []registry.Opt
	if marked {
		opts = append(opts, registry.WithTransport(func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(req *http.Request) (*http.Response, error) {
				req = req.Clone(req.Context())
				req.Header.Set(processHeader, name)
				return next.RoundTrip(req)
			})
		}))
	}
	rc, err := registry.New([]registry.Host{f.reg.Settings()}, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(rc.Close)
	nc, err := nats.Connect(f.js.URL())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(nc.Close)
	b, err := bus.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	promotions, scans := buckets(f.t, b)
	chain := config.Promotion{Name: name, RollingTags: []string{"{{.Version}}", "latest"}, Stages: []config.PromotionStage{
		{Name: "dev", Repository: f.reg.Ref(name + "-dev/am")},
		{Name: "next", Repository: f.reg.Ref(name + "/am"), Gates: config.Gates{NonRoot: true}}}}
	p, err = promoter.New([]config.Promotion{chain}, promoter.Deps{Registry: rc, Promotions: promotions, Scans: scans,
		TurnLease: 300 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	return p, nc.Close
}

// delivery is the image.inspected of name-dev/am:4.2.0.15 as the bus delivers it (first delivery).
func (f *crashFixture) delivery(name string) *bus.Message {
	m, err := bus.NewMessage(event.SubjectImageInspected, "inspected", "corr", &harborflowv1.ImageInspected{Registry: f.reg.Host,
		Repository: name + "-dev/am", Digest: f.pushed.Digest, Tags: []string{"4.2.0.15"}, InspectedAt: timestamppb.Now()})
	if err != nil {
		f.t.Fatal(err)
	}
	m.Stream, m.Sequence, m.Deliveries = event.StreamImage, 7, 1
	return m
}

// redeliver hands m to p as JetStream would after a crash, until it succeeds: a retryable error is redelivered
// (a few times at most), a permanent one fails the test. It returns every image.promoted published.
func redeliver(t *testing.T, p *promoter.Promoter, m *bus.Message) []*bus.Message {
	t.Helper()
	var promoted []*bus.Message
	for range 5 {
		m.Deliveries++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		outs, err := p.Handle(ctx, m)
		cancel()
		if bus.IsPermanent(err) {
			t.Fatalf("the redelivery failed for good (it would be dead-lettered): %v", err)
		}
		for _, o := range outs {
			if o.Subject == event.SubjectImagePromoted {
				promoted = append(promoted, o)
			}
		}
		if err == nil {
			return promoted
		}
		t.Logf("redelivery %d: %v", m.Deliveries, err)
	}
	t.Fatal("the redelivery kept failing")
	return nil
}

// check fails the test unless name-dev/am and name/am hold the image under every tag, the state is done, and
// promoted is the one image.promoted a promotion nothing stopped publishes.
func (f *crashFixture) check(t *testing.T, p *promoter.Promoter, name string, promoted []*bus.Message) {
	t.Helper()
	rc, err := registry.New([]registry.Host{f.reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx := context.Background()
	for _, repo := range []string{name + "-dev/am", name + "/am"} {
		for _, tag := range []string{"4.2.0.15", "4.2.0", "latest"} {
			if d, err := rc.Resolve(ctx, f.reg.Ref(repo+":"+tag)); err != nil || d.Digest != f.pushed.Digest {
				t.Errorf("%s:%s: %v %v", repo, tag, d, err)
			}
		}
	}
	if tags, err := rc.Tags(ctx, f.reg.Ref(name+"/am")); err != nil || len(tags) != 5 {
		t.Errorf("%s/am tags %v %v, want three and the signature's and the attestation's", name, tags, err)
	}
	img, keys := f.reg.Ref(name+"/am@"+f.pushed.Digest), []*signature.Verifier{f.signer.Verifier()}
	if err := signature.Verify(ctx, rc, img, keys); err != nil {
		t.Errorf("the signature of %s: %v", img, err)
	}
	if _, err := signature.VerifyAttestation(ctx, rc, img, keys, provenance.PredicateType); err != nil {
		t.Errorf("the attestation of %s: %v", img, err)
	}
	want := event.PromotedID(name, f.pushed.Digest, "dev", "next")
	if len(promoted) == 0 || slices.ContainsFunc(promoted, func(m *bus.Message) bool { return m.ID != want }) {
		t.Errorf("image.promoted %v, want id %s", promoted, want)
	}
	pr := &harborflowv1.ImagePromoted{}
	if len(promoted) > 0 {
		if err := promoted[0].Decode(pr); err != nil || !slices.Equal(pr.GetTags(), []string{"4.2.0.15", "4.2.0", "latest"}) {
			t.Errorf("image.promoted tags %v %v", pr.GetTags(), err)
		}
	}
	st := &harborflowv1.PromotionState{}
	kv, err := f.js.Bus.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, event.Key("promotion", name, f.pushed.Digest), st); err != nil || st.GetVerdict() != "done" {
		t.Errorf("state %v %v, want done", st, err)
	}
	_ = p
}

// TestPromotionCrashAtEveryWriteStep: see the comment at the top of this file.
func TestPromotionCrashAtEveryWriteStep(t *testing.T) {
	steps := &crashSteps{}
	f := &crashFixture{t: t, js: bustest.Start(t), signer: newSigner(t)}
	f.reg = registrytest.New(t, registrytest.WithMiddleware(steps.wrap))

	// The promotion nothing stops, and the writes it makes.
	ref := steps.add(t, "ref", 0, "")
	f.push(t, "ref")
	p, _ := f.process("ref", true)
	outs, err := p.Handle(context.Background(), f.delivery("ref"))
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, p, "ref", outs)
	writes := ref.writes
	t.Logf("a promotion makes %d writes: %s", len(writes), strings.Join(writes, ", "))
	if len(writes) < 4 {
		t.Fatalf("only %d writes: the steps are not what this test expects", len(writes))
	}

	for n := 1; n <= len(writes); n++ {
		for _, mode := range []string{"exit-before", "exit-after"} {
			what := strings.Fields(writes[n-1])
			name := fmt.Sprintf("c%02d-%s-%s", n, mode, strings.ToLower(what[0]))
			t.Run(name, func(t *testing.T) {
				step := steps.add(t, name, n, mode)
				f.push(t, name)
				dying, kill := f.process(name, true)
				m := f.delivery(name)
				ctx, stop := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = dying.Handle(ctx, m) // the dead process's result is never seen
				}()
				t.Cleanup(func() { stop(); <-done })
				select {
				case <-step.fired:
				case <-done:
					t.Fatalf("the delivery ended before write %d (%s)", n, writes[n-1])
				case <-time.After(30 * time.Second):
					t.Fatalf("write %d never came", n)
				}
				kill()

				again, _ := f.process(name, false)
				f.check(t, again, name, redeliver(t, again, m))
			})
		}
	}

	t.Run("between state and ack", func(t *testing.T) {
		f.push(t, "ack")
		p, _ := f.process("ack", false)
		m := f.delivery("ack")
		first, err := p.Handle(context.Background(), m) // promoted and recorded; the process dies before its ack
		if err != nil {
			t.Fatal(err)
		}
		again := redeliver(t, p, m)
		if len(first) != 1 || len(again) != 1 || again[0].ID != first[0].ID || string(again[0].Data) != string(first[0].Data) {
			t.Errorf("the redelivery after the state was written gave %v; want the same image.promoted as %v", again, first)
		}
		f.check(t, p, "ack", again)
	})
}
