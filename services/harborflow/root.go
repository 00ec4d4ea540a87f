package harborflow

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
)

// Version is set at build time (-ldflags "-X ...harborflow.Version=v1.2.3").
var Version = "dev"

// NewCommand returns the harborflow command tree.
func NewCommand() *cobra.Command {
	var configFlag string
	root := &cobra.Command{
		Use:           "harborflow",
		Short:         "Keep container images up to date, driven by registry events",
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&configFlag, "config", "", "config file (default ./harborflow.yaml or $HARBORFLOW_CONFIG)")
	cfgPath := func() string { return config.Path(configFlag) }
	root.AddCommand(
		newRunCommand(cfgPath),
		newEventsCommand(cfgPath),
		newStatusCommand(cfgPath),
		newHistoryCommand(cfgPath),
		newDLQCommand(cfgPath),
		newRebuildCommand(cfgPath),
		newApproveCommand(cfgPath),
		newPromotionCommand(cfgPath),
		newRetentionCommand(cfgPath),
		newConfigCommand(cfgPath),
		newDevCommand(cfgPath),
		newHarborCommand(cfgPath),
	)
	return root
}

// connect loads the config at path for the ops commands (nats and log only: no stage's secrets) and connects
// to the NATS it names: nats.url, or the client port of a running single process (nats.listen).
func connect(ctx context.Context, path string) (*nats.Conn, *bus.Bus, error) {
	cfg, err := config.LoadOps(path)
	if err != nil {
		return nil, nil, err
	}
	return connectTo(ctx, cfg)
}

// connectTo connects to the NATS cfg names.
func connectTo(ctx context.Context, cfg *config.Config) (*nats.Conn, *bus.Bus, error) {
	url := cfg.NATS.URL
	if url == "" {
		url = "nats://" + cfg.NATS.Listen
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nc, err := bus.Connect(cctx, url, "harborflow-cli", nil, cfg.NATS.ConnectOptions()...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is `harborflow run` running?)", err)
	}
	b, err := bus.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, b, nil
}
