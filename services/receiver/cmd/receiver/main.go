// Command receiver runs the webhook receiver alone, against the NATS JetStream of nats.url: the deployment
// form of the receiver stage (`harborflow run` runs it together with every other stage).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/services/receiver"
)

func main() {
	path := flag.String("config", "", "config file (default ./harborflow.yaml or $HARBORFLOW_CONFIG)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, config.Path(*path))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string) error {
	cfg, err := config.Load(path, config.StageReceiver)
	if err != nil {
		return err
	}
	if cfg.NATS.URL == "" {
		return errors.New(path + ": nats.url: must name the NATS servers when the receiver runs alone (`harborflow run` embeds one)")
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Development)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	nc, err := bus.Connect(ctx, cfg.NATS.URL, "harborflow-receiver", log, cfg.NATS.ConnectOptions()...)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	b, err := bus.New(nc, bus.WithLogger(log))
	if err != nil {
		return err
	}
	if err := b.EnsureStreams(ctx, cfg.NATS.StreamOptions()); err != nil {
		return err
	}
	log.Info("receiver starting", zap.String(logging.FieldConfigFile, path))
	return receiver.Run(ctx, receiver.ConfigFrom(cfg), receiver.Deps{Bus: b, Log: log}, cfg.Ops.StopTimeout())
}
