package promoter

// The stage (issue 11, items 1, 2, 4).
//
// State. One PromotionState per chain and digest (bucket promotions, key promotion.<chain>.<digest>), written
// with compare-and-set: the stages reached, the last evaluation towards the next stage, approvals and the scan
// asked for. The newest ScanResult per registry and digest lives in bucket scans (key scan.<registry>.<digest>);
// an evaluation waiting on a platform's scan adds a line "<chain> <digest>" to the key
// wait.<registry>.<platform digest> in the promotions bucket, so that a scan event finds the promotions to
// evaluate again with one read.
//
// Loop protection. Before copying to stage N+1 the promoter writes N+1's StageEntry without an entry time (a
// copy under way), and sets the time once the copy and its tags are verified. The image.inspected our own copy
// causes finds N+1 already reached and changes nothing; a copy interrupted by a crash is resumed by the
// redelivery or the re-evaluation loop, which finds the entry without a time. The first stage's entry is
// written the same way when the chain's rolling tags are to be moved there.
//
// Re-evaluation. The stage's loop (stage.Tasks over Due) looks for states a soak, a scan timeout, an approval, a
// label, a signature, an attestation or an unfinished copy may have changed, and publishes a task.promoter for
// each (Due); the handler does the work, so that what it publishes is stored before its ack and a crash
// redelivers it. harborflow approve publishes one too.
//
// Turns. Copies into one repository hold its turn (key turn.<registry>.<repository>, a lease renewed while
// copying): a rolling tag's check and move are never interleaved with another promotion's (turn.go).
//
// Idempotent outputs. image.promoted's id is (chain, digest, from, to): an image enters a stage once.
// image.blocked's id is the verdict itself, and one is published only when the verdict differs from the one
// stored. A redelivered message (the previous attempt may have failed after its state was written but before
// its outputs were stored) publishes again what the state records, under the same ids, which JetStream stores
// once within its duplicate window.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/fault"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/signature"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Deps are the promoter's collaborators.
type Deps struct {
	// Registry reads and writes every registry of every chain.
	Registry *registry.Client
	// Harbors are the Harbor API clients by registry host (registries with harbor: true).
	Harbors map[string]*harbor.Client
	// Promotions and Scans are the promotions and scans KV buckets.
	Promotions *bus.KV
	Scans      *bus.KV
	Log        *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Verifiers are the public keys a signed gate verifies signatures with (signing.public_keys).
	Verifiers []*signature.Verifier
	// TurnLease is how long a copy holds its destination repository without renewing it (DefaultTurnLease
	// when zero).
	TurnLease time.Duration
}

// Promoter is the promoter stage's handler.
type Promoter struct {
	chains []chain
	deps   Deps
	copier *Copier
	log    *zap.Logger
	now    func() time.Time
	// turnLease is Deps.TurnLease or its default.
	turnLease time.Duration
}

type chain struct {
	cfg     config.Promotion
	stages  []imageref.Ref
	rolling []*imagetag.Template
}

// New builds the promoter of chains.
func New(chains []config.Promotion, deps Deps) (*Promoter, error) {
	if deps.Registry == nil || deps.Promotions == nil || deps.Scans == nil {
		return nil, errors.New("promoter: registry and KV buckets are required")
	}
	p := &Promoter{deps: deps, log: deps.Log, now: deps.Now, copier: &Copier{Registry: deps.Registry, Harbors: deps.Harbors}}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	p.log = p.log.With(zap.String(logging.FieldStage, event.StagePromoter))
	if p.now == nil {
		p.now = time.Now
	}
	if p.turnLease = deps.TurnLease; p.turnLease <= 0 {
		p.turnLease = DefaultTurnLease
	}
	for _, c := range chains {
		ch := chain{cfg: c}
		for _, st := range c.Stages {
			r, err := imageref.ParseRepository(st.Repository)
			if err != nil {
				return nil, fmt.Errorf("promotion %s: stage %s: %w", c.Name, st.Name, err)
			}
			ch.stages = append(ch.stages, r)
		}
		for _, s := range c.RollingTags {
			t, err := imagetag.ParseTemplate(s)
			if err != nil {
				return nil, fmt.Errorf("promotion %s: rolling tag %q: %w", c.Name, s, err)
			}
			ch.rolling = append(ch.rolling, t)
		}
		p.chains = append(p.chains, ch)
	}
	return p, nil
}

// ConsumerConfig is the promoter's durable consumer: images that enter a chain's stage, and scan results.
func (p *Promoter) ConsumerConfig() bus.ConsumerConfig {
	return bus.ConsumerConfig{
		Stage:   event.StagePromoter,
		Durable: event.StagePromoter,
		Subjects: []string{event.SubjectImageRebuilt, event.SubjectImageInspected,
			event.RegistrySubject("*", event.KindScan), event.TaskSubject(event.StagePromoter)},
		// A copy of a large image takes a while; the runner keeps the message in progress meanwhile.
		HandlerTimeout: 10 * time.Minute,
	}
}

// Handle handles one image.rebuilt, image.inspected, registry.*.scan or task.promoter.
func (p *Promoter) Handle(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
	redelivered := m.Deliveries > 1
	switch {
	case m.Subject == event.TaskSubject(event.StagePromoter):
		task := &harborflowv1.PromotionTask{}
		if err := m.Decode(task); err != nil {
			return nil, bus.Permanent(err)
		}
		ci := slices.IndexFunc(p.chains, func(c chain) bool { return c.cfg.Name == task.GetChain() })
		if ci < 0 {
			return nil, nil // a chain removed from the configuration
		}
		return p.reevaluate(ctx, &p.chains[ci], task.GetDigest(), m.CorrelationID(), redelivered)
	case strings.HasPrefix(m.Subject, "registry."):
		ev := &harborflowv1.RegistryEvent{}
		if err := m.Decode(ev); err != nil {
			return nil, bus.Permanent(err)
		}
		return p.scanned(ctx, ev, redelivered)
	case m.Subject == event.SubjectImageInspected:
		ii := &harborflowv1.ImageInspected{}
		if err := m.Decode(ii); err != nil {
			return nil, bus.Permanent(err)
		}
		if ii.GetArtifactKind() == string(registry.KindAccessory) {
			return nil, nil
		}
		var plats []Platform
		for _, pl := range ii.GetPlatforms() {
			plats = append(plats, Platform{Platform: platformName(pl), Digest: pl.GetDigest()})
		}
		at := ii.GetInspectedAt().AsTime()
		if ii.GetInspectedAt() == nil {
			at = m.Time
		}
		return p.entered(ctx, image{registry: ii.GetRegistry(), repository: ii.GetRepository(), digest: ii.GetDigest(),
			tags: ii.GetTags(), platforms: plats, at: at, correlation: ii.GetCorrelationId()}, redelivered)
	case m.Subject == event.SubjectImageRebuilt:
		rb := &harborflowv1.ImageRebuilt{}
		if err := m.Decode(rb); err != nil {
			return nil, bus.Permanent(err)
		}
		r, err := imageref.ParseRepository(rb.GetTarget())
		if err != nil {
			return nil, bus.Permanent(fmt.Errorf("image.rebuilt target %q: %w", rb.GetTarget(), err))
		}
		var tags []string
		if rb.GetTag() != "" {
			tags = []string{rb.GetTag()}
		}
		return p.entered(ctx, image{registry: r.Registry, repository: r.Repository, digest: rb.GetDigest(), tags: tags,
			at: m.Time, correlation: rb.GetCorrelationId()}, redelivered)
	}
	return nil, bus.Permanent(fmt.Errorf("promoter: unexpected subject %s", m.Subject))
}

// image is an image that entered a repository (image.rebuilt or image.inspected).
type image struct {
	registry, repository, digest string
	tags                         []string
	// platforms are known from image.inspected; nil: read from the registry when needed.
	platforms   []Platform
	at          time.Time
	correlation string
}

func platformName(p *harborflowv1.Platform) string {
	s := p.GetOs() + "/" + p.GetArchitecture()
	if p.GetVariant() != "" {
		s += "/" + p.GetVariant()
	}
	return s
}

// stateKey is the key of a chain's state of digest.
func stateKey(chain, digest string) string { return event.Key("promotion", chain, digest) }

// waitKey is the key that tells a scan of platform in registry which promotions wait on it: its value is a
// line "<chain> <digest>" per promotion.
func waitKey(registry, platform string) string { return event.Key("wait", registry, platform) }

// waitLine is a promotion's line in a wait key.
func waitLine(chain, digest string) string { return chain + " " + digest + "\n" }

// entered records an image entering a stage of every chain that has its repository, and evaluates it towards
// the next stage.
//
// An image without a tag does not enter: there is nothing to promote it under, and a pushed image's tag, when
// it comes, is inspected again with the tag. A build whose tag never comes (a crashed rebuild superseded by a
// newer one) stays out of every chain.
func (p *Promoter) entered(ctx context.Context, img image, redelivered bool) ([]*bus.Message, error) {
	if img.digest == "" || len(img.tags) == 0 {
		return nil, nil
	}
	name := img.registry + "/" + img.repository
	var out []*bus.Message
	for ci := range p.chains {
		ch := &p.chains[ci]
		n := slices.IndexFunc(ch.stages, func(r imageref.Ref) bool { return r.Name() == name })
		if n < 0 {
			continue
		}
		msgs, err := p.enterChain(ctx, ch, n, img, redelivered)
		out = append(out, msgs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (p *Promoter) enterChain(ctx context.Context, ch *chain, n int, img image, redelivered bool) ([]*bus.Message, error) {
	key := stateKey(ch.cfg.Name, img.digest)
	st, rev, err := p.state(ctx, key)
	if err != nil {
		return nil, err
	}
	stageName := ch.cfg.Stages[n].Name
	if st == nil {
		if n != 0 {
			// Pushed into a later stage by someone else, never seen in the first: it enters the chain there.
			p.log.Info("image entered a later stage of a chain first", zap.String(logging.FieldRepository, ch.stages[n].Name()),
				zap.String(logging.FieldDigest, img.digest), zap.String(logging.FieldChain, ch.cfg.Name))
		}
		st = &harborflowv1.PromotionState{Chain: ch.cfg.Name, Digest: img.digest, Tags: uniqueFirst(img.tags),
			Reached: []*harborflowv1.StageEntry{{Stage: stageName, Repository: ch.stages[n].Name(),
				Entered: timestamppb.New(img.at), Tags: img.tags}}}
		if n == 0 && ch.rollsFirst(st.GetTags()) {
			// The rolling tags move in the first stage too: the entry gets its time once they have, as a
			// promotion's does once its copy is done (finishCopy), so that a crash in between is resumed.
			st.Reached[0].Entered = nil
		}
		rev, err = p.deps.Promotions.Create(ctx, key, st)
		if err != nil {
			return nil, fmt.Errorf("recording %s entering %s of %s: %w", img.digest, stageName, ch.cfg.Name, err)
		}
		return p.evaluate(ctx, ch, st, rev, img.platforms, img.correlation)
	}
	if i := slices.IndexFunc(st.GetReached(), func(e *harborflowv1.StageEntry) bool { return e.GetStage() == stageName }); i >= 0 {
		// Our own copy (its entry is written before the copy), or the same image again: nothing starts.
		// A redelivery publishes again what the state records; a state never evaluated, or whose
		// evaluation is due, is evaluated (a crash between recording and evaluating).
		var out []*bus.Message
		if redelivered {
			out = p.republish(ch, st, img.correlation)
		}
		// A redelivery also finishes a copy its first delivery left under way (the process died).
		if st.GetVerdict() == "" || due(st, p.now()) || (redelivered && copying(st)) {
			msgs, err := p.evaluate(ctx, ch, st, rev, img.platforms, img.correlation)
			out = append(out, msgs...)
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
	// A stage the promoter did not carry it to (pushed there directly): recorded, and evaluated from the
	// furthest stage reached.
	st.Reached = append(st.Reached, &harborflowv1.StageEntry{Stage: stageName, Repository: ch.stages[n].Name(),
		Entered: timestamppb.New(img.at), Tags: img.tags})
	slices.SortStableFunc(st.Reached, func(a, b *harborflowv1.StageEntry) int {
		return ch.stageIndex(a.GetStage()) - ch.stageIndex(b.GetStage())
	})
	if len(st.Tags) == 0 {
		st.Tags = uniqueFirst(img.tags)
	}
	rev, err = p.deps.Promotions.Update(ctx, key, st, rev)
	if err != nil {
		return nil, fmt.Errorf("recording %s entering %s of %s: %w", img.digest, stageName, ch.cfg.Name, err)
	}
	return p.evaluate(ctx, ch, st, rev, img.platforms, img.correlation)
}

func (ch *chain) stageIndex(name string) int {
	return slices.IndexFunc(ch.cfg.Stages, func(s config.PromotionStage) bool { return s.Name == name })
}

// due reports whether the state's next evaluation has come.
func due(st *harborflowv1.PromotionState, now time.Time) bool {
	next := st.GetNextEvaluation()
	return next != nil && !next.AsTime().After(now)
}

// uniqueFirst orders tags with the image's unique tag first: the first fixed version tag, else the first tag.
func uniqueFirst(tags []string) []string {
	out := slices.Clone(tags)
	i := slices.IndexFunc(out, func(s string) bool {
		t, err := imagetag.Parse(s)
		return err == nil && !t.Moving()
	})
	if i > 0 {
		out[0], out[i] = out[i], out[0]
	}
	return out
}

// scanned records a scan result and evaluates again the promotions waiting on its digest.
func (p *Promoter) scanned(ctx context.Context, ev *harborflowv1.RegistryEvent, redelivered bool) ([]*bus.Message, error) {
	if ev.GetDigest() == "" || ev.GetRegistry() == "" {
		return nil, nil
	}
	if ev.GetScan().GetScanType() != "" && ev.GetScan().GetScanType() != "vulnerability" {
		return nil, nil // an SBOM generation says nothing of vulnerabilities
	}
	res := &harborflowv1.ScanResult{Registry: ev.GetRegistry(), Digest: ev.GetDigest(), Status: scanStatus(ev),
		Severity: ev.GetScan().GetSeverity(), At: ev.GetScan().GetEndTime(), ReportId: ev.GetScan().GetReportId()}
	if res.At == nil || res.At.AsTime().IsZero() || res.At.AsTime().Unix() <= 0 {
		res.At = ev.GetOccurredAt()
	}
	if res.Status != ScanSuccess {
		res.Severity = ""
	}
	key := event.Key("scan", ev.GetRegistry(), ev.GetDigest())
	// Usually the digest's first scan: create it; else the newest result wins.
	if _, err := p.deps.Scans.Create(ctx, key, res); errors.Is(err, bus.ErrKeyExists) {
		old := &harborflowv1.ScanResult{}
		rev, err := p.deps.Scans.Get(ctx, key, old)
		switch {
		case err != nil:
			return nil, err
		case old.GetAt().AsTime().After(res.GetAt().AsTime()):
			// An older result never replaces a newer one; nothing waits on it.
			if !redelivered {
				return nil, nil
			}
		default:
			if _, err := p.deps.Scans.Update(ctx, key, res, rev); err != nil {
				// Another result of the digest came in between: the event is handled again, and the
				// newest wins.
				return nil, fmt.Errorf("recording the scan of %s: %w", ev.GetDigest(), err)
			}
		}
	} else if err != nil {
		return nil, fmt.Errorf("recording the scan of %s: %w", ev.GetDigest(), err)
	}
	waits, err := p.deps.Promotions.GetBytes(ctx, waitKey(ev.GetRegistry(), ev.GetDigest()))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*bus.Message
	for line := range strings.Lines(string(waits.Value)) {
		chainName, digest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		ci := slices.IndexFunc(p.chains, func(c chain) bool { return c.cfg.Name == chainName })
		if ci < 0 {
			continue
		}
		msgs, err := p.reevaluate(ctx, &p.chains[ci], digest, ev.GetCorrelationId(), redelivered)
		out = append(out, msgs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// scanStatus is the status of a scan event: the summary's, else from Harbor's event type.
func scanStatus(ev *harborflowv1.RegistryEvent) string {
	switch ev.GetType() {
	case "SCANNING_FAILED":
		return ScanError
	case "SCANNING_STOPPED":
		return ScanStopped
	}
	if s := ev.GetScan().GetStatus(); s != "" {
		return s
	}
	return ScanSuccess
}

// reevaluate reads the state of digest in ch and evaluates it again; a redelivery first publishes again what
// the state records (the previous attempt may have written it and failed before its outputs were stored).
func (p *Promoter) reevaluate(ctx context.Context, ch *chain, digest, correlation string, redelivered bool) ([]*bus.Message, error) {
	st, rev, err := p.state(ctx, stateKey(ch.cfg.Name, digest))
	if err != nil || st == nil {
		return nil, err
	}
	var out []*bus.Message
	if redelivered {
		out = p.republish(ch, st, correlation)
	}
	msgs, err := p.evaluate(ctx, ch, st, rev, nil, correlation)
	return append(out, msgs...), err // what a failing evaluation recorded is published all the same
}

// state reads a promotion state; nil when there is none.
func (p *Promoter) state(ctx context.Context, key string) (*harborflowv1.PromotionState, uint64, error) {
	st := &harborflowv1.PromotionState{}
	rev, err := p.deps.Promotions.Get(ctx, key, st)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return st, rev, nil
}

// Verdict of a state that reached the last stage of its chain.
const verdictDone = "done"

// evaluate evaluates st towards its next stage and acts on the verdict: a pass copies the image there and goes
// on towards the stage after it, in the same call. platforms are the platforms of the digest when the event
// named them.
func (p *Promoter) evaluate(ctx context.Context, ch *chain, st *harborflowv1.PromotionState, rev uint64, platforms []Platform, correlation string) ([]*bus.Message, error) {
	key := stateKey(ch.cfg.Name, st.GetDigest())
	var out []*bus.Message
	conflicts := 0
	// lost reports whether err is a compare-and-set lost to another writer (a replica, an approval) and, if so,
	// reads the state again: the evaluation goes on from what is stored, keeping what it has to publish.
	lost := func(err error) (bool, error) {
		if !errors.Is(err, bus.ErrRevisionMismatch) || conflicts >= maxConflicts {
			return false, err
		}
		conflicts++
		st.Reset()
		if rev, err = p.deps.Promotions.Get(ctx, key, st); err != nil {
			return false, fmt.Errorf("reading %s again: %w", key, err)
		}
		platforms = nil
		return true, nil
	}
	for {
		reached := st.GetReached()
		if len(reached) == 0 {
			return out, nil
		}
		last := reached[len(reached)-1]
		n := ch.stageIndex(last.GetStage())
		if n < 0 {
			return out, nil // a stage removed from the configuration
		}
		if last.GetEntered() == nil {
			// A copy under way (or interrupted): finish it.
			msgs, err := p.finishCopy(ctx, ch, st, &rev, n, correlation)
			if again, err := lost(err); again {
				continue
			} else if err != nil {
				return out, err
			}
			out = append(out, msgs...)
			if st.GetVerdict() == string(Blocked) {
				return out, nil
			}
			continue
		}
		if n == len(ch.stages)-1 {
			if st.GetVerdict() != verdictDone {
				// Entered by hand (finishCopy records a promotion into the last stage as done).
				st.Verdict, st.NextEvaluation = verdictDone, nil
				if _, err := p.deps.Promotions.Update(ctx, key, st, rev); err != nil {
					if again, err := lost(err); again {
						continue
					} else {
						return out, fmt.Errorf("recording %s done in %s: %w", st.GetDigest(), ch.cfg.Name, err)
					}
				}
			}
			return out, nil
		}
		from, to := ch.stages[n], ch.stages[n+1]
		target := Target{Chain: ch.cfg.Name, Stage: ch.cfg.Stages[n+1].Name, From: ch.cfg.Stages[n].Name,
			Gates: ch.cfg.Stages[n+1].Gates, ScanTimeout: ch.cfg.ScanTimeout}
		f, err := p.facts(ctx, from, st, last, target.Gates, platforms)
		if err != nil {
			return out, err
		}
		platforms = nil // they were of this stage's event
		e := Evaluate(target, f)
		if e.RequestScan {
			if hc := p.deps.Harbors[from.Registry]; hc != nil {
				project, repo := splitRepository(from.Repository)
				if err := hc.ScanArtifact(ctx, project, repo, st.GetDigest()); err != nil && !errors.Is(err, harbor.ErrConflict) {
					return out, fault.Classify(fmt.Errorf("asking Harbor to scan %s@%s: %w", from.Name(), st.GetDigest(), err))
				}
				st.ScanRequestedAt = timestamppb.New(f.Now)
				p.log.Info("scan requested", zap.String(logging.FieldRepository, from.Name()), zap.String(logging.FieldDigest, st.GetDigest()))
			}
		}
		previous := gatesFingerprint(st.GetGates(), st.GetVerdict())
		st.Gates, st.Verdict, st.EvaluatedAt = gatesProto(e.Gates), string(e.Verdict), timestamppb.New(f.Now)
		st.NextEvaluation = nil
		if !e.Next.IsZero() {
			st.NextEvaluation = timestamppb.New(e.Next)
		}
		if e.Verdict != Passed {
			if err := p.noteWaits(ctx, ch, st, from, f); err != nil {
				return out, err
			}
			next, err := p.deps.Promotions.Update(ctx, key, st, rev)
			if again, err := lost(err); again {
				continue
			} else if err != nil {
				return out, fmt.Errorf("recording the evaluation of %s towards %s: %w", st.GetDigest(), target.Stage, err)
			}
			rev = next
			if e.Verdict == Blocked && gatesFingerprint(st.GetGates(), st.GetVerdict()) != previous {
				m, err := p.blocked(ch, st, n, correlation)
				if err != nil {
					return out, err
				}
				out = append(out, m)
				p.log.Info("promotion blocked", zap.String(logging.FieldChain, ch.cfg.Name), zap.String(logging.FieldDigest, st.GetDigest()),
					zap.String(logging.FieldStageTo, target.Stage), zap.String(logging.FieldReason, blockedReason(e.Gates)))
			}
			return out, nil
		}
		// Passed: the target's entry, without a time, marks the copy under way before anything is copied.
		st.Reached = append(st.Reached, &harborflowv1.StageEntry{Stage: target.Stage, Repository: to.Name()})
		st.ScanRequestedAt = nil
		next, err := p.deps.Promotions.Update(ctx, key, st, rev)
		if again, err := lost(err); again {
			continue
		} else if err != nil {
			return out, fmt.Errorf("recording the promotion of %s to %s: %w", st.GetDigest(), target.Stage, err)
		}
		rev = next
	}
}

// maxConflicts bounds how often one evaluation reads its state again after losing a compare-and-set; beyond
// it, the message is retried later.
const maxConflicts = 10

// rollsFirst reports whether an image entering the first stage with tags (its unique tag first) has rolling
// tags to move there.
func (ch *chain) rollsFirst(tags []string) bool {
	if len(tags) == 0 {
		return false
	}
	rolling, err := ch.render(tags[0])
	return err == nil && len(rolling) > 0
}

// finishCopy copies the image into stage n (whose entry has no time yet), records the entry and returns
// image.promoted; a tag refused by an immutable rule blocks instead. In the first stage (n = 0) nothing is
// copied: its unique tag is checked and its rolling tags are moved, nothing is published, and a refused
// rolling tag is logged and left out of the entry's tags without blocking the promotion.
func (p *Promoter) finishCopy(ctx context.Context, ch *chain, st *harborflowv1.PromotionState, rev *uint64, n int, correlation string) ([]*bus.Message, error) {
	key := stateKey(ch.cfg.Name, st.GetDigest())
	from, to := ch.stages[max(n-1, 0)], ch.stages[n]
	tags := st.GetTags()
	if len(tags) == 0 {
		return nil, bus.Permanent(fmt.Errorf("promotion %s of %s: the image has no tag to promote under", ch.cfg.Name, st.GetDigest()))
	}
	rolling, err := ch.render(tags[0])
	if err != nil {
		return nil, bus.Permanent(err)
	}
	// Promotions into one repository take turns: a rolling tag's check and move are never interleaved with
	// another promotion's, so a newer image's tag is never moved back to an older one.
	held, release, err := p.takeTurn(ctx, to.Registry, to.Repository, st.GetDigest())
	if err != nil {
		return nil, err
	}
	res, err := p.copier.Copy(held, CopyRequest{From: Location{Registry: from.Registry, Repository: from.Repository},
		To: Location{Registry: to.Registry, Repository: to.Repository}, Digest: st.GetDigest(), Tag: tags[0], Rolling: rolling})
	release()
	if cause := context.Cause(held); err != nil && errors.Is(cause, errTurnLost) {
		err = cause
	}
	switch {
	case errors.Is(err, ErrVerify), errors.Is(err, errTurnLost):
		// Someone moved a tag meanwhile, or another took the turn: the next attempt looks again.
		return nil, fmt.Errorf("copying %s to %s: %w", st.GetDigest(), to.Name(), err)
	case err != nil:
		return nil, fault.Classify(fmt.Errorf("copying %s to %s: %w", st.GetDigest(), to.Name(), err))
	}
	if res.Attestation.Outcome == TagRefused {
		p.log.Warn("the attestation at the destination was kept", zap.String(logging.FieldChain, ch.cfg.Name),
			zap.String(logging.FieldDigest, st.GetDigest()), zap.String(logging.FieldRepository, to.Name()),
			zap.String(logging.FieldTag, res.Attestation.Tag), zap.String(logging.FieldReason, res.Attestation.Reason))
	}
	entry := st.Reached[len(st.Reached)-1]
	if n == 0 {
		entry.Entered, entry.Tags = timestamppb.New(p.now()), res.Pointing()
		if *rev, err = p.deps.Promotions.Update(ctx, key, st, *rev); err != nil {
			return nil, fmt.Errorf("recording %s entering %s: %w", st.GetDigest(), to.Name(), err)
		}
		log := p.log.Info
		if res.Blocked() != "" {
			log = p.log.Warn
		}
		log("rolling tags moved in the first stage", zap.String(logging.FieldChain, ch.cfg.Name), zap.String(logging.FieldDigest, st.GetDigest()),
			zap.String(logging.FieldRepository, to.Name()), zap.Stringers(logging.FieldTags, res.Tags))
		return nil, nil
	}
	if reason := res.Blocked(); reason != "" {
		st.Reached = st.Reached[:len(st.Reached)-1]
		previous := gatesFingerprint(st.GetGates(), st.GetVerdict())
		st.Gates = append(st.Gates, &harborflowv1.Gate{Name: "tags", Verdict: string(Blocked), Reason: reason,
			Unblock: "remove or change the immutable-tag rule of " + to.Project() + ", then evaluate again"})
		st.Verdict, st.NextEvaluation = string(Blocked), nil
		var err error
		if *rev, err = p.deps.Promotions.Update(ctx, key, st, *rev); err != nil {
			return nil, fmt.Errorf("recording the refused copy of %s to %s: %w", st.GetDigest(), to.Name(), err)
		}
		if gatesFingerprint(st.GetGates(), st.GetVerdict()) == previous {
			return nil, nil
		}
		m, err := p.blocked(ch, st, n-1, correlation)
		if err != nil {
			return nil, err
		}
		return []*bus.Message{m}, nil
	}
	entry.Entered, entry.Tags, entry.Gates, entry.Promoted = timestamppb.New(p.now()), res.Pointing(), st.GetGates(), true
	gates := st.GetGates()
	st.Gates, st.Verdict, st.NextEvaluation = nil, "", nil
	if n == len(ch.stages)-1 {
		st.Verdict = verdictDone // in the same write: nothing after it can lose image.promoted
	}
	if *rev, err = p.deps.Promotions.Update(ctx, key, st, *rev); err != nil {
		return nil, fmt.Errorf("recording %s entering %s: %w", st.GetDigest(), to.Name(), err)
	}
	p.log.Info("image promoted", zap.String(logging.FieldChain, ch.cfg.Name), zap.String(logging.FieldDigest, st.GetDigest()),
		zap.String(logging.FieldRepository, to.Name()), zap.Strings(logging.FieldTags, entry.Tags))
	m, err := bus.NewMessage(event.SubjectImagePromoted, event.PromotedID(ch.cfg.Name, st.GetDigest(), ch.cfg.Stages[n-1].Name, entry.GetStage()), correlation,
		&harborflowv1.ImagePromoted{Chain: ch.cfg.Name, FromStage: ch.cfg.Stages[n-1].Name, ToStage: entry.GetStage(), Digest: st.GetDigest(),
			Tags: entry.GetTags(), Gates: gates, CorrelationId: correlation})
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return []*bus.Message{m}, nil
}

// render renders the chain's rolling tags over the unique tag; one that does not apply to it is left out.
func (ch *chain) render(unique string) ([]string, error) {
	t, err := imagetag.Parse(unique)
	if err != nil {
		// Not a version tag: only the templates that need no version (latest) apply.
		t = imagetag.Tag{Raw: unique}
	}
	var out []string
	for _, tt := range ch.rolling {
		s, err := tt.Execute(t)
		if err != nil || s == "" || s == unique || slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// republish returns image.promoted for every stage the state records as entered by promotion (Promoted), and
// image.blocked for a blocked verdict: the same ids as when they were first published.
func (p *Promoter) republish(ch *chain, st *harborflowv1.PromotionState, correlation string) []*bus.Message {
	var out []*bus.Message
	for i, e := range st.GetReached() {
		if i == 0 || e.GetEntered() == nil || !e.GetPromoted() {
			continue // pushed into the stage, not promoted: nothing to announce
		}
		from := st.GetReached()[i-1].GetStage()
		m, err := bus.NewMessage(event.SubjectImagePromoted, event.PromotedID(ch.cfg.Name, st.GetDigest(), from, e.GetStage()), correlation,
			&harborflowv1.ImagePromoted{Chain: ch.cfg.Name, FromStage: from, ToStage: e.GetStage(), Digest: st.GetDigest(), Tags: e.GetTags(),
				Gates: e.GetGates(), CorrelationId: correlation})
		if err == nil {
			out = append(out, m)
		}
	}
	if st.GetVerdict() == string(Blocked) {
		if n := ch.stageIndex(st.GetReached()[len(st.GetReached())-1].GetStage()); n >= 0 && n < len(ch.stages)-1 {
			if m, err := p.blocked(ch, st, n, correlation); err == nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// blocked is the image.blocked of st's verdict towards stage n+1.
func (p *Promoter) blocked(ch *chain, st *harborflowv1.PromotionState, n int, correlation string) (*bus.Message, error) {
	from, to := ch.cfg.Stages[n].Name, ch.cfg.Stages[n+1].Name
	id := event.BlockedID(ch.cfg.Name, st.GetDigest(), from, to, gatesFingerprint(st.GetGates(), st.GetVerdict()))
	m, err := bus.NewMessage(event.SubjectImageBlocked, id, correlation, &harborflowv1.ImageBlocked{Chain: ch.cfg.Name, FromStage: from,
		ToStage: to, Digest: st.GetDigest(), Tags: st.GetTags(), Gates: st.GetGates(), CorrelationId: correlation})
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return m, nil
}

// gatesFingerprint is a verdict as text: each gate's name, verdict and reason.
func gatesFingerprint(gates []*harborflowv1.Gate, verdict string) string {
	var b strings.Builder
	b.WriteString(verdict)
	for _, g := range gates {
		fmt.Fprintf(&b, "\n%s\t%s\t%s", g.GetName(), g.GetVerdict(), g.GetReason())
	}
	return b.String()
}

func blockedReason(gates []GateResult) string {
	var out []string
	for _, g := range gates {
		if g.Verdict == Blocked {
			out = append(out, g.Name+": "+g.Reason)
		}
	}
	return strings.Join(out, "; ")
}

func gatesProto(gates []GateResult) []*harborflowv1.Gate {
	out := make([]*harborflowv1.Gate, len(gates))
	for i, g := range gates {
		out[i] = &harborflowv1.Gate{Name: g.Name, Passed: g.Verdict == Passed, Reason: g.Reason, Verdict: string(g.Verdict), Unblock: g.Unblock}
	}
	return out
}

// noteWaits leaves a wait key per platform digest of a promotion whose scan gate has not passed, so that a
// scan event of that digest evaluates it again.
func (p *Promoter) noteWaits(ctx context.Context, ch *chain, st *harborflowv1.PromotionState, from imageref.Ref, f Facts) error {
	i := slices.IndexFunc(st.GetGates(), func(g *harborflowv1.Gate) bool { return g.GetName() == "max_severity" })
	if i < 0 || st.GetGates()[i].GetPassed() {
		return nil
	}
	line := waitLine(ch.cfg.Name, st.GetDigest())
	for _, pl := range f.Platforms {
		if err := p.noteWait(ctx, waitKey(from.Registry, pl.Digest), line); err != nil {
			return fmt.Errorf("noting that %s waits on the scan of %s: %w", st.GetDigest(), pl.Digest, err)
		}
	}
	return nil
}

// noteWait adds line to the wait key key unless it is there, with compare-and-set: other promotions (another
// chain, an index sharing the platform) may be noting theirs.
func (p *Promoter) noteWait(ctx context.Context, key, line string) error {
	for range maxConflicts {
		e, err := p.deps.Promotions.GetBytes(ctx, key)
		switch {
		case errors.Is(err, bus.ErrKeyNotFound):
			_, err = p.deps.Promotions.CreateBytes(ctx, key, []byte(line))
			if errors.Is(err, bus.ErrKeyExists) {
				continue
			}
			return err
		case err != nil:
			return err
		case strings.Contains("\n"+string(e.Value), "\n"+line):
			return nil
		}
		_, err = p.deps.Promotions.UpdateBytes(ctx, key, append(slices.Clip(e.Value), line...), e.Revision)
		if !errors.Is(err, bus.ErrRevisionMismatch) {
			return err
		}
	}
	return fmt.Errorf("%s changed under each of %d attempts", key, maxConflicts)
}

// facts gathers what the gates of g need about st's digest in the stage from.
func (p *Promoter) facts(ctx context.Context, from imageref.Ref, st *harborflowv1.PromotionState, entry *harborflowv1.StageEntry, g config.Gates, platforms []Platform) (Facts, error) {
	f := Facts{Digest: st.GetDigest(), Entered: entry.GetEntered().AsTime(), Now: p.now()}
	if st.GetScanRequestedAt() != nil {
		f.ScanRequested = st.GetScanRequestedAt().AsTime()
	}
	for _, a := range st.GetApprovals() {
		f.Approvals = append(f.Approvals, Approval{By: a.GetBy(), At: a.GetAt().AsTime(), Stage: a.GetStage()})
	}
	ref := from.Name() + "@" + st.GetDigest()
	// Platforms with their config: from the registry, once, when a gate reads the config or the event did
	// not name them.
	if g.NonRoot || g.AllowedPorts != nil || (g.MaxSeverity != "" && len(platforms) == 0) {
		art, err := p.deps.Registry.Inspect(ctx, ref)
		if err != nil {
			return f, fault.Classify(fmt.Errorf("reading %s: %w", ref, err))
		}
		for _, pl := range art.Platforms {
			name := pl.OS + "/" + pl.Architecture
			if pl.Variant != "" {
				name += "/" + pl.Variant
			}
			f.Platforms = append(f.Platforms, Platform{Platform: name, Digest: pl.Digest, User: pl.User, ExposedPorts: pl.ExposedPorts})
		}
	} else {
		f.Platforms = platforms
	}
	if g.MaxSeverity != "" {
		for _, pl := range f.Platforms {
			res := &harborflowv1.ScanResult{}
			_, err := p.deps.Scans.Get(ctx, event.Key("scan", from.Registry, pl.Digest), res)
			switch {
			case errors.Is(err, bus.ErrKeyNotFound):
				continue
			case err != nil:
				return f, err
			}
			f.Scans = append(f.Scans, Scan{Digest: pl.Digest, Status: res.GetStatus(), Severity: res.GetSeverity(), At: res.GetAt().AsTime()})
		}
	}
	hc := p.deps.Harbors[from.Registry]
	project, repo := splitRepository(from.Repository)
	if g.Signed {
		problem, err := p.signed(ctx, from, st.GetDigest())
		if err != nil {
			return f, err
		}
		f.Signed, f.SignatureProblem = problem == "", problem
	}
	if g.Provenance != nil {
		base, problem, err := p.provenance(ctx, from, st.GetDigest())
		if err != nil {
			return f, err
		}
		f.BaseImage, f.ProvenanceProblem = base, problem
	}
	if len(g.Labels) > 0 && hc != nil {
		a, err := hc.Artifact(ctx, project, repo, st.GetDigest(), harbor.WithLabels())
		if err != nil {
			return f, fault.Classify(fmt.Errorf("reading the labels of %s: %w", ref, err))
		}
		for _, l := range a.Labels {
			f.Labels = append(f.Labels, l.Name)
		}
	}
	return f, nil
}

// signed verifies the cosign signature of digest in from against the configured public keys
// (pkg/signature): "" when one verifies, else why not — none, tampered, or by a key not configured.
func (p *Promoter) signed(ctx context.Context, from imageref.Ref, digest string) (string, error) {
	img := from.Name() + "@" + digest
	err := signature.Verify(ctx, p.deps.Registry, img, p.deps.Verifiers)
	if problem, ok := unverified(err, digest, "cosign signature", "signature", "signed"); ok {
		return problem, nil
	}
	return "", fault.Classify(fmt.Errorf("verifying the signature of %s: %w", img, err))
}

// provenance verifies the SLSA provenance attestation of digest in from (cosign's sha256-<hex>.att) against the
// configured public keys, for exactly that digest (an index's own, not its platforms'), and returns the base
// image it names (registry/repository@digest); else why not — none, tampered, by a key not configured, or a
// statement that is not harborflow's provenance.
func (p *Promoter) provenance(ctx context.Context, from imageref.Ref, digest string) (base, problem string, err error) {
	img := from.Name() + "@" + digest
	st, err := signature.VerifyAttestation(ctx, p.deps.Registry, img, p.deps.Verifiers, provenance.PredicateType)
	problem, ok := unverified(err, digest, "SLSA provenance attestation", "provenance attestation", "attested")
	switch {
	case !ok:
		return "", "", fault.Classify(fmt.Errorf("verifying the provenance attestation of %s: %w", img, err))
	case problem != "":
		return "", problem, nil
	}
	b, err := provenance.Parse(st)
	if err != nil {
		return "", fmt.Sprintf("the provenance attestation of %s is not harborflow's SLSA provenance: %v", short(digest), err), nil
	}
	return b.BaseImage, "", nil
}

// unverified says why a signature or an attestation of digest did not verify, when err (from pkg/signature) is
// about the image rather than a failure to read it: ok is true then, and the problem is "" for a nil err.
// noun names what was looked for (cosign signature), found what was found (signature), done what was done to
// the image (signed).
func unverified(err error, digest, noun, found, done string) (problem string, ok bool) {
	switch {
	case err == nil:
		return "", true
	case errors.Is(err, signature.ErrNotSigned):
		return "no " + noun + " for " + short(digest), true
	case errors.Is(err, signature.ErrTampered):
		return "the " + found + " of " + short(digest) + " does not match it (tampered, or made for another image)", true
	case errors.Is(err, signature.ErrUntrustedKey):
		return short(digest) + " is " + done + ", but by no key of signing.public_keys", true
	}
	return "", false
}

// Due returns a task (task.promoter) for every promotion whose state may have changed without an event: a
// soak or a scan timeout ended (next_evaluation has come), an approval, a label, a signature or an attestation
// may have been given (a pending or blocked verdict with a gate of laterGates), a copy was interrupted, or it
// was never evaluated. The handler does the work, so that what it publishes is published as for any other message;
// replicas that find the same state due ask once (event.PromotionTaskID).
func (p *Promoter) Due(ctx context.Context) ([]*bus.Message, error) {
	entries, err := p.deps.Promotions.List(ctx, "promotion.>")
	if err != nil {
		return nil, err
	}
	now := p.now()
	var out []*bus.Message
	for _, e := range entries {
		st := &harborflowv1.PromotionState{}
		if err := e.Decode(st); err != nil {
			p.log.Warn("promotion state unreadable", zap.String(logging.FieldKey, e.Key), zap.Error(err))
			continue
		}
		if !slices.ContainsFunc(p.chains, func(c chain) bool { return c.cfg.Name == st.GetChain() }) || !stale(st, now) {
			continue
		}
		m, err := Task(st.GetChain(), st.GetDigest(), e.Revision, "due")
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Task is the task.promoter message asking to evaluate chain's promotion of digest, whose state is at revision.
func Task(chain, digest string, revision uint64, reason string) (*bus.Message, error) {
	m, err := bus.NewMessage(event.TaskSubject(event.StagePromoter), event.PromotionTaskID(chain, digest, revision), "",
		&harborflowv1.PromotionTask{Chain: chain, Digest: digest, Reason: reason})
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return m, nil
}

// copying reports whether st records a copy under way: its last stage reached has no entry time yet.
func copying(st *harborflowv1.PromotionState) bool {
	reached := st.GetReached()
	return len(reached) > 0 && reached[len(reached)-1].GetEntered() == nil
}

// laterGates are the gates that may pass without an event harborflow receives: an approval (harborflow approve
// also asks at once), a Harbor label (no webhook), a signature or an attestation pushed later (its
// PUSH_ARTIFACT is an accessory's, which no stage evaluates a promotion on).
var laterGates = []string{"approval", "labels", "signed", "provenance"}

// stale reports whether a state needs evaluating without an event.
func stale(st *harborflowv1.PromotionState, now time.Time) bool {
	switch {
	case st.GetVerdict() == verdictDone:
		return false
	case copying(st), st.GetVerdict() == "", due(st, now):
		return true
	}
	for _, g := range st.GetGates() {
		if !g.GetPassed() && slices.Contains(laterGates, g.GetName()) {
			return true
		}
	}
	return false
}
