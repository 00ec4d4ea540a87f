package harborflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/broker"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/probe"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/stage"
)

// After the handlers' grace, what is left of a stop is short (config.DrainTimeout in all): the cancelled
// handlers return, then NATS flushes pending publishes and acks.
const (
	cancelBound = config.DrainTimeout / 2
	drainBound  = config.DrainTimeout - cancelBound
)

func newRunCommand(cfgPath func() string) *cobra.Command {
	var names []string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the stages, all of them by default, with an embedded NATS JetStream server unless nats.url is set",
		Long: "Run harborflow's stages in this process: " + strings.Join(config.StageNames(), ", ") + ".\n" +
			"With nats.url set, any number of processes running a stage share its durable consumer, so a stage scales\n" +
			"by running more of them. SIGTERM or SIGINT stops intake, lets running handlers finish for ops.shutdown_grace,\n" +
			"cancels the rest (their messages are redelivered at once) and drains NATS; a second signal exits at once.",
		Example: "  harborflow run --config harborflow.yaml\n  harborflow run --stages inspector,rebuilder",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), cfgPath(), names)
		},
	}
	cmd.Flags().StringSliceVar(&names, "stages", nil, "stages to run, comma-separated (default: all of "+strings.Join(config.StageNames(), ",")+")")
	return cmd
}

// run is `harborflow run`: start, wait for a signal, stop.
func run(ctx context.Context, path string, names []string) error {
	if _, err := selectStages(names); err != nil {
		return err
	}
	cfg, err := config.Load(path, names...)
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Development)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting harborflow", zap.String("version", Version), zap.String(logging.FieldConfigFile, path),
		zap.Strings("stages", names), zap.Stringer("config", cfg))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := Start(ctx, cfg, names, log)
	if err != nil {
		if ctx.Err() != nil {
			// A signal during the start: what was started is stopped again, as asked.
			log.Info("stopped while starting", zap.Error(err))
			return nil
		}
		log.Error("start failed", zap.Error(err))
		return err
	}
	// A stage that failed on its own stops the process too, which then exits non-zero: a supervisor restarts it.
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-p.failed:
		log.Error("a stage failed", zap.Error(failed))
	}
	// A second signal: the operator does not want to wait. Listen for it before the first listener goes, so
	// that no signal falls between them.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	stop()
	go func() {
		<-again
		log.Warn("second signal: exiting at once")
		_ = log.Sync()
		os.Exit(1)
	}()
	log.Info("shutting down", zap.Duration("grace", cfg.Ops.ShutdownGrace), zap.Duration("within", cfg.Ops.StopTimeout()))
	start := time.Now()
	if err := p.Shutdown(); err != nil {
		log.Error("shutdown incomplete", zap.Error(err), zap.Duration(logging.FieldDuration, time.Since(start)))
		return errors.Join(failed, err)
	}
	log.Info("stopped", zap.Duration(logging.FieldDuration, time.Since(start)))
	return failed
}

// Process is harborflow's stages running in this process, with what they share: the NATS connection (and the
// embedded server), the registry client, the metrics registry and the probes.
type Process struct {
	log      *zap.Logger
	grace    time.Duration
	server   *broker.Server // nil with an external NATS
	nc       *nats.Conn
	bus      *bus.Bus
	registry *registry.Client
	stages   []stage.Stage // started, in pipeline order
	ops      *http.Server  // the probes' listener, when the receiver does not serve them
	opsAddr  string
	failed   chan error  // a stage's background work that ended on its own
	started  atomic.Bool // every stage has started: until then the process is not ready
	// NATSURL is where the stages' NATS is.
	NATSURL string
	// Metrics is what /metrics serves.
	Metrics *prometheus.Registry
}

// Start starts the stages called names (every stage when names is empty) of cfg: the embedded NATS server when
// cfg.NATS.URL is empty, the streams and KV buckets, each stage, and the probes (/healthz, /readyz, /metrics)
// on the receiver's listener or, without the receiver, on ops.listen. On error, whatever was started is stopped
// again.
func Start(ctx context.Context, cfg *config.Config, names []string, log *zap.Logger) (p *Process, err error) {
	defs, err := selectStages(names)
	if err != nil {
		return nil, err
	}
	p = &Process{log: log, grace: cfg.Ops.ShutdownGrace, failed: make(chan error, len(defs)+1), Metrics: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			_ = p.Shutdown()
			p = nil
		}
	}()
	p.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.NATSURL = cfg.NATS.URL
	if p.NATSURL == "" {
		p.server, err = broker.Start(broker.Config{Listen: cfg.NATS.Listen, StoreDir: cfg.NATS.StoreDir, SyncAlways: cfg.NATS.SyncAlways}, log)
		if err != nil {
			return p, fmt.Errorf("nats.listen: %w", err)
		}
		p.NATSURL = p.server.ClientURL()
		log.Info("embedded NATS JetStream started", zap.String(logging.FieldAddress, p.NATSURL),
			zap.String("store_dir", cfg.NATS.StoreDir), zap.Bool("sync_always", cfg.NATS.SyncAlways))
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p.nc, err = bus.Connect(cctx, p.NATSURL, "harborflow", log, cfg.NATS.ConnectOptions()...)
	if err != nil {
		return p, err
	}
	p.bus, err = bus.New(p.nc, bus.WithLogger(log), bus.WithMetrics(p.Metrics))
	if err != nil {
		return p, err
	}
	if err := p.bus.EnsureStreams(cctx, cfg.NATS.StreamOptions()); err != nil {
		return p, err
	}
	if err := p.bus.EnsureKeyValues(cctx, cfg.NATS.StreamOptions()); err != nil {
		return p, err
	}
	w := &wiring{cfg: cfg, bus: p.bus, log: log, metrics: p.Metrics, ready: p.Ready}
	var regOnce sync.Once
	var regErr error
	w.registry = func() (*registry.Client, error) {
		regOnce.Do(func() {
			p.registry, regErr = registry.New(config.RegistryHosts(cfg.Registries), registry.WithLogger(log), registry.WithVersion(Version),
				registry.WithMetrics(p.Metrics))
		})
		return p.registry, regErr
	}
	for _, d := range defs {
		if d.idle != nil {
			if why := d.idle(cfg); why != "" {
				if len(names) > 0 {
					return p, fmt.Errorf("stage %s has nothing to do: %s configured", d.name, why)
				}
				log.Info("stage not started: nothing to do", zap.String(logging.FieldStage, d.name), zap.String(logging.FieldReason, why))
				continue
			}
		}
		s, err := d.new(cctx, w)
		if err != nil {
			return p, fmt.Errorf("stage %s: %w", d.name, err)
		}
		if err := s.Start(cctx); err != nil {
			return p, fmt.Errorf("stage %s: %w", d.name, err)
		}
		p.stages = append(p.stages, s)
		if f, ok := s.(stage.Failer); ok {
			go func() {
				if err, failed := <-f.Failed(); failed {
					p.failed <- err
				}
			}()
		}
		log.Info("stage started", zap.String(logging.FieldStage, d.name))
	}
	if !slices.ContainsFunc(p.stages, func(s stage.Stage) bool { return s.Name() == event.StageReceiver }) {
		if err := p.serveProbes(cctx, cfg.Ops.Listen); err != nil {
			return p, err
		}
	}
	p.started.Store(true)
	return p, nil
}

// serveProbes serves /healthz, /readyz and /metrics on addr.
func (p *Process) serveProbes(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("ops.listen: %w", err)
	}
	p.ops = &http.Server{Handler: probe.Handler(p.Ready, p.Metrics), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: zap.NewStdLog(p.log.Named("ops"))}
	go func() {
		if err := p.ops.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.failed <- fmt.Errorf("serving the probes on %s: %w", addr, err)
		}
	}()
	p.opsAddr = ln.Addr().String()
	p.log.Info("probes listening", zap.String(logging.FieldAddress, p.opsAddr))
	return nil
}

// ProbeAddr is where the process serves /healthz, /readyz and /metrics: ops.listen when the receiver does not
// run here, else the receiver's address.
func (p *Process) ProbeAddr() string {
	if p.ops != nil {
		return p.opsAddr
	}
	return p.ReceiverAddr()
}

// ReceiverAddr is the address the receiver listens on, or "" when it does not run in this process.
func (p *Process) ReceiverAddr() string {
	for _, s := range p.stages {
		if r, ok := s.(interface{ Addr() string }); ok && s.Name() == event.StageReceiver {
			return r.Addr()
		}
	}
	return ""
}

// Ready returns nil when the process can do its work: NATS connected, the streams present, and every stage
// that can tell (a consumer, say) ready.
func (p *Process) Ready(ctx context.Context) error {
	if !p.started.Load() {
		return fmt.Errorf("%w: stages still starting", bus.ErrNotReady)
	}
	if err := p.bus.Ready(ctx); err != nil {
		return err
	}
	var errs []error
	for _, s := range p.stages {
		if r, ok := s.(stage.Readier); ok {
			if err := r.Ready(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stage %s: %w", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Shutdown stops the process in the one order that loses nothing: every stage stops its intake at once and
// gets ops.shutdown_grace to finish the work in flight (a webhook is answered only after its event is stored,
// a handler acks what it finished), then what is left is cancelled and handed back; then the NATS connection
// drains (pending publishes and acks flush), the embedded server stops, and the registry client closes. It
// takes at most the grace plus a few seconds.
func (p *Process) Shutdown() error {
	var errs []error
	stageErrs := make(chan error, len(p.stages))
	for _, s := range p.stages {
		go func() {
			// The stage's ctx is the grace: when it ends, the stage cancels its work and returns.
			ctx, cancel := context.WithTimeout(context.Background(), p.grace)
			defer cancel()
			err := s.Shutdown(ctx)
			if err != nil {
				err = fmt.Errorf("stopping stage %s: %w", s.Name(), err)
			}
			stageErrs <- err
		}()
	}
	bound := time.NewTimer(p.grace + cancelBound)
	defer bound.Stop()
wait:
	for left := len(p.stages); left > 0; left-- {
		select {
		case err := <-stageErrs:
			errs = append(errs, err)
		case <-bound.C:
			errs = append(errs, fmt.Errorf("%d stage(s) still running %s after the grace", left, cancelBound))
			break wait
		}
	}
	// The probes' listener closes while NATS drains, not before it: its wait for a probe or scrape in flight
	// (at most drainBound) must not add to the stop's bound of the grace plus config.DrainTimeout.
	opsClosed := make(chan struct{})
	go func() {
		defer close(opsClosed)
		if p.ops == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), drainBound)
		defer cancel()
		if err := p.ops.Shutdown(ctx); err != nil {
			_ = p.ops.Close()
		}
	}()
	if p.nc != nil {
		errs = append(errs, drain(p.nc))
	}
	<-opsClosed
	if p.server != nil {
		p.server.Shutdown()
	}
	if p.registry != nil {
		p.registry.Close()
	}
	return errors.Join(errs...)
}

// drain drains nc within drainBound, and closes it.
func drain(nc *nats.Conn) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		// Already closed, or reconnecting: what was not flushed is redelivered (unacked) or answered 503.
		nc.Close()
		return fmt.Errorf("draining the NATS connection: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-time.After(drainBound):
		nc.Close()
		return fmt.Errorf("draining the NATS connection: not done after %s", drainBound)
	}
}
