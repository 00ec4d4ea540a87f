package harbor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	goharbor "github.com/goharbor/go-client/pkg/harbor"
	v2client "github.com/goharbor/go-client/pkg/sdk/v2.0/client"

	"github.com/harborflow/harborflow/pkg/registry"
)

const (
	// PageSize is how many items a list asks for per request: Harbor's maximum (a larger page_size is a 422,
	// HARBOR.md §3.1).
	PageSize = 100
	// DefaultTimeout bounds one request whose context has no deadline (go-client's own default).
	DefaultTimeout = 30 * time.Second
	// maxPages stops a list whose server keeps answering full pages without an X-Total-Count.
	maxPages = 10_000
	// errorBodyLimit bounds how much of an error answer is kept for its message.
	errorBodyLimit = 64 << 10
)

// Client calls one Harbor's API. It is safe for concurrent use. Every call takes its context first and ends
// when the context does; a request whose context has no deadline is bounded by the client's timeout.
type Client struct {
	api     *v2client.HarborAPI
	base    *url.URL
	version string
	timeout time.Duration
	wraps   []func(http.RoundTripper) http.RoundTripper
	hc      *http.Transport
	auth    runtime.ClientAuthInfoWriter // nil: anonymous
}

// Opt configures a Client.
type Opt func(*Client)

// WithVersion sets the version in the User-Agent harborflow/<version> (default registry.DefaultVersion).
func WithVersion(v string) Opt {
	return func(c *Client) {
		if v != "" {
			c.version = v
		}
	}
}

// WithTransport wraps the transport that sends each request, above TLS and below the client's headers, for
// example with a request counter. Several wrappers nest, the first outermost.
func WithTransport(wrap func(http.RoundTripper) http.RoundTripper) Opt {
	return func(c *Client) {
		if wrap != nil {
			c.wraps = append(c.wraps, wrap)
		}
	}
}

// WithTimeout bounds each request whose context has no deadline (default DefaultTimeout; 0: no bound).
func WithTimeout(d time.Duration) Opt {
	return func(c *Client) {
		if d >= 0 {
			c.timeout = d
		}
	}
}

// New returns a Client of the Harbor h names. TLS is verified against the system roots plus h.CAFile
// (registry.HTTPTransport), and switched off only by h.Insecure.
func New(h Host, opts ...Opt) (*Client, error) {
	c := &Client{version: registry.DefaultVersion, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	base, err := BaseURL(h)
	if err != nil {
		return nil, err
	}
	c.base = base
	// registry.HTTPTransport wants the host only for its messages; the TLS settings are h's.
	c.hc, err = registry.HTTPTransport(registry.Host{Name: base.Host, CAFile: h.CAFile, Insecure: h.Insecure, PlainHTTP: h.PlainHTTP})
	if err != nil {
		return nil, fmt.Errorf("harbor %s: %w", base.Host, err)
	}
	var rt http.RoundTripper = c.hc
	for i := len(c.wraps) - 1; i >= 0; i-- {
		rt = c.wraps[i](rt)
	}
	rt = &headerTransport{next: rt, userAgent: registry.UserAgent(c.version)}
	cfg := &goharbor.Config{URL: base, Transport: rt}
	if h.Username != "" || h.Password != "" {
		c.auth = httptransport.BasicAuth(h.Username, h.Password.Value())
		cfg.AuthInfo = c.auth
	}
	// Never goharbor.NewClientSet: it leaves Transport nil unless insecure, and ToV2Config then falls back
	// to a transport that skips TLS verification (HARBOR.md §4.1). Transport is always set here.
	c.api = v2client.New(cfg.ToV2Config())
	if r, ok := c.api.Transport.(*httptransport.Runtime); ok {
		// go-openapi dumps every request, Authorization header included, when DEBUG or SWAGGER_DEBUG is
		// set in the environment.
		r.SetDebug(false)
	}
	return c, nil
}

// URL is the base URL of the API the client calls (https://<host>/api/v2.0).
func (c *Client) URL() string { return c.base.String() }

// Close releases idle connections. The Client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

type requestIDKey struct{}

// ContextWithRequestID returns a context whose calls send X-Request-Id: id, so that Harbor's logs (and the
// webhook events a call causes) can be found by it. Calls without one get a new id per request.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the id ContextWithRequestID put in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// newRequestID is a random UUID (version 4), the form Harbor gives its own request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// exchange is what the transport saw of one call's request and answer: the request id sent, the status,
// and for an error the Harbor error body, which go-client drops for statuses it does not declare.
type exchange struct {
	requestID  string
	status     int
	header     http.Header
	errBody    []byte
	retryAfter time.Duration
}

func (x *exchange) harborError() (code, message string) { return parseHarborError(x.errBody) }

type exchangeKey struct{}

// headerTransport sets User-Agent and X-Request-Id on every request and records each answer in the call's
// exchange.
type headerTransport struct {
	next      http.RoundTripper
	userAgent string
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	id := req.Header.Get("X-Request-Id")
	if id == "" {
		if id = RequestID(ctx); id == "" {
			id = newRequestID()
		}
	}
	req = req.Clone(ctx)
	req.Header.Set("User-Agent", t.userAgent)
	req.Header.Set("X-Request-Id", id)
	if x != nil {
		x.requestID = id
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || x == nil {
		return resp, err
	}
	x.status, x.header = resp.StatusCode, resp.Header
	if resp.StatusCode >= 400 {
		x.errBody, _ = io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(x.errBody))
		if d, ok := registry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			x.retryAfter = d
		}
	}
	return resp, nil
}

// call runs one request of go-client: fn gets a context carrying the call's exchange (and the client's
// timeout when ctx has none), and its error is wrapped as an *Error saying op on resource.
func (c *Client) call(ctx context.Context, op, resource string, fn func(ctx context.Context) error) (*exchange, error) {
	x := &exchange{}
	ctx = context.WithValue(ctx, exchangeKey{}, x)
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	return x, wrapErr(op, resource, x, fn(ctx))
}

// pageFunc fetches one page: its items and the X-Total-Count Harbor sent with it.
type pageFunc[T any] func(ctx context.Context, page, size int64) (items []T, total int64, err error)

// convert turns one page of go-client models into the client's values, skipping the nil entries a malformed
// page may hold.
func convert[M, T any](page []*M, of func(*M) T) []T {
	out := make([]T, 0, len(page))
	for _, m := range page {
		if m != nil {
			out = append(out, of(m))
		}
	}
	return out
}

// list collects every item of a paged list: pages of PageSize, until it has X-Total-Count items or a page
// comes back short (HARBOR.md §3.1). Items are in Harbor's order.
func list[T any](ctx context.Context, c *Client, op, resource string, fetch pageFunc[T]) ([]T, error) {
	var all []T
	for page := int64(1); ; page++ {
		if page > maxPages {
			return nil, &Error{Op: op, Resource: resource, kind: ErrUnexpectedResponse,
				cause: fmt.Errorf("more than %d pages", maxPages)}
		}
		var (
			items []T
			total int64
		)
		if _, err := c.call(ctx, op, resource, func(ctx context.Context) error {
			var err error
			items, total, err = fetch(ctx, page, PageSize)
			return err
		}); err != nil {
			return nil, err
		}
		if all == nil && total > 0 {
			// X-Total-Count is the server's word: room for a few pages at most, whatever it says.
			all = make([]T, 0, min(total, 10*PageSize))
		}
		all = append(all, items...)
		// Without X-Total-Count (total 0), only a short page ends the list.
		if len(items) < PageSize || (total > 0 && int64(len(all)) >= total) {
			return all, nil
		}
	}
}

// idFromLocation reads the id a create answered with: the last segment of Location
// (/api/v2.0/projects/p/webhook/policies/12, HARBOR.md §3.1).
func idFromLocation(loc string) (int64, bool) {
	if loc == "" {
		return 0, false
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.Path
	}
	id, err := strconv.ParseInt(path.Base(strings.TrimRight(loc, "/")), 10, 64)
	return id, err == nil && id > 0
}

// escapeRepo escapes a repository name (without its project) once; go-client escapes it again, and Harbor
// unescapes both (a/b → a%252Fb on the wire, HARBOR.md §3.1).
func escapeRepo(repo string) string { return url.PathEscape(repo) }
