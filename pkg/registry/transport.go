package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/logging"
)

// The transports under regclient, from regclient down to the wire:
//
//	regclient → authRecorder → retryTransport (User-Agent, 429 / Retry-After) → WithTransport wrappers (a
//	Counter) → transferTransport (blob bytes of a write) → hostTransport (TLS and the read bound per host) →
//	net/http
//
// The client's direct reads (direct.go) enter at retryTransport. regclient only configures TLS on an
// *http.Transport it is given, so the TLS settings of each host live in hostTransport, where the wrappers
// above cannot undo them. hostTransport also bounds how long a read waits for its answer, and counts every
// request in harborflow_registry_requests_total.
//
// The one retry inside the client is retryTransport's: a request the registry asked to repeat after a short
// Retry-After (see "Retries" in doc.go).

const (
	// retryAttempts bounds how often one request is sent when the registry answers 429 or 503 with
	// Retry-After: once more, after a wait of at most the client's max retry wait. The registry said when it
	// will answer, so one short wait costs less than handing the whole call back to the bus; a second refusal
	// goes to the caller with the delay.
	retryAttempts = 2
	// ConnectTimeout bounds connecting to a registry, name resolution included.
	ConnectTimeout = 5 * time.Second
	// tlsHandshakeTimeout bounds the TLS handshake of a new connection.
	tlsHandshakeTimeout = 5 * time.Second
	// retryBase is the first wait after a 429 without Retry-After; it doubles with each attempt.
	retryBase = time.Second
	// drainLimit bounds how much of an error body is read so that the connection can be reused.
	drainLimit = 64 << 10
)

// retryTransport sets harborflow's User-Agent on every request and owns Retry-After: it waits for a 429 or
// a 503 with Retry-After when the wait is short enough, and otherwise turns a 429 into a *RateLimitError. It
// keeps, per host, the time before which a rate-limiting registry wants no requests, and holds or fails new
// requests until then. Retry-After is removed from what regclient sees, so that regclient never waits for it
// (regclient itself retries nothing: see client.go).
type retryTransport struct {
	next      http.RoundTripper
	userAgent string
	maxWait   time.Duration
	log       *zap.Logger
	metrics   *metrics

	mu    sync.Mutex
	gates map[string]time.Time // host → no requests before
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") != t.userAgent {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.userAgent)
	}
	ctx := req.Context()
	host := req.URL.Host
	for attempt := 1; ; attempt++ {
		if err := t.waitGate(ctx, host); err != nil {
			return nil, err
		}
		resp, err := t.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		limited := resp.StatusCode == http.StatusTooManyRequests
		busy := resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != ""
		if !limited && !busy {
			resp.Header.Del("Retry-After")
			return resp, nil
		}
		wait, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok {
			wait = retryBase << (attempt - 1)
		}
		if limited {
			t.closeGate(host, wait)
		}
		again := attempt < retryAttempts && wait <= t.maxWait && fits(ctx, wait) && replayable(req)
		fields := []zap.Field{zap.String(logging.FieldRegistry, host), zap.Int(logging.FieldStatus, resp.StatusCode),
			zap.Duration(logging.FieldDelay, wait), zap.Int(logging.FieldAttempt, attempt)}
		if again {
			t.metrics.retried(host, resp.StatusCode)
			t.log.Info("registry asked to wait; the registry client retries after the delay",
				append(fields, zap.String(logging.FieldRetryLayer, RetryLayerClient))...)
		} else {
			t.log.Warn("registry asked to wait longer than the registry client waits; the caller retries",
				append(fields, zap.String(logging.FieldRetryLayer, RetryLayerCaller))...)
		}
		if again {
			drain(resp)
			if req, err = rewind(req); err != nil {
				return nil, err
			}
			if !limited { // a 503 holds this request only; a 429 holds the host (the gate above)
				if err := sleep(ctx, wait); err != nil {
					return nil, err
				}
			}
			continue
		}
		if limited {
			drain(resp)
			return nil, &RateLimitError{Host: host, RetryAfter: wait}
		}
		resp.Header.Del("Retry-After")
		return resp, nil
	}
}

// waitGate holds a request while its host is rate limited, or fails it when the wait is too long.
func (t *retryTransport) waitGate(ctx context.Context, host string) error {
	t.mu.Lock()
	until := t.gates[host]
	t.mu.Unlock()
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	if wait > t.maxWait || !fits(ctx, wait) {
		return &RateLimitError{Host: host, RetryAfter: wait}
	}
	return sleep(ctx, wait)
}

func (t *retryTransport) closeGate(host string, wait time.Duration) {
	until := time.Now().Add(wait)
	t.mu.Lock()
	if until.After(t.gates[host]) {
		t.gates[host] = until
	}
	t.mu.Unlock()
}

// ParseRetryAfter reads a Retry-After value as seconds or as an HTTP date, relative to now, capped at a day.
// A negative or unreadable value is no delay (false). The registry and Harbor clients both read it here.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// fits reports whether waiting d still leaves the context alive.
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewind returns a request that can be sent again, with a fresh body.
func rewind(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("rewinding request body: %w", err)
	}
	req = req.Clone(req.Context())
	req.Body = body
	return req, nil
}

func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	_ = resp.Body.Close()
}

// hostTransport sends each request with the TLS settings of its host, and lets at most max_concurrency reads
// (GET and HEAD) of a host wait for their answers at once. It is the one bound shared by regclient's reads and
// the client's direct reads; regclient also bounds its own requests, writes included, by the same number.
// A slot is held until the answer's headers arrive, not while a body streams: a blob copy holds a GET's body
// open while it uploads, and counting the body would let copies take every slot and wait on each other.
//
// A read (GET, HEAD) that has no answer within respTimeout fails with a timeout; a write waits for its
// answer as long as its context lets it (a registry may verify a large blob before it answers the PUT).
type hostTransport struct {
	hosts   map[string]*hostConn // by URL host
	def     *http.Transport      // hosts without settings: token services, blob redirects, Docker Hub
	defConc int

	respTimeout time.Duration // 0: none
	metrics     *metrics
	log         *zap.Logger

	mu       sync.Mutex
	unlisted map[string]chan struct{} // read slots of hosts without settings
}

type hostConn struct {
	t     *http.Transport
	reads chan struct{}
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	outcome := requestOutcome(req, resp, err)
	t.metrics.request(req.URL.Host, outcome)
	if err != nil && outcome != outcomeCanceled {
		t.log.Debug("registry request failed; the registry client does not retry it, the caller does",
			zap.String(logging.FieldRegistry, req.URL.Host), zap.String(logging.FieldReason, outcome),
			zap.String(logging.FieldRetryLayer, RetryLayerCaller), zap.Error(err))
	}
	return resp, err
}

func (t *hostTransport) roundTrip(req *http.Request) (*http.Response, error) {
	rt, reads := t.route(req.URL.Host)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return rt.RoundTrip(req)
	}
	select {
	case reads <- struct{}{}:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	defer func() { <-reads }()
	if t.respTimeout <= 0 {
		return rt.RoundTrip(req)
	}
	return roundTripWithin(rt, req, t.respTimeout)
}

// roundTripWithin sends req and fails it with a *timeoutError when its answer's headers do not arrive within
// limit. The body of an answer in time is read without a limit (only req's context bounds it).
func roundTripWithin(rt http.RoundTripper, req *http.Request, limit time.Duration) (*http.Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithCancel(parent)
	timer := time.AfterFunc(limit, cancel)
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() && parent.Err() == nil {
		// The timer struck: whatever came back, the request was cut off.
		if err == nil {
			_ = resp.Body.Close()
		}
		cancel()
		return nil, &timeoutError{host: req.URL.Host, limit: limit}
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// timeoutError is a read the registry did not answer in time. It is a net.Error whose Timeout is true.
type timeoutError struct {
	host  string
	limit time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("registry %s did not answer within %s", e.host, e.limit)
}
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// cancelOnClose releases a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (t *hostTransport) route(host string) (*http.Transport, chan struct{}) {
	if hc, ok := t.hosts[host]; ok {
		return hc.t, hc.reads
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	reads, ok := t.unlisted[host]
	if !ok {
		reads = make(chan struct{}, t.defConc)
		t.unlisted[host] = reads
	}
	return t.def, reads
}

func (t *hostTransport) closeIdle() {
	for _, hc := range t.hosts {
		hc.t.CloseIdleConnections()
	}
	t.def.CloseIdleConnections()
}

// newHostTransport builds one *http.Transport per configured host.
func newHostTransport(regs []Host, defConcurrency int, log *zap.Logger) (*hostTransport, error) {
	ht := &hostTransport{
		hosts:    map[string]*hostConn{},
		def:      newHTTPTransport(nil, defConcurrency),
		defConc:  defConcurrency,
		unlisted: map[string]chan struct{}{},
	}
	for _, r := range regs {
		conc := concurrency(r, defConcurrency)
		t, err := hostHTTPTransport(r, conc)
		if err != nil {
			return nil, err
		}
		if r.Insecure && !r.PlainHTTP {
			log.Warn("TLS verification is off for a registry (insecure: true)", zap.String(logging.FieldRegistry, r.Name))
		}
		hc := &hostConn{t: t, reads: make(chan struct{}, conc)}
		for _, h := range urlHosts(r) {
			ht.hosts[h] = hc
		}
	}
	return ht, nil
}

// HTTPTransport is an *http.Transport that reaches h as the Client does: TLS verified against the system
// roots plus h.CAFile, verification off only with h.Insecure, and the client's connect and handshake bounds
// (ConnectTimeout). Other clients of a configured host (pkg/harbor's API client) take their transport from
// here, so that a host's TLS settings mean the same to every client of it.
func HTTPTransport(h Host) (*http.Transport, error) {
	return hostHTTPTransport(h, concurrency(h, DefaultMaxConcurrency))
}

func hostHTTPTransport(h Host, conc int) (*http.Transport, error) {
	tlsConf, err := tlsConfig(h)
	if err != nil {
		return nil, err
	}
	return newHTTPTransport(tlsConf, conc), nil
}

// urlHosts are the spellings of a configured host that can appear in a request URL.
func urlHosts(r Host) []string {
	hosts := []string{r.Name}
	if _, _, err := net.SplitHostPort(r.Name); err != nil {
		if r.PlainHTTP {
			hosts = append(hosts, r.Name+":80")
		} else {
			hosts = append(hosts, r.Name+":443")
		}
	}
	if r.Name == "docker.io" || r.Name == "index.docker.io" {
		hosts = append(hosts, "registry-1.docker.io")
	}
	return hosts
}

// tlsConfig is the TLS configuration of a host: system roots plus ca_file, verification off only with
// insecure: true.
func tlsConfig(r Host) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.Insecure {
		conf.InsecureSkipVerify = true //nolint:gosec // insecure: true in the configuration asks for this
		return conf, nil
	}
	if r.CAFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		return nil, fmt.Errorf("registry %s: reading ca_file: %w", r.Name, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("registry %s: ca_file %s holds no PEM certificate", r.Name, r.CAFile)
	}
	conf.RootCAs = pool
	return conf, nil
}

func newHTTPTransport(tlsConf *tls.Config, conc int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Shorter than net/http's 30s and 10s: a registry that cannot be reached fails the call within seconds,
	// for the caller to retry later. A request on a reused connection that the registry had closed is sent
	// again on a new one by net/http itself (idempotent requests only): the one retry below the client.
	t.DialContext = (&net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = tlsHandshakeTimeout
	if tlsConf != nil {
		t.TLSClientConfig = tlsConf
	} else {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// As many idle connections as concurrent requests: the default of 2 per host would close and reopen
	// connections under load.
	t.MaxIdleConnsPerHost = max(conc, http.DefaultMaxIdleConnsPerHost)
	return t
}
