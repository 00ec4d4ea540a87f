// Package broker runs an embedded NATS server with JetStream: the message store of the single-process mode
// (`harborflow run` without nats.url) and of tests.
package broker

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// Config says where the embedded server listens and stores.
type Config struct {
	// Listen is the client address, host:port. Port 0 picks a free port.
	Listen string
	// StoreDir is the JetStream file store directory.
	StoreDir string
	// SyncAlways makes the server fsync every write before it acknowledges it. Without it the server syncs
	// every two minutes, and a power loss or OS crash loses acknowledged messages.
	SyncAlways bool
	// ServerName names the server in its logs and in JetStream metadata.
	ServerName string
	// StartTimeout bounds the wait for the server to accept connections (default 10 s).
	StartTimeout time.Duration
}

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts an embedded server and waits until it accepts connections. Its log goes to log at debug
// level for routine lines and at the matching levels for warnings and errors.
func Start(cfg Config, log *zap.Logger) (*Server, error) {
	host, portText, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("parsing NATS listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("parsing NATS listen port %q: %w", portText, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if cfg.StoreDir == "" {
		return nil, errors.New("starting embedded NATS: no store directory")
	}
	name := cfg.ServerName
	if name == "" {
		name = "harborflow"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		// HTTP monitoring, clustering and leaf nodes stay off: the embedded server serves this process and
		// the harborflow CLI on one machine.
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating embedded NATS server: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	zl := &zapLogger{log: log.Named("nats"), fatal: make(chan string, 1)}
	ns.SetLoggerV2(zl, false, false, false)
	go ns.Start()
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	// The server reports a port it cannot listen on through its logger only, and then never becomes ready:
	// watch for that rather than wait out the timeout.
	deadline := time.Now().Add(timeout)
	for !ns.ReadyForConnections(readyPoll) {
		select {
		case msg := <-zl.fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("embedded NATS server on %s: %s", cfg.Listen, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("embedded NATS server on %s not ready after %s", cfg.Listen, timeout)
		}
	}
	return &Server{ns: ns}, nil
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server after flushing its store, and waits for it to end.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// readyPoll is how often Start looks for a fatal start-up error while it waits for the server.
const readyPoll = 50 * time.Millisecond

// zapLogger adapts zap to the server's logger interface. The first fatal message also goes to fatal, so that
// Start can return it.
type zapLogger struct {
	log   *zap.Logger
	fatal chan string
}

func (l *zapLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *zapLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *zapLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	select {
	case l.fatal <- msg:
		// Start returns it: logging it too would say it twice.
	default:
		l.log.Error(msg)
	}
}
func (l *zapLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *zapLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *zapLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
