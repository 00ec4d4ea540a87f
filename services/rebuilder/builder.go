package rebuilder

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/registry"
)

// Buildah runs Dockerfile builds (*buildah.Builder).
type Buildah interface {
	Build(ctx context.Context, spec buildah.Spec) (*buildah.Result, error)
}

// job is one build: the recipe, the base pinned by digest, and what to set on the result.
type job struct {
	recipe    config.Rebuild
	base      string   // registry/repository@digest
	platforms []string // the recipe's, or else the base's
	edit      registry.Edit
	// image and oldBase: the derived image a rebase moves, and the base it is on now.
	image, oldBase string
}

// builder builds a job and pushes the result to the recipe's target, by digest only.
type builder interface {
	build(ctx context.Context, j job) (registry.Written, error)
}

// overlay adds the recipe's context directory as one layer on the base, registry-side.
type overlay struct {
	reg   Registry
	trees registry.TreeCache
}

func (o overlay) build(ctx context.Context, j job) (registry.Written, error) {
	return o.reg.Overlay(ctx, j.base, j.recipe.Target, registry.Layer{Dir: j.recipe.Context, Owner: j.recipe.Owner, Trees: o.trees}, j.edit)
}

// logTailLines is how many lines of a failed build's log go into its reason.
const logTailLines = 8

// dockerfile builds the recipe's Dockerfile with buildah (BASE_IMAGE=<base@digest>) and pushes the result.
type dockerfile struct {
	reg     Registry
	buildah Buildah
}

func (d dockerfile) build(ctx context.Context, j job) (registry.Written, error) {
	if d.buildah == nil {
		return registry.Written{}, bus.Permanent(errors.New("the dockerfile builder needs buildah, which is not installed here (apt-get install buildah)"))
	}
	res, err := d.buildah.Build(ctx, buildah.Spec{
		Context: j.recipe.Context, Dockerfile: j.recipe.Dockerfile, BuildArgs: map[string]string{"BASE_IMAGE": j.base},
		Platforms: j.platforms, Timeout: j.recipe.Timeout,
	})
	if be := (*buildah.BuildError)(nil); errors.As(err, &be) && len(be.Tail) > 0 {
		// The reason a person reads in the DLQ: what buildah said last.
		tail := be.Tail[max(len(be.Tail)-logTailLines, 0):]
		return registry.Written{}, fmt.Errorf("%w (build log tail: %s)", err, strings.Join(tail, " | "))
	}
	if err != nil {
		return registry.Written{}, err
	}
	defer func() { _ = res.Cleanup() }()
	w, err := d.reg.Push(ctx, res.Layout, j.recipe.Target, j.edit)
	if err != nil {
		return registry.Written{}, fmt.Errorf("pushing the build of %s: %w", j.recipe.Name, err)
	}
	return w, nil
}

// rebase moves the derived image from its old base to the new one, registry-side.
type rebase struct{ reg Registry }

func (rb rebase) build(ctx context.Context, j job) (registry.Written, error) {
	return rb.reg.Rebase(ctx, j.image, j.oldBase, j.base, j.recipe.Target, j.edit)
}

// rebaseSource is the image a rebase moves and the base it is on ("": the base its annotations name).
type rebaseSource struct{ image, base string }

// rebaseSource finds what a rebase recipe moves: the last image it built, on the base it was built from; or,
// before its first build, the configured image, on the bases its annotations name (each platform's own, or
// its index's: registry.Client.Rebase finds them).
func (r *Rebuilder) rebaseSource(ctx context.Context, rc recipe) (rebaseSource, error) {
	last, _, err := (state{kv: r.deps.State}).line(ctx, rc.Name)
	if err != nil {
		return rebaseSource{}, err
	}
	if last.GetTarget() != "" && last.GetBaseDigest() != "" {
		return rebaseSource{image: last.GetTarget(), base: rc.baseRepo + "@" + last.GetBaseDigest()}, nil
	}
	d, err := r.deps.Registry.Resolve(ctx, rc.Image)
	if err != nil {
		return rebaseSource{}, fmt.Errorf("reading the image to rebase: %w", err) // the registry's error names it
	}
	img, err := imageref.Parse(rc.Image)
	if err != nil {
		return rebaseSource{}, bus.Permanent(fmt.Errorf("rebuilds[].image: %w", err))
	}
	return rebaseSource{image: img.Name() + "@" + d.Digest}, nil
}
