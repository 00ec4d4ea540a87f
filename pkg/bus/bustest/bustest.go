// Package bustest starts an embedded JetStream server for tests: 127.0.0.1, a random port, a store in the
// test's temporary directory, the harborflow streams and KV buckets created. Everything stops when the test ends.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/harborflow/harborflow/pkg/broker"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

// Server is a running test server with a connected Bus.
type Server struct {
	*broker.Server
	// StoreDir is the JetStream store, kept across Restart.
	StoreDir string
	// Conn and Bus are connected to the server, with the streams in place.
	Conn *nats.Conn
	Bus  *bus.Bus
	// Streams are the stream options the streams were created with.
	Streams event.StreamOptions
	t       testing.TB
	addr    string
}

// Option changes the test server.
type Option func(*Server)

// WithStreams sets the stream options (default: one replica, a 2-minute duplicate window).
func WithStreams(o event.StreamOptions) Option { return func(s *Server) { s.Streams = o } }

// Start starts a JetStream server for t and connects a Bus to it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		StoreDir: t.TempDir(),
		Streams:  event.StreamOptions{Replicas: 1, DuplicateWindow: 2 * time.Minute},
		addr:     "127.0.0.1:0",
	}
	for _, o := range opts {
		o(s)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := broker.Start(broker.Config{Listen: s.addr, StoreDir: s.StoreDir, SyncAlways: false}, nil)
	if err != nil {
		s.t.Fatalf("starting embedded JetStream: %v", err)
	}
	s.Server = srv
	// Keep the port so that Restart comes back where clients reconnect to.
	s.addr = hostPort(srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, srv.ClientURL(), "bustest", nil)
	if err != nil {
		s.t.Fatalf("connecting to embedded JetStream: %v", err)
	}
	b, err := bus.New(nc)
	if err != nil {
		s.t.Fatalf("opening bus: %v", err)
	}
	if err := b.EnsureStreams(ctx, s.Streams); err != nil {
		s.t.Fatalf("creating streams: %v", err)
	}
	if err := b.EnsureKeyValues(ctx, s.Streams); err != nil {
		s.t.Fatalf("creating KV buckets: %v", err)
	}
	s.Conn, s.Bus = nc, b
}

func (s *Server) stop() {
	if s.Conn != nil {
		s.Conn.Close()
		s.Conn = nil
	}
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server = nil
	}
}

// Stop shuts the server down (clients see a disconnect) and keeps its store for Restart.
func (s *Server) Stop() {
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server = nil
	}
}

// Restart starts the server again on the same address and store. Clients reconnect by themselves.
func (s *Server) Restart() {
	s.t.Helper()
	srv, err := broker.Start(broker.Config{Listen: s.addr, StoreDir: s.StoreDir}, nil)
	if err != nil {
		s.t.Fatalf("restarting embedded JetStream: %v", err)
	}
	s.Server = srv
}

// Messages returns every message stored in stream on a subject matching filter (wildcards allowed), in
// stream order. It fails the test when the stream cannot be read within ten seconds, or when filter is not a
// subject of stream.
func (s *Server) Messages(stream, filter string) []*bus.Message {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*bus.Message
	for m, err := range s.Bus.Read(ctx, bus.ReadConfig{Subject: filter}) {
		if err != nil {
			s.t.Fatalf("reading stream %s: %v", stream, err)
		}
		if m.Stream != stream {
			s.t.Fatalf("reading stream %s: %s is a subject of stream %s", stream, filter, m.Stream)
		}
		out = append(out, m)
	}
	return out
}

// SettleTimeout bounds WaitSettled.
const SettleTimeout = 30 * time.Second

// WaitSettled waits until the durable consumer of stream has settled (acked or termed) every message up to
// stream sequence seq and has nothing pending or unacked, and returns its state then. NumPending alone can lag
// a publish, so the ack floor must reach seq too. It fails the test after SettleTimeout.
func (s *Server) WaitSettled(stream, consumer string, seq uint64) *bus.ConsumerInfo {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), SettleTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var info *bus.ConsumerInfo
	var err error
	for {
		// Pending alone can lag a publish: the ack floor must pass the last message published.
		info, err = s.Bus.ConsumerInfo(ctx, stream, consumer)
		if err == nil && info.AckFloor >= seq && info.Pending == 0 && info.AckPending == 0 {
			return info
		}
		select {
		case <-ctx.Done():
			if info == nil {
				s.t.Fatalf("consumer %s of %s did not settle up to %d: %v", consumer, stream, seq, err)
			}
			s.t.Fatalf("consumer %s of %s did not settle up to %d: ack floor %d, %d pending, %d unacked (%v)", consumer, stream, seq,
				info.AckFloor, info.Pending, info.AckPending, err)
		case <-tick.C:
		}
	}
}

// URL is the server's client URL.
func (s *Server) URL() string { return "nats://" + s.addr }

func hostPort(clientURL string) string {
	const prefix = "nats://"
	if len(clientURL) > len(prefix) && clientURL[:len(prefix)] == prefix {
		return clientURL[len(prefix):]
	}
	return clientURL
}
