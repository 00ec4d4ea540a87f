// Package watcher finds registry changes nobody sends webhooks for: it polls the repositories of `poll`
// sources (registry.wso2.com is a Harbor where customers cannot create webhook policies).
//
// It consumes nothing. Each cycle it lists a repository's tags, HEADs every tag matching the source's patterns,
// compares the digests of the tracked platforms with its baseline in the watcher-baselines KV bucket, and
// publishes registry.<source>.push — events of exactly the shape the receiver produces — for every tag that
// moved. A baseline is written only after its event is stored, so a crash re-sends rather than loses; a deleted
// tag keeps its baseline and sends nothing.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/mediatype"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Registry is what the watcher asks of registries (*registry.Client).
type Registry interface {
	// Tags lists every tag of repository (host/path), all pages.
	Tags(ctx context.Context, repository string) ([]string, error)
	// Resolve resolves ref (host/path:tag) with a HEAD request.
	Resolve(ctx context.Context, ref string) (registry.Descriptor, error)
	// Manifest reads the manifest at ref (host/path@digest): for an index, each platform's digest.
	Manifest(ctx context.Context, ref string) (*registry.Artifact, error)
}

// Publisher stores events: *bus.Bus.
type Publisher interface {
	Publish(ctx context.Context, m *bus.Message) (bus.Ack, error)
}

// Deps are the watcher's collaborators.
type Deps struct {
	Registry  Registry
	Bus       Publisher
	Baselines *bus.KV
	Log       *zap.Logger
	Metrics   prometheus.Registerer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Watcher polls every repository of the poll sources.
type Watcher struct {
	deps    Deps
	log     *zap.Logger
	now     func() time.Time
	repos   []*repo
	m       *metrics
	backoff time.Duration // the longest wait after failures
}

// repo is one polled repository of one source.
type repo struct {
	source    config.Source
	ref       string // host/path
	host      string
	path      string
	patterns  []*regexp.Regexp
	platforms []string
	failures  int
	missing   bool // the last tag list found no repository
}

// New builds a watcher for the poll sources of sources; it has nothing to do when there are none.
func New(sources []config.Source, deps Deps) (*Watcher, error) {
	if deps.Registry == nil || deps.Bus == nil || deps.Baselines == nil {
		return nil, errors.New("watcher: registry, bus and baselines are required")
	}
	w := &Watcher{deps: deps, log: deps.Log, now: deps.Now, backoff: 30 * time.Minute}
	if w.log == nil {
		w.log = zap.NewNop()
	}
	w.log = w.log.With(zap.String(logging.FieldStage, "watcher"))
	if w.now == nil {
		w.now = time.Now
	}
	reg := deps.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	w.m = newMetrics(reg)
	for _, s := range sources {
		if s.Kind != config.SourcePoll {
			continue
		}
		for _, pr := range s.Repositories {
			name, err := imageref.ParseRepository(pr.Repository)
			if err != nil {
				return nil, fmt.Errorf("watcher: source %q: %w", s.Name, err)
			}
			r := &repo{source: s, ref: name.Name(), host: name.Registry, path: name.Repository, platforms: slices.Clone(pr.Platforms)}
			for _, p := range pr.Tags {
				re, err := regexp.Compile(p)
				if err != nil {
					return nil, fmt.Errorf("watcher: source %q: tag pattern %q: %w", s.Name, p, err)
				}
				r.patterns = append(r.patterns, re)
			}
			w.repos = append(w.repos, r)
		}
	}
	return w, nil
}

// Run polls until ctx ends: every repository on its own schedule, the source's interval with ±10 % jitter, and
// after a failure an exponential back-off (capped at 30 minutes) so that a failing or rate-limiting registry
// is left alone while the others keep going.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range w.repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				wait := w.next(r, w.poll(ctx, r))
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// next is how long to wait after a cycle of r that ended with err.
func (w *Watcher) next(r *repo, err error) time.Duration {
	interval := r.source.Interval
	if err == nil {
		r.failures = 0
		w.m.backoff.WithLabelValues(r.source.Name, r.ref).Set(0)
		return jitter(interval)
	}
	r.failures++
	wait := min(interval<<min(r.failures-1, 16), w.backoff)
	if after, ok := registry.RetryAfter(err); ok && after > wait {
		wait = after
	}
	w.m.backoff.WithLabelValues(r.source.Name, r.ref).Set(wait.Seconds())
	return jitter(wait)
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// PollOnce runs one cycle over every repository, one after the other, and returns their errors: what a test or
// a one-shot run needs.
func (w *Watcher) PollOnce(ctx context.Context) error {
	var errs []error
	for _, r := range w.repos {
		errs = append(errs, w.poll(ctx, r))
	}
	return errors.Join(errs...)
}

// cycleTimeout bounds one cycle over a repository: the registry client sets no deadline of its own, and a
// registry that stops answering must not hold its repository's schedule for ever.
const cycleTimeout = 5 * time.Minute

// poll runs one cycle over r and returns its errors; a failing tag does not stop the others.
func (w *Watcher) poll(ctx context.Context, r *repo) error {
	ctx, cancel := context.WithTimeout(ctx, cycleTimeout)
	defer cancel()
	log := w.log.With(zap.String(logging.FieldSource, r.source.Name), zap.String(logging.FieldRepository, r.ref))
	tags, err := w.deps.Registry.Tags(ctx, r.ref)
	if errors.Is(err, registry.ErrNotFound) {
		// The repository does not exist yet (an empty registry, a product line not published yet; distribution
		// answers NAME_UNKNOWN): no tags, not a failure, so it keeps its interval and its first tag is seen
		// within one. Said once, not every cycle.
		if !r.missing {
			log.Info("repository not found; polling until its first tag", zap.Error(err))
		}
		r.missing = true
		w.m.polls.WithLabelValues(r.source.Name, "not_found").Inc()
		return nil
	}
	r.missing = false
	if err != nil {
		w.m.polls.WithLabelValues(r.source.Name, "error").Inc()
		log.Warn("listing tags failed; backing off", zap.Error(err))
		return fmt.Errorf("listing tags of %s: %w", r.ref, err)
	}
	var errs []error
	for _, tag := range tags {
		if !r.tracks(tag) {
			continue
		}
		if err := w.check(ctx, r, tag); err != nil {
			log.Warn("checking a tag failed", zap.String(logging.FieldTag, tag), zap.Error(err))
			errs = append(errs, err)
		}
	}
	result := "ok"
	if len(errs) > 0 {
		result = "error"
	}
	w.m.polls.WithLabelValues(r.source.Name, result).Inc()
	return errors.Join(errs...)
}

func (r *repo) tracks(tag string) bool {
	if len(r.patterns) == 0 {
		return true
	}
	for _, p := range r.patterns {
		if p.MatchString(tag) {
			return true
		}
	}
	return false
}

// check compares one tag with its baseline and publishes a push when it moved.
func (w *Watcher) check(ctx context.Context, r *repo, tag string) error {
	ref := r.ref + ":" + tag
	d, err := w.deps.Registry.Resolve(ctx, ref)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", ref, err)
	}
	key := event.Key(r.source.Name, r.ref, tag)
	old, err := w.baseline(ctx, key)
	if err != nil {
		return err
	}
	if old != nil && old.GetDigest() == d.Digest {
		return nil // nothing changed: one HEAD, no GET
	}
	next := &harborflowv1.WatchBaseline{Source: r.source.Name, Repository: r.ref, Tag: tag, Digest: d.Digest, UpdatedAt: timestamppb.New(w.now())}
	if mediatype.IsIndex(d.MediaType) && len(r.platforms) > 0 {
		idx, err := w.deps.Registry.Manifest(ctx, r.ref+"@"+d.Digest)
		if err != nil {
			return fmt.Errorf("reading the platforms of %s: %w", ref, err)
		}
		next.Platforms = map[string]string{}
		for _, p := range idx.Platforms {
			if slices.Contains(r.platforms, p.String()) {
				next.Platforms[p.String()] = p.Digest
			}
		}
	}
	switch {
	case old == nil && r.source.Initial == "baseline":
		// First sight, recorded silently.
	case old != nil && len(r.platforms) > 0 && samePlatforms(old, next):
		// The tag moved, but not for the platforms we follow (an index gained a platform): no update.
	default:
		if err := w.publish(ctx, r, tag, old.GetDigest(), d); err != nil {
			return err
		}
	}
	return w.store(ctx, key, next)
}

// samePlatforms reports whether every followed platform has the digest it had.
func samePlatforms(old, next *harborflowv1.WatchBaseline) bool {
	if len(next.GetPlatforms()) == 0 {
		return false
	}
	for p, dg := range next.GetPlatforms() {
		if old.GetPlatforms()[p] != dg {
			return false
		}
	}
	return true
}

// publish stores a registry.<source>.push for tag now at d (previously at prev).
func (w *Watcher) publish(ctx context.Context, r *repo, tag, prev string, d registry.Descriptor) error {
	now := w.now()
	project := imageref.Project(r.path)
	ev := &harborflowv1.RegistryEvent{
		Id:         event.PollID(r.source.Name, r.ref, tag, prev, d.Digest),
		Source:     r.source.Name,
		Kind:       event.KindPush,
		Type:       "TAG_MOVED",
		Registry:   r.host,
		Project:    project,
		Repository: r.path,
		Digest:     d.Digest,
		Tag:        tag,
		OccurredAt: timestamppb.New(now.Truncate(time.Second)),
		Format:     "poll",
		MediaType:  d.MediaType,
		ReceivedAt: timestamppb.New(now),
	}
	ev.CorrelationId = ev.Id
	m, err := bus.NewMessage(event.RegistrySubject(r.source.Name, event.KindPush), ev.Id, ev.CorrelationId, ev)
	if err != nil {
		return err
	}
	if _, err := w.deps.Bus.Publish(ctx, m); err != nil {
		return fmt.Errorf("publishing the push of %s:%s: %w", r.ref, tag, err)
	}
	w.m.events.WithLabelValues(r.source.Name).Inc()
	w.log.Info("tag moved", zap.String(logging.FieldSource, r.source.Name), zap.String(logging.FieldRepository, r.ref),
		zap.String(logging.FieldTag, tag), zap.String(logging.FieldDigest, d.Digest), zap.String("previous", prev))
	return nil
}

// baseline reads the baseline of key; nil when there is none. Fields a newer watcher wrote are passed over.
func (w *Watcher) baseline(ctx context.Context, key string) (*harborflowv1.WatchBaseline, error) {
	b := &harborflowv1.WatchBaseline{}
	_, err := w.deps.Baselines.Get(ctx, key, b)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err // it names the key and the bucket
	}
	return b, nil
}

func (w *Watcher) store(ctx context.Context, key string, b *harborflowv1.WatchBaseline) error {
	_, err := w.deps.Baselines.Put(ctx, key, b) // an error names the key and the bucket
	return err
}
