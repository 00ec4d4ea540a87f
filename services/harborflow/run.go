package harborflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/broker"
	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/services/inspector"
	"github.com/harborflow/harborflow/services/rebuilder"
	"github.com/harborflow/harborflow/services/receiver"
	"github.com/harborflow/harborflow/services/watcher"
)

func newRunCommand(cfgPath func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run every stage in one process, with an embedded NATS JetStream server unless nats.url is set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := cfgPath()
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			log, err := logging.New(cfg.Log.Level, cfg.Log.Development)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			log.Info("starting harborflow", zap.String("version", Version), zap.String(logging.FieldConfigFile, path), zap.Stringer("config", cfg))
			p, err := Start(cmd.Context(), cfg, log)
			if err != nil {
				log.Error("start failed", zap.Error(err))
				return err
			}
			<-cmd.Context().Done()
			log.Info("shutting down", zap.Duration("timeout", cfg.HTTP.ShutdownTimeout))
			ctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
			defer cancel()
			if err := p.Shutdown(ctx); err != nil {
				log.Error("shutdown incomplete", zap.Error(err))
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
}

// Process is every harborflow stage running in this process.
type Process struct {
	log       *zap.Logger
	server    *broker.Server // nil with an external NATS
	nc        *nats.Conn
	registry  *registry.Client
	receiver  *receiver.Server
	watcher   func() // stops the watcher and waits for it
	consumers []*bus.Consumer
	// NATSURL is where the stages' NATS is.
	NATSURL string
}

// Start starts the embedded NATS server (when cfg.NATS.URL is empty), ensures the streams, and starts every
// stage. On error, whatever was started is stopped again.
func Start(ctx context.Context, cfg *config.Config, log *zap.Logger) (p *Process, err error) {
	p = &Process{log: log}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
			defer cancel()
			_ = p.Shutdown(sctx)
			p = nil
		}
	}()
	p.NATSURL = cfg.NATS.URL
	if p.NATSURL == "" {
		p.server, err = broker.Start(broker.Config{Listen: cfg.NATS.Listen, StoreDir: cfg.NATS.StoreDir, SyncAlways: cfg.NATS.SyncAlways}, log)
		if err != nil {
			return p, err
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
	b, err := bus.New(p.nc, bus.WithLogger(log))
	if err != nil {
		return p, err
	}
	if err := b.EnsureStreams(cctx, cfg.NATS.StreamOptions()); err != nil {
		return p, err
	}
	if err := b.EnsureKeyValues(cctx, cfg.NATS.StreamOptions()); err != nil {
		return p, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.registry, err = registry.New(cfg.Registries, registry.WithLogger(log), registry.WithVersion(Version))
	if err != nil {
		return p, err
	}
	if err := p.startInspector(cctx, cfg, b, log); err != nil {
		return p, err
	}
	if err := p.startRebuilder(cctx, cfg, b, log, reg); err != nil {
		return p, err
	}
	if err := p.startWatcher(cctx, cfg, b, log, reg); err != nil {
		return p, err
	}
	p.receiver, err = receiver.New(receiver.ConfigFrom(cfg), receiver.Deps{Bus: b, Log: log, Metrics: reg})
	if err != nil {
		return p, err
	}
	if err := p.receiver.Start(); err != nil {
		p.receiver = nil
		return p, err
	}
	return p, nil
}

// startInspector runs the inspector on its durable consumer.
func (p *Process) startInspector(ctx context.Context, cfg *config.Config, b *bus.Bus, log *zap.Logger) error {
	history, err := b.KeyValue(ctx, event.BucketImageHistory)
	if err != nil {
		return err
	}
	children, err := b.KeyValue(ctx, event.BucketIndexChildren)
	if err != nil {
		return err
	}
	insp, err := inspector.New(cfg.Inspector, inspector.Deps{Registry: p.registry, History: history, Children: children, Log: log,
		DuplicateWindow: cfg.NATS.DuplicateWindow})
	if err != nil {
		return err
	}
	c, err := b.Consume(ctx, insp.ConsumerConfig(), insp.Handle)
	if err != nil {
		return err
	}
	p.consumers = append(p.consumers, c)
	return nil
}

// startRebuilder runs the rebuilder on its durable consumer, when there are recipes.
func (p *Process) startRebuilder(ctx context.Context, cfg *config.Config, b *bus.Bus, log *zap.Logger, reg prometheus.Registerer) error {
	if len(cfg.Rebuilds) == 0 {
		return nil
	}
	rb, err := newRebuilder(ctx, cfg, b, p.registry, rebuilder.Deps{Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	c, err := b.Consume(ctx, rb.ConsumerConfig(), rb.Handle)
	if err != nil {
		return err
	}
	p.consumers = append(p.consumers, c)
	return nil
}

// newRebuilder builds the rebuilder of cfg's recipes, with buildah when a recipe needs it; deps gives the
// logger, metrics and holder.
func newRebuilder(ctx context.Context, cfg *config.Config, b *bus.Bus, reg *registry.Client, deps rebuilder.Deps) (*rebuilder.Rebuilder, error) {
	kv, err := b.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		return nil, err
	}
	trees, err := b.KeyValue(ctx, event.BucketLayerTrees)
	if err != nil {
		return nil, err
	}
	deps.Registry, deps.State, deps.Trees = reg, kv, rebuilder.LayerTrees(trees)
	for i, r := range cfg.Rebuilds {
		if r.Builder != config.BuilderDockerfile {
			continue
		}
		bh, err := buildah.New(cfg.Registries, buildah.WithLogger(deps.Log))
		if err != nil {
			return nil, fmt.Errorf("rebuilds[%d] (%s) uses the dockerfile builder: %w", i, r.Name, err)
		}
		deps.Buildah = bh
		break
	}
	return rebuilder.New(cfg.Rebuilds, cfg.Inspector.UpdateLevelLabel, deps)
}

// startWatcher polls the poll sources in the background, when there are any.
func (p *Process) startWatcher(ctx context.Context, cfg *config.Config, b *bus.Bus, log *zap.Logger, reg prometheus.Registerer) error {
	baselines, err := b.KeyValue(ctx, event.BucketWatcher)
	if err != nil {
		return err
	}
	w, err := watcher.New(cfg.Sources, watcher.Deps{Registry: p.registry, Bus: b, Baselines: baselines, Log: log, Metrics: reg})
	if err != nil {
		return err
	}
	// The watcher's context is its own: it ends when the process shuts down, not when start-up does.
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(wctx)
	}()
	p.watcher = func() { cancel(); <-done }
	return nil
}

// ReceiverAddr is the address the receiver listens on.
func (p *Process) ReceiverAddr() string { return p.receiver.Addr() }

// Shutdown stops the process in the one order that loses nothing, within ctx: stop intake (HTTP requests in
// flight finish and are answered after their events are stored; the watcher finishes its tag), drain the
// consumers (handlers in flight finish and ack), drain the NATS connection (pending publishes and acks flush),
// then stop the embedded server.
func (p *Process) Shutdown(ctx context.Context) error {
	var errs []error
	if p.receiver != nil {
		if err := p.receiver.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if p.watcher != nil {
		p.watcher()
	}
	for _, c := range p.consumers {
		if err := c.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if p.nc != nil {
		closed := make(chan struct{})
		p.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := p.nc.Drain(); err != nil {
			p.nc.Close()
		} else {
			select {
			case <-closed:
			case <-ctx.Done():
				p.nc.Close()
				errs = append(errs, fmt.Errorf("draining NATS connection: %w", ctx.Err()))
			}
		}
	}
	if p.server != nil {
		p.server.Shutdown()
	}
	if p.registry != nil {
		p.registry.Close()
	}
	return errors.Join(errs...)
}
