package registry_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// failFast is how long a call to a registry that cannot be reached may take: the client tries once and leaves
// retrying to the bus.
const failFast = 3 * time.Second

// digestRef is a reference by digest, so that Inspect goes straight to the manifest GET.
const digestRef = "/proj/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"

// hangingListener accepts connections, reads what is sent and never answers. Each read of a request's bytes
// is reported on the channel (a request on a new or a reused connection alike).
func hangingListener(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requested := make(chan struct{}, 64)
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
					select {
					case requested <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), requested
}

// refusedHost is host:port of a listener closed before use.
func refusedHost(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return host
}

// checkRetryable fails unless err is what a stage hands to the bus's back-off: ErrUnavailable, retryable, not
// marked permanent.
func checkRetryable(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s succeeded", what)
	case !errors.Is(err, registry.ErrUnavailable) || !registry.Retryable(err) || bus.IsPermanent(err):
		t.Errorf("%s: %v, want a retryable ErrUnavailable", what, err)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		t.Errorf("%s: %v, a failure of the registry must not look like the caller's cancellation", what, err)
	}
}

// TestUnreachableFailsFast holds the client to one attempt per call against a registry that cannot be reached,
// also when many calls fail together and one after another (regclient's back-off per host used to queue them
// for up to 22 s): retrying is the bus's job.
func TestUnreachableFailsFast(t *testing.T) {
	t.Parallel()
	hanging, _ := hangingListener(t)
	failing := registrytest.New(t)
	failing.Fail(1<<30, http.StatusInternalServerError, "")
	tlsReg := registrytest.New(t, registrytest.WithTLS())

	cases := []struct {
		name string
		host registry.Host
		opts []registry.Opt
	}{
		{"unresolvable host", registry.Host{Name: "registry.harborflow.invalid"}, nil},
		{"connection refused", registry.Host{Name: refusedHost(t), PlainHTTP: true}, nil},
		{"no answer", registry.Host{Name: hanging, PlainHTTP: true}, []registry.Opt{registry.WithResponseTimeout(500 * time.Millisecond)}},
		{"5xx", failing.Settings(), nil},
		{"TLS not verified", registry.Host{Name: tlsReg.Host}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newClient(t, []registry.Host{tc.host}, tc.opts...)
			ref := tc.host.Name + digestRef
			var slowest atomic.Int64
			defer func() { t.Logf("slowest of 24 calls: %s", time.Duration(slowest.Load())) }()
			// Rounds of concurrent calls: the second round meets whatever state the first left behind.
			for round := range 3 {
				var wg sync.WaitGroup
				for i := range 8 {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						start := time.Now()
						var err error
						if i%2 == 0 {
							_, err = c.Inspect(ctx, ref)
						} else {
							_, err = c.Resolve(ctx, tc.host.Name+"/proj/app:1")
						}
						took := time.Since(start)
						for old := slowest.Load(); int64(took) > old && !slowest.CompareAndSwap(old, int64(took)); old = slowest.Load() {
						}
						if took > failFast {
							t.Errorf("round %d call %d took %s, want under %s: %v", round, i, took, failFast, err)
						}
						if tc.name == "TLS not verified" {
							if !errors.Is(err, registry.ErrTLS) {
								t.Errorf("round %d call %d: %v, want ErrTLS", round, i, err)
							}
							return
						}
						checkRetryable(t, "call", err)
					})
				}
				wg.Wait()
			}
		})
	}
}

// TestCancelWhileRegistryHangs: a call to a registry that accepted the connection and never answers returns
// as soon as its context is cancelled.
func TestCancelWhileRegistryHangs(t *testing.T) {
	t.Parallel()
	host, requested := hangingListener(t)
	c, _ := newClient(t, []registry.Host{{Name: host, PlainHTTP: true}})
	for _, call := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"Inspect", func(ctx context.Context) error { _, err := c.Inspect(ctx, host+digestRef); return err }},
		{"Resolve", func(ctx context.Context) error { _, err := c.Resolve(ctx, host+"/proj/app:1"); return err }},
		{"Tags", func(ctx context.Context) error { _, err := c.Tags(ctx, host+"/proj/app"); return err }},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- call.do(ctx) }()
		select {
		case <-requested:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the registry never got the request", call.name)
		}
		cancel()
		start := time.Now()
		select {
		case err := <-done:
			took := time.Since(start)
			t.Logf("%s returned %s after the cancellation: %v", call.name, took, err)
			if took > 200*time.Millisecond {
				t.Errorf("%s returned %s after the cancellation, want under 200ms", call.name, took)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v, want context.Canceled", call.name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not return within 5s of the cancellation", call.name)
		}
	}
}

// TestRetryLayerIsVisible: the client's metrics and logs say which layer retries what — a refused connection
// is counted and left to the caller, a short Retry-After is retried by the client and counted as its retry.
func TestRetryLayerIsVisible(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	reg.PushImage(t, "proj/app:1", amd64)
	refused := refusedHost(t)
	metrics := prometheus.NewRegistry()
	core, logs := observer.New(zapcore.DebugLevel)
	c, _ := newClient(t, []registry.Host{reg.Settings(), {Name: refused, PlainHTTP: true}},
		registry.WithMetrics(metrics), registry.WithLogger(zap.New(core)))
	// A second client on the same metrics registry shares the series rather than panicking.
	newClient(t, nil, registry.WithMetrics(metrics))

	if _, err := c.Resolve(ctxT(t), refused+"/proj/app:1"); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Resolve of a refused host: %v, want ErrUnavailable", err)
	}
	reg.RateLimit(1, "1")
	if _, err := c.Resolve(ctxT(t), reg.Ref("proj/app:1")); err != nil {
		t.Fatalf("Resolve after a short Retry-After: %v", err)
	}

	for _, want := range []struct {
		series string
		value  float64
	}{
		{`harborflow_registry_requests_total{host="` + refused + `",outcome="network"}`, 1},
		{`harborflow_registry_requests_total{host="` + reg.Host + `",outcome="rate_limited"}`, 1},
		{`harborflow_registry_requests_total{host="` + reg.Host + `",outcome="ok"}`, 1},
		{`harborflow_registry_retries_total{host="` + reg.Host + `",status="429"}`, 1},
		{`harborflow_registry_retries_total{host="` + refused + `",status="429"}`, 0},
	} {
		if got := seriesValue(t, metrics, want.series); got != want.value {
			t.Errorf("%s = %v, want %v", want.series, got, want.value)
		}
	}

	layers := map[string]string{}
	for _, e := range logs.All() {
		if layer, ok := e.ContextMap()[logging.FieldRetryLayer].(string); ok {
			layers[e.ContextMap()[logging.FieldRegistry].(string)] = layer
		}
	}
	if layers[refused] != registry.RetryLayerCaller || layers[reg.Host] != registry.RetryLayerClient {
		t.Errorf("retry_layer by registry %v, want %s for the refused host and %s for the rate limit", layers,
			registry.RetryLayerCaller, registry.RetryLayerClient)
	}
}

// seriesValue reads one series, name{label="value",...} with the labels in order, from reg; 0 when absent.
func seriesValue(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if f.GetName()+"{"+strings.Join(labels, ",")+"}" == series {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestFailureIsOneRequest: a failed read is sent once, whether the client reads it directly or through
// regclient, so that the registry sees one request per attempt of the caller.
func TestFailureIsOneRequest(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushImage(t, "proj/app:1", amd64)
	c, counter := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
	if _, err := c.Inspect(ctxT(t), img.Ref); err != nil { // learns the repository's authorization
		t.Fatalf("Inspect: %v", err)
	}
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable} {
		reg.Fail(10, status, "")
		counter.Reset()
		_, ierr := c.Inspect(ctxT(t), img.Ref)
		_, rerr := c.Resolve(ctxT(t), reg.Ref("proj/app:1"))
		reg.Fail(0, 0, "")
		checkRetryable(t, "Inspect", ierr)
		checkRetryable(t, "Resolve", rerr)
		if got := counter.Snapshot(); got != (registry.Counts{ManifestGet: 1, ManifestHead: 1}) {
			t.Errorf("%d: requests %+v, want one GET (Inspect) and one HEAD (Resolve)", status, got)
		}
	}
}
