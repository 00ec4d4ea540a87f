package retention

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/fault"
	"github.com/harborflow/harborflow/pkg/glob"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Deps are the retention stage's collaborators.
type Deps struct {
	// Harbors are the Harbor API clients by registry host: artifacts are listed and deleted through them.
	Harbors map[string]*harbor.Client
	// Registry reads the manifests kept with a deletion, and puts them back on a restore.
	Registry *registry.Client
	// Records is the retention KV bucket (a Deletion per artifact); Promotions the promoter's, read for the
	// digests a promotion is copying.
	Records, Promotions *bus.KV
	Log                 *zap.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Debounce is how long the run after a push waits for more pushes into the repository (DefaultDebounce
	// when zero).
	Debounce time.Duration
}

// DefaultDebounce is Deps.Debounce's default.
const DefaultDebounce = 30 * time.Second

// Retention is the retention stage's handler.
type Retention struct {
	policies []policy
	// stageRepos are the repositories of each promotion chain's stages, by chain and stage name.
	stageRepos map[[2]string]string
	rolling    []string
	templates  []*imagetag.Template
	deps       Deps
	log        *zap.Logger
	now        func() time.Time
	debounce   time.Duration
}

type policy struct {
	cfg     config.Retention
	repos   glob.Set
	protect []*regexp.Regexp
}

// New builds the retention stage of policies; promotions give the rolling tags it protects and the
// repositories image.promoted names.
func New(policies []config.Retention, promotions []config.Promotion, deps Deps) (*Retention, error) {
	if deps.Records == nil {
		return nil, errors.New("retention: the retention KV bucket is required")
	}
	r := &Retention{deps: deps, log: deps.Log, now: deps.Now, debounce: deps.Debounce, stageRepos: map[[2]string]string{}}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.log = r.log.With(zap.String(logging.FieldStage, event.StageRetention))
	if r.now == nil {
		r.now = time.Now
	}
	if r.debounce <= 0 {
		r.debounce = DefaultDebounce
	}
	for i, p := range policies {
		repos, err := glob.CompileAll(p.Repositories)
		if err != nil {
			return nil, fmt.Errorf("retention[%d].repositories: %w", i, err)
		}
		protect, err := ParseProtect(p.Protect)
		if err != nil {
			return nil, fmt.Errorf("retention[%d].protect: %w", i, err)
		}
		r.policies = append(r.policies, policy{cfg: p, repos: repos, protect: protect})
	}
	for _, c := range promotions {
		for _, st := range c.Stages {
			r.stageRepos[[2]string{c.Name, st.Name}] = st.Repository
		}
		for _, t := range c.RollingTags {
			if !strings.Contains(t, "{{") {
				if !slices.Contains(r.rolling, t) {
					r.rolling = append(r.rolling, t)
				}
				continue
			}
			tpl, err := imagetag.ParseTemplate(t)
			if err != nil {
				return nil, fmt.Errorf("promotion %s: rolling tag %q: %w", c.Name, t, err)
			}
			r.templates = append(r.templates, tpl)
		}
	}
	return r, nil
}

// ConsumerConfig is the retention stage's durable consumer: images that enter a repository, and its tasks.
func (r *Retention) ConsumerConfig() bus.ConsumerConfig {
	return bus.ConsumerConfig{
		Stage: event.StageRetention,
		Subjects: []string{event.SubjectImageInspected, event.SubjectImageRebuilt, event.SubjectImagePromoted,
			event.TaskSubject(event.StageRetention)},
		HandlerTimeout: 10 * time.Minute,
	}
}

// Handle turns an image entering a repository a policy matches into a task for the end of the debounce
// window, and a task into a run: the plan published as image.pruned and, unless a dry run, applied.
func (r *Retention) Handle(ctx context.Context, m *bus.Message) ([]*bus.Message, error) {
	if m.Subject == event.TaskSubject(event.StageRetention) {
		task := &harborflowv1.RetentionTask{}
		if err := m.Decode(task); err != nil {
			return nil, bus.Permanent(err)
		}
		if wait := task.GetNotBefore().AsTime().Sub(r.now()); task.GetNotBefore() != nil && wait > 0 {
			return nil, bus.Wait(fmt.Errorf("the debounce window of %s ends in %s", task.GetRepository(), wait.Round(time.Second)), wait)
		}
		pruned, runErr := r.Run(ctx, task.GetRepository(), false)
		if pruned == nil {
			return nil, runErr
		}
		out, err := PrunedMessage(pruned, m.CorrelationID())
		if err != nil {
			return nil, err
		}
		return []*bus.Message{out}, runErr // a run cut short reports what it deleted
	}
	repo, err := r.repositoryOf(m)
	if err != nil || repo == "" || r.policyOf(repo) == nil {
		return nil, err
	}
	end := r.now().Truncate(r.debounce).Add(r.debounce)
	task, err := bus.NewMessage(event.TaskSubject(event.StageRetention), event.RetentionTaskID(repo, end.Unix()), m.CorrelationID(),
		&harborflowv1.RetentionTask{Repository: repo, Reason: "after " + m.Subject, NotBefore: timestamppb.New(end)})
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return []*bus.Message{task}, nil
}

// repositoryOf is the repository (registry/path) an image.* message says an image entered.
func (r *Retention) repositoryOf(m *bus.Message) (string, error) {
	switch m.Subject {
	case event.SubjectImageInspected:
		ii := &harborflowv1.ImageInspected{}
		if err := m.Decode(ii); err != nil {
			return "", bus.Permanent(err)
		}
		return ii.GetRegistry() + "/" + ii.GetRepository(), nil
	case event.SubjectImageRebuilt:
		rb := &harborflowv1.ImageRebuilt{}
		if err := m.Decode(rb); err != nil {
			return "", bus.Permanent(err)
		}
		return rb.GetTarget(), nil
	case event.SubjectImagePromoted:
		ip := &harborflowv1.ImagePromoted{}
		if err := m.Decode(ip); err != nil {
			return "", bus.Permanent(err)
		}
		return r.stageRepos[[2]string{ip.GetChain(), ip.GetToStage()}], nil
	}
	return "", nil
}

// policyOf is the first policy whose repositories match repo, nil when none does.
func (r *Retention) policyOf(repo string) *policy {
	for i := range r.policies {
		if r.policies[i].repos.Match(repo) {
			return &r.policies[i]
		}
	}
	return nil
}

// PrunedMessage is the image.pruned of p.
func PrunedMessage(p *harborflowv1.ImagePruned, correlation string) (*bus.Message, error) {
	var b strings.Builder
	for _, a := range slices.Concat(p.GetDeleted(), p.GetKept()) {
		fmt.Fprintf(&b, "%s %s %s\n", a.GetDigest(), strings.Join(a.GetTags(), ","), a.GetReason())
	}
	m, err := bus.NewMessage(event.SubjectImagePruned, event.PrunedID(p.GetRepository(), p.GetDryRun(), b.String()), correlation, p)
	if err != nil {
		return nil, bus.Permanent(err)
	}
	return m, nil
}

// Plan plans repo (registry/project/repository) under the policy that matches it, deleting nothing.
func (r *Retention) Plan(ctx context.Context, repo string) (Plan, error) {
	p := r.policyOf(repo)
	if p == nil {
		return Plan{}, fmt.Errorf("no retention policy matches %s", repo)
	}
	hc, project, name, err := r.harbor(repo)
	if err != nil {
		return Plan{}, err
	}
	arts, err := hc.Artifacts(ctx, project, name)
	if err != nil {
		return Plan{}, fault.Classify(fmt.Errorf("listing the artifacts of %s: %w", repo, err))
	}
	busy, err := r.busy(ctx)
	if err != nil {
		return Plan{}, err
	}
	in := make([]Artifact, 0, len(arts))
	for _, a := range arts {
		art := Artifact{Digest: a.Digest, Tags: a.TagNames(), Pushed: a.PushTime}
		art.Subjects = subjectsOf(art.Tags)
		for _, c := range a.References {
			art.Children = append(art.Children, c.Digest)
		}
		in = append(in, art)
	}
	pruned, err := r.pruned(ctx, repo, in)
	if err != nil {
		return Plan{}, err
	}
	return Make(Policy{KeepPerVersion: p.cfg.KeepPerVersion, Protect: p.protect, Rolling: r.rolling, RollingTemplates: r.templates,
		Busy: busy, MinAge: p.cfg.MinAge, Pruned: pruned}, in, r.now()), nil
}

// subjectsOf are the images tags name by cosign's tag scheme (sha256-<hex>.sig, .att, .sbom), sorted. Harbor
// lists an attestation or SBOM so tagged as an artifact of its own, never deleted with its image (only a .sig
// of an image it has, and a referrer, are its accessories): retention deletes it with them.
func subjectsOf(tags []string) []string {
	var out []string
	for _, t := range tags {
		if _, s, ok := registry.TagAccessory(t); ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// pruned says, of each subject of arts that is not among them, whether retention's records say it deleted
// it (deleting or deleted, not restored since): an accessory of one was left behind by a run that stopped
// before deleting it.
func (r *Retention) pruned(ctx context.Context, repo string, arts []Artifact) (map[string]bool, error) {
	present := make(map[string]bool, len(arts))
	for _, a := range arts {
		present[a.Digest] = true
	}
	out := map[string]bool{}
	for _, a := range arts {
		for _, s := range a.Subjects {
			if _, asked := out[s]; asked || present[s] {
				continue
			}
			rec := &harborflowv1.Deletion{}
			_, err := r.deps.Records.Get(ctx, event.Key("deleted", repo, s), rec)
			if err != nil && !errors.Is(err, bus.ErrKeyNotFound) {
				return nil, fmt.Errorf("reading whether retention deleted %s@%s: %w", repo, s, err)
			}
			out[s] = err == nil && (rec.GetState() == StateDeleting || rec.GetState() == StateDeleted)
		}
	}
	return out, nil
}

// Run plans repo and, unless its policy is a dry run (or dryRun is set), applies the plan: each deletion is
// recorded first, with the manifests to restore it, then made through Harbor's API; an accessory (an
// attestation) only once its subjects' deletions were made, and kept, saying why, when one was not. It
// returns what was done, as image.pruned says it, in the order it was done; a run cut short by an error
// returns what it deleted before, with the error.
func (r *Retention) Run(ctx context.Context, repo string, dryRun bool) (*harborflowv1.ImagePruned, error) {
	p := r.policyOf(repo)
	if p == nil {
		return nil, nil // a policy removed from the configuration
	}
	plan, err := r.Plan(ctx, repo)
	if err != nil {
		return nil, err
	}
	out := &harborflowv1.ImagePruned{Repository: repo, DryRun: dryRun || p.cfg.DryRun}
	for _, d := range plan.Kept {
		out.Kept = append(out.Kept, &harborflowv1.PrunedArtifact{Digest: d.Digest, Tags: d.Tags, Reason: d.Reason})
	}
	deletions := deletionOrder(plan.Deleted)
	if out.DryRun {
		for _, d := range deletions {
			out.Deleted = append(out.Deleted, &harborflowv1.PrunedArtifact{Digest: d.Digest, Tags: d.Tags, Reason: d.Reason})
		}
		return out, nil
	}
	notDeleted := map[string]string{} // why, of what the plan deleted and this run did not
	for _, d := range deletions {
		a := &harborflowv1.PrunedArtifact{Digest: d.Digest, Tags: d.Tags, Reason: d.Reason}
		if s, why, ok := subjectNotDeleted(d, notDeleted); ok {
			a.Reason = "its subject " + s + " was not deleted: " + why
		} else {
			done, why, err := r.delete(ctx, repo, d)
			if err != nil {
				// What was deleted so far is reported with the error; the retry's plan no longer lists it.
				if len(out.Deleted) == 0 {
					return nil, err
				}
				return out, err
			}
			if done {
				out.Deleted = append(out.Deleted, a)
				continue
			}
			a.Reason = why
		}
		notDeleted[d.Digest] = a.Reason
		out.Kept = append(out.Kept, a)
	}
	r.log.Info("retention applied", zap.String(logging.FieldRepository, repo), zap.Int(logging.FieldDeleted, len(out.Deleted)),
		zap.Int(logging.FieldKept, len(out.Kept)))
	return out, nil
}

// deletionOrder is the order deletions are made in: each accessory after the subjects it is deleted with,
// else as planned.
func deletionOrder(deletions []Decision) []Decision {
	planned := make(map[string]Decision, len(deletions))
	for _, d := range deletions {
		planned[d.Digest] = d
	}
	depth := make(map[string]int, len(deletions))
	var depthOf func(d Decision, limit int) int
	depthOf = func(d Decision, limit int) int {
		if n, ok := depth[d.Digest]; ok {
			return n
		}
		n := 0
		for _, s := range d.Subjects {
			// limit: the planner deletes no loop of accessories, and none makes this one endless either.
			if sd, ok := planned[s]; ok && limit > 0 {
				n = max(n, 1+depthOf(sd, limit-1))
			}
		}
		depth[d.Digest] = n
		return n
	}
	out := slices.Clone(deletions)
	for _, d := range out {
		depthOf(d, len(out))
	}
	slices.SortStableFunc(out, func(a, b Decision) int { return cmp.Compare(depth[a.Digest], depth[b.Digest]) })
	return out
}

// subjectNotDeleted is the first subject of d that the plan deleted and the run did not, and why.
func subjectNotDeleted(d Decision, notDeleted map[string]string) (subject, why string, ok bool) {
	for _, s := range d.Subjects {
		if why, ok := notDeleted[s]; ok {
			return s, why, true
		}
	}
	return "", "", false
}

// Deletion states.
const (
	StateDeleting = "deleting"
	StateDeleted  = "deleted"
	StateRestored = "restored"
)

// restoredGrace is how long an artifact put back by Restore is not deleted again, though the plan still says
// so: time for an operator to protect it or change the policy.
const restoredGrace = 7 * 24 * time.Hour

// claimAge is how long a deletion another run recorded is left to it before this run finishes it (the other
// run died between recording and deleting).
const claimAge = time.Minute

// delete records and deletes one artifact. done is false, with why, when it was not deleted: Harbor refused it
// (an immutable rule), or another run is deleting it. A deletion recorded but not made (a crash in between) is
// finished.
func (r *Retention) delete(ctx context.Context, repo string, d Decision) (done bool, why string, err error) {
	key := event.Key("deleted", repo, d.Digest)
	rec := &harborflowv1.Deletion{Repository: repo, Digest: d.Digest, Tags: d.Tags, Reason: d.Reason, State: StateDeleting,
		At: timestamppb.New(r.now())}
	if rec.Manifests, err = r.manifests(ctx, repo, d.Digest); errors.Is(err, registry.ErrNotFound) {
		return false, "gone already: another run, or a person, deleted it", nil
	} else if err != nil {
		return false, "", err
	}
	rev, err := r.deps.Records.Create(ctx, key, rec)
	if errors.Is(err, bus.ErrKeyExists) {
		old := &harborflowv1.Deletion{}
		if rev, err = r.deps.Records.Get(ctx, key, old); err != nil {
			return false, "", err
		}
		recent := r.now().Sub(old.GetAt().AsTime()) < claimAge
		switch {
		case old.GetState() == StateRestored && r.now().Sub(old.GetAt().AsTime()) < restoredGrace:
			return false, fmt.Sprintf("restored at %s (harborflow retention restore): kept until %s, to protect it or change the policy",
				old.GetAt().AsTime().Format(time.RFC3339), old.GetAt().AsTime().Add(restoredGrace).Format(time.RFC3339)), nil
		case old.GetState() == StateDeleting && recent:
			return false, "another run is deleting it", nil
		case old.GetState() == StateDeleted && recent:
			return false, "another run deleted it", nil
		case old.GetState() == StateDeleting:
			// Its run died: finish it, keeping what it recorded (and the manifests, if it had none).
			if len(old.GetManifests()) == 0 {
				old.Manifests = rec.GetManifests()
			}
			rec = old
		default: // deleted before and restored, or pushed again since: a deletion of its own
			if rev, err = r.deps.Records.Update(ctx, key, rec, rev); err != nil {
				return false, "", fmt.Errorf("recording the deletion of %s@%s: %w", repo, d.Digest, err)
			}
		}
	} else if err != nil {
		return false, "", fmt.Errorf("recording the deletion of %s@%s: %w", repo, d.Digest, err)
	}
	hc, project, name, err := r.harbor(repo)
	if err != nil {
		return false, "", err
	}
	switch err := hc.DeleteArtifact(ctx, project, name, d.Digest); {
	case err == nil, errors.Is(err, harbor.ErrNotFound):
	case errors.Is(err, harbor.ErrPrecondition):
		// HARBOR.md §3: a tag of it is protected by an immutable rule. Never retried: recorded and reported.
		why := "protected by immutable rule: Harbor refused to delete it (412)"
		_ = r.deps.Records.Delete(ctx, key)
		r.log.Warn("retention refused by an immutable rule", zap.String(logging.FieldRepository, repo), zap.String(logging.FieldDigest, d.Digest))
		return false, why, nil
	default:
		return false, "", fault.Classify(fmt.Errorf("deleting %s@%s: %w", repo, d.Digest, err))
	}
	rec.State, rec.At = StateDeleted, timestamppb.New(r.now())
	if _, err := r.deps.Records.Update(ctx, key, rec, rev); err != nil {
		return false, "", fmt.Errorf("recording the deletion of %s@%s: %w", repo, d.Digest, err)
	}
	r.log.Info("deleted", zap.String(logging.FieldRepository, repo), zap.String(logging.FieldDigest, d.Digest),
		zap.Strings(logging.FieldTags, d.Tags), zap.String(logging.FieldReason, d.Reason))
	return true, "", nil
}

// manifests reads the manifest of repo@digest and, for an index, every manifest it names — platforms,
// attestation manifests, nested indexes, recursively — children first, so that a restore can put them back in
// that order.
func (r *Retention) manifests(ctx context.Context, repo, digest string) ([]*harborflowv1.StoredManifest, error) {
	if r.deps.Registry == nil {
		return nil, nil
	}
	desc, body, err := r.deps.Registry.ManifestBody(ctx, repo+"@"+digest)
	if err != nil {
		return nil, fault.Classify(fmt.Errorf("keeping the manifest of %s@%s: %w", repo, digest, err))
	}
	var index struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	_ = json.Unmarshal(body, &index) // an image manifest has no manifests
	var out []*harborflowv1.StoredManifest
	for _, m := range index.Manifests {
		children, err := r.manifests(ctx, repo, m.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, children...)
	}
	return append(out, &harborflowv1.StoredManifest{Digest: desc.Digest, MediaType: desc.MediaType, Body: body}), nil
}

// Restore puts a deleted artifact of repo back, children first, then its tags, and records it restored. The
// registry must still have its blobs (Harbor's garbage collection has not run since).
func (r *Retention) Restore(ctx context.Context, repo, digest string) (*harborflowv1.Deletion, error) {
	key := event.Key("deleted", repo, digest)
	rec := &harborflowv1.Deletion{}
	rev, err := r.deps.Records.Get(ctx, key, rec)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, fmt.Errorf("retention has no record of deleting %s@%s", repo, digest)
	}
	if err != nil {
		return nil, err
	}
	if len(rec.GetManifests()) == 0 {
		return nil, fmt.Errorf("the record of %s@%s keeps no manifest to restore", repo, digest)
	}
	for _, m := range rec.GetManifests() {
		if _, err := r.deps.Registry.PutManifest(ctx, repo, "", m.GetMediaType(), m.GetBody()); err != nil {
			return nil, fmt.Errorf("restoring %s@%s: %w", repo, digest, err)
		}
	}
	for _, t := range rec.GetTags() {
		if err := r.deps.Registry.Tag(ctx, repo+"@"+digest, t); err != nil {
			return nil, fmt.Errorf("restoring tag %s of %s@%s: %w", t, repo, digest, err)
		}
	}
	rec.State, rec.At = StateRestored, timestamppb.New(r.now())
	if _, err := r.deps.Records.Update(ctx, key, rec, rev); err != nil {
		return nil, fmt.Errorf("recording the restore of %s@%s: %w", repo, digest, err)
	}
	return rec, nil
}

// busy are the digests a promotion is copying (its state's last stage has no entry time yet).
func (r *Retention) busy(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	if r.deps.Promotions == nil {
		return out, nil
	}
	entries, err := r.deps.Promotions.List(ctx, "promotion.>")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		st := &harborflowv1.PromotionState{}
		if err := e.Decode(st); err != nil {
			continue
		}
		if reached := st.GetReached(); len(reached) > 0 && reached[len(reached)-1].GetEntered() == nil {
			out[st.GetDigest()] = true
		}
	}
	return out, nil
}

// harbor is the Harbor API client of repo's registry, and repo's project and repository in it.
func (r *Retention) harbor(repo string) (*harbor.Client, string, string, error) {
	ref, err := imageref.ParseRepository(repo)
	if err != nil {
		return nil, "", "", bus.Permanent(fmt.Errorf("repository %q: %w", repo, err))
	}
	hc := r.deps.Harbors[ref.Registry]
	if hc == nil {
		return nil, "", "", bus.Permanent(fmt.Errorf("%s has no Harbor API configured (registries[].harbor)", ref.Registry))
	}
	project, name, _ := strings.Cut(ref.Repository, "/")
	return hc, project, name, nil
}

// Every is how often the stage's loop looks for the tasks Due returns (stage.Tasks): once a minute, or every
// schedule when shorter; 0 when no policy has a schedule.
func (r *Retention) Every() time.Duration {
	every := time.Duration(0)
	for _, p := range r.policies {
		if s := p.cfg.Schedule; s > 0 && (every == 0 || s < every) {
			every = s
		}
	}
	return scheduleRound(every)
}

// scheduleRound is how often the stage's loop looks, for a schedule every: once a minute, or every schedule when
// shorter.
func scheduleRound(every time.Duration) time.Duration { return min(every, time.Minute) }

// Due returns a task.retention for every repository of each policy with a schedule (its Harbor's repositories
// the policy's globs match), in the first round of each schedule slot: its id is (repository, slot), so
// replicas ask once.
func (r *Retention) Due(ctx context.Context) ([]*bus.Message, error) {
	var out []*bus.Message
	var errs []error
	for _, p := range r.policies {
		if p.cfg.Schedule <= 0 {
			continue
		}
		// Only the first round of a slot asks: JetStream's duplicate window (10 m by default) is shorter than a
		// schedule such as 1h, so asking every round would run it again each time the id dropped out of it.
		now := r.now()
		slot := now.Truncate(p.cfg.Schedule)
		if now.Sub(slot) >= scheduleRound(p.cfg.Schedule) {
			continue
		}
		repos, err := r.repositories(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, repo := range repos {
			m, err := bus.NewMessage(event.TaskSubject(event.StageRetention), event.RetentionTaskID(repo, slot.Unix()), "",
				&harborflowv1.RetentionTask{Repository: repo, Reason: "schedule"})
			if err != nil {
				return nil, bus.Permanent(err)
			}
			out = append(out, m)
		}
	}
	return out, errors.Join(errs...)
}

// repositories lists the repositories of the Harbors a policy's globs name that the globs match.
func (r *Retention) repositories(ctx context.Context, p policy) ([]string, error) {
	var out []string
	hosts := map[string]bool{}
	for _, g := range p.cfg.Repositories {
		host, _, _ := strings.Cut(g, "/")
		hosts[host] = true
	}
	for host := range hosts {
		hc := r.deps.Harbors[host]
		if hc == nil {
			continue
		}
		projects, err := hc.Projects(ctx)
		if err != nil {
			return nil, err
		}
		for _, pr := range projects {
			repos, err := hc.Repositories(ctx, pr.Name)
			if err != nil {
				return nil, err
			}
			for _, rp := range repos {
				if name := host + "/" + rp.Name; p.repos.Match(name) && !slices.Contains(out, name) {
					out = append(out, name)
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
