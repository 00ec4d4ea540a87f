package harbortest

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/mediatype"
)

// artifactView is what the with_* flags of an artifact request ask for.
type artifactView struct {
	tags, labels, immutable, accessories, scanOverview bool
}

func viewOf(c *call) artifactView {
	q := c.r.URL.Query()
	flag := func(k string, def bool) bool {
		if v, err := strconv.ParseBool(q.Get(k)); err == nil {
			return v
		}
		return def
	}
	return artifactView{
		tags: flag("with_tag", true), labels: flag("with_label", false),
		immutable: flag("with_immutable_status", false), accessories: flag("with_accessory", false),
		scanOverview: flag("with_scan_overview", false) && acceptsReport(c.r),
	}
}

// artifactKind is Harbor's artifact type.
func artifactKind(a *artifact) string {
	switch {
	case a.isIndex(), a.ConfigMediaType == mediatype.OCIConfig, a.ConfigMediaType == mediatype.DockerConfig:
		return "IMAGE"
	case a.ConfigMediaType == "application/vnd.cncf.helm.config.v1+json":
		return "CHART"
	default:
		return "UNKNOWN"
	}
}

// artifactJSON is an artifact as the API shows it (HARBOR.md §3.2, §7): an index has references and
// extra_attrs null; an image has extra_attrs.config.Labels; tags, labels and accessories are null unless
// asked for (and present).
func (s *Server) artifactJSON(p *project, repo *repoRecord, a *artifact, v artifactView) map[string]any {
	mt := a.ManifestMediaType
	if !a.isIndex() && a.ConfigMediaType != "" {
		mt = a.ConfigMediaType
	}
	out := map[string]any{
		"id": a.ID, "type": artifactKind(a), "media_type": mt, "manifest_media_type": a.ManifestMediaType,
		"artifact_type": a.ArtifactType, "project_id": p.ID, "repository_id": repo.ID, "repository_name": repo.Name,
		"digest": a.Digest, "size": a.Size, "icon": "", "push_time": apiTime(a.PushTime), "pull_time": apiTime(a.PullTime),
		"extra_attrs": nil, "annotations": nil, "references": nil, "tags": nil, "labels": nil, "accessories": nil,
	}
	if a.ExtraAttrs != nil {
		out["extra_attrs"] = a.ExtraAttrs
	}
	if len(a.Annotations) > 0 {
		out["annotations"] = a.Annotations
	}
	if artifactKind(a) == "IMAGE" && !a.isIndex() {
		base := fmt.Sprintf("/api/v2.0/projects/%s/repositories/%s/artifacts/%s/additions/", p.Name,
			strings.ReplaceAll(repo.short(), "/", "%252F"), a.Digest)
		out["addition_links"] = map[string]any{"build_history": map[string]any{"absolute": false, "href": base + "build_history"}}
	}
	if a.isIndex() {
		var refs []map[string]any
		for _, ch := range a.Children {
			r := map[string]any{"parent_id": a.ID, "child_digest": ch.Digest, "urls": nil}
			if c := repo.Artifacts[ch.Digest]; c != nil {
				r["child_id"] = c.ID
			}
			if ch.Platform != nil {
				r["platform"] = ch.Platform
			}
			if len(ch.Annotations) > 0 {
				r["annotations"] = ch.Annotations
			}
			refs = append(refs, r)
		}
		out["references"] = refs
	}
	if v.tags && len(a.Tags) > 0 {
		var tags []map[string]any
		for _, t := range a.newestTags() {
			tags = append(tags, s.tagJSON(p, repo, a, t, v.immutable))
		}
		out["tags"] = tags
	}
	if v.accessories {
		if accs := accessoriesOf(repo, a); len(accs) > 0 {
			list := make([]map[string]any, 0, len(accs))
			for _, acc := range accs {
				list = append(list, accessoryJSON(repo, acc))
			}
			out["accessories"] = list
		}
	}
	if v.scanOverview {
		if ov := s.scanOverviewLocked(a); ov != nil {
			out["scan_overview"] = ov
		}
	}
	if v.labels && len(a.Labels) > 0 {
		var labels []map[string]any
		for _, id := range a.Labels {
			if l := s.st.Labels[id]; l != nil {
				labels = append(labels, labelJSON(l))
			}
		}
		out["labels"] = labels
	}
	return out
}

func (s *Server) tagJSON(p *project, repo *repoRecord, a *artifact, t *tag, withImmutable bool) map[string]any {
	return map[string]any{
		"id": t.ID, "repository_id": repo.ID, "artifact_id": a.ID, "name": t.Name,
		"push_time": apiTime(t.PushTime), "pull_time": apiTime(t.PullTime),
		"immutable": withImmutable && s.immutableLocked(p, repo.short(), t.Name),
	}
}

// artifactMatches applies the q= keys a client uses to artifacts (HARBOR.md §3.1).
func artifactMatches(q map[string]string, a *artifact) bool {
	if v, ok := q["tags"]; ok {
		switch {
		case v == "*":
			if len(a.Tags) == 0 {
				return false
			}
		case v == "nil":
			if len(a.Tags) > 0 {
				return false
			}
		default:
			if !slices.ContainsFunc(a.Tags, func(t *tag) bool { return matchValue(v, t.Name) }) {
				return false
			}
		}
	}
	if v, ok := q["digest"]; ok && !matchValue(v, a.Digest) {
		return false
	}
	if v, ok := q["media_type"]; ok {
		mt := a.ManifestMediaType
		if !a.isIndex() && a.ConfigMediaType != "" {
			mt = a.ConfigMediaType
		}
		if !matchValue(v, mt) && !matchValue(v, a.ManifestMediaType) {
			return false
		}
	}
	if v, ok := q["type"]; ok && !matchValue(v, artifactKind(a)) {
		return false
	}
	if v, ok := q["labels"]; ok {
		for _, f := range strings.Fields(strings.Trim(v, "(){}")) {
			id, _ := strconv.ParseInt(f, 10, 64)
			if !slices.Contains(a.Labels, id) {
				return false
			}
		}
	}
	return true
}

// listArtifacts lists a repository's top-level artifacts, newest push first; a missing project or
// repository is an empty list, not a 404 (HARBOR.md §7).
func (s *Server) listArtifacts(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	q, v := query(c), viewOf(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	p, err := s.projectLocked(c, false)
	if err != nil {
		paginate(c, pg, out)
		writeJSON(c.w, http.StatusOK, out)
		return nil
	}
	if err := s.authorize(c.user, p, accessRead); err != nil {
		return err
	}
	repo := p.Repos[p.Name+"/"+repoName(c)]
	var list []*artifact
	if repo != nil {
		for _, a := range repo.roots() {
			if artifactMatches(q, a) {
				list = append(list, a)
			}
		}
	}
	for _, a := range paginate(c, pg, list) {
		out = append(out, s.artifactJSON(p, repo, a, v))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

// artifactFor resolves {project}/{repo}/{ref} with access a; s.mu is held.
func (s *Server) artifactFor(c *call, a access) (*project, *repoRecord, *artifact, *apiError) {
	p, err := s.projectFor(c, false, a)
	if err != nil {
		return nil, nil, nil, err
	}
	name, ref := p.Name+"/"+repoName(c), c.r.PathValue("ref")
	repo := p.Repos[name]
	if repo == nil {
		return nil, nil, nil, errNotFound("artifact %s:%s not found", name, ref)
	}
	art := repo.lookup(ref)
	if art == nil {
		return nil, nil, nil, errNotFound("artifact %s:%s not found", name, ref)
	}
	return p, repo, art, nil
}

func (s *Server) getArtifact(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, repo, a, err := s.artifactFor(c, accessRead)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, s.artifactJSON(p, repo, a, viewOf(c)))
	return nil
}

// deleteArtifact deletes an artifact with all its tags, whichever reference names it (HARBOR.md §3.2): 200,
// 412 when an immutable tag is on it.
func (s *Server) deleteArtifact(c *call) *apiError {
	s.mu.Lock()
	p, repo, a, err := s.artifactFor(c, accessDelete)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	ev, gone, err := s.deleteArtifactLocked(c, p, repo, a)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.forget(c.r.Context(), repo.Name, gone)
	s.fire(ev)
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) listTags(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, repo, a, err := s.artifactFor(c, accessRead)
	if err != nil {
		return err
	}
	out := []map[string]any{}
	withImmutable := viewOf(c).immutable
	for _, t := range paginate(c, pg, a.newestTags()) {
		out = append(out, s.tagJSON(p, repo, a, t, withImmutable))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

var tagNameRE = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// createTag adds a tag; it never moves one: a tag anywhere in the repository is a 409 (HARBOR.md §3.2, §7).
// No webhook: CREATE_TAG cannot be subscribed to (§1.1).
func (s *Server) createTag(c *call) *apiError {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if !tagNameRE.MatchString(req.Name) {
		return errBadRequest("invalid tag name: %q", req.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, repo, a, err := s.artifactFor(c, accessWrite)
	if err != nil {
		return err
	}
	if old, _ := repo.tagged(req.Name); old != nil {
		return errConflict("the tag %s already exists under the repository %s", req.Name, repo.Name)
	}
	now := s.now()
	repo.attach(a, &tag{ID: s.st.next(), Name: req.Name, PushTime: now})
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

// deleteTag removes a tag from its artifact: 412 when immutable (HARBOR.md §7.1); no webhook (§1.3).
func (s *Server) deleteTag(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, repo, a, err := s.artifactFor(c, accessDelete)
	if err != nil {
		return err
	}
	name := c.r.PathValue("tag")
	if !slices.ContainsFunc(a.Tags, func(t *tag) bool { return t.Name == name }) {
		return errNotFound("tag %s not found", name)
	}
	if s.immutableLocked(p, repo.short(), name) {
		return errPrecondition("the tag %s configured as immutable, cannot be deleted", name)
	}
	repo.detach(name)
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// copyArtifact is POST …/artifacts?from=proj/repo:tag|@digest (HARBOR.md §3.2, §1.6, §7, §7.1): the root with
// its children and every tag, the repository made when missing; PUSH_ARTIFACT for the root with the
// source's newest tag (not the tag named in from=), and one for each child new at the destination. Children
// and accessories keep their own tags too (a cosign signature's sha256-<hex>.sig), as Harbor's copyDeeply
// ensures each copied artifact with its source's tags (goharbor/harbor v2.13.1
// src/controller/artifact/controller.go); their events carry that tag, else the digest.
func (s *Server) copyArtifact(c *call) *apiError {
	from := c.r.URL.Query().Get("from")
	srcName, srcRef, ok := splitFrom(from)
	if !ok {
		return errBadRequest("invalid from: %q", from)
	}
	s.mu.Lock()
	dst, err := s.projectLocked(c, false)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if err := s.authorize(c.user, dst, accessWrite); err != nil {
		s.mu.Unlock()
		return err
	}
	dstName := dst.Name + "/" + repoName(c)
	srcProjName, _, _ := strings.Cut(srcName, "/")
	var src *artifact
	var srcRepo *repoRecord
	if sp := s.st.projectByName(srcProjName); sp != nil {
		if err := s.authorize(c.user, sp, accessRead); err != nil {
			s.mu.Unlock()
			return err
		}
		if srcRepo = sp.Repos[srcName]; srcRepo != nil {
			src = srcRepo.lookup(srcRef)
		}
	}
	if src == nil {
		s.mu.Unlock()
		return errBadRequest("artifact %s not found", from)
	}
	if dr := dst.Repos[dstName]; dr != nil {
		_, short, _ := strings.Cut(dstName, "/")
		for _, t := range src.Tags {
			// Even when the tag is already on the identical artifact (HARBOR.md §7.1: "cannot be updated", unqualified).
			if on, _ := dr.tagged(t.Name); on != nil && s.immutableLocked(dst, short, t.Name) {
				s.mu.Unlock()
				return errPrecondition("the tag %s configured as immutable, cannot be updated", t.Name)
			}
		}
	}
	// Children and accessories first (HARBOR.md §3.2: the copy carries both, as Harbor's copyDeeply does),
	// then the root, last.
	var tree []*artifact
	ownTags := map[string][]*tag{} // a non-root's tags, oldest first
	var walk func(a *artifact)
	walk = func(a *artifact) {
		if a != src {
			ownTags[a.Digest] = slices.Clone(a.newestTags())
			slices.Reverse(ownTags[a.Digest])
		}
		for _, ch := range a.Children {
			if c := srcRepo.Artifacts[ch.Digest]; c != nil {
				walk(c)
			}
		}
		for _, acc := range accessoriesOf(srcRepo, a) {
			walk(acc)
		}
		tree = append(tree, cloneArtifact(a))
	}
	walk(src)
	var accDigests []string // copied by their own digest: the root's manifest does not reach them
	for _, a := range tree {
		if a.accessory() {
			accDigests = append(accDigests, a.Digest)
		}
	}
	rootTag := src.eventTag()
	srcTags := slices.Clone(src.newestTags())
	slices.Reverse(srcTags) // oldest first, so that the copies keep the source's order
	s.mu.Unlock()

	if srcName != dstName {
		// Subjects before their referrers: the root's content first.
		for _, d := range append([]string{src.Digest}, accDigests...) {
			if err := s.copyContent(c.r.Context(), srcName, dstName, d); err != nil {
				return errorf(http.StatusInternalServerError, codeUnknown, "%v", err)
			}
		}
	}

	s.mu.Lock()
	dst = s.st.Projects[dst.ID]
	if dst == nil {
		s.mu.Unlock()
		return errNotFound("project %s not found", c.r.PathValue("project"))
	}
	now := s.now()
	repo := s.st.repo(dst, dstName, true, now)
	var evs []Event
	for i, a := range tree {
		root := i == len(tree)-1
		have := repo.Artifacts[a.Digest]
		if have == nil {
			a.ID, a.PushTime = s.st.next(), now
			if a.accessory() {
				a.AccessoryID = s.st.next()
			}
			repo.Artifacts[a.Digest] = a
			have = a
			if !root {
				for _, t := range ownTags[a.Digest] {
					s.ensureTagLocked(repo, have, t.Name, now)
				}
				evs = append(evs, s.newEvent("PUSH_ARTIFACT", c, dst, repo, a.Digest, have.eventTag()))
			}
		}
		if root {
			for _, t := range srcTags {
				s.ensureTagLocked(repo, have, t.Name, now)
			}
			evs = append(evs, s.newEvent("PUSH_ARTIFACT", c, dst, repo, a.Digest, rootTag))
		}
	}
	repo.Updated = now
	// A copy into a project with auto_scan scans again (HARBOR.md §7.1); elsewhere it shows the source's
	// reports at once, since they belong to the digest.
	scans := s.autoScanLocked(dst, repo, repo.Artifacts[src.Digest], rootTag, c.user.name, c.reqID)
	_ = s.saveLocked()
	s.mu.Unlock()
	s.fire(evs...)
	s.startScans(scans)
	c.w.Header().Set("Location", strings.TrimSuffix(c.r.URL.Path, "/")+"/"+srcRef)
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

// splitFrom splits from= into the repository and the tag or digest.
func splitFrom(from string) (name, reference string, ok bool) {
	if i := strings.Index(from, "@"); i > 0 {
		return from[:i], from[i+1:], isDigest(from[i+1:])
	}
	i := strings.LastIndex(from, ":")
	if i <= strings.LastIndex(from, "/") || i == len(from)-1 {
		return "", "", false
	}
	return from[:i], from[i+1:], strings.Contains(from[:i], "/")
}

// cloneArtifact copies what the content determines, without ids, tags, labels or times.
func cloneArtifact(a *artifact) *artifact {
	return &artifact{
		Digest: a.Digest, ManifestMediaType: a.ManifestMediaType, ConfigMediaType: a.ConfigMediaType,
		ArtifactType: a.ArtifactType, Size: a.Size, Annotations: a.Annotations, ExtraAttrs: a.ExtraAttrs,
		Children: slices.Clone(a.Children), Subject: a.Subject, AccessoryOf: a.AccessoryOf,
	}
}

// copyContent copies a manifest with its children and blobs between repositories of the backing registry.
func (s *Server) copyContent(ctx context.Context, srcName, dstName, dig string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	src, err := ref.New(s.innerHost + "/" + srcName + "@" + dig)
	if err != nil {
		return fmt.Errorf("copying %s@%s: %w", srcName, dig, err)
	}
	dst, err := ref.New(s.innerHost + "/" + dstName + "@" + dig)
	if err != nil {
		return fmt.Errorf("copying to %s: %w", dstName, err)
	}
	if err := s.copier.ImageCopy(ctx, src, dst); err != nil {
		return fmt.Errorf("copying %s@%s to %s: %w", srcName, dig, dstName, err)
	}
	return nil
}
