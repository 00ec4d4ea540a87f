package receiver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/probe"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Media types the receiver accepts.
const (
	mediaJSON                = "application/json"
	mediaCloudEvents         = "application/cloudevents+json"
	mediaDistributionEvents1 = "application/vnd.docker.distribution.events.v1+json"
	mediaDistributionEvents2 = "application/vnd.docker.distribution.events.v2+json"
)

// Publisher stores messages: *bus.Bus in production.
type Publisher interface {
	Publish(ctx context.Context, m *bus.Message) (bus.Ack, error)
	Ready(ctx context.Context) error
}

// Config is what the receiver needs from harborflow.yaml.
type Config struct {
	// Listen is the HTTP address, host:port.
	Listen string
	// MaxBodyBytes caps a webhook body; a larger one is answered 413.
	MaxBodyBytes int64
	// PublishTimeout bounds the wait for JetStream's ack before answering 503.
	PublishTimeout time.Duration
	// Sources are the configured sources; the receiver serves those of kind harbor and distribution.
	Sources []config.Source
}

// ConfigFrom takes the receiver's part of a harborflow configuration.
func ConfigFrom(c *config.Config) Config {
	return Config{Listen: c.HTTP.Listen, MaxBodyBytes: c.HTTP.MaxBodyBytes, PublishTimeout: c.HTTP.PublishTimeout, Sources: c.Sources}
}

// Deps are the receiver's collaborators.
type Deps struct {
	Bus Publisher
	Log *zap.Logger
	// Metrics is where the receiver registers its series and what /metrics serves; a fresh registry when nil.
	Metrics *prometheus.Registry
	// Ready decides /readyz: the readiness of the whole process when the receiver serves its probes. Nil:
	// Bus.Ready.
	Ready func(ctx context.Context) error
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server is a running receiver.
type Server struct {
	cfg     Config
	bus     Publisher
	log     *zap.Logger
	now     func() time.Time
	m       *metrics
	sources map[string]*source
	echo    *echo.Echo
	ln      net.Listener
	done    chan error
}

type source struct {
	cfg     config.Source
	origin  Origin
	secrets [][]byte
	ignore  map[string]bool
}

// New builds a receiver; Start makes it listen.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Bus == nil {
		return nil, errors.New("receiver: no bus")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	s := &Server{cfg: cfg, bus: deps.Bus, log: deps.Log, now: deps.Now, sources: map[string]*source{}}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.With(zap.String(logging.FieldStage, event.StageReceiver))
	if s.now == nil {
		s.now = time.Now
	}
	reg := deps.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.m = newMetrics(reg)
	for _, sc := range cfg.Sources {
		if sc.Kind != config.SourceHarbor && sc.Kind != config.SourceDistribution {
			continue
		}
		src := &source{cfg: sc, origin: Origin{Source: sc.Name, Host: sc.Host}, ignore: map[string]bool{}}
		for _, sec := range sc.Secrets {
			src.secrets = append(src.secrets, []byte(sec.Value()))
		}
		for _, op := range sc.IgnoreOperators {
			src.ignore[op] = true
		}
		s.sources[sc.Name] = src
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.POST("/webhooks/harbor/:source", s.harbor)
	e.POST("/webhooks/distribution/:source", s.distribution)
	ready := deps.Ready
	if ready == nil {
		ready = s.bus.Ready
	}
	probes := echo.WrapHandler(probe.Handler(ready, reg))
	for _, path := range []string{probe.PathHealth, probe.PathReady, probe.PathMetrics} {
		e.GET(path, probes)
	}
	s.echo = e
	return s, nil
}

// Handler is the receiver's HTTP handler, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.echo }

// Name is the stage's name.
func (s *Server) Name() string { return event.StageReceiver }

// Start listens on cfg.Listen and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	s.ln = ln
	s.done = make(chan error, 1)
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	s.echo.Server = srv
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	s.log.Info("receiver listening", zap.String(logging.FieldAddress, ln.Addr().String()))
	return nil
}

// Addr is the address the receiver listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting webhooks and waits, within ctx, for the requests in flight: each of them is
// answered only after its events were stored or refused, so none is lost. When ctx ends first, the connections
// left are closed: their senders got no 2xx and deliver again.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.done == nil {
		return nil
	}
	if err := s.echo.Shutdown(ctx); err != nil {
		s.log.Warn("closing webhook requests still in flight at shutdown", zap.Error(err))
		if err := s.echo.Close(); err != nil {
			return fmt.Errorf("closing receiver HTTP: %w", err)
		}
	}
	if err := <-s.done; err != nil {
		return fmt.Errorf("receiver HTTP server: %w", err)
	}
	return nil
}

// httpError is an answer other than 202, with the reason counted in /metrics.
type httpError struct {
	code   int
	reason string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func reject(code int, reason, format string, args ...any) error {
	return &httpError{code: code, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// handleError writes every error as {"error": "..."}.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, "internal error"
	var he *httpError
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	case errors.As(err, &ee):
		code, msg = ee.Code, fmt.Sprint(ee.Message)
	default:
		s.log.Error("unhandled receiver error", zap.Error(err))
	}
	if code == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	if werr := c.JSON(code, map[string]string{"error": msg}); werr != nil {
		s.log.Debug("writing error response", zap.Error(werr))
	}
}

// accepted is the 202 body: {"accepted":N,"ids":[...]} and, when not zero, duplicates, ignored, deadLettered.
type accepted struct {
	Accepted   int
	IDs        []string // hex ids (event.ID): nothing to escape
	Duplicates int
	Ignored    int
	DeadLetter int
}

// send writes the 202 body. It is appended by hand: encoding/json through echo cost 3 µs a webhook.
func (a *accepted) send(c echo.Context) error {
	b := make([]byte, 0, 64+36*len(a.IDs))
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	b = append(b, `,"ids":[`...)
	for i, id := range a.IDs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, id...)
		b = append(b, '"')
	}
	b = append(b, ']')
	for _, f := range []struct {
		name string
		n    int
	}{{"duplicates", a.Duplicates}, {"ignored", a.Ignored}, {"deadLettered", a.DeadLetter}} {
		if f.n != 0 {
			b = append(b, `,"`...)
			b = append(b, f.name...)
			b = append(b, `":`...)
			b = strconv.AppendInt(b, int64(f.n), 10)
		}
	}
	b = append(b, '}')
	return c.Blob(http.StatusAccepted, echo.MIMEApplicationJSON, b)
}

// intake runs the checks both endpoints share: a known source of the endpoint's kind, the Authorization
// header, and a body within the limit. It returns the source and the body.
func (s *Server) intake(c echo.Context, kind string) (*source, []byte, error) {
	name := c.Param("source")
	src, ok := s.sources[name]
	if !ok {
		s.m.rejected.WithLabelValues(unknownLabel, "unknown_source").Inc()
		return nil, nil, reject(http.StatusNotFound, "unknown_source", "unknown %s source %q", kind, name)
	}
	if src.cfg.Kind != kind {
		// A configured source, posted to the other kind's endpoint: a misconfigured webhook or registry.
		s.m.rejected.WithLabelValues(unknownLabel, "unknown_source").Inc()
		msg := fmt.Sprintf("source %q is of kind %s, not %s: post its events to /webhooks/%s/%s", name, src.cfg.Kind, kind, src.cfg.Kind, name)
		s.log.Warn("webhook refused", zap.String(logging.FieldSource, name), zap.String(logging.FieldRemote, c.Request().RemoteAddr),
			zap.String(logging.FieldPath, c.Request().URL.Path), zap.String(logging.FieldReason, msg))
		return nil, nil, reject(http.StatusNotFound, "unknown_source", "%s", msg)
	}
	if header := c.Request().Header.Get(echo.HeaderAuthorization); !src.authorized(header) {
		s.m.rejected.WithLabelValues(name, "unauthorized").Inc()
		why := fmt.Sprintf("Authorization header does not match any secret of source %q", name)
		if header == "" {
			why = "missing Authorization header"
		}
		// Logged, never with the header's value: a wrong secret would otherwise leave no trace here.
		s.log.Warn("webhook refused: unauthorized", zap.String(logging.FieldSource, name), zap.String(logging.FieldRemote, c.Request().RemoteAddr),
			zap.String(logging.FieldReason, why))
		return src, nil, reject(http.StatusUnauthorized, "unauthorized", "%s", why)
	}
	req := c.Request()
	if req.ContentLength > s.cfg.MaxBodyBytes {
		s.m.rejected.WithLabelValues(name, "body_too_large").Inc()
		return src, nil, reject(http.StatusRequestEntityTooLarge, "body_too_large", "body of %d bytes is over the limit of %d bytes", req.ContentLength, s.cfg.MaxBodyBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.m.rejected.WithLabelValues(name, "body_too_large").Inc()
			return src, nil, reject(http.StatusRequestEntityTooLarge, "body_too_large", "body is over the limit of %d bytes", s.cfg.MaxBodyBytes)
		}
		s.m.rejected.WithLabelValues(name, "read_failed").Inc()
		return src, nil, reject(http.StatusBadRequest, "read_failed", "reading body: %v", err)
	}
	return src, body, nil
}

// authorized compares the header with every secret in constant time, without stopping at the first match,
// so that the answer's timing says nothing about which secret (if any) came close.
func (src *source) authorized(header string) bool {
	if header == "" {
		return false
	}
	h := []byte(header)
	ok := 0
	for _, sec := range src.secrets {
		ok |= subtle.ConstantTimeCompare(h, sec)
	}
	return ok == 1
}

func mediaType(c echo.Context) string {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil {
		return ""
	}
	return mt
}

// harbor serves POST /webhooks/harbor/{source}: one Harbor event per request, Default or CloudEvents.
func (s *Server) harbor(c echo.Context) (err error) {
	kind := unknownLabel
	srcLabel := unknownLabel
	defer func() { s.count(c, srcLabel, kind, err) }()

	src, body, err := s.intake(c, config.SourceHarbor)
	if src != nil {
		srcLabel = src.cfg.Name
	}
	if err != nil {
		return err
	}
	var ev *harborflowv1.RegistryEvent
	switch mt := mediaType(c); mt {
	case mediaJSON:
		ev, err = ParseHarborDefault(src.origin, body)
	case mediaCloudEvents:
		ev, err = ParseHarborCloudEvent(src.origin, body)
	default:
		s.m.rejected.WithLabelValues(srcLabel, "unsupported_media_type").Inc()
		return reject(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type %q is not %s (Harbor Default) or %s (Harbor CloudEvents)", c.Request().Header.Get(echo.HeaderContentType), mediaJSON, mediaCloudEvents)
	}
	if err != nil {
		reason := "invalid_payload"
		if errors.Is(err, ErrUnknownEventType) {
			reason = "unknown_event_type"
		}
		s.m.rejected.WithLabelValues(srcLabel, reason).Inc()
		s.log.Info("harbor webhook refused", zap.String(logging.FieldSource, srcLabel), zap.String(logging.FieldReason, err.Error()))
		return reject(http.StatusBadRequest, reason, "%v", err)
	}
	kind = ev.GetKind()
	if src.ignore[ev.GetOperator()] {
		s.m.dropped.WithLabelValues(srcLabel, "ignored_operator").Inc()
		s.log.Debug("event of an ignored operator dropped", zap.String(logging.FieldSource, srcLabel), zap.String(logging.FieldEventID, ev.GetId()))
		return (&accepted{Ignored: 1}).send(c)
	}
	var res accepted
	if err := s.store(c.Request().Context(), ev, &res); err != nil {
		return err
	}
	return res.send(c)
}

// distribution serves POST /webhooks/distribution/{source}: an envelope of registry events. Past auth, source
// and size checks it always answers 202 (or 503 when the store is down): what it cannot use goes to the DLQ.
func (s *Server) distribution(c echo.Context) (err error) {
	kind := unknownLabel
	srcLabel := unknownLabel
	defer func() { s.count(c, srcLabel, kind, err) }()

	src, body, err := s.intake(c, config.SourceDistribution)
	if src != nil {
		srcLabel = src.cfg.Name
	}
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var res accepted
	var result DistributionResult
	switch mt := mediaType(c); mt {
	case mediaDistributionEvents1, mediaDistributionEvents2, mediaJSON:
		result = ParseDistribution(src.origin, body, registry.UserAgentPrefix)
	default:
		result.Unusable = []Unusable{{
			Reason: fmt.Sprintf("Content-Type %q is not a distribution events media type (%s or %s)", c.Request().Header.Get(echo.HeaderContentType), mediaDistributionEvents1, mediaDistributionEvents2),
			Raw:    body,
		}}
	}
	for reason, n := range result.Skipped {
		s.m.dropped.WithLabelValues(srcLabel, reason).Add(float64(n))
	}
	for _, ev := range result.Events {
		kind = ev.GetKind()
		if src.ignore[ev.GetOperator()] {
			s.m.dropped.WithLabelValues(srcLabel, "ignored_operator").Inc()
			res.Ignored++
			continue
		}
		if err := s.store(ctx, ev, &res); err != nil {
			return err
		}
	}
	for _, u := range result.Unusable {
		dl := bus.DeadLetter(event.StageReceiver, u.Reason, &bus.Message{Subject: c.Request().URL.Path, Data: u.Raw})
		if _, err := s.publish(ctx, dl); err != nil {
			s.log.Error("distribution event could not be dead-lettered", zap.String(logging.FieldSource, srcLabel), zap.Error(err))
			return reject(http.StatusServiceUnavailable, "store_failed", "event could not be stored: %v", err)
		}
		s.m.unusable.WithLabelValues(srcLabel).Inc()
		s.log.Warn("distribution event dead-lettered", zap.String(logging.FieldSource, srcLabel), zap.String(logging.FieldReason, u.Reason))
		res.DeadLetter++
	}
	return res.send(c)
}

// store publishes one event and waits for JetStream's ack, within the publish timeout.
func (s *Server) store(ctx context.Context, ev *harborflowv1.RegistryEvent, res *accepted) error {
	ev.CorrelationId = ev.GetId()
	ev.ReceivedAt = timestamppb.New(s.now())
	msg, err := bus.NewMessage(event.RegistrySubject(ev.GetSource(), ev.GetKind()), ev.GetId(), ev.GetCorrelationId(), ev)
	if err != nil {
		return fmt.Errorf("encoding event %s: %w", ev.GetId(), err)
	}
	ack, err := s.publish(ctx, msg)
	if err != nil {
		s.m.rejected.WithLabelValues(ev.GetSource(), "store_failed").Inc()
		s.log.Error("event could not be stored", zap.String(logging.FieldSource, ev.GetSource()),
			zap.String(logging.FieldEventID, ev.GetId()), zap.String(logging.FieldKind, ev.GetKind()), zap.Error(err))
		return reject(http.StatusServiceUnavailable, "store_failed", "event %s could not be stored, retry later: %v", ev.GetId(), err)
	}
	s.m.published.WithLabelValues(ev.GetSource(), ev.GetKind(), strconv.FormatBool(ack.Duplicate)).Inc()
	res.Accepted++
	res.IDs = append(res.IDs, ev.GetId())
	if ack.Duplicate {
		res.Duplicates++
	}
	return nil
}

// publish stores m within the publish timeout. The store is not cut short when the sender hangs up (Harbor does
// after 3 s): an event that reached us is stored if it can be, and the sender's retry folds into it.
func (s *Server) publish(ctx context.Context, m *bus.Message) (bus.Ack, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	ack, err := s.bus.Publish(ctx, m)
	if err != nil {
		s.m.publishFailed.Observe(time.Since(start).Seconds())
	} else {
		s.m.publishOK.Observe(time.Since(start).Seconds())
	}
	return ack, err
}

// count records one request in harborflow_receiver_requests_total.
func (s *Server) count(c echo.Context, source, kind string, err error) {
	code := http.StatusAccepted
	if err != nil {
		code = http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
	}
	s.m.requests.WithLabelValues(source, kind, strconv.Itoa(code)).Inc()
}
