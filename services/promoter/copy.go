package promoter

// Copying (issue 11, item 3).
//
// How the image moves. Within one Harbor (source and destination on the same host, with an API client for
// it), Harbor's copy API `from=<project>/<repo>@<digest>` copies the image with its children and accessories
// (signatures, SBOMs) server-side. Across registries, and within Harbor when the copy API would touch tags the
// copier must not move (below), registry.Client.Copy copies by digest with the referrers and cosign's digest
// tags, which Harbor records as the same accessories. Either way nothing is copied when the destination
// already has the digest.
//
// Tags on a copy. Harbor's copy carries every tag of the source root and moves each at the destination
// (HARBOR.md §3.2, §7: "every tag is copied", even when copying by digest), so the copy API is used only when
// that changes nothing the copier would not change itself: every tag of the source root is the unique tag or
// one of the rolling tags, and none of them sits at the destination on an image with a newer tag. Otherwise
// (a stray tag such as `test`, a rolling tag on a newer image there) the registry copy is used, which writes no
// tag; a 412 from the copy API (a carried tag protected by an immutable rule) falls back to it as well, and
// the tags are then placed one by one, where the protected one is reported.
//
// Attestations. Harbor's copy carries accessories, and Harbor counts as accessories only cosign's signature tag
// sha256-<hex>.sig and OCI referrers (goharbor/harbor src/server/middleware/cosign/cosign.go): cosign's
// attestation tag sha256-<hex>.att is an ordinary root artifact there, which the copy leaves behind. So before
// Harbor's copy carries the image, the source's .att (when it has one) is copied under its tag with a copy
// API call of its own, unless the destination's .att is the same manifest already: the image at the
// destination therefore means its attestation is there, and a redelivery after a crash at any step finds the
// same. The registry copy carries .att with the other cosign digest tags (registry.WithReferrers).
//
// How a tag moves. Each tag is put with a registry PUT of the image's own manifest under the tag
// (registry.Client.Tag), in Harbor and elsewhere alike: Harbor treats it as a push, so it moves an existing
// tag in one step (its POST …/tags refuses any existing tag with 409, and delete-then-create leaves a moment
// with no `latest` to pull and, after a crash between the two, none at all until the redelivery), and applies
// immutable-tag rules (412). It fires PUSH_ARTIFACT with our robot as operator; the promoter's loop protection
// ignores its own robot's events (HARBOR.md §1.6). A tag is put only after a HEAD shows it elsewhere, and
// every put is checked with a HEAD that must return the digest.
//
// Idempotent. Every step first looks at the destination (HEAD of the digest, HEAD of each tag) and does only
// what is missing, so a redelivery after a crash at any step finishes the work without copying again or
// moving a tag twice.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/signature"
)

// Copier copies images between the stages of a chain and points tags at them.
type Copier struct {
	// Registry reads and writes every registry of the chain.
	Registry *registry.Client
	// Harbors are the Harbor API clients by registry host; a stage on a host without one is a plain registry.
	Harbors map[string]*harbor.Client
}

// Location is a repository of a stage: Registry is the host (harbor.example.com), Repository the path
// (project/repo for Harbor).
type Location struct {
	Registry, Repository string
}

func (l Location) String() string { return l.Registry + "/" + l.Repository }

// CopyRequest is one image to carry to the next stage.
type CopyRequest struct {
	From, To Location
	// Digest is the exact image (an index or a single image).
	Digest string
	// Tag is the image's unique tag (4.2.0.16.3), put first.
	Tag string
	// Rolling are the rolling tags, rendered (4.2.0, latest), put in this order after Tag.
	Rolling []string
}

// CopyMethod is how the image reached the destination.
type CopyMethod string

const (
	// CopyNone: the destination had the digest already.
	CopyNone CopyMethod = ""
	// CopyHarbor: Harbor's copy API.
	CopyHarbor CopyMethod = "harbor"
	// CopyRegistry: a registry copy by digest with referrers.
	CopyRegistry CopyMethod = "registry"
)

// TagOutcome is what happened to one tag.
type TagOutcome string

const (
	// TagMoved: the tag now points at the image (created or moved), verified.
	TagMoved TagOutcome = "moved"
	// TagAlreadyThere: the tag pointed at the image before.
	TagAlreadyThere TagOutcome = "already there"
	// TagKeptOnNewer: a rolling tag left on an image with a newer tag (TagResult.Newer); never moved back.
	TagKeptOnNewer TagOutcome = "kept on newer"
	// TagRefused: an immutable-tag rule protects the tag (412).
	TagRefused TagOutcome = "refused"
	// TagSkipped: not tried, because the unique tag was refused.
	TagSkipped TagOutcome = "skipped"
)

// TagResult is the outcome for one tag.
type TagResult struct {
	Tag     string
	Outcome TagOutcome
	// Newer is the newer image's tag for TagKeptOnNewer.
	Newer string
	// Reason says why a tag was refused or skipped, readably.
	Reason string
}

func (r TagResult) String() string {
	switch r.Outcome {
	case TagKeptOnNewer:
		return r.Tag + ": kept on newer " + r.Newer
	case TagRefused, TagSkipped:
		return r.Tag + ": " + r.Reason
	}
	return r.Tag + ": " + string(r.Outcome)
}

// CopyResult is what Copy did, for image.promoted (the tags) or image.blocked (Blocked).
type CopyResult struct {
	// Copied is true when this call copied the image, false when the destination had it.
	Copied bool
	Method CopyMethod
	// Tags are the unique tag's result, then each rolling tag's, in order.
	Tags []TagResult
	// Attestation is what happened to the source's cosign attestation tag (sha256-<hex>.att) when Harbor's copy
	// carried the image: moved, already there, or refused by an immutable rule (the destination keeps its own,
	// and the promotion goes on); zero when the source has none or Harbor's copy was not used.
	Attestation TagResult
}

// Blocked returns a readable reason when a tag the copy must move is protected by an immutable rule; "" when
// nothing was refused. A refusal is final: the same copy is refused again until the rule changes.
func (r CopyResult) Blocked() string {
	var reasons []string
	for _, t := range r.Tags {
		if t.Outcome == TagRefused {
			reasons = append(reasons, t.Reason)
		}
	}
	if len(reasons) == 0 {
		return ""
	}
	return "blocked: " + strings.Join(reasons, "; ")
}

// Pointing are the tags that point at the image after the copy (moved or already there).
func (r CopyResult) Pointing() []string {
	var out []string
	for _, t := range r.Tags {
		if t.Outcome == TagMoved || t.Outcome == TagAlreadyThere {
			out = append(out, t.Tag)
		}
	}
	return out
}

// ErrVerify is a tag that did not point at the image right after it was put: someone else moved it meanwhile.
// Retryable: the next attempt looks again.
var ErrVerify = errors.New("tag does not point at the image")

// Copy carries req's image to req.To and points its tags at it: the unique tag first, then each rolling tag,
// each verified with a HEAD. An error is a failure to classify with fault.Classify (registry and Harbor
// errors, ErrVerify); a tag protected by an immutable rule is not an error but a TagRefused in the result
// (CopyResult.Blocked), and then, if it is the unique tag, no rolling tag is tried.
//
// What is read first, at once: whether the image is at the destination, the destination's tags, and (for
// Harbor's copy) the source artifact's tags. A tag that was not at the destination, or a rolling tag when no
// tag there is newer than ours and the image was not there either (so no tag can point at it yet), is put
// without looking at it first; any other tag is looked at, so that a second run moves nothing.
func (c *Copier) Copy(ctx context.Context, req CopyRequest) (CopyResult, error) {
	var res CopyResult
	if req.Digest == "" || req.Tag == "" {
		return res, fmt.Errorf("copying %s to %s: want a digest and a unique tag", req.From, req.To)
	}
	ours, _ := imagetag.Parse(req.Tag) // not a version tag: every version tag counts as newer
	dst, err := c.look(ctx, req, ours)
	if err != nil {
		return res, err
	}
	method, carried, att, err := c.copyImage(ctx, req, dst)
	if err != nil {
		return res, err
	}
	res.Copied, res.Method, res.Attestation = method != CopyNone, method, att
	put := func(tag string, rolling bool) (TagResult, error) {
		look := slices.Contains(carried, tag) || slices.Contains(dst.tags, tag) && (!rolling || dst.newer || dst.present)
		tr, err := c.putTag(ctx, req, tag, rolling, look, dst)
		// A tag Harbor's copy just placed is found there by its HEAD: report it as moved by this copy.
		if err == nil && tr.Outcome == TagAlreadyThere && slices.Contains(carried, tag) {
			tr.Outcome = TagMoved
		}
		return tr, err
	}

	tr, err := put(req.Tag, false)
	if err != nil {
		return res, err
	}
	res.Tags = append(res.Tags, tr)
	if tr.Outcome == TagRefused {
		for _, t := range req.Rolling {
			res.Tags = append(res.Tags, TagResult{Tag: t, Outcome: TagSkipped,
				Reason: "not moved: the unique tag " + req.Tag + " was refused"})
		}
		return res, nil
	}
	for _, t := range req.Rolling {
		if t == req.Tag {
			continue
		}
		tr, err := put(t, true)
		if err != nil {
			return res, err
		}
		res.Tags = append(res.Tags, tr)
	}
	return res, nil
}

// destination is what Copy reads of the destination and the source before it writes.
type destination struct {
	repo string
	ours imagetag.Tag
	// present: the image is there already.
	present bool
	// tags are the destination's tags before the copy; newer is true when a fixed version tag among them is
	// newer than ours (only then can a rolling tag sit on a newer image).
	tags  []string
	newer bool
	// source is the source artifact when Harbor's copy may be used.
	source *harbor.Artifact
}

// look reads, at once, whether the image is at the destination, the destination's tags and, for Harbor's copy,
// the source artifact.
func (c *Copier) look(ctx context.Context, req CopyRequest, ours imagetag.Tag) (*destination, error) {
	d := &destination{repo: req.To.String(), ours: ours}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := c.Registry.Resolve(gctx, d.repo+"@"+req.Digest)
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		d.present = err == nil
		return err
	})
	g.Go(func() error {
		tags, err := c.Registry.Tags(gctx, d.repo)
		if errors.Is(err, registry.ErrNotFound) {
			return nil // no repository yet
		}
		d.tags = tags
		return err
	})
	if hc := c.harbor(req); hc != nil {
		g.Go(func() error {
			project, repo := splitRepository(req.From.Repository)
			var err error
			d.source, err = hc.Artifact(gctx, project, repo, req.Digest)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	d.newer = slices.ContainsFunc(d.tags, func(s string) bool {
		t, err := imagetag.Parse(s)
		return err == nil && !t.Moving() && imagetag.Compare(t, ours) > 0
	})
	return d, nil
}

// harbor is the Harbor API client Harbor's copy would use: source and destination on one Harbor, and not the
// same repository (the tags moved within a stage are put one by one).
func (c *Copier) harbor(req CopyRequest) *harbor.Client {
	if req.From.Registry != req.To.Registry || req.From == req.To {
		return nil
	}
	return c.Harbors[req.To.Registry]
}

// copyImage puts the image at the destination unless it is there, and says how, which tags Harbor's copy
// placed at the destination, and what became of the attestation tag when Harbor's copy was used.
func (c *Copier) copyImage(ctx context.Context, req CopyRequest, dst *destination) (CopyMethod, []string, TagResult, error) {
	var att TagResult
	if dst.present {
		return CopyNone, nil, att, nil
	}
	if hc := c.harbor(req); hc != nil {
		carried, ok, err := c.harborCopySafe(ctx, req, dst)
		if err != nil {
			return CopyNone, nil, att, err
		}
		if ok {
			// The attestation first: the image at the destination means its attestation is there too.
			if att, err = c.copyAttestation(ctx, hc, req, dst); err != nil {
				return CopyNone, nil, att, err
			}
			project, repo := splitRepository(req.To.Repository)
			err := hc.CopyArtifact(ctx, project, repo, req.From.Repository+"@"+req.Digest)
			switch {
			case err == nil:
				return CopyHarbor, carried, att, nil
			case !errors.Is(err, harbor.ErrPrecondition):
				return CopyNone, nil, att, err
			}
			// A carried tag is immutable at the destination: copy without tags, and report it below.
		}
	}
	if err := c.Registry.Copy(ctx, req.From.String()+"@"+req.Digest, dst.repo, registry.WithReferrers()); err != nil {
		return CopyNone, nil, att, err
	}
	return CopyRegistry, nil, att, nil
}

// copyAttestation copies the source's attestation tag of the image to the destination with Harbor's copy API
// (by tag, so that the copy carries the tag), unless the source has none or the destination's is the same
// manifest. An immutable rule protecting a different one at the destination is reported, not an error: the
// destination keeps its own.
func (c *Copier) copyAttestation(ctx context.Context, hc *harbor.Client, req CopyRequest, dst *destination) (TagResult, error) {
	tag := signature.AttestationTag(req.Digest)
	tr := TagResult{Tag: tag}
	src, err := c.Registry.Resolve(ctx, req.From.String()+":"+tag)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return TagResult{}, nil // not attested: nothing to carry
	case err != nil:
		return tr, fmt.Errorf("looking for the attestation of %s in %s: %w", req.Digest, req.From, err)
	}
	if cur, err := c.Registry.Resolve(ctx, dst.repo+":"+tag); err == nil && cur.Digest == src.Digest {
		tr.Outcome = TagAlreadyThere
		return tr, nil
	} else if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return tr, fmt.Errorf("looking for the attestation of %s in %s: %w", req.Digest, dst.repo, err)
	}
	project, repo := splitRepository(req.To.Repository)
	err = hc.CopyArtifact(ctx, project, repo, req.From.Repository+":"+tag)
	switch {
	case errors.Is(err, harbor.ErrPrecondition):
		tr.Outcome, tr.Reason = TagRefused, "tag "+tag+" is protected by an immutable rule in "+req.To.Repository+": its attestation there is kept"
		return tr, nil
	case err != nil:
		return tr, fmt.Errorf("copying the attestation %s to %s: %w", tag, req.To, err)
	}
	tr.Outcome = TagMoved
	return tr, nil
}

// harborCopySafe reports whether Harbor's copy, which carries every tag of the source root, would move only
// tags the copier moves itself: each is the unique tag or a rolling tag, and is not at the destination on an
// image with a newer tag. It returns those tags (the copy places them).
func (c *Copier) harborCopySafe(ctx context.Context, req CopyRequest, dst *destination) ([]string, bool, error) {
	tags := dst.source.TagNames()
	for _, t := range tags {
		if t != req.Tag && !slices.Contains(req.Rolling, t) {
			return nil, false, nil
		}
		if t == req.Tag || !slices.Contains(dst.tags, t) || !dst.newer {
			continue // absent, or moved anyway: nothing newer holds it
		}
		d, err := c.Registry.Resolve(ctx, dst.repo+":"+t)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			continue
		case err != nil:
			return nil, false, err
		}
		newer, err := c.newerOn(ctx, dst, d.Digest)
		if err != nil {
			return nil, false, err
		}
		if newer != "" {
			return nil, false, nil
		}
	}
	// The unique tag on another image at the destination would be moved by the copy: the registry copy then,
	// and putTag looks at it.
	if slices.Contains(tags, req.Tag) && slices.Contains(dst.tags, req.Tag) {
		return nil, false, nil
	}
	return tags, true, nil
}

// putTag points tag at the image unless, when look is set, it is there already or, for a rolling tag, sits on
// a newer image; then checks it with a HEAD.
func (c *Copier) putTag(ctx context.Context, req CopyRequest, tag string, rolling, look bool, dst *destination) (TagResult, error) {
	tr := TagResult{Tag: tag}
	if look {
		cur, err := c.Registry.Resolve(ctx, dst.repo+":"+tag)
		switch {
		case err == nil && cur.Digest == req.Digest:
			tr.Outcome = TagAlreadyThere
			return tr, nil
		case err == nil && rolling:
			newer, err := c.newerOn(ctx, dst, cur.Digest)
			if err != nil {
				return tr, err
			}
			if newer != "" {
				tr.Outcome, tr.Newer = TagKeptOnNewer, newer
				return tr, nil
			}
		case err != nil && !errors.Is(err, registry.ErrNotFound):
			return tr, err
		}
	}
	if err := c.Registry.Tag(ctx, dst.repo+"@"+req.Digest, tag); err != nil {
		if errors.Is(err, registry.ErrPrecondition) {
			tr.Outcome = TagRefused
			tr.Reason = "tag " + tag + " is protected by an immutable rule in " + req.To.Repository
			return tr, nil
		}
		return tr, err
	}
	got, err := c.Registry.Resolve(ctx, dst.repo+":"+tag)
	if err != nil {
		return tr, fmt.Errorf("verifying tag %s of %s: %w", tag, dst.repo, err)
	}
	if got.Digest != req.Digest {
		return tr, fmt.Errorf("verifying tag %s of %s: %w: %s, want %s", tag, dst.repo, ErrVerify, got.Digest, req.Digest)
	}
	tr.Outcome = TagMoved
	return tr, nil
}

// newerOn returns a tag of the destination that names digest and is newer than ours (pkg/imagetag order:
// update level, then build), or "" when there is none. Only the fixed version tags newer than ours are looked
// at, newest first, one HEAD each until one names digest.
func (c *Copier) newerOn(ctx context.Context, dst *destination, digest string) (string, error) {
	var newer []imagetag.Tag
	for _, s := range dst.tags {
		t, err := imagetag.Parse(s)
		if err != nil || t.Moving() || imagetag.Compare(t, dst.ours) <= 0 {
			continue
		}
		newer = append(newer, t)
	}
	slices.SortFunc(newer, func(a, b imagetag.Tag) int { return cmp.Compare(0, imagetag.Compare(a, b)) })
	for _, t := range newer {
		d, err := c.Registry.Resolve(ctx, dst.repo+":"+t.Raw)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			continue // deleted meanwhile
		case err != nil:
			return "", err
		}
		if d.Digest == digest {
			return t.Raw, nil
		}
	}
	return "", nil
}

// splitRepository splits a Harbor repository path into the project and the repository within it.
func splitRepository(path string) (project, repo string) {
	project, repo, _ = strings.Cut(path, "/")
	return project, repo
}
