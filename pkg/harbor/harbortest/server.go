package harbortest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/olareg/olareg"
	oconfig "github.com/olareg/olareg/config"
	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
)

// A fresh Harbor's administrator (harbor.yml harbor_admin_password).
const (
	DefaultAdmin    = "admin"
	DefaultPassword = "Harbor12345"
)

// Server is a running stand-in: Harbor's API under /api/v2.0, the registry front under /v2/ and the token
// service under /service/token, on one address as Harbor serves them.
type Server struct {
	opts options

	mu     sync.Mutex
	st     *state
	tokens map[string]tokenGrant

	store      *olareg.Server
	inner      *http.Server
	innerHost  string // host:port of the backing registry, loopback only
	innerHTTP  *http.Client
	copier     *regclient.RegClient
	outer      *http.Server
	url, host  string
	notifier   *notifier
	served     chan struct{}
	closeOnce  sync.Once
	closeErr   error
	saveFailed error

	scans       sync.WaitGroup // scans under way
	scanStop    chan struct{}  // closed by Close: scans under way end without a result
	scansClosed bool           // guarded by mu
}

type options struct {
	admin, adminPass string
	users            map[string]string
	clock            func() time.Time
	dataDir          string
	extURL           string
	notify           notifierOptions
	eventHook        func(policyID int64, ev Event)
	scanDelay        time.Duration
	errorLog         *log.Logger
}

// Option configures a Server.
type Option func(*options)

// WithAdmin replaces the system administrator's account (default admin / Harbor12345).
func WithAdmin(user, password string) Option {
	return func(o *options) { o.admin, o.adminPass = user, password }
}

// WithUser adds a plain user: not a system administrator and a member of no project, so it reads public
// projects only and is refused (403 FORBIDDEN) what needs a role, until AddMember gives it one. A project it
// creates makes it that project's admin, as Harbor does.
func WithUser(user, password string) Option {
	return func(o *options) { o.users[user] = password }
}

// WithClock sets where the stand-in reads the time (push and pull times, creation times, events' occur_at).
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithDataDir keeps the registry's content and the stand-in's state in dir, so that a restarted stand-in
// has them again; without it both live in memory.
func WithDataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// WithExternalURL is the URL clients reach the stand-in at (Harbor's ext_endpoint), when it is not the
// listener's: it names the token realm, and its host:port the resource_url of events.
func WithExternalURL(u string) Option { return func(o *options) { o.extURL = u } }

// WithDeliveryBackoff sets the wait before the next webhook attempt after failures failed ones (Harbor
// waits 16–118 s, HARBOR.md §1.2; tests want milliseconds).
func WithDeliveryBackoff(backoff func(failures int) time.Duration) Option {
	return func(o *options) { o.notify.Backoff = backoff }
}

// WithDeliveryTimeout bounds one webhook attempt (default 3 s, as Harbor's).
func WithDeliveryTimeout(d time.Duration) Option { return func(o *options) { o.notify.Timeout = d } }

// WithDeliveryClient sends webhook deliveries with client (for receivers with a test CA).
func WithDeliveryClient(client *http.Client) Option {
	return func(o *options) { o.notify.Client = client }
}

// WithErrorLog receives the HTTP servers' own errors (default: discarded).
func WithErrorLog(l *log.Logger) Option { return func(o *options) { o.errorLog = l } }

// New starts a stand-in on a loopback port for the test, in memory unless WithDataDir, and stops it when
// the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := Start(context.Background(), "127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("starting the Harbor stand-in: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stopping the Harbor stand-in: %v", err)
		}
	})
	return s
}

// Start runs a stand-in listening on addr (host:port; port 0 picks one) until Close. A fresh one has the
// administrator and the public project "library", as a fresh Harbor has.
func Start(ctx context.Context, addr string, opts ...Option) (*Server, error) {
	o := options{admin: DefaultAdmin, adminPass: DefaultPassword, users: map[string]string{}, clock: time.Now, scanDelay: defaultScanDelay}
	for _, opt := range opts {
		opt(&o)
	}
	if o.errorLog == nil {
		o.errorLog = log.New(io.Discard, "", 0)
	}
	s := &Server{opts: o, tokens: map[string]tokenGrant{}, served: make(chan struct{}), scanStop: make(chan struct{})}

	var err error
	if o.dataDir != "" {
		if err := os.MkdirAll(filepath.Join(o.dataDir, "registry"), 0o750); err != nil {
			return nil, fmt.Errorf("creating the data directory: %w", err)
		}
		if s.st, err = loadState(o.dataDir); err != nil {
			return nil, err
		}
	}
	if s.st == nil {
		s.st = newState()
		s.st.newProject("library", o.admin, map[string]string{"public": "true"}, o.clock())
		if err := s.saveLocked(); err != nil {
			return nil, err
		}
	}

	if err := s.startStore(ctx); err != nil {
		return nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		s.stopStore()
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s.url = "http://" + listenHost(ln.Addr().(*net.TCPAddr))
	if o.extURL != "" {
		s.url = o.extURL
	}
	u, err := url.Parse(s.url)
	if err != nil || u.Host == "" {
		_ = ln.Close()
		s.stopStore()
		return nil, fmt.Errorf("external URL %q: not an absolute URL", o.extURL)
	}
	s.host = u.Host
	s.notifier = newNotifier(s.host, o.notify)
	s.outer = &http.Server{Handler: s.handler(), ErrorLog: o.errorLog, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.served)
		if err := s.outer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.errorLog.Printf("harbortest: serving: %v", err)
		}
	}()
	return s, nil
}

// listenHost is the host:port a client dials for a listener (loopback when it listens on every address).
func listenHost(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

// startStore starts the backing registry (olareg) on a loopback port of its own.
func (s *Server) startStore(ctx context.Context) error {
	deletes, never := true, false
	conf := oconfig.Config{
		Storage: oconfig.ConfigStorage{StoreType: oconfig.StoreMem,
			// Harbor's database, not the registry, decides what exists: nothing is collected behind its back.
			GC: oconfig.ConfigGC{Frequency: -1, Untagged: &never, EmptyRepo: &never}},
		API: oconfig.ConfigAPI{DeleteEnabled: &deletes},
	}
	if s.opts.dataDir != "" {
		conf.Storage.StoreType, conf.Storage.RootDir = oconfig.StoreDir, filepath.Join(s.opts.dataDir, "registry")
	}
	s.store = olareg.New(conf)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		_ = s.store.Close()
		return fmt.Errorf("listening for the backing registry: %w", err)
	}
	s.innerHost = ln.Addr().String()
	var h http.Handler = s.store
	if s.opts.dataDir != "" {
		h = serialized(h)
	}
	s.inner = &http.Server{Handler: h, ErrorLog: s.opts.errorLog, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.inner.Serve(ln) }()
	s.innerHTTP = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	s.copier = regclient.New(regclient.WithConfigHost(rcconfig.Host{Name: s.innerHost, TLS: rcconfig.TLSDisabled}))
	return nil
}

// serialized serves one request at a time: olareg v0.2.2's directory store reads and sets a repository's
// "exists" flag without a lock (internal/store/dir.go), which parallel blob uploads to a new repository race
// on. The memory store has no such flag.
func serialized(next http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) stopStore() {
	if s.inner != nil {
		_ = s.inner.Close()
	}
	_ = s.store.Close()
}

// Close stops serving, waits for webhook attempts in flight, and stops the backing registry. It may be
// called more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.outer.Shutdown(ctx); err != nil {
			_ = s.outer.Close()
		}
		<-s.served
		s.stopScans()
		s.notifier.Close()
		s.stopStore()
		s.mu.Lock()
		s.closeErr = s.saveFailed
		s.mu.Unlock()
	})
	return s.closeErr
}

// URL is the stand-in's base URL (http://host:port): Harbor's API is URL + "/api/v2.0".
func (s *Server) URL() string { return s.url }

// Host is host:port, as in image references (Host() + "/library/app:1") and events' resource_url.
func (s *Server) Host() string { return s.host }

// Admin is the system administrator's account.
func (s *Server) Admin() (user, password string) { return s.opts.admin, s.opts.adminPass }

// Deliveries are the webhook attempts so far, in the order they ended.
func (s *Server) Deliveries() []Delivery { return s.notifier.Deliveries() }

// WaitDeliveries returns when no webhook delivery is in flight or waiting for a retry, or with ctx's error.
func (s *Server) WaitDeliveries(ctx context.Context) error { return s.notifier.Wait(ctx) }

// now is the stand-in's clock.
func (s *Server) now() time.Time { return s.opts.clock() }

// saveLocked saves the state when there is a data directory; s.mu is held (or the server not yet shared).
// A failure is kept for Close to report, and the request still succeeds: the state in memory is right.
func (s *Server) saveLocked() error {
	if s.opts.dataDir == "" {
		return nil
	}
	err := s.st.save(s.opts.dataDir)
	if err != nil && s.saveFailed == nil {
		s.saveFailed = err
	}
	return err
}

// handler routes a request to the API, the registry front or the token service, with X-Request-Id echoed
// (or made) on every answer (HARBOR.md §3.1).
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v2.0/", s.apiHandler())
	mux.HandleFunc("/v2/", s.registryFront)
	mux.HandleFunc("/v2", s.registryFront)
	mux.HandleFunc("/service/token", s.serveToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("%s not found", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" {
			id = newUUID()
			r.Header.Set("X-Request-Id", id)
		}
		w.Header().Set("X-Request-Id", id)
		mux.ServeHTTP(w, r)
	})
}
