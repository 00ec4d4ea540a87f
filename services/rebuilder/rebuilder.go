// Package rebuilder turns a new base image into rebuilt, correctly tagged derived images.
//
// It consumes image.inspected (durable consumer "rebuilder") and publishes image.rebuilt. A recipe of the
// rebuilds: configuration follows a base tag (registry.wso2.com/wso2-apim/am:4.2.0); an inspected image of that
// repository and version line triggers a build when its update level is newer than the last one the recipe
// built, or, unless the recipe turns it off, when its digest changed at the same update level (an OS patch).
// A base without an update level is not rebuilt: the trigger is dead-lettered with that reason.
//
// A recipe follows one version line, and its builds take turns on it: the recipe's line in the rebuilds KV
// bucket is held, with a lease renewed while building, before anything is built, so builds of a line finish
// in update-level order on one process or several replicas; a base older than the one built meanwhile is
// recorded as superseded by that build. Every build is recorded under (recipe, base digest) and takes its build
// number from a per-recipe-and-version counter once, so a redelivered or duplicated trigger — or two replicas
// seeing the same base — builds once and reuses the same number and tag. The result is pushed by digest; the
// tag is added only when every platform and the index are in the registry. A build that cannot succeed
// (missing context, a Dockerfile error, push denied, base gone) is dead-lettered with a reason a person can act
// on; what an interrupted write leaves in the registry is repaired by writing again.
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

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/fault"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/platform"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/signature"
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
	Manifest(ctx context.Context, ref string) (*registry.Artifact, error)
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
	State *bus.KV
	Log   *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Metrics is where the rebuilder's series are registered (none when nil).
	Metrics prometheus.Registerer
	// Holder names this process in the claims of builds run by hand (default host name and pid). A trigger
	// from the bus holds its claim as its stream sequence, so that its redelivery after a crash takes it over.
	Holder string
	// LineLease is how long a build holds its recipe's line without renewing it (default 15s; renewed every
	// third of it while building): how long the other bases of a line wait after their builder died.
	LineLease time.Duration
	// Trees keeps what base layers hold by layer digest (the layer-trees KV bucket), so that the overlay
	// builder reads each base layer once; nil reads every base layer on every build.
	Trees registry.TreeCache
	// Signer signs every image pushed — the index and each platform manifest — and attests its provenance
	// before its tag is pushed, so that no tag ever points at an unsigned image; nil signs nothing (no
	// signing: configured).
	Signer Signer
	// Version is harborflow's, as the provenance names the builder's.
	Version string
}

// Signer signs an image (registry/repository@digest) where it is, and attaches a signed in-toto statement to
// it, each once: what is signed or attested already by the same key is not written again (pkg/signature).
type Signer interface {
	Sign(ctx context.Context, image string) error
	Attest(ctx context.Context, image string, statement []byte) error
}

// Rebuilder is the rebuilder stage.
type Rebuilder struct {
	recipes    []recipe
	levelLabel string
	deps       Deps
	log        *zap.Logger
	now        func() time.Time
	holder     string
	lease      time.Duration // of a line
	builders   map[string]builder
	timeout    time.Duration // the longest recipe timeout
	m          *metrics
}

// DefaultLineLease is Deps.LineLease's default.
const DefaultLineLease = 15 * time.Second

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
	r := &Rebuilder{levelLabel: levelLabel, deps: deps, log: deps.Log, now: deps.Now, holder: deps.Holder, lease: deps.LineLease}
	if r.lease <= 0 {
		r.lease = DefaultLineLease
	}
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
		base, err := imageref.ParseTagged(rb.Base)
		if err != nil {
			return nil, fmt.Errorf("rebuilds[%d].base %q: want registry/repository:<version tag>", i, rb.Base)
		}
		repo := base.Name()
		bt, err := imagetag.Parse(base.Tag)
		if err != nil {
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
		config.BuilderOverlay:    overlay{reg: deps.Registry, trees: deps.Trees},
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
		Subjects:       []string{event.SubjectImageInspected},
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
	tags      []string // the base's tags the trigger names
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
			base: repo + "@" + ev.GetDigest(), digest: ev.GetDigest(), level: ev.UpdateLevel, tags: ev.GetTags(),
			platforms: platformsOf(ev.GetPlatforms()), eventID: m.ID, correlID: ev.GetCorrelationId(),
			holder: fmt.Sprintf("%s#%d", m.Stream, m.Sequence),
		}
		out, _, err := r.rebuild(ctx, rc, t)
		outs = append(outs, out...) // with an error too: a build recovered on the way is published
		if err != nil {
			errs = append(errs, fmt.Errorf("recipe %s: %w", rc.Name, err))
		}
	}
	return outs, joinErrs(errs)
}

// Manual is what a manual rebuild did.
type Manual struct {
	// Rebuilt is the build: a new one or, with AlreadyBuilt, the earlier build of the same base digest. It is nil
	// when nothing was built (the log says why: superseded, skipped, failed before, being built elsewhere).
	Rebuilt *harborflowv1.ImageRebuilt
	// AlreadyBuilt says the base digest was built before and force was not given: nothing was built now.
	AlreadyBuilt bool
	// Recovered are the image.rebuilt of builds a dead holder of the line had tagged, finished on the way
	// (Rebuilt excluded): to publish too.
	Recovered []*bus.Message
}

// Rebuild builds recipe by hand from what its base tag points to now (harborflow rebuild). Unless force is
// set, a base digest the recipe has built before is not built again: the earlier result is returned, with
// AlreadyBuilt set.
func (r *Rebuilder) Rebuild(ctx context.Context, name string, force bool) (Manual, error) {
	for _, rc := range r.recipes {
		if rc.Name != name {
			continue
		}
		art, err := r.deps.Registry.Inspect(ctx, rc.Base)
		if err != nil {
			return Manual{}, fmt.Errorf("reading the base of recipe %s: %w", rc.Name, err) // the registry's error names it
		}
		t := trigger{
			base: rc.baseRepo + "@" + art.Digest, digest: art.Digest, eventID: "manual", holder: r.holder,
			force: force, tags: []string{rc.baseTag.Raw},
		}
		if level, ok := art.UpdateLevel(r.levelLabel); ok {
			t.level = &level
		}
		for _, p := range art.Platforms {
			t.platforms = append(t.platforms, p.String())
		}
		ms, outcome, err := r.rebuild(ctx, rc, t)
		if err != nil || outcome != outcomeBuilt && outcome != outcomeRepeated {
			return Manual{Recovered: ms}, err
		}
		out := &harborflowv1.ImageRebuilt{}
		if err := ms[len(ms)-1].Decode(out); err != nil { // its own comes last, after a build it recovered
			return Manual{Recovered: ms[:len(ms)-1]}, err
		}
		return Manual{Rebuilt: out, AlreadyBuilt: outcome == outcomeRepeated, Recovered: ms[:len(ms)-1]}, nil
	}
	return Manual{}, fmt.Errorf("no recipe named %q (recipes: %s)", name, strings.Join(r.Recipes(), ", "))
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

// rebuild runs one recipe for one trigger, counts its outcome and returns it.
func (r *Rebuilder) rebuild(ctx context.Context, rc recipe, t trigger) ([]*bus.Message, string, error) {
	m, outcome, err := r.run(ctx, rc, t)
	switch {
	case err == nil:
	case bus.IsPermanent(err):
		outcome = outcomeFailed
	default:
		outcome = outcomeRetried
	}
	r.m.triggers.WithLabelValues(rc.Name, outcome).Inc()
	return m, outcome, err
}

// run runs one recipe for one trigger, from the line to the tag. It returns the image.rebuilt to publish (none
// when there is nothing to build; first, that of a dead holder's build it recovered), and the outcome.
//
// A recipe follows one version line, and its builds take turns on it (the recipe's line in the rebuilds
// bucket, held with a lease its holder renews): a trigger waits while another base of the line is being built,
// then decides, holding the line, whether it is still worth a build. An older update level than the one built
// meanwhile is recorded as superseded by that build, never built after it: builds of a line finish in
// update-level order, on one process or several replicas.
func (r *Rebuilder) run(ctx context.Context, rc recipe, t trigger) ([]*bus.Message, string, error) {
	log := r.log.With(zap.String(logging.FieldRecipe, rc.Name), zap.String(logging.FieldBase, t.base))
	if t.level == nil {
		return nil, "", bus.Permanent(fmt.Errorf("base %s has no %s label: not rebuilt (a rebuilt image's tag needs the update level)",
			t.base, r.levelLabel))
	}
	st := state{kv: r.deps.State}
	b, _, err := st.build(ctx, rc.Name, t.digest)
	if err != nil {
		return nil, "", err
	}
	if b != nil && !t.force {
		switch b.GetState() {
		case StateBuilt:
			// Built before: the same image.rebuilt again (the bus stores it once within its duplicate window). A
			// crash after the build was recorded may have left the line held by this delivery: free it.
			if err := r.release(ctx, st, rc, t, b); err != nil {
				return nil, "", err
			}
			m, err := RebuiltMessage(b.GetResult())
			return []*bus.Message{m}, outcomeRepeated, err
		case StateFailed:
			log.Info("this base failed to build before; not trying again (harborflow rebuild --force does)",
				zap.String(logging.FieldReason, b.GetReason()))
			return nil, outcomeSkipped, r.release(ctx, st, rc, t, nil)
		case StateSuperseded, StateSkipped:
			return nil, outcomeSkipped, r.release(ctx, st, rc, t, nil)
		}
	}

	v, last, recovered, err := r.acquire(ctx, st, rc, t, log)
	if err != nil {
		return recovered, "", err // a build it recovered is published all the same
	}
	switch v {
	case lineElsewhere:
		// Another delivery builds this digest and publishes the result; if it dies, its redelivery takes over.
		log.Info("being built by another delivery", zap.String(logging.FieldHolder, last.GetBuilding().GetHolder()))
		return recovered, outcomeSkipped, nil
	case lineSuperseded, lineSkipped:
		return recovered, outcomeOf(v), r.passOver(ctx, st, rc, t, v, last, log)
	}

	// This delivery holds the line until release; a crash leaves it to the lease, or to this trigger's
	// redelivery, which holds it under the same name.
	ctx, stopKeeping := r.keepLine(ctx, st, rc, t)
	defer stopKeeping()
	m, outcome, err := r.buildHeld(ctx, st, rc, t, log)
	if m != nil {
		recovered = append(recovered, m)
	}
	return recovered, outcome, err
}

// recover finishes the build of a line's holder that died (its lease ran out) when that build reached its
// tag: it finished before anything built since, so it is recorded built, made the line's last build (unless
// a newer one is), and its image.rebuilt (kept in the record since the push) is returned to publish. A build
// that did not reach its tag is left to its own redelivery (superseded, or built).
func (r *Rebuilder) recover(ctx context.Context, st state, rc recipe, h *harborflowv1.LineHold, log *zap.Logger) (*bus.Message, error) {
	b, rev, err := st.build(ctx, rc.Name, h.GetBaseDigest())
	if err != nil || b == nil || b.GetState() != StatePushed || b.GetTargetDigest() == "" || b.GetResult() == nil {
		return nil, err
	}
	d, err := r.deps.Registry.Resolve(ctx, rc.Target+":"+b.GetTag())
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fault.Classify(fmt.Errorf("looking for the tag of a build its holder left: %w", err))
	case d.Digest != b.GetTargetDigest():
		return nil, nil
	}
	b.State, b.Finished, b.LeaseUntil = StateBuilt, timestamppb.New(r.now()), nil
	if _, err := st.update(ctx, b, rev); err != nil {
		return nil, err
	}
	if err := r.release(ctx, st, rc, trigger{holder: h.GetHolder(), digest: h.GetBaseDigest()}, b); err != nil {
		return nil, err
	}
	log.Info("recovered the build of a holder that died after its tag", zap.String(logging.FieldTag, b.GetTag()),
		zap.String(logging.FieldHolder, h.GetHolder()))
	return RebuiltMessage(b.GetResult())
}

// buildHeld builds, pushes and tags, holding the line, then records the build and frees the line. On an
// error the line is freed for the other bases of the line (this trigger's redelivery takes its turn again).
func (r *Rebuilder) buildHeld(ctx context.Context, st state, rc recipe, t trigger, log *zap.Logger) (*bus.Message, string, error) {
	b, rev, err := r.claim(ctx, st, rc, t)
	if err != nil {
		return nil, "", r.abandon(ctx, st, rc, t, err)
	}
	log = log.With(zap.String(logging.FieldTag, b.GetTag()), zap.Int64(logging.FieldBuild, b.GetBuild()))

	start := r.now()
	var w registry.Written
	result := b.GetResult() // as pushed, before a crash
	if b.GetState() == StatePushed && b.GetTargetDigest() != "" && result != nil {
		// Pushed before a crash or a failed tag: sign and tag what is there.
		w = registry.Written{Ref: rc.Target + "@" + b.GetTargetDigest(), Digest: b.GetTargetDigest(), Platforms: result.GetPlatforms()}
	} else {
		log.Info("building", zap.String(logging.FieldBuilder, rc.Builder), zap.Int64(logging.FieldUpdateLevel, b.GetUpdateLevel()))
		var in inputs
		if in, err = r.readInputs(rc); err == nil {
			w, in.source, err = r.build(ctx, rc, t, b)
		}
		if err != nil {
			return nil, "", r.failed(ctx, st, rc, t, b, rev, err)
		}
		// The result is kept from the push on: if this process dies after the tag, whoever takes the line
		// over records the build and publishes it (recover); one that dies before the tag is signed from it.
		result = r.result(rc, t, b, w, start, in)
		b.State, b.TargetDigest, b.Result = StatePushed, w.Digest, result
		// DurationMs then counts the build and the push; the signatures and the tag are more requests.
		if rev, err = st.update(ctx, b, rev); err != nil {
			return nil, "", r.abandon(ctx, st, rc, t, err)
		}
	}
	// Signed and attested before the tag: a crash between the push and the tag is repaired by the
	// redelivery, which finds the build pushed and signs and attests it (once) before tagging.
	if err := r.sign(ctx, rc, w, result); err != nil {
		return nil, "", r.failed(ctx, st, rc, t, b, rev, err)
	}
	if err := r.deps.Registry.Tag(ctx, w.Ref, b.GetTag()); err != nil {
		return nil, "", r.failed(ctx, st, rc, t, b, rev, err) // the registry's error names the image and the tag
	}
	b.State, b.Result, b.Finished, b.LeaseUntil = StateBuilt, result, timestamppb.New(r.now()), nil
	if _, err := st.update(ctx, b, rev); err != nil {
		return nil, "", r.abandon(ctx, st, rc, t, err)
	}
	if err := r.release(ctx, st, rc, t, b); err != nil {
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

// sign signs what the build pushed — the image or index, and an index's platform manifests — and attests the
// image's provenance, from result (as recorded at the push, so that a redelivery attests the same build).
func (r *Rebuilder) sign(ctx context.Context, rc recipe, w registry.Written, result *harborflowv1.ImageRebuilt) error {
	if r.deps.Signer == nil {
		return nil
	}
	images := []string{w.Ref}
	art, err := r.deps.Registry.Manifest(ctx, w.Ref) // the platforms' digests: no config is read
	if err != nil {
		return fmt.Errorf("reading %s to sign it: %w", w.Ref, err)
	}
	for _, p := range art.Platforms {
		images = append(images, rc.Target+"@"+p.Digest)
	}
	for _, img := range images {
		if err := r.deps.Signer.Sign(ctx, img); err != nil {
			return fmt.Errorf("signing %s: %w", img, err)
		}
	}
	st, err := r.statement(ctx, rc, result)
	if err != nil {
		return err
	}
	if err := r.deps.Signer.Attest(ctx, w.Ref, st); err != nil {
		return fmt.Errorf("attesting the provenance of %s: %w", w.Ref, err)
	}
	return nil
}

// statement is the SLSA provenance of the build result says: the base by digest and per platform, the recipe
// and its inputs, the trigger, and the times.
func (r *Rebuilder) statement(ctx context.Context, rc recipe, result *harborflowv1.ImageRebuilt) ([]byte, error) {
	base, err := r.deps.Registry.Manifest(ctx, result.GetBase())
	if err != nil {
		return nil, fmt.Errorf("reading the base %s for the provenance: %w", result.GetBase(), err)
	}
	b := provenance.Build{
		Image: result.GetTarget(), Digest: result.GetDigest(), Recipe: result.GetRecipe(), Builder: result.GetBuilder(),
		Tag: result.GetTag(), Base: rc.Base, BaseImage: result.GetBase(), ContextDigest: result.GetContextDigest(),
		Source: result.GetSource(), EventID: result.GetEventId(), CorrelationID: result.GetCorrelationId(),
		Version: r.deps.Version,
	}
	if result.GetStarted() != nil { // nil in a build recorded before provenance existed
		b.Started, b.Finished = result.GetStarted().AsTime(), result.GetFinished().AsTime()
	}
	if rc.Builder == config.BuilderDockerfile {
		b.Dockerfile = rc.Dockerfile
	}
	for _, p := range base.Platforms {
		b.BasePlatforms = append(b.BasePlatforms, provenance.Platform{Platform: p.String(), Digest: p.Digest})
	}
	st, err := provenance.Statement(b)
	if err != nil {
		return nil, bus.Permanent(fmt.Errorf("writing the provenance of %s: %w", result.GetDigest(), err))
	}
	return st, nil
}

// inputs are what a build reads besides its base, for its provenance.
type inputs struct {
	contextDigest string // of the recipe's context, "" without one
	source        string // the image a rebase moved
}

// readInputs digests the recipe's context, before the build reads it (only when the provenance is written).
func (r *Rebuilder) readInputs(rc recipe) (inputs, error) {
	if r.deps.Signer == nil || rc.Context == "" || rc.Builder == config.BuilderRebase {
		return inputs{}, nil
	}
	d, err := provenance.ContextDigest(rc.Context)
	if err != nil {
		return inputs{}, bus.Permanent(fmt.Errorf("recipe %s: %w", rc.Name, err))
	}
	return inputs{contextDigest: d}, nil
}

// result is the image.rebuilt of build b of the trigger, written as w from in, started at start.
func (r *Rebuilder) result(rc recipe, t trigger, b *harborflowv1.Build, w registry.Written, start time.Time, in inputs) *harborflowv1.ImageRebuilt {
	now := r.now()
	out := &harborflowv1.ImageRebuilt{
		Recipe: rc.Name, Base: t.base, BaseDigest: t.digest, BaseTag: rc.baseTag.Raw, UpdateLevel: b.GetUpdateLevel(),
		Build: b.GetBuild(), Target: rc.Target, Tag: b.GetTag(), Digest: w.Digest, Builder: rc.Builder,
		DurationMs: now.Sub(start).Milliseconds(), CorrelationId: t.correlID, BytesRead: w.BytesRead,
		BytesWritten: w.BytesWritten, Platforms: w.Platforms, EventId: t.eventID,
		Started: timestamppb.New(start), Finished: timestamppb.New(now), ContextDigest: in.contextDigest, Source: in.source,
	}
	if r.deps.Signer != nil {
		out.Provenance = rc.Target + ":" + signature.AttestationTag(w.Digest)
	}
	return out
}

// claim writes the build record of the trigger, holding the line: a fresh one (or, forced, a fresh one over
// the old), or the one a crashed delivery left, taken over; and gives it its build number and tag once.
func (r *Rebuilder) claim(ctx context.Context, st state, rc recipe, t trigger) (*harborflowv1.Build, uint64, error) {
	b, rev, err := st.build(ctx, rc.Name, t.digest)
	if err != nil {
		return nil, 0, err
	}
	if b == nil || t.force {
		fresh := &harborflowv1.Build{Recipe: rc.Name, Base: t.base, BaseDigest: t.digest, UpdateLevel: *t.level,
			Version: rc.baseTag.Version, Suffix: rc.baseTag.Suffix, State: StateClaimed, Started: timestamppb.New(r.now()),
			Holder: t.holder}
		if b, rev, err = st.claim(ctx, fresh, rev, b != nil); err != nil {
			if errors.Is(err, errClaimed) {
				// Only a holder of the line claims: the record appeared since it was read. Read it again.
				return nil, 0, bus.Retry(err, time.Second)
			}
			return nil, 0, err
		}
	}
	b.Holder, b.LeaseUntil = t.holder, nil
	if b.GetBaseName() == "" {
		// Chosen once, with the number: a redone build names the same base and writes the same image.
		b.BaseName = r.baseName(ctx, rc, t)
	}
	if b.GetBuild() == 0 {
		n, err := st.next(ctx, rc.Name, b.GetVersion())
		if err != nil {
			return nil, 0, err
		}
		tag := rc.baseTag
		tag.UpdateLevel, tag.Build, tag.Floating, tag.Raw = b.GetUpdateLevel(), n, false, ""
		if b.Tag, err = rc.tmpl.Execute(tag); err != nil {
			return nil, 0, bus.Permanent(err)
		}
		b.Build = n
	}
	if rev, err = st.update(ctx, b, rev); err != nil {
		return nil, 0, err
	}
	return b, rev, nil
}

// baseName is the reference a rebuilt image names as its base (org.opencontainers.image.base.name), one that
// resolves to the base digest used, so that `regctl image check-base` says "matches" — and "changed" once
// the name moves on: the recipe's followed tag when it points at the digest now; else a tag of the trigger in
// the version line that does not move (4.2.0.16: a registry may publish only those, never 4.2.0 itself);
// else a moving one (4.2.0, 4.2.0.0) that still points at the digest; else the digest itself.
func (r *Rebuilder) baseName(ctx context.Context, rc recipe, t trigger) string {
	points := func(ref string) bool {
		d, err := r.deps.Registry.Resolve(ctx, ref)
		return err == nil && d.Digest == t.digest
	}
	if points(rc.Base) {
		return rc.Base
	}
	var moving []string
	for _, tag := range t.tags {
		tt, err := imagetag.Parse(tag)
		switch {
		case err != nil || !tt.SameLine(rc.baseTag):
		case !tt.Moving():
			return rc.baseRepo + ":" + tag
		default:
			moving = append(moving, rc.baseRepo+":"+tag)
		}
	}
	for _, ref := range moving {
		if ref != rc.Base && points(ref) {
			return ref
		}
	}
	return t.base
}

// Verdicts on a trigger from its recipe's line.
type verdict int

const (
	lineHeld       verdict = iota // this delivery holds the line: build
	lineSuperseded                // a newer update level was built: not built
	lineSkipped                   // the same update level was built from another digest, and on_digest_change is off
	lineBuilt                     // this digest is what the line built last
	lineElsewhere                 // another delivery holds the line for this same digest
)

func outcomeOf(v verdict) string {
	if v == lineSuperseded {
		return outcomeSuperseded
	}
	return outcomeSkipped
}

// lineRetry is how long a trigger that waited for the line as long as its handler may waits before its
// redelivery tries again.
const lineRetry = 5 * time.Second

// acquire takes the recipe's line for the trigger, or says why not. While another base of the line is being
// built (its holder's lease running), it waits for the line to change, as long as ctx allows, then asks for a
// redelivery. The line held, it decides whether the trigger is still worth a build: the verdict is lineHeld
// only then. last is the line as read.
func (r *Rebuilder) acquire(ctx context.Context, st state, rc recipe, t trigger, log *zap.Logger) (v verdict, last *harborflowv1.RecipeState, recovered []*bus.Message, err error) {
	var w *bus.KeyWatcher
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()
	waiting := false
	for {
		rs, rev, err := st.line(ctx, rc.Name)
		if err != nil {
			return 0, nil, recovered, err
		}
		now := r.now()
		if h := rs.GetBuilding(); h != nil && h.GetHolder() != t.holder && h.GetLeaseUntil().AsTime().After(now) {
			if h.GetBaseDigest() == t.digest {
				return lineElsewhere, rs, recovered, nil
			}
			if w == nil {
				// Watch first, then read again, so that no change between the two is missed.
				if w, err = st.watchLine(ctx, rc.Name); err != nil {
					return 0, nil, recovered, err
				}
				continue
			}
			if !waiting {
				waiting = true
				log.Info("waiting for the build of another base of this line", zap.Int64(logging.FieldUpdateLevel, h.GetUpdateLevel()),
					zap.String(logging.FieldHolder, h.GetHolder()))
			}
			lease := time.NewTimer(h.GetLeaseUntil().AsTime().Sub(now) + 10*time.Millisecond)
			select {
			case _, ok := <-w.Updates():
				if !ok {
					w = nil // the watch ended (the connection closed): watch again, or fail reading the line
				}
			case <-lease.C:
			case <-ctx.Done():
				lease.Stop()
				return 0, nil, recovered, bus.Wait(fmt.Errorf("the line of %s is held by the build of update level %d (%s): %w", rc.Name,
					h.GetUpdateLevel(), h.GetHolder(), ctx.Err()), lineRetry)
			}
			lease.Stop()
			continue
		}
		if h := rs.GetBuilding(); h != nil && h.GetHolder() != t.holder && h.GetBaseDigest() != t.digest {
			// Its holder died. A build of it that reached its tag is finished first; the line is read again.
			m, err := r.recover(ctx, st, rc, h, log)
			if err != nil {
				return 0, nil, recovered, err
			}
			if m != nil {
				recovered = append(recovered, m)
				continue
			}
		}
		if !t.force {
			if v := stale(rc, t, rs); v != lineHeld {
				return v, rs, recovered, nil
			}
		}
		next := proto.CloneOf(rs)
		next.Building = &harborflowv1.LineHold{BaseDigest: t.digest, UpdateLevel: *t.level, Holder: t.holder,
			LeaseUntil: timestamppb.New(now.Add(r.lease))}
		switch err := st.putLine(ctx, next, rev); {
		case errors.Is(err, errConflict):
			continue
		case err != nil:
			return 0, nil, recovered, err
		}
		return lineHeld, rs, recovered, nil
	}
}

// stale is the verdict on a trigger from what its line built last (nothing yet: build).
func stale(rc recipe, t trigger, last *harborflowv1.RecipeState) verdict {
	if last.GetTag() == "" {
		return lineHeld
	}
	switch level := *t.level; {
	case level < last.GetUpdateLevel():
		return lineSuperseded
	case level > last.GetUpdateLevel():
		return lineHeld
	case t.digest == last.GetBaseDigest():
		return lineBuilt
	case !rc.RebuildOnDigestChange():
		return lineSkipped
	}
	return lineHeld
}

// passOver records a trigger that is not built, and why: superseded by the build its line made of a newer
// update level, or skipped. A build number it took before (a delivery that crashed holding it) stays in the
// record, so no number is left unexplained.
func (r *Rebuilder) passOver(ctx context.Context, st state, rc recipe, t trigger, v verdict, last *harborflowv1.RecipeState, log *zap.Logger) error {
	var why, state string
	switch v {
	case lineSuperseded:
		state, why = StateSuperseded, fmt.Sprintf("update level %d of %s is older than %d, built as %s", *t.level, t.base,
			last.GetUpdateLevel(), last.GetTag())
	case lineSkipped:
		state, why = StateSkipped, fmt.Sprintf("update level %d was built from %s as %s, and on_digest_change is off", *t.level,
			last.GetBaseDigest(), last.GetTag())
	default:
		log.Info("not rebuilding: this base was built last", zap.String(logging.FieldTag, last.GetTag()))
		return r.release(ctx, st, rc, t, nil)
	}
	log.Info("not rebuilding", zap.String(logging.FieldReason, why))
	for range counterAttempts {
		b, rev, err := st.build(ctx, rc.Name, t.digest)
		if err != nil {
			return err
		}
		if b == nil {
			b = &harborflowv1.Build{Recipe: rc.Name, Base: t.base, BaseDigest: t.digest, UpdateLevel: *t.level,
				Version: rc.baseTag.Version, Suffix: rc.baseTag.Suffix, Started: timestamppb.New(r.now())}
		} else if b.GetState() == StateBuilt {
			return nil // built by another delivery meanwhile
		}
		b.State, b.Reason, b.Finished, b.LeaseUntil = state, why, timestamppb.New(r.now()), nil
		if v == lineSuperseded {
			b.SupersededBy = last.GetTag()
		}
		if rev == 0 {
			_, _, err = st.claim(ctx, b, 0, false)
		} else {
			_, err = st.update(ctx, b, rev)
		}
		if errors.Is(err, errClaimed) || errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return err
		}
		return r.release(ctx, st, rc, t, nil)
	}
	return bus.Retry(fmt.Errorf("recording that %s was not rebuilt: %w", t.base, errConflict), time.Second)
}

// release frees the recipe's line if this trigger holds it, and with done (a build just recorded as built)
// records it as the line's last build, unless the line has built a newer one. It is idempotent: a redelivery
// after a crash runs it again. Recorded even when the delivery was stopped: the next one must find the line
// free.
func (r *Rebuilder) release(ctx context.Context, st state, rc recipe, t trigger, done *harborflowv1.Build) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for range counterAttempts {
		rs, rev, err := st.line(ctx, rc.Name)
		if err != nil {
			return err
		}
		next := proto.CloneOf(rs)
		changed := false
		if h := next.GetBuilding(); h != nil && h.GetHolder() == t.holder && h.GetBaseDigest() == t.digest {
			next.Building, changed = nil, true
		}
		if done != nil && newer(done, rs) {
			next.UpdateLevel, next.BaseDigest, next.Tag, next.Build = done.GetUpdateLevel(), done.GetBaseDigest(), done.GetTag(), done.GetBuild()
			next.Target, next.UpdatedAt = done.GetResult().GetTarget()+"@"+done.GetTargetDigest(), timestamppb.New(r.now())
			changed = true
		}
		if !changed {
			return nil
		}
		switch err := st.putLine(ctx, next, rev); {
		case errors.Is(err, errConflict):
			continue
		case err != nil:
			return err
		}
		return nil
	}
	return bus.Retry(fmt.Errorf("freeing the line of %s: %w", rc.Name, errConflict), time.Second)
}

// newer reports whether build b is newer than what the line built last: a higher update level, or the same
// level with a higher build number (an OS patch, a forced rebuild).
func newer(b *harborflowv1.Build, last *harborflowv1.RecipeState) bool {
	switch {
	case last.GetTag() == "" || b.GetUpdateLevel() > last.GetUpdateLevel():
		return true
	case b.GetUpdateLevel() == last.GetUpdateLevel():
		return b.GetBuild() > last.GetBuild()
	}
	return false
}

// errLineLost is the cause of a build's cancellation when another holder took its line over (this process
// stalled for longer than the lease).
var errLineLost = errors.New("another delivery took over the line: this build stopped")

// keepLine renews the trigger's lease on its line while it builds, every third of the lease, and returns the
// build's context, cancelled with errLineLost if the line is lost, and a function that stops renewing.
func (r *Rebuilder) keepLine(ctx context.Context, st state, rc recipe, t trigger) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(r.lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if lost, err := r.renew(ctx, st, rc, t); lost {
				cancel(errLineLost)
				return
			} else if err != nil {
				r.log.Warn("renewing the lease on the line", zap.String(logging.FieldRecipe, rc.Name), zap.Error(err))
			}
		}
	}()
	return ctx, func() {
		close(done)
		<-stopped
		cancel(nil)
	}
}

// renew extends the trigger's lease on its line; lost is true when another holder has it.
func (r *Rebuilder) renew(ctx context.Context, st state, rc recipe, t trigger) (lost bool, err error) {
	for range counterAttempts {
		rs, rev, err := st.line(ctx, rc.Name)
		if err != nil {
			return false, err
		}
		h := rs.GetBuilding()
		if h == nil || h.GetHolder() != t.holder || h.GetBaseDigest() != t.digest {
			return true, nil
		}
		next := proto.CloneOf(rs)
		next.Building.LeaseUntil = timestamppb.New(r.now().Add(r.lease))
		if err := st.putLine(ctx, next, rev); !errors.Is(err, errConflict) {
			return false, err
		}
	}
	return false, errConflict
}

// build runs the recipe's builder.
func (r *Rebuilder) build(ctx context.Context, rc recipe, t trigger, b *harborflowv1.Build) (registry.Written, string, error) {
	bl, ok := r.builders[rc.Builder]
	if !ok {
		return registry.Written{}, "", bus.Permanent(fmt.Errorf("unknown builder %q", rc.Builder))
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
		edit: registry.Edit{Labels: labels, Env: rc.Env, Platforms: rc.Platforms, BaseName: b.GetBaseName(), BaseDigest: t.digest},
	}
	if len(j.platforms) == 0 {
		j.platforms = t.platforms
	}
	if rc.Builder == config.BuilderRebase {
		prev, err := r.rebaseSource(ctx, rc)
		if err != nil {
			return registry.Written{}, "", err
		}
		j.image, j.oldBase = prev.image, prev.base
	}
	bctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	w, err := bl.build(bctx, j)
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) {
		// The recipe's own bound: building again would take as long.
		return w, "", bus.Permanent(fmt.Errorf("build timed out after %s (rebuilds[].timeout): %w", rc.Timeout, err))
	}
	return w, j.image, err
}

// failed records a build failure and frees the line. A failure that retrying cannot fix is kept in the build
// record and dead-letters the trigger; any other leaves the record (and its build number) to the redelivery.
func (r *Rebuilder) failed(ctx context.Context, st state, rc recipe, t trigger, b *harborflowv1.Build, rev uint64, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errLineLost) {
		err = fmt.Errorf("%w: %w", cause, err)
	}
	err = fault.Classify(err)
	if bus.IsPermanent(err) {
		b.State, b.Reason, b.Finished, b.LeaseUntil = StateFailed, err.Error(), timestamppb.New(r.now()), nil
		// Recorded even when the delivery was stopped (its context ended).
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := st.update(uctx, b, rev); uerr != nil {
			r.log.Warn("recording the build's failure", zap.String(logging.FieldRecipe, b.GetRecipe()), zap.Error(uerr))
		}
	}
	return r.abandon(ctx, st, rc, t, err)
}

// abandon frees the line after err and returns err (joined with a failure to free the line, which the lease
// then frees).
func (r *Rebuilder) abandon(ctx context.Context, st state, rc recipe, t trigger, err error) error {
	if rerr := r.release(ctx, st, rc, t, nil); rerr != nil {
		r.log.Warn("freeing the line after a failed build; its lease frees it", zap.String(logging.FieldRecipe, rc.Name), zap.Error(rerr))
	}
	return err
}

// RebuiltMessage is the image.rebuilt message of a build, with an id derived from recipe, base digest and tag, so
// that publishing it again stores it once.
func RebuiltMessage(out *harborflowv1.ImageRebuilt) (*bus.Message, error) {
	if out == nil {
		return nil, nil
	}
	m, err := bus.NewMessage(event.SubjectImageRebuilt, event.RebuiltID(out.GetRecipe(), out.GetBaseDigest(), out.GetTag()),
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
		out = append(out, platform.Format(p.GetOs(), p.GetArchitecture(), p.GetVariant()))
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
