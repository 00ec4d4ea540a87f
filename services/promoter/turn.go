package promoter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// DefaultTurnLease is Deps.TurnLease's default: how long a promotion holds its destination repository without
// renewing it (renewed every third of it while the copy runs).
const DefaultTurnLease = 15 * time.Second

// errTurnLost is the cause a copy is cancelled with when its holder could not renew its turn (another took
// it over after the lease ran out): retryable, the next attempt takes its turn again.
var errTurnLost = errors.New("lost the destination repository's turn")

// turnKey is the key of the turn of a destination repository.
func turnKey(registry, repository string) string { return event.Key("turn", registry, repository) }

// takeTurn waits for, and takes, the turn of the repository dst (its registry and repository path) for digest.
// It returns a context that is cancelled if the turn is lost, and release, which gives the turn back. Waiting
// is bounded by ctx. Leases use the wall clock, never the promoter's clock: they are between processes.
func (p *Promoter) takeTurn(ctx context.Context, registry, repository, digest string) (context.Context, func(), error) {
	key := turnKey(registry, repository)
	var id [8]byte
	_, _ = rand.Read(id[:])
	turn := &harborflowv1.RepositoryTurn{Holder: hex.EncodeToString(id[:]), Digest: digest}
	rev, err := p.waitTurn(ctx, key, turn)
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for the turn of %s/%s: %w", registry, repository, err)
	}
	held, cancel := context.WithCancelCause(ctx)
	// Renewals are not cut short by release: a renewal the server applied while its call was being cancelled
	// would leave rev stale, and the give-back's compare-and-set would fail, holding the turn for a lease.
	stop, renewed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(p.turnLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-held.Done():
				return
			case <-t.C:
			}
			turn.LeaseUntil = timestamppb.New(time.Now().Add(p.turnLease))
			uctx, done := context.WithTimeout(context.WithoutCancel(ctx), p.turnLease/3)
			next, err := p.deps.Promotions.Update(uctx, key, turn, rev)
			done()
			if err != nil {
				cancel(fmt.Errorf("%w: %w", errTurnLost, err))
				return
			}
			rev = next
		}
	}()
	release := func() {
		close(stop)
		<-renewed
		cancel(nil)
		// Best effort, and never someone else's: a turn not given back runs out with its lease.
		rctx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer done()
		_, _ = p.deps.Promotions.Update(rctx, key, &harborflowv1.RepositoryTurn{}, rev)
	}
	return held, release, nil
}

// waitTurn writes turn at key when no one holds it (the key is absent, or given back: no holder), or when its
// holder's lease ran out; meanwhile it waits for the key to change or the lease to end. It returns the revision
// written. The key is kept when the turn is given back, so that taking it is a read and a compare-and-set.
func (p *Promoter) waitTurn(ctx context.Context, key string, turn *harborflowv1.RepositoryTurn) (uint64, error) {
	for {
		cur := &harborflowv1.RepositoryTurn{}
		rev, err := p.deps.Promotions.Get(ctx, key, cur)
		turn.LeaseUntil = timestamppb.New(time.Now().Add(p.turnLease))
		switch {
		case errors.Is(err, bus.ErrKeyNotFound):
			rev, err := p.deps.Promotions.Create(ctx, key, turn)
			if errors.Is(err, bus.ErrKeyExists) {
				continue // taken meanwhile
			}
			return rev, err
		case err != nil:
			return 0, err
		}
		left := time.Until(cur.GetLeaseUntil().AsTime())
		if cur.GetHolder() == "" || left <= 0 {
			// Given back, or its holder died: take it, unless another did first.
			next, err := p.deps.Promotions.Update(ctx, key, turn, rev)
			if !errors.Is(err, bus.ErrRevisionMismatch) {
				return next, err
			}
			continue
		}
		if err := p.awaitChange(ctx, key, rev, left); err != nil {
			return 0, err
		}
	}
}

// awaitChange returns when key changes from revision rev, or after d, or with ctx's error.
func (p *Promoter) awaitChange(ctx context.Context, key string, rev uint64, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	w, err := p.deps.Promotions.Watch(wctx, key)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	// A change between the read and the watch: look again at once.
	if e, err := p.deps.Promotions.GetBytes(wctx, key); err != nil || e.Revision != rev {
		return ctx.Err()
	}
	select {
	case <-w.Updates():
	case <-wctx.Done():
	}
	return ctx.Err()
}
