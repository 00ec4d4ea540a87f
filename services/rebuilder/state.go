package rebuilder

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// States of a Build (Build.state).
const (
	StateClaimed    = "claimed"    // claimed by a delivery; a build number may have been taken
	StatePushed     = "pushed"     // in the registry by digest, not tagged yet
	StateBuilt      = "built"      // tagged and published
	StateFailed     = "failed"     // failed in a way retrying cannot fix
	StateSuperseded = "superseded" // a newer update level was built first: not tagged (superseded_by names it)
	StateSkipped    = "skipped"    // the same update level was built from another digest; on_digest_change is off
)

// counterAttempts bounds the compare-and-set rounds of taking a build number against other replicas.
const counterAttempts = 16

// errConflict is a write that lost to another replica's: the redelivery reads the state again.
var errConflict = errors.New("the rebuild state changed under this delivery")

// errClaimed is a build record another delivery created first.
var errClaimed = errors.New("another delivery claimed this build first")

// state is the rebuilds KV bucket. Keys:
//
//	build.<recipe>.<base digest>    Build
//	recipe.<recipe>                 RecipeState
//	counter.<recipe>.<version>      the last build number taken, in decimal
type state struct {
	kv *bus.KV
}

func buildKey(recipe, digest string) string    { return event.Key("build", recipe, digest) }
func recipeKey(recipe string) string           { return event.Key("recipe", recipe) }
func counterKey(recipe, version string) string { return event.Key("counter", recipe, version) }

// build reads the Build of recipe from base digest; nil when there is none.
func (s state) build(ctx context.Context, recipe, digest string) (*harborflowv1.Build, uint64, error) {
	b := &harborflowv1.Build{}
	rev, err := s.get(ctx, buildKey(recipe, digest), b)
	if err != nil || rev == 0 {
		return nil, 0, err
	}
	return b, rev, nil
}

// claim writes a fresh Build: created when there was none, or replacing the one at rev (a forced rebuild). A
// claim that loses to another delivery's is retried.
func (s state) claim(ctx context.Context, b *harborflowv1.Build, rev uint64, replace bool) (*harborflowv1.Build, uint64, error) {
	var err error
	key := buildKey(b.GetRecipe(), b.GetBaseDigest())
	if replace {
		rev, err = s.kv.Update(ctx, key, b, rev)
	} else {
		rev, err = s.kv.Create(ctx, key, b)
	}
	if !replace && errors.Is(err, bus.ErrKeyExists) {
		return nil, 0, errClaimed
	}
	if err != nil {
		return nil, 0, writeErr(fmt.Sprintf("claiming the build of %s from %s", b.GetRecipe(), b.GetBase()), err)
	}
	return b, rev, nil
}

// update writes b over the revision it was read at.
func (s state) update(ctx context.Context, b *harborflowv1.Build, rev uint64) (uint64, error) {
	rev, err := s.kv.Update(ctx, buildKey(b.GetRecipe(), b.GetBaseDigest()), b, rev)
	if err != nil {
		return 0, writeErr(fmt.Sprintf("recording the build of %s from %s", b.GetRecipe(), b.GetBase()), err)
	}
	return rev, nil
}

// next takes the next build number of recipe and version, atomically: two replicas never get the same one.
func (s state) next(ctx context.Context, recipe, version string) (int64, error) {
	key := counterKey(recipe, version)
	for range counterAttempts {
		e, err := s.kv.GetBytes(ctx, key)
		switch {
		case errors.Is(err, bus.ErrKeyNotFound):
			if _, err := s.kv.CreateBytes(ctx, key, []byte("1")); err == nil {
				return 1, nil
			} else if !errors.Is(err, bus.ErrKeyExists) {
				return 0, fmt.Errorf("creating the build counter of %s %s: %w", recipe, version, err)
			}
		case err != nil:
			return 0, fmt.Errorf("reading the build counter of %s %s: %w", recipe, version, err)
		default:
			n, err := strconv.ParseInt(string(e.Value), 10, 64)
			if err != nil {
				return 0, bus.Permanent(fmt.Errorf("build counter %s holds %q: %w", key, e.Value, err))
			}
			if _, err := s.kv.UpdateBytes(ctx, key, []byte(strconv.FormatInt(n+1, 10)), e.Revision); err == nil {
				return n + 1, nil
			}
		}
	}
	return 0, bus.Retry(fmt.Errorf("taking a build number of %s %s: %w", recipe, version, errConflict), time.Second)
}

// line reads a recipe's line: what it built last and which build holds it. A recipe follows one version line,
// so its builds are serialised on this one key. Before anything was built or held it is an empty RecipeState
// at revision 0.
func (s state) line(ctx context.Context, recipe string) (*harborflowv1.RecipeState, uint64, error) {
	rs := &harborflowv1.RecipeState{}
	rev, err := s.get(ctx, recipeKey(recipe), rs)
	if err != nil {
		return nil, 0, err
	}
	rs.Recipe = recipe
	return rs, rev, nil
}

// putLine writes a recipe's line over the revision it was read at (0: it did not exist). A lost
// compare-and-set is errConflict: read it again.
func (s state) putLine(ctx context.Context, rs *harborflowv1.RecipeState, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = s.kv.Create(ctx, recipeKey(rs.GetRecipe()), rs)
	} else {
		_, err = s.kv.Update(ctx, recipeKey(rs.GetRecipe()), rs, rev)
	}
	if errors.Is(err, bus.ErrRevisionMismatch) { // ErrKeyExists too
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("recording the line of %s: %w", rs.GetRecipe(), err)
	}
	return nil
}

// watchLine watches a recipe's line for changes.
func (s state) watchLine(ctx context.Context, recipe string) (*bus.KeyWatcher, error) {
	w, err := s.kv.Watch(ctx, recipeKey(recipe))
	if err != nil {
		return nil, fmt.Errorf("watching the line of %s: %w", recipe, err)
	}
	return w, nil
}

// writeErr is a failed write of the state: a lost compare-and-set is retried soon (the redelivery reads the
// state again), anything else (NATS unavailable) with the back-off.
func writeErr(what string, err error) error {
	if errors.Is(err, bus.ErrRevisionMismatch) {
		return bus.Retry(fmt.Errorf("%s: %w", what, errConflict), time.Second)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// get reads key into m and returns its revision, 0 when the key does not exist.
func (s state) get(ctx context.Context, key string, m proto.Message) (uint64, error) {
	rev, err := s.kv.Get(ctx, key, m)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return 0, nil
	}
	// An error names the key and the bucket; a value that does not decode is permanent.
	return rev, err
}
