// Package rebuilder turns a new base image into rebuilt, correctly tagged derived images.
//
// It consumes image.inspected (durable consumer "rebuilder") and publishes image.rebuilt. A recipe of the
// rebuilds: configuration follows a base tag (registry.wso2.com/wso2-apim/am:4.2.0); an inspected image of that
// repository and version line triggers a build when its update level is newer than the last one the recipe
// built, or, unless the recipe turns it off, when its digest changed at the same update level (an OS patch).
// A base without an update level is not rebuilt: the trigger is dead-lettered with that reason.
//
// Every build is claimed in the rebuilds KV bucket under (recipe, base digest) before anything is built, and
// takes its build number from a per-recipe-and-version counter once, so a redelivered or duplicated trigger —
// or two replicas seeing the same base — builds once and reuses the same number and tag. The result is pushed
// by digest; the tag is added only when every platform and the index are in the registry. A build that cannot
// succeed (missing context, a Dockerfile error, push denied, base gone) is dead-lettered with a reason a person
// can act on.
package rebuilder

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Labels every rebuilt image carries, besides the update level under inspector.update_level_label.
const (
	LabelBaseDigest = "io.harborflow.base.digest"
	LabelBuild      = "io.harborflow.build"
	LabelRecipe     = "io.harborflow.recipe"
)

// Registry is what the rebuilder asks of registries (*registry.Client).
type Registry interface {
	Resolve(ctx context.Context, ref string) (registry.Descriptor, error)
	Inspect(ctx context.Context, ref string) (*registry.Artifact, error)
	Overlay(ctx context.Context, base, target string, layer registry.Layer, edit registry.Edit) (registry.Written, error)
	Rebase(ctx context.Context, image, oldBase, newBase, target string, edit registry.Edit) (registry.Written, error)
	Push(ctx context.Context, layoutDir, target string, edit registry.Edit) (registry.Written, error)
	Tag(ctx context.Context, image, tag string) error
}

// Deps are the rebuilder's collaborators.
type Deps struct {
	Registry Registry
	// Buildah runs Dockerfile builds; nil when buildah is not installed (dockerfile recipes then fail with
	// that reason).
	Buildah Buildah
	// State is the rebuilds KV bucket.
	State jetstream.KeyValue
	Log   *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Metrics is where the rebuilder's series are registered (none when nil).
	Metrics prometheus.Registerer
	// Holder names this process in the claims of builds run by hand (default host name and pid). A trigger
	// from the bus holds its claim as its stream sequence, so that its redelivery after a crash takes it over.
	Holder string
}

// Rebuilder is the rebuilder stage.
type Rebuilder struct {
	recipes    []recipe
	levelLabel string
	deps       Deps
	log        *zap.Logger
	now        func() time.Time
	holder     string
	builders   map[string]builder
	timeout    time.Duration // the longest recipe timeout
	m          *metrics
}

// recipe is a configured recipe with its base tag and template parsed.
type recipe struct {
	config.Rebuild
	baseRepo string // registry/repository
	baseTag  imagetag.Tag
	tmpl     *imagetag.Template
}

// New builds the rebuilder for the recipes of rebuilds; levelLabel is inspector.update_level_label, the label
// the rebuilt images carry their update level in.
func New(rebuilds []config.Rebuild, levelLabel string, deps Deps) (*Rebuilder, error) {
	if deps.Registry == nil || deps.State == nil {
		return nil, errors.New("rebuilder: registry and the rebuilds KV bucket are required")
	}
	r := &Rebuilder{levelLabel: levelLabel, deps: deps, log: deps.Log, now: deps.Now, holder: deps.Holder}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.log = r.log.With(zap.String(logging.FieldStage, event.StageRebuilder))
	if r.now == nil {
		r.now = time.Now
	}
	reg := deps.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	r.m = newMetrics(reg)
	if r.holder == "" {
		host, _ := os.Hostname()
		r.holder = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	for i, rb := range rebuilds {
		repo := repositoryOf(rb.Base)
		bt, err := imagetag.Parse(strings.TrimPrefix(rb.Base, repo+":"))
		if repo == rb.Base || err != nil {
			return nil, fmt.Errorf("rebuilds[%d].base %q: want registry/repository:<version tag>", i, rb.Base)
		}
		tmpl, err := imagetag.ParseTemplate(rb.Tag)
		if err != nil {
			return nil, fmt.Errorf("rebuilds[%d].tag: %w", i, err)
		}
		r.recipes = append(r.recipes, recipe{Rebuild: rb, baseRepo: repo, baseTag: bt, tmpl: tmpl})
		r.timeout = max(r.timeout, rb.Timeout)
	}
	r.builders = map[string]builder{
		config.BuilderOverlay:    overlay{reg: deps.Registry},
		config.BuilderDockerfile: dockerfile{reg: deps.Registry, buildah: deps.Buildah},
		config.BuilderRebase:     rebase{reg: deps.Registry},
	}
	return r, nil
}

// ConsumerConfig is the rebuilder's durable consumer: image.inspected. A handler may run as long as the
// longest recipe's timeout; the message is kept in progress meanwhile.
func (r *Rebuilder) ConsumerConfig() bus.ConsumerConfig {
	return bus.ConsumerConfig{
		Stage:          event.StageRebuilder,
		Stream:         event.StreamImage,
		FilterSubjects: []string{event.SubjectImageInspected},
		HandlerTimeout: r.timeout + time.Minute,
		Concurrency:    2,
	}
}

// Recipes are the names of the configured recipes.
func (r *Rebuilder) Recipes() []string {
	names := make([]string, len(r.recipes))
	for i, rc := range r.recipes {
		names[i] = rc.Name
	}
	return names
}

// trigger is a base image that may need a build.
type trigger struct {
	base      string // registry/repository@digest
	digest    string
	level     *int64
	platforms []string
	eventID   string
	correlID  string
	holder    string
	force     bool
}

// Handle rebuilds every recipe that follows the inspected image.
func (r *Rebuilder) Handle(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
	ev := &harborflowv1.ImageInspected{}
	if err := m.Decode(ev); err != nil {
		return nil, bus.Permanent(err)
	}
	repo := ev.GetRegistry() + "/" + ev.GetRepository()
	var outs []*bus.Message
	var errs []error
	for _, rc := range r.recipes {
		if !rc.follows(repo, ev) {
			continue
		}
		t := trigger{
			base: repo + "@" + ev.GetDigest(), digest: ev.GetDigest(), level: ev.UpdateLevel,
			platforms: platformsOf(ev.GetPlatforms()), eventID: m.ID, correlID: ev.GetCorrelationId(),
			holder: fmt.Sprintf("%s#%d", m.Stream, m.Sequence),
		}
		out, err := r.rebuild(ctx, rc, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("recipe %s: %w", rc.Name, err))
			continue
		}
		if out != nil {
			outs = append(outs, out)
		}
	}
	return outs, joinErrs(errs)
}

// Rebuild builds recipe by hand from what its base tag points to now (harborflow rebuild). Unless force is
// set, a base digest the recipe has built before is not built again: the earlier result is returned.
func (r *Rebuilder) Rebuild(ctx context.Context, name string, force bool) (*harborflowv1.ImageRebuilt, error) {
	for _, rc := range r.recipes {
		if rc.Name != name {
			continue
		}
		art, err := r.deps.Registry.Inspect(ctx, rc.Base)
		if err != nil {
			return nil, fmt.Errorf("reading base %s: %w", rc.Base, err)
		}
		t := trigger{
			base: rc.baseRepo + "@" + art.Digest, digest: art.Digest, eventID: "manual", holder: r.holder,
			force: force,
		}
		if level, ok := art.UpdateLevel(r.levelLabel); ok {
			t.level = &level
		}
		for _, p := range art.Platforms {
			t.platforms = append(t.platforms, p.String())
		}
		m, err := r.rebuild(ctx, rc, t)
		if err != nil {
			return nil, err
		}
		if m == nil {
			return nil, nil
		}
		out := &harborflowv1.ImageRebuilt{}
		if err := m.Decode(out); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("no recipe named %q (recipes: %s)", name, strings.Join(r.Recipes(), ", "))
}

// follows reports whether the recipe follows the inspected image: the same repository, and a tag of the
// base tag's version and flavour.
func (rc recipe) follows(repo string, ev *harborflowv1.ImageInspected) bool {
	if repo != rc.baseRepo {
		return false
	}
	for _, tag := range ev.GetTags() {
		if t, err := imagetag.Parse(tag); err == nil && t.SameLine(rc.baseTag) {
			return true
		}
	}
	return ev.GetVersion() == rc.baseTag.Version && ev.GetSuffix() == rc.baseTag.Suffix
}

// rebuild runs one recipe for one trigger and counts its outcome.
func (r *Rebuilder) rebuild(ctx context.Context, rc recipe, t trigger) (*bus.Message, error) {
	m, outcome, err := r.run(ctx, rc, t)
	switch {
	case err == nil:
	case bus.IsPermanent(err):
		outcome = outcomeFailed
	default:
		outcome = outcomeRetried
	}
	r.m.triggers.WithLabelValues(rc.Name, outcome).Inc()
	return m, err
}

// run runs one recipe for one trigger, from the claim to the tag. It returns the image.rebuilt to publish, or
// nil when there is nothing to build, and the outcome.
func (r *Rebuilder) run(ctx context.Context, rc recipe, t trigger) (*bus.Message, string, error) {
	log := r.log.With(zap.String(logging.FieldRecipe, rc.Name), zap.String(logging.FieldBase, t.base))
	if t.level == nil {
		return nil, "", bus.Permanent(fmt.Errorf("base %s has no %s label: not rebuilt (a rebuilt image's tag needs the update level)",
			t.base, r.levelLabel))
	}
	st := state{kv: r.deps.State}
	b, rev, err := st.build(ctx, rc.Name, t.digest)
	if err != nil {
		return nil, "", err
	}
	if b != nil && !t.force {
		switch {
		case b.GetState() == stateBuilt:
			// Built before: the same image.rebuilt again (the bus stores it once within its duplicate window).
			m, err := RebuiltMessage(b.GetResult())
			return m, outcomeRepeated, err
		case b.GetState() == stateFailed:
			log.Info("this base failed to build before; not trying again (harborflow rebuild --force does)",
				zap.String(logging.FieldReason, b.GetReason()))
			return nil, outcomeSkipped, nil
		case b.GetHolder() != t.holder && b.GetLeaseUntil().AsTime().After(r.now()):
			// Another delivery builds it and publishes the result; if it dies, its redelivery takes over.
			log.Info("being built by another delivery", zap.String(logging.FieldHolder, b.GetHolder()))
			return nil, outcomeSkipped, nil
		}
	}
	if b == nil || t.force {
		if !t.force {
			skip, why, err := r.stale(ctx, st, rc, t)
			if err != nil {
				return nil, "", err
			}
			if skip {
				log.Info("not rebuilding", zap.String(logging.FieldReason, why))
				return nil, outcomeSkipped, nil
			}
		}
		// The claim names its holder from the start: another delivery that reads it leaves the build to it.
		fresh := &harborflowv1.Build{Recipe: rc.Name, Base: t.base, BaseDigest: t.digest, UpdateLevel: *t.level,
			Version: rc.baseTag.Version, Suffix: rc.baseTag.Suffix, State: stateClaimed, Started: timestamppb.New(r.now()),
			Holder: t.holder, LeaseUntil: timestamppb.New(r.now().Add(rc.Timeout + time.Minute))}
		b, rev, err = st.claim(ctx, fresh, rev, b != nil)
		if errors.Is(err, errClaimed) {
			log.Info("being built by another delivery", zap.String(logging.FieldReason, err.Error()))
			return nil, outcomeSkipped, nil
		}
		if err != nil {
			return nil, "", err
		}
	}
	// Hold the claim for this delivery: a crash leaves it to expire, a redelivery of the same trigger takes it.
	b.Holder, b.LeaseUntil = t.holder, timestamppb.New(r.now().Add(rc.Timeout+time.Minute))
	if b.GetBuild() == 0 {
		n, err := st.next(ctx, rc.Name, b.GetVersion())
		if err != nil {
			return nil, "", err
		}
		tag := rc.baseTag
		tag.UpdateLevel, tag.Build, tag.Floating, tag.Raw = b.GetUpdateLevel(), n, false, ""
		if b.Tag, err = rc.tmpl.Execute(tag); err != nil {
			return nil, "", bus.Permanent(err)
		}
		b.Build = n
	}
	if rev, err = st.update(ctx, b, rev); err != nil {
		return nil, "", err
	}
	log = log.With(zap.String(logging.FieldTag, b.GetTag()), zap.Int64(logging.FieldBuild, b.GetBuild()))

	start := r.now()
	var w registry.Written
	if b.GetState() == statePushed && b.GetTargetDigest() != "" {
		// Pushed before a crash or a failed tag: tag what is there.
		w = registry.Written{Ref: rc.Target + "@" + b.GetTargetDigest(), Digest: b.GetTargetDigest(), Platforms: t.platforms}
		if len(rc.Platforms) > 0 {
			w.Platforms = rc.Platforms
		}
	} else {
		log.Info("building", zap.String(logging.FieldBuilder, rc.Builder), zap.Int64(logging.FieldUpdateLevel, b.GetUpdateLevel()))
		w, err = r.build(ctx, rc, t, b)
		if err != nil {
			return nil, "", r.failed(ctx, st, b, rev, err)
		}
		b.State, b.TargetDigest = statePushed, w.Digest
		if rev, err = st.update(ctx, b, rev); err != nil {
			return nil, "", err
		}
	}
	if err := r.deps.Registry.Tag(ctx, w.Ref, b.GetTag()); err != nil {
		return nil, "", r.failed(ctx, st, b, rev, fmt.Errorf("tagging %s as %s: %w", w.Ref, b.GetTag(), err))
	}
	result := &harborflowv1.ImageRebuilt{
		Recipe: rc.Name, Base: t.base, BaseDigest: t.digest, BaseTag: rc.baseTag.Raw, UpdateLevel: b.GetUpdateLevel(),
		Build: b.GetBuild(), Target: rc.Target, Tag: b.GetTag(), Digest: w.Digest, Builder: rc.Builder,
		DurationMs: r.now().Sub(start).Milliseconds(), CorrelationId: t.correlID, BytesRead: w.BytesRead,
		BytesWritten: w.BytesWritten, Platforms: w.Platforms, EventId: t.eventID,
	}
	b.State, b.Result, b.Finished, b.LeaseUntil = stateBuilt, result, timestamppb.New(r.now()), nil
	if _, err := st.update(ctx, b, rev); err != nil {
		return nil, "", err
	}
	if err := st.built(ctx, rc.Name, b, r.now()); err != nil {
		return nil, "", err
	}
	took := r.now().Sub(start)
	r.m.duration.WithLabelValues(rc.Name, rc.Builder).Observe(took.Seconds())
	r.m.bytes.WithLabelValues(rc.Name, "read").Add(float64(w.BytesRead))
	r.m.bytes.WithLabelValues(rc.Name, "written").Add(float64(w.BytesWritten))
	log.Info("rebuilt", zap.String(logging.FieldDigest, w.Digest), zap.Duration(logging.FieldDuration, took),
		zap.Int64(logging.FieldBytesRead, w.BytesRead), zap.Int64(logging.FieldBytesWritten, w.BytesWritten))
	m, err := RebuiltMessage(result)
	return m, outcomeBuilt, err
}

// stale reports whether a trigger is not worth a build: an older update level than the last one built, or
// the same one with a new digest when the recipe does not rebuild on digest changes.
func (r *Rebuilder) stale(ctx context.Context, st state, rc recipe, t trigger) (bool, string, error) {
	last, err := st.recipe(ctx, rc.Name)
	if err != nil || last == nil {
		return false, "", err
	}
	switch level := *t.level; {
	case level < last.GetUpdateLevel():
		return true, fmt.Sprintf("update level %d of %s is older than %d, built last", level, t.base, last.GetUpdateLevel()), nil
	case level == last.GetUpdateLevel() && !rc.RebuildOnDigestChange():
		return true, fmt.Sprintf("update level %d was built already and on_digest_change is off", level), nil
	}
	return false, "", nil
}

// build runs the recipe's builder.
func (r *Rebuilder) build(ctx context.Context, rc recipe, t trigger, b *harborflowv1.Build) (registry.Written, error) {
	bl, ok := r.builders[rc.Builder]
	if !ok {
		return registry.Written{}, bus.Permanent(fmt.Errorf("unknown builder %q", rc.Builder))
	}
	labels := maps.Clone(rc.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[r.levelLabel] = strconv.FormatInt(b.GetUpdateLevel(), 10)
	labels[LabelBaseDigest] = t.digest
	labels[LabelBuild] = strconv.FormatInt(b.GetBuild(), 10)
	labels[LabelRecipe] = rc.Name
	j := job{
		recipe: rc.Rebuild, base: t.base, platforms: rc.Platforms,
		edit: registry.Edit{Labels: labels, Env: rc.Env, Platforms: rc.Platforms, BaseName: rc.Base, BaseDigest: t.digest},
	}
	if len(j.platforms) == 0 {
		j.platforms = t.platforms
	}
	if rc.Builder == config.BuilderRebase {
		prev, err := r.rebaseSource(ctx, rc)
		if err != nil {
			return registry.Written{}, err
		}
		j.image, j.oldBase = prev.image, prev.base
	}
	bctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	w, err := bl.build(bctx, j)
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) {
		// The recipe's own bound: building again would take as long.
		return w, bus.Permanent(fmt.Errorf("build timed out after %s (rebuilds[].timeout): %w", rc.Timeout, err))
	}
	return w, err
}

// failed records a build failure. A failure that retrying cannot fix is kept in the build record and
// dead-letters the trigger; any other releases the claim for the redelivery.
func (r *Rebuilder) failed(ctx context.Context, st state, b *harborflowv1.Build, rev uint64, err error) error {
	err = classify(err)
	if bus.IsPermanent(err) {
		b.State, b.Reason, b.Finished, b.LeaseUntil = stateFailed, err.Error(), timestamppb.New(r.now()), nil
	} else {
		b.LeaseUntil = nil
	}
	// Recorded even when the delivery was stopped (its context ended): the next one must find the claim free.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, uerr := st.update(ctx, b, rev); uerr != nil {
		r.log.Warn("recording the build's failure", zap.String(logging.FieldRecipe, b.GetRecipe()), zap.Error(uerr))
	}
	return err
}

// classify maps a build error to the bus: registry errors that may pass (unavailable, rate limited, a context
// that ended: the stage is stopping) are retried; everything else — not found, denied, a failed Dockerfile, a
// missing context, the recipe's timeout — is permanent.
func classify(err error) error {
	switch {
	case bus.IsPermanent(err):
		return err
	case registry.Retryable(err):
		if d, ok := registry.RetryAfter(err); ok {
			return bus.Retry(err, d)
		}
		return err
	}
	return bus.Permanent(err)
}

// RebuiltMessage is the image.rebuilt message of a build, with an id derived from recipe, base digest and tag, so
// that publishing it again stores it once.
func RebuiltMessage(out *harborflowv1.ImageRebuilt) (*bus.Message, error) {
	if out == nil {
		return nil, nil
	}
	m, err := bus.NewMessage(event.SubjectImageRebuilt, event.ID("rebuilt", out.GetRecipe(), out.GetBaseDigest(), out.GetTag()),
		out.GetCorrelationId(), out)
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return m, nil
}

func platformsOf(ps []*harborflowv1.Platform) []string {
	var out []string
	for _, p := range ps {
		if p.GetOs() == "" || p.GetArchitecture() == "" {
			continue
		}
		s := p.GetOs() + "/" + p.GetArchitecture()
		if p.GetVariant() != "" {
			s += "/" + p.GetVariant()
		}
		out = append(out, s)
	}
	return out
}

// joinErrs joins the failures of several recipes: permanent only when every one of them is.
func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	joined := errors.Join(errs...)
	for _, err := range errs {
		if !bus.IsPermanent(err) {
			return joined
		}
	}
	return bus.Permanent(joined)
}
