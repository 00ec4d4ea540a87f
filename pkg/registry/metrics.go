package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the retry_layer log field: which layer retries a failed or refused request.
const (
	// RetryLayerClient: the registry client retries the request itself, once, after the registry's
	// Retry-After.
	RetryLayerClient = "registry_client"
	// RetryLayerCaller: the registry client gives up and the call fails; its caller retries it later — a
	// stage through the bus's back-off, the watcher at its next poll.
	RetryLayerCaller = "caller"
)

// Outcomes of a request, the outcome label of harborflow_registry_requests_total.
const (
	outcomeOK          = "ok"           // an answer below 400
	outcomeClientError = "client_error" // 4xx other than 429: 401 challenges of token authentication, 404s
	outcomeRateLimited = "rate_limited" // 429
	outcomeServerError = "server_error" // 5xx
	outcomeTimeout     = "timeout"      // no connection or no answer in time
	outcomeDNS         = "dns"          // the host name did not resolve
	outcomeTLS         = "tls"          // the certificate did not verify, or the handshake failed
	outcomeNetwork     = "network"      // connection refused, reset or closed
	outcomeCanceled    = "canceled"     // the caller's context ended
)

// WithResponseTimeout sets how long a read (GET, HEAD) waits for the registry's answer before it fails with
// ErrUnavailable (default DefaultResponseTimeout; 0: only the call's context bounds it). It bounds the wait
// for the answer's headers, not the reading of a body; writes are bounded by their context only.
func WithResponseTimeout(d time.Duration) Opt {
	return func(c *Client) {
		if d >= 0 {
			c.respTimeout = d
		}
	}
}

// WithMetrics registers the client's series with reg (default: none):
//
//   - harborflow_registry_requests_total{host, outcome}: every request sent to a registry or its token
//     service, retries included, by outcome (ok, client_error, rate_limited, server_error, timeout, dns, tls,
//     network, canceled);
//   - harborflow_registry_retries_total{host, status}: the requests the client sent again itself, after a
//     429 or 503 with a short Retry-After. Any other failure is retried by the caller, not the client.
//
// Clients given the same reg share the series.
func WithMetrics(reg prometheus.Registerer) Opt {
	return func(c *Client) {
		if reg != nil {
			c.metrics = newMetrics(reg)
		}
	}
}

// metrics are the client's series; a nil *metrics counts nothing.
type metrics struct {
	requests *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "registry", Name: "requests_total",
			Help: "Requests sent to registries and their token services, by host and outcome (ok, client_error, " +
				"rate_limited, server_error, timeout, dns, tls, network, canceled). The client retries none of the " +
				"failures itself; the caller (the bus's back-off) does.",
		}, []string{"host", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "harborflow", Subsystem: "registry", Name: "retries_total",
			Help: "Requests the registry client sent again itself after a 429 or 503 with a short Retry-After, " +
				"by host and status.",
		}, []string{"host", "status"}),
	}
	m.requests = register(reg, m.requests)
	m.retries = register(reg, m.retries)
	return m
}

// register registers c with reg, or returns the collector registered before under the same name.
func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(err) // a different series under our name: a programming error, as with MustRegister
	}
	return c
}

func (m *metrics) request(host, outcome string) {
	if m != nil {
		m.requests.WithLabelValues(host, outcome).Inc()
	}
}

func (m *metrics) retried(host string, status int) {
	if m != nil {
		m.retries.WithLabelValues(host, strconv.Itoa(status)).Inc()
	}
}

// requestOutcome names what became of a request.
func requestOutcome(req *http.Request, resp *http.Response, err error) string {
	if err == nil {
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			return outcomeRateLimited
		case resp.StatusCode >= 500:
			return outcomeServerError
		case resp.StatusCode >= 400:
			return outcomeClientError
		}
		return outcomeOK
	}
	var (
		dnsErr    *net.DNSError
		certErr   *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		recordErr tls.RecordHeaderError
		netErr    net.Error
	)
	switch {
	case req.Context().Err() != nil && errors.Is(err, context.Canceled):
		return outcomeCanceled
	case errors.As(err, &dnsErr) && !dnsErr.IsTimeout:
		return outcomeDNS
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &recordErr):
		return outcomeTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return outcomeTimeout
	}
	return outcomeNetwork
}
