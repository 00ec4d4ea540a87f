package harborflow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/signature"
	"github.com/harborflow/harborflow/pkg/stage"
	"github.com/harborflow/harborflow/services/inspector"
	"github.com/harborflow/harborflow/services/promoter"
	"github.com/harborflow/harborflow/services/rebuilder"
	"github.com/harborflow/harborflow/services/receiver"
	"github.com/harborflow/harborflow/services/retention"
	"github.com/harborflow/harborflow/services/watcher"
)

// stageDef is one stage harborflow can run: how to build it from the configuration and the process's parts.
type stageDef struct {
	name string
	// idle says why the stage has nothing to do with cfg (no recipes, no poll sources), or "".
	idle func(cfg *config.Config) string
	new  func(ctx context.Context, w *wiring) (stage.Stage, error)
}

// stages is every stage, in pipeline order: the one list `harborflow run` wires from.
var stages = []stageDef{
	{name: event.StageReceiver, new: newReceiver},
	{name: event.StageWatcher, idle: noPollSources, new: newWatcher},
	{name: event.StageInspector, new: newInspector},
	{name: event.StageRebuilder, idle: noRecipes, new: newRebuilderStage},
	{name: event.StagePromoter, idle: noChains, new: newPromoterStage},
	{name: event.StageRetention, idle: noPolicies, new: newRetentionStage},
}

// selectStages returns the definitions of names, in pipeline order; no names means every stage.
func selectStages(names []string) ([]stageDef, error) {
	if err := config.CheckStages(names); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return stages, nil
	}
	var out []stageDef
	for _, d := range stages {
		if slices.Contains(names, d.name) {
			out = append(out, d)
		}
	}
	return out, nil
}

// wiring is what a stage is built from: the configuration and the process's shared parts.
type wiring struct {
	cfg      *config.Config
	bus      *bus.Bus
	log      *zap.Logger
	metrics  *prometheus.Registry
	registry func() (*registry.Client, error) // one client per process, made for the first stage that asks
	ready    func(ctx context.Context) error  // the process's readiness, served by the receiver
}

func newReceiver(_ context.Context, w *wiring) (stage.Stage, error) {
	return receiver.New(receiver.ConfigFrom(w.cfg), receiver.Deps{Bus: w.bus, Log: w.log, Metrics: w.metrics, Ready: w.ready})
}

func noPollSources(cfg *config.Config) string {
	for _, s := range cfg.Sources {
		if s.Kind == config.SourcePoll {
			return ""
		}
	}
	return "no source of kind poll"
}

func newWatcher(ctx context.Context, w *wiring) (stage.Stage, error) {
	reg, err := w.registry()
	if err != nil {
		return nil, err
	}
	baselines, err := w.bus.KeyValue(ctx, event.BucketWatcher)
	if err != nil {
		return nil, err
	}
	wt, err := watcher.New(w.cfg.Sources, watcher.Deps{Registry: reg, Bus: w.bus, Baselines: baselines, Log: w.log, Metrics: w.metrics})
	if err != nil {
		return nil, err
	}
	return stage.Loop(event.StageWatcher, wt.Run), nil
}

func newInspector(ctx context.Context, w *wiring) (stage.Stage, error) {
	reg, err := w.registry()
	if err != nil {
		return nil, err
	}
	history, err := w.bus.KeyValue(ctx, event.BucketImageHistory)
	if err != nil {
		return nil, err
	}
	children, err := w.bus.KeyValue(ctx, event.BucketIndexChildren)
	if err != nil {
		return nil, err
	}
	insp, err := inspector.New(w.cfg.Inspector, inspector.Deps{Registry: reg, History: history, Children: children, Log: w.log,
		DuplicateWindow: w.cfg.NATS.DuplicateWindow})
	if err != nil {
		return nil, err
	}
	return stage.Consuming(w.bus, insp), nil
}

func noRecipes(cfg *config.Config) string {
	if len(cfg.Rebuilds) == 0 {
		return "no rebuilds"
	}
	return ""
}

func newRebuilderStage(ctx context.Context, w *wiring) (stage.Stage, error) {
	reg, err := w.registry()
	if err != nil {
		return nil, err
	}
	rb, err := newRebuilder(ctx, w.cfg, w.bus, reg, rebuilder.Deps{Log: w.log, Metrics: w.metrics})
	if err != nil {
		return nil, err
	}
	return stage.Consuming(w.bus, rb), nil
}

// newRebuilder builds the rebuilder of cfg's recipes, with buildah when a recipe needs it; deps gives the
// logger, metrics and holder. `harborflow rebuild` uses it too.
func newRebuilder(ctx context.Context, cfg *config.Config, b *bus.Bus, reg *registry.Client, deps rebuilder.Deps) (*rebuilder.Rebuilder, error) {
	kv, err := b.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		return nil, err
	}
	trees, err := b.KeyValue(ctx, event.BucketLayerTrees)
	if err != nil {
		return nil, err
	}
	deps.Registry, deps.State, deps.Trees, deps.Version = reg, kv, rebuilder.LayerTrees(trees), Version
	for i, r := range cfg.Rebuilds {
		if r.Builder != config.BuilderDockerfile {
			continue
		}
		bh, err := buildah.New(config.BuildahHosts(cfg.Registries), buildah.WithLogger(deps.Log))
		if err != nil {
			return nil, fmt.Errorf("rebuilds[%d] (%s) uses the dockerfile builder: %w", i, r.Name, err)
		}
		deps.Buildah = bh
		break
	}
	if cfg.Signing.Key != "" {
		s, err := loadSigner(cfg.Signing)
		if err != nil {
			return nil, err
		}
		deps.Signer = imageSigner{signer: s, reg: reg}
	}
	return rebuilder.New(cfg.Rebuilds, cfg.Inspector.UpdateLevelLabel, deps)
}

// loadSigner reads the signing key of sg, decrypting it with its password.
func loadSigner(sg config.Signing) (*signature.Signer, error) {
	pem, err := os.ReadFile(sg.Key)
	if err != nil {
		return nil, fmt.Errorf("signing.key: %w", err)
	}
	s, err := signature.LoadSigner(pem, []byte(sg.Password))
	if err != nil {
		return nil, fmt.Errorf("signing.key %s: %w", sg.Key, err)
	}
	return s, nil
}

// loadVerifiers reads the public keys of sg (none when it lists none).
func loadVerifiers(sg config.Signing) ([]*signature.Verifier, error) {
	var pems [][]byte
	for i, f := range sg.PublicKeys {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("signing.public_keys[%d]: %w", i, err)
		}
		pems = append(pems, b)
	}
	if len(pems) == 0 {
		return nil, nil
	}
	v, err := signature.LoadVerifiers(pems...)
	if err != nil {
		return nil, fmt.Errorf("signing.public_keys: %w", err)
	}
	return v, nil
}

// imageSigner signs and attests images in the registry they are in (rebuilder.Signer).
type imageSigner struct {
	signer *signature.Signer
	reg    *registry.Client
}

func (s imageSigner) Sign(ctx context.Context, image string) error {
	_, err := s.signer.Sign(ctx, s.reg, image)
	return err
}

func (s imageSigner) Attest(ctx context.Context, image string, statement []byte) error {
	_, err := s.signer.Attest(ctx, s.reg, image, statement)
	return err
}

func noChains(cfg *config.Config) string {
	if len(cfg.Promotions) == 0 {
		return "no promotions"
	}
	return ""
}

func newPromoterStage(ctx context.Context, w *wiring) (stage.Stage, error) {
	reg, err := w.registry()
	if err != nil {
		return nil, err
	}
	promotions, err := w.bus.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		return nil, err
	}
	scans, err := w.bus.KeyValue(ctx, event.BucketScans)
	if err != nil {
		return nil, err
	}
	harbors, err := harborClients(w.cfg)
	if err != nil {
		return nil, err
	}
	verifiers, err := loadVerifiers(w.cfg.Signing)
	if err != nil {
		return nil, err
	}
	p, err := promoter.New(w.cfg.Promotions, promoter.Deps{Registry: reg, Harbors: harbors, Promotions: promotions, Scans: scans,
		Verifiers: verifiers, Log: w.log})
	if err != nil {
		return nil, err
	}
	return &withLoop{Stage: stage.Consuming(w.bus, p), loop: stage.Tasks(event.StagePromoter, w.bus, promoterEvery, w.log, p.Due)}, nil
}

// harborClients are the Harbor API clients of the registries with harbor: true, by host.
func harborClients(cfg *config.Config) (map[string]*harbor.Client, error) {
	harbors := map[string]*harbor.Client{}
	for _, r := range cfg.Registries {
		if !r.Harbor {
			continue
		}
		c, err := harbor.New(r.HarborHost(), harbor.WithVersion(Version))
		if err != nil {
			return nil, fmt.Errorf("the Harbor API of %s: %w", r.Host, err)
		}
		harbors[r.Host] = c
	}
	return harbors, nil
}

func noPolicies(cfg *config.Config) string {
	if len(cfg.Retention) == 0 {
		return "no retention policies"
	}
	return ""
}

func newRetentionStage(ctx context.Context, w *wiring) (stage.Stage, error) {
	r, err := newRetention(ctx, w.cfg, w.bus, w.log, w.registry)
	if err != nil {
		return nil, err
	}
	if r.Every() == 0 {
		return stage.Consuming(w.bus, r), nil // no schedule: runs after pushes and promotions only
	}
	return &withLoop{Stage: stage.Consuming(w.bus, r), loop: stage.Tasks(event.StageRetention, w.bus, r.Every(), w.log, r.Due)}, nil
}

// newRetention builds the retention stage's handler of cfg on b (also for `harborflow retention`).
func newRetention(ctx context.Context, cfg *config.Config, b *bus.Bus, log *zap.Logger, reg func() (*registry.Client, error)) (*retention.Retention, error) {
	client, err := reg()
	if err != nil {
		return nil, err
	}
	records, err := b.KeyValue(ctx, event.BucketRetention)
	if err != nil {
		return nil, err
	}
	promotions, err := b.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		return nil, err
	}
	harbors, err := harborClients(cfg)
	if err != nil {
		return nil, err
	}
	return retention.New(cfg.Retention, cfg.Promotions, retention.Deps{Harbors: harbors, Registry: client, Records: records,
		Promotions: promotions, Log: log})
}

// promoterEvery is how often the promoter looks for promotions a soak, a scan timeout, an approval or a label
// may have unblocked.
const promoterEvery = 15 * time.Second

// withLoop is a consuming stage with a background loop of its own: both start and stop together.
type withLoop struct {
	stage.Stage
	loop stage.Stage
}

func (s *withLoop) Start(ctx context.Context) error {
	if err := s.Stage.Start(ctx); err != nil {
		return err
	}
	return s.loop.Start(ctx)
}

func (s *withLoop) Shutdown(ctx context.Context) error {
	return errors.Join(s.loop.Shutdown(ctx), s.Stage.Shutdown(ctx))
}

func (s *withLoop) Ready(ctx context.Context) error {
	if r, ok := s.Stage.(stage.Readier); ok {
		return r.Ready(ctx)
	}
	return nil
}

func (s *withLoop) Failed() <-chan error { return s.loop.(stage.Failer).Failed() }
