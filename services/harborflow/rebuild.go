package harborflow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/services/rebuilder"
)

func newRebuildCommand(cfgPath func() string) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rebuild RECIPE",
		Short: "Rebuild a recipe now from what its base tag points to",
		Long: "Rebuild a recipe of the rebuilds: configuration from the current digest of its base tag, and publish\n" +
			"image.rebuilt. A base digest the recipe has built before is not built again unless --force is given\n" +
			"(a forced build takes the next build number). Needs the NATS of `harborflow run` (or nats.url) for the\n" +
			"rebuild state, and the registry credentials of the configuration.",
		Example: "  harborflow rebuild acme-am\n  harborflow rebuild acme-am --force",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			env, err := openStage(ctx, cfgPath(), event.StageRebuilder)
			if err != nil {
				return err
			}
			defer env.close()
			cfg, log, b, reg := env.cfg, env.log, env.bus, env.reg
			host, _ := os.Hostname()
			rb, err := newRebuilder(ctx, cfg, b, reg, rebuilder.Deps{Log: log, Holder: fmt.Sprintf("manual/%s/%d", host, os.Getpid())})
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := rb.Rebuild(ctx, args[0], force)
			for _, m := range res.Recovered { // a dead holder's build, finished on the way
				if _, perr := b.Publish(ctx, m); perr != nil {
					return errors.Join(err, fmt.Errorf("publishing a recovered image.rebuilt: %w", perr))
				}
			}
			if err != nil {
				return err
			}
			out, w := res.Rebuilt, cmd.OutOrStdout()
			if out == nil {
				_, err = fmt.Fprintf(w, "%s: nothing to build (see the log for why)\n", args[0])
				return err
			}
			m, err := rebuilder.RebuiltMessage(out)
			if err != nil {
				return err
			}
			if _, err := b.Publish(ctx, m); err != nil {
				log.Warn("publishing image.rebuilt", zap.Error(err))
				return fmt.Errorf("built %s:%s but publishing image.rebuilt failed: %w", out.GetTarget(), out.GetTag(), err)
			}
			if res.AlreadyBuilt {
				_, err = fmt.Fprintf(w, "%s: already built: %s:%s (%s) from %s, update level %d, build %d; --force builds it again\n",
					out.GetRecipe(), out.GetTarget(), out.GetTag(), out.GetDigest(), out.GetBase(), out.GetUpdateLevel(), out.GetBuild())
				return err
			}
			_, err = fmt.Fprintf(w, "%s: %s:%s (%s) from %s, update level %d, build %d, %s builder, %s\n",
				out.GetRecipe(), out.GetTarget(), out.GetTag(), out.GetDigest(), out.GetBase(), out.GetUpdateLevel(), out.GetBuild(),
				out.GetBuilder(), time.Since(start).Round(time.Millisecond))
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "build even when this base digest was built before (takes a new build number)")
	return cmd
}

// stageEnv is what a command doing a stage's work by hand needs: the configuration loaded for that stage, a
// logger, the bus, and a registry client.
type stageEnv struct {
	cfg *config.Config
	log *zap.Logger
	bus *bus.Bus
	reg *registry.Client
	// close releases them.
	close func()
}

// openStage loads the configuration at path for stage and opens its logger, NATS connection and registry client.
func openStage(ctx context.Context, path, stage string) (*stageEnv, error) {
	cfg, err := config.Load(path, stage)
	if err != nil {
		return nil, err
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Development)
	if err != nil {
		return nil, err
	}
	nc, b, err := connectTo(ctx, cfg)
	if err != nil {
		_ = log.Sync()
		return nil, err
	}
	reg, err := registry.New(config.RegistryHosts(cfg.Registries), registry.WithLogger(log), registry.WithVersion(Version))
	if err != nil {
		nc.Close()
		_ = log.Sync()
		return nil, err
	}
	return &stageEnv{cfg: cfg, log: log, bus: b, reg: reg, close: func() {
		reg.Close()
		nc.Close()
		_ = log.Sync()
	}}, nil
}
