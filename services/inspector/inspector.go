// Package inspector turns "something was pushed" into facts.
//
// It consumes registry.*.push (durable consumer "inspector") and publishes image.inspected — which image,
// which platforms, which labels, which update level, version and OS flavour — or image.rejected when an image
// under inspector.require_update_level carries no usable update level. The registry is the truth: a payload's
// tag may be a digest and never names the media type, so every fact comes from the registry itself.
//
// Accessories (signatures, attestations, SBOMs) are skipped. The N+1 pushes of a multi-arch image are one
// image: an inspected index records its children in the index-children KV bucket, and an untagged
// single-platform manifest waits (up to inspector.index_wait) for an index that covers it, whichever order the
// events arrive in. What was learned is kept per digest in the image-history KV bucket, so the same digest
// twice is one image.inspected, and a new tag on a known digest is published again without reading the
// registry.
//
// There is one image.inspected per digest and tag set. Tools that push by digest and then tag (the rebuilder,
// crane, regctl, buildah manifest push) cause an untagged push event and then a tagged one for the same digest,
// so an untagged push of a top-level artifact waits up to inspector.index_wait (for an image, the same wait as
// for its index) for the tag to reach the image history, and publishes nothing once it has, whichever event is
// handled first. An index pushed by digest is recorded at once, marked as awaiting its tag, so that its wait
// reads only the KV bucket. Only when no tag comes within the wait is the image published untagged; a tag that
// comes later is a new tag set, published once more.
package inspector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/fault"
	"github.com/harborflow/harborflow/pkg/glob"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Registry is what the inspector asks of registries (*registry.Client).
type Registry interface {
	Resolve(ctx context.Context, ref string) (registry.Descriptor, error)
	Inspect(ctx context.Context, ref string) (*registry.Artifact, error)
}

// Deps are the inspector's collaborators.
type Deps struct {
	Registry Registry
	// History and Children are the image-history and index-children KV buckets.
	History  *bus.KV
	Children *bus.KV
	Log      *zap.Logger
	// DuplicateWindow is JetStream's (nats.duplicate_window): within it a message published again under the
	// same id is stored once.
	DuplicateWindow time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Inspector is the inspector stage's handler.
type Inspector struct {
	cfg      config.Inspector
	required glob.Set
	deps     Deps
	log      *zap.Logger
	now      func() time.Time
}

var (
	// errWaitingForIndex is the retry of an untagged manifest that may yet be covered by an index, or tagged.
	errWaitingForIndex = errors.New("untagged single-platform manifest: waiting for an index that covers it or a tag")
	// errWaitingForTag is the retry of an untagged index that may yet be tagged.
	errWaitingForTag = errors.New("untagged index: waiting for the push that tags it")
)

// New builds the inspector.
func New(cfg config.Inspector, deps Deps) (*Inspector, error) {
	if deps.Registry == nil || deps.History == nil || deps.Children == nil {
		return nil, errors.New("inspector: registry and KV buckets are required")
	}
	required, err := glob.CompileAll(cfg.RequireUpdateLevel)
	if err != nil {
		return nil, fmt.Errorf("inspector.require_update_level: %w", err)
	}
	i := &Inspector{cfg: cfg, required: required, deps: deps, log: deps.Log, now: deps.Now}
	if i.log == nil {
		i.log = zap.NewNop()
	}
	i.log = i.log.With(zap.String(logging.FieldStage, event.StageInspector))
	if i.now == nil {
		i.now = time.Now
	}
	return i, nil
}

// ConsumerConfig is the inspector's durable consumer: every push of every source. It allows enough deliveries
// for an untagged push to wait IndexWait for its index or its tag, two seconds at a time.
func (i *Inspector) ConsumerConfig() bus.ConsumerConfig {
	return bus.ConsumerConfig{
		Stage:       event.StageInspector,
		Subjects:    []string{event.RegistrySubject("*", event.KindPush)},
		MaxDeliver:  int(i.cfg.IndexWait/indexPoll) + 5,
		Concurrency: i.cfg.Concurrency,
	}
}

// indexPoll is how often an untagged push looks for its index or its tag again.
const indexPoll = 2 * time.Second

// Handle inspects the image of one push event.
func (i *Inspector) Handle(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
	ev := &harborflowv1.RegistryEvent{}
	if err := m.Decode(ev); err != nil {
		return nil, bus.Permanent(err)
	}
	if ev.GetRegistry() == "" || ev.GetRepository() == "" || (ev.GetDigest() == "" && ev.GetTag() == "") {
		return nil, bus.Permanent(fmt.Errorf("push event %s names no registry, repository, digest or tag", ev.GetId()))
	}
	repo := ev.GetRegistry() + "/" + ev.GetRepository()
	digest := ev.GetDigest()
	if digest == "" {
		d, err := i.deps.Registry.Resolve(ctx, repo+":"+ev.GetTag())
		if err != nil {
			return nil, fault.Classify(err)
		}
		digest = d.Digest
	}
	key := event.Key(ev.GetRegistry(), ev.GetRepository(), digest)

	// A known digest: nothing to read from the registry.
	rec, rev, err := i.record(ctx, key)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		return i.known(ctx, ev, key, rec, rev)
	}

	art, err := i.deps.Registry.Inspect(ctx, repo+"@"+digest)
	if err != nil {
		return nil, fault.Classify(err)
	}
	switch art.Kind {
	case registry.KindAccessory:
		i.log.Debug("accessory skipped", zap.String(logging.FieldRepository, repo), zap.String(logging.FieldDigest, digest),
			zap.String("accessory", string(art.Accessory)))
		return nil, nil
	case registry.KindIndex:
		if err := i.recordChildren(ctx, ev, art); err != nil {
			return nil, err
		}
	case registry.KindImage:
		if ev.GetTag() == "" {
			covered, err := i.covered(ctx, ev, digest)
			if err != nil || covered {
				return nil, err
			}
			if wait := i.waitLeft(ev); wait > 0 {
				return nil, bus.Wait(errWaitingForIndex, min(wait, indexPoll))
			}
		}
	}

	rec = i.newRecord(ev, art)
	if ev.GetTag() == "" && art.Kind == registry.KindIndex {
		if wait := i.waitLeft(ev); wait > 0 {
			// Recorded now, like its children, so that the wait reads only the history; published by its tag
			// push, or by this event untagged when none comes within the wait (known).
			rec.AwaitingTag = true
			if err := i.create(ctx, key, rec); errors.Is(err, bus.ErrKeyExists) {
				return i.recordedMeanwhile(ctx, ev, key)
			} else if err != nil {
				return nil, err
			}
			return nil, bus.Wait(errWaitingForTag, min(wait, indexPoll))
		}
	}
	if err := i.create(ctx, key, rec); errors.Is(err, bus.ErrKeyExists) {
		return i.recordedMeanwhile(ctx, ev, key)
	} else if err != nil {
		return nil, err
	}
	return i.publish(ev, rec)
}

// recordedMeanwhile carries on from the record another delivery created while this one inspected the same
// digest (its other tag's push, or a replica): the digest is known now.
func (i *Inspector) recordedMeanwhile(ctx context.Context, ev *harborflowv1.RegistryEvent, key string) ([]*bus.Message, error) {
	rec, rev, err := i.record(ctx, key)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("the history record %s was created and is gone", key)
	}
	return i.known(ctx, ev, key, rec, rev)
}

// known handles a digest the history has. A new tag is recorded and published from the history, without a
// registry request. An untagged push of a record awaiting its tag waits for the tag, and publishes the record
// untagged when none came within the wait.
//
// Anything else is nothing new — but within the duplicate window its image.inspected is published again under
// the same id: the delivery that recorded it may have failed to publish it, and JetStream stores the copy only
// if the first never arrived. That id is derived from the digest and the event's tag, so this is safe only for
// an id that was published: a tag the record has, or no tag while the record has none. An untagged push of a
// tagged record publishes nothing: under its own id, the image would be stored twice, untagged and tagged.
func (i *Inspector) known(ctx context.Context, ev *harborflowv1.RegistryEvent, key string, rec *harborflowv1.ImageRecord, rev uint64) ([]*bus.Message, error) {
	tag := ev.GetTag()
	switch {
	case tag == "" && rec.GetAwaitingTag():
		if wait := i.waitLeft(ev); wait > 0 {
			return nil, bus.Wait(errWaitingForTag, min(wait, indexPoll))
		}
		// No tag within the wait: marked published, then published untagged. A tag push handled at the same
		// moment either updates the record first (this update fails, and the redelivery finds the tag) or
		// after (it publishes once more, as any later tag does).
		rec.AwaitingTag = false
		rec.LastSeen = timestamppb.New(i.now())
		if err := i.update(ctx, key, rec, rev); err != nil {
			return nil, fmt.Errorf("publishing %s untagged: %w", rec.GetDigest(), err)
		}
		return i.publish(ev, rec)
	case tag == "" && len(rec.GetTags()) > 0:
		return nil, nil
	case tag != "" && slices.Contains(rec.GetTags(), tag) && ev.GetOccurredAt().AsTime().After(rec.GetLastSeen().AsTime()):
		// A push of a tag this digest already had, made after the digest was last seen: the tag moved away
		// and came back (a rollback). Seen again, the digest is where the tag is now (what `harborflow
		// history` shows), and it is published again. A redelivered or duplicated event occurred before the
		// record was last written, and is handled below.
		rec.LastSeen = timestamppb.New(i.now())
		if err := i.update(ctx, key, rec, rev); err != nil {
			return nil, fmt.Errorf("recording tag %s back on %s: %w", tag, rec.GetDigest(), err)
		}
		return i.publish(ev, rec)
	case tag == "" || slices.Contains(rec.GetTags(), tag):
		if i.now().Sub(rec.GetLastSeen().AsTime()) < i.deps.DuplicateWindow {
			return i.publish(ev, rec)
		}
		return nil, nil
	}
	rec.Tags = append(rec.Tags, tag)
	rec.AwaitingTag = false
	rec.LastSeen = timestamppb.New(i.now())
	if rec.GetVersion() == "" {
		rec.Version, rec.Suffix = versionOf(tag)
	}
	if err := i.update(ctx, key, rec, rev); err != nil {
		return nil, fmt.Errorf("adding tag %s to the history of %s: %w", tag, rec.GetDigest(), err)
	}
	return i.publish(ev, rec)
}

// recordChildren notes every platform manifest of an index, so their own push events know they are covered.
func (i *Inspector) recordChildren(ctx context.Context, ev *harborflowv1.RegistryEvent, art *registry.Artifact) error {
	for _, p := range art.Platforms {
		c := &harborflowv1.IndexChild{Registry: ev.GetRegistry(), Repository: ev.GetRepository(), ChildDigest: p.Digest,
			IndexDigest: art.Digest, Seen: timestamppb.New(i.now())}
		if _, err := i.deps.Children.Put(ctx, event.Key(ev.GetRegistry(), ev.GetRepository(), p.Digest), c); err != nil {
			return fmt.Errorf("recording %s as a child of %s: %w", p.Digest, art.Digest, err)
		}
	}
	return nil
}

// covered reports whether an index that names digest as a platform manifest was inspected.
func (i *Inspector) covered(ctx context.Context, ev *harborflowv1.RegistryEvent, digest string) (bool, error) {
	_, err := i.deps.Children.GetBytes(ctx, event.Key(ev.GetRegistry(), ev.GetRepository(), digest))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up the index of %s: %w", digest, err)
	}
	return true, nil
}

// waitLeft is how much longer an untagged manifest of ev waits for its index.
func (i *Inspector) waitLeft(ev *harborflowv1.RegistryEvent) time.Duration {
	since := ev.GetReceivedAt()
	if since == nil {
		since = ev.GetOccurredAt()
	}
	if since == nil {
		return 0
	}
	return i.cfg.IndexWait - i.now().Sub(since.AsTime())
}

// newRecord builds the history record of a freshly inspected artifact.
func (i *Inspector) newRecord(ev *harborflowv1.RegistryEvent, art *registry.Artifact) *harborflowv1.ImageRecord {
	now := timestamppb.New(i.now())
	rec := &harborflowv1.ImageRecord{
		Registry:     ev.GetRegistry(),
		Repository:   ev.GetRepository(),
		Digest:       art.Digest,
		MediaType:    art.MediaType,
		ArtifactKind: string(art.Kind),
		FirstSeen:    now,
		LastSeen:     now,
	}
	if ev.GetTag() != "" {
		rec.Tags = []string{ev.GetTag()}
		rec.Version, rec.Suffix = versionOf(ev.GetTag())
	}
	for _, p := range art.Platforms {
		rec.Platforms = append(rec.Platforms, &harborflowv1.Platform{Os: p.OS, Architecture: p.Architecture, Variant: p.Variant,
			Digest: p.Digest, Labels: p.Labels})
	}
	rec.Labels = art.Labels
	if len(rec.Labels) == 0 && len(art.Platforms) > 0 {
		rec.Labels = art.Platforms[0].Labels
	}
	if level, ok := art.UpdateLevel(i.cfg.UpdateLevelLabel); ok {
		rec.UpdateLevel = &level
	}
	return rec
}

// versionOf takes the version and suffix from a tag; a tag that is not a version tag gives neither.
func versionOf(tag string) (version, suffix string) {
	t, err := imagetag.Parse(tag)
	if err != nil {
		return "", ""
	}
	return t.Version, t.Suffix
}

// publish turns a record into image.inspected, or image.rejected when an update level is required and missing.
func (i *Inspector) publish(ev *harborflowv1.RegistryEvent, rec *harborflowv1.ImageRecord) ([]*bus.Message, error) {
	name := rec.GetRegistry() + "/" + rec.GetRepository()
	if rec.UpdateLevel == nil && i.required.Match(name) {
		reason := i.rejection(name, rec)
		out := &harborflowv1.ImageRejected{Registry: rec.GetRegistry(), Repository: rec.GetRepository(), Digest: rec.GetDigest(),
			Tags: rec.GetTags(), Reason: reason, EventId: ev.GetId(), CorrelationId: ev.GetCorrelationId()}
		m, err := bus.NewMessage(event.SubjectImageRejected, event.RejectedID(name, rec.GetDigest(), ev.GetTag()), ev.GetCorrelationId(), out)
		if err != nil {
			return nil, bus.Permanent(err)
		}
		i.log.Info("image rejected", zap.String(logging.FieldRepository, name), zap.String(logging.FieldDigest, rec.GetDigest()), zap.String(logging.FieldReason, reason))
		return []*bus.Message{m}, nil
	}
	out := &harborflowv1.ImageInspected{
		Registry: rec.GetRegistry(), Repository: rec.GetRepository(), Digest: rec.GetDigest(), Tags: rec.GetTags(),
		MediaType: rec.GetMediaType(), Platforms: rec.GetPlatforms(), Labels: rec.GetLabels(), UpdateLevel: rec.UpdateLevel,
		Version: rec.GetVersion(), Suffix: rec.GetSuffix(), ArtifactKind: rec.GetArtifactKind(), EventId: ev.GetId(),
		CorrelationId: ev.GetCorrelationId(), InspectedAt: timestamppb.New(i.now()),
	}
	if ev.GetTag() != "" {
		// The event's own tag decides version and flavour: a digest tagged 4.2.0.15 and 4.2.0.15-rocky is one of each.
		out.Version, out.Suffix = versionOf(ev.GetTag())
	}
	m, err := bus.NewMessage(event.SubjectImageInspected, event.InspectedID(name, rec.GetDigest(), ev.GetTag()), ev.GetCorrelationId(), out)
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return []*bus.Message{m}, nil
}

func (i *Inspector) rejection(name string, rec *harborflowv1.ImageRecord) string {
	label := i.cfg.UpdateLevelLabel
	where := name + "@" + rec.GetDigest()
	values := map[string]bool{}
	for k, v := range rec.GetLabels() {
		if k == label {
			values[v] = true
		}
	}
	for _, p := range rec.GetPlatforms() {
		if v, ok := p.GetLabels()[label]; ok {
			values[v] = true
		}
	}
	switch {
	case len(values) == 0:
		return fmt.Sprintf("%s label not found on %s", label, where)
	case len(values) > 1:
		return fmt.Sprintf("%s label differs between the platforms of %s", label, where)
	case values[""]:
		return fmt.Sprintf("%s label is empty on %s (WSO2's pipeline writes an empty label when the update level is unknown)", label, where)
	default:
		for v := range values {
			return fmt.Sprintf("%s label %q on %s is not a whole number", label, v, where)
		}
	}
	return ""
}

// record reads the history of a digest; nil when there is none.
func (i *Inspector) record(ctx context.Context, key string) (*harborflowv1.ImageRecord, uint64, error) {
	rec := &harborflowv1.ImageRecord{}
	rev, err := i.deps.History.Get(ctx, key, rec)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err // it names the key and the bucket; one that does not decode is permanent
	}
	return rec, rev, nil
}

// update writes a changed history record over revision rev. When another replica changed it first, it fails,
// and the redelivery reads the record again.
func (i *Inspector) update(ctx context.Context, key string, rec *harborflowv1.ImageRecord, rev uint64) error {
	_, err := i.deps.History.Update(ctx, key, rec, rev)
	return err
}

// create writes a new history record; when another delivery wrote it first (bus.ErrKeyExists), theirs stands.
func (i *Inspector) create(ctx context.Context, key string, rec *harborflowv1.ImageRecord) error {
	if _, err := i.deps.History.Create(ctx, key, rec); err != nil {
		return fmt.Errorf("recording the history of %s: %w", rec.GetDigest(), err)
	}
	return nil
}
