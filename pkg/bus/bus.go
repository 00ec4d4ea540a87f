package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/logging"
)

// ErrNotReady is returned by Ready when the connection is down or a stream is missing.
var ErrNotReady = errors.New("bus not ready")

// Bus publishes to and consumes from JetStream over a connection it does not own: the caller connects (see
// Connect) and drains the connection after the consumers.
type Bus struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *zap.Logger
	metrics *metrics
}

// Opt configures a Bus.
type Opt func(*Bus)

// WithLogger sets the logger; the default discards.
func WithLogger(l *zap.Logger) Opt { return func(b *Bus) { b.log = l } }

// WithMetrics registers the consumer metrics (harborflow_consumer_*, labelled by stage) with reg; the default
// is none. The Buses and stages of one process may share one registry.
func WithMetrics(reg prometheus.Registerer) Opt {
	return func(b *Bus) {
		if reg != nil {
			b.metrics = newMetrics(reg)
		}
	}
}

// New returns a Bus on nc.
func New(nc *nats.Conn, opts ...Opt) (*Bus, error) {
	b := &Bus{nc: nc, log: zap.NewNop()}
	for _, o := range opts {
		o(b)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	b.js = js
	return b, nil
}

// Connect connects to url as name. It retries the first connection and reconnects for ever, so that a
// restarting NATS server makes publishes fail (and the receiver answer 503) rather than kill the process.
// extra adds options such as credentials (nats.UserCredentials) or a CA (nats.RootCAs).
func Connect(ctx context.Context, url, name string, log *zap.Logger, extra ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = zap.NewNop()
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted())) }),
		// Asynchronous errors (slow consumers, I/O timeouts) would otherwise go to stderr, past the logger.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			fields := []zap.Field{zap.Error(err)}
			if sub != nil {
				fields = append(fields, zap.String(logging.FieldSubject, sub.Subject))
			}
			log.Warn("NATS asynchronous error", fields...)
		}),
	}
	opts = append(opts, extra...)
	var lastErr error
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to NATS at %s: %w", redact(url), errors.Join(ctx.Err(), lastErr))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// EnsureStreams creates the REGISTRY, IMAGE and DLQ streams, or updates them to o.
func (b *Bus) EnsureStreams(ctx context.Context, o event.StreamOptions) error {
	for _, cfg := range event.Streams(o) {
		if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensuring stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// EnsureKeyValues creates the KV buckets of event.KeyValues, or updates them to o.
func (b *Bus) EnsureKeyValues(ctx context.Context, o event.StreamOptions) error {
	for _, cfg := range event.KeyValues(o) {
		if _, err := b.js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("ensuring KV bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// Ack is JetStream's answer to a publish.
type Ack struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// Publish stores m and returns after JetStream acknowledged it: the message is in the stream (on disk, and
// fsynced when the server syncs always). A message whose ID was stored within the duplicate window is
// acknowledged as a duplicate and stored once.
func (b *Bus) Publish(ctx context.Context, m *Message) (Ack, error) {
	msg := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		msg.Header[k] = v
	}
	msg.Header.Set(event.HeaderContentType, event.ContentTypeJSON)
	msg.Data = m.Data
	var opts []jetstream.PublishOpt
	if m.ID != "" {
		opts = append(opts, jetstream.WithMsgID(m.ID))
	}
	pa, err := b.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return Ack{}, fmt.Errorf("publishing to %s: %w", m.Subject, err)
	}
	return Ack{Stream: pa.Stream, Sequence: pa.Sequence, Duplicate: pa.Duplicate}, nil
}

// Ready returns nil when the connection is up and every stream exists.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w: NATS connection is %s", ErrNotReady, b.nc.Status())
	}
	for _, name := range event.StreamNames {
		if _, err := b.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("%w: stream %s: %w", ErrNotReady, name, err)
		}
	}
	return nil
}

// redact drops user info (tokens, passwords) from NATS URLs, which may be a comma-separated list, so that
// errors and logs never carry a secret.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "<unparsable url>"
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
