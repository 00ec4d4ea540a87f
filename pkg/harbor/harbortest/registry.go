package harbortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/harborflow/harborflow/pkg/mediatype"
)

// maxManifest bounds a manifest body, as registries do.
const maxManifest = 4 << 20

// v2Path splits a /v2/ path into the repository name and what follows it.
var v2Path = regexp.MustCompile(`^/v2/(.+)/(manifests/[^/]+|blobs/uploads/.*|blobs/[^/]+|tags/list|referrers/[^/]+)$`)

// registryFront is Harbor's /v2/: token or basic auth, the project's roles, then manifests handled here
// (Harbor's database is the truth for tags, and events come from here, HARBOR.md §7: "push and delete events
// come from core's proxy middleware") and everything else proxied to the backing registry.
func (s *Server) registryFront(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	u, ok := s.registryUser(r)
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		if !ok || u.anonymous() {
			w.Header().Set("Www-Authenticate", s.challenge("", false))
			writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "unauthorized to access repository: , action: "))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	if r.URL.Path == "/v2/_catalog" {
		s.serveCatalog(w, r, u, ok)
		return
	}
	m := v2Path.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeError(w, errNotFound("%s not found", r.URL.Path))
		return
	}
	name, rest := m[1], m[2]
	need, scope := accessRead, "repository:"+name+":pull"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodDelete:
		need, scope = accessDelete, "repository:"+name+":delete"
	default:
		need, scope = accessWrite, "repository:"+name+":pull,push"
	}
	projectName, _, _ := strings.Cut(name, "/")
	s.mu.Lock()
	p := s.st.projectByName(projectName)
	allowed := ok && p != nil && s.allowed(u, p, need)
	s.mu.Unlock()
	// Harbor challenges a HEAD without credentials even where anonymous reads are allowed, so that CLIs log
	// in (goharbor/harbor#11271, src/server/middleware/v2auth).
	headWithout := r.Method == http.MethodHead && r.Header.Get("Authorization") == ""
	switch {
	case !ok || headWithout || (!allowed && u.anonymous()):
		w.Header().Set("Www-Authenticate", s.challenge(scope, false))
		writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "unauthorized to access repository: %s, action: %s", name, actionOf(need)))
		return
	case p == nil || !strings.Contains(name, "/"):
		writeError(w, errNotFound("project %s not found", projectName))
		return
	case !allowed:
		w.Header().Set("Www-Authenticate", s.challenge(scope, true))
		writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "unauthorized to access repository: %s, action: %s", name, actionOf(need)))
		return
	}
	c := &call{w: w, r: r, user: u, reqID: r.Header.Get("X-Request-Id")}
	kind, ref, _ := strings.Cut(rest, "/")
	switch {
	case kind == "manifests" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.getManifest(c, projectName, name, ref)
	case kind == "manifests" && r.Method == http.MethodPut:
		s.putManifest(c, projectName, name, ref)
	case kind == "manifests" && r.Method == http.MethodDelete:
		s.deleteManifest(c, projectName, name, ref)
	case kind == "tags" && r.Method == http.MethodGet:
		s.listRegistryTags(c, projectName, name)
	default:
		s.proxy(w, r)
	}
}

func actionOf(a access) string {
	switch a {
	case accessRead:
		return "pull"
	case accessDelete:
		return "delete"
	default:
		return "push"
	}
}

// proxy passes a request on to the backing registry, without the client's credentials.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", s.innerHost, s.innerHost
			pr.Out.Header.Del("Authorization")
		},
		Transport: s.innerHTTP.Transport,
		ModifyResponse: func(resp *http.Response) error {
			if loc := resp.Header.Get("Location"); loc != "" {
				resp.Header.Set("Location", strings.TrimPrefix(loc, "http://"+s.innerHost))
			}
			return nil
		},
		ErrorLog: s.opts.errorLog,
	}
	rp.ServeHTTP(w, r)
}

// backend sends a request to the backing registry.
func (s *Server) backend(ctx context.Context, method, path string, header http.Header, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.innerHost+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("backing registry %s %s: %w", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.innerHTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("backing registry %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("backing registry %s %s: %w", method, path, err)
	}
	return resp, b, nil
}

// repoLocked is a repository by its project's name and its full name; nil when either is gone.
func (s *Server) repoLocked(projectName, name string) *repoRecord {
	p := s.st.projectByName(projectName)
	if p == nil {
		return nil
	}
	return p.Repos[name]
}

// relay writes a backing registry's answer to the client.
func (s *Server) relay(w http.ResponseWriter, resp *http.Response, body []byte) {
	for k, v := range resp.Header {
		if k == "Location" {
			w.Header().Set(k, strings.TrimPrefix(v[0], "http://"+s.innerHost))
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// getManifest resolves a tag through the stand-in's state and serves the manifest by digest; a GET fires
// PULL_ARTIFACT, a HEAD does not (HARBOR.md §1.3).
func (s *Server) getManifest(c *call, projectName, name, ref string) {
	s.mu.Lock()
	var a *artifact
	if repo := s.repoLocked(projectName, name); repo != nil {
		a = repo.lookup(ref)
	}
	s.mu.Unlock()
	if a == nil {
		writeError(c.w, errNotFound("artifact %s:%s not found", name, ref))
		return
	}
	h := http.Header{}
	if acc := c.r.Header.Values("Accept"); len(acc) > 0 {
		h["Accept"] = acc
	}
	resp, body, err := s.backend(c.r.Context(), c.r.Method, "/v2/"+name+"/manifests/"+a.Digest, h, nil)
	if err != nil {
		writeError(c.w, errorf(http.StatusInternalServerError, codeUnknown, "%v", err))
		return
	}
	if c.r.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		if ev, ok := s.recordPull(c, projectName, name, ref, a.Digest); ok {
			defer s.fire(ev)
		}
	}
	s.relay(c.w, resp, body)
}

// recordPull sets pull times and makes the PULL_ARTIFACT event; the tag is the reference pulled, the digest
// for a pull by digest (HARBOR.md §1.4).
func (s *Server) recordPull(c *call, projectName, name, ref, dig string) (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.st.projectByName(projectName)
	if p == nil || p.Repos[name] == nil || p.Repos[name].Artifacts[dig] == nil {
		return Event{}, false
	}
	repo := p.Repos[name]
	now := s.now()
	a := repo.Artifacts[dig]
	a.PullTime = now
	if _, t := repo.tagged(ref); t != nil {
		t.PullTime = now
	}
	repo.PullCount++
	_ = s.saveLocked()
	return s.newEvent("PULL_ARTIFACT", c, p, repo, dig, ref), true
}

// putManifest stores a manifest in the backing registry and records the artifact: a tag pushed again that
// an immutable rule covers is refused even when the manifest is identical (HARBOR.md §7.1); every PUT fires
// PUSH_ARTIFACT with the reference PUT, a digest for a push by digest (§1.4, §1.6), a re-push included (§7).
func (s *Server) putManifest(c *call, projectName, name, ref string) {
	body, err := io.ReadAll(io.LimitReader(c.r.Body, maxManifest+1))
	if err != nil {
		writeError(c.w, errBadRequest("reading the manifest: %v", err))
		return
	}
	if len(body) > maxManifest {
		writeError(c.w, errorf(http.StatusBadRequest, "MANIFEST_INVALID", "manifest too large"))
		return
	}
	// An existing immutable tag is refused, an identical manifest included (HARBOR.md §7.1); checked before the
	// write, and again where the tag moves, for a rule or a tag that came meanwhile.
	immutable := func(p *project) *apiError {
		if repo := s.repoLocked(projectName, name); repo != nil && !isDigest(ref) {
			if a, _ := repo.tagged(ref); a != nil && s.immutableLocked(p, repo.short(), ref) {
				_, short, _ := strings.Cut(name, "/")
				return errPrecondition("Failed to process request due to '%s:%s' configured as immutable.", short, ref)
			}
		}
		return nil
	}
	s.mu.Lock()
	p := s.st.projectByName(projectName)
	aerr := immutable(p)
	s.mu.Unlock()
	if aerr != nil {
		writeError(c.w, aerr)
		return
	}

	h := http.Header{}
	h.Set("Content-Type", c.r.Header.Get("Content-Type"))
	resp, respBody, err := s.backend(c.r.Context(), http.MethodPut, "/v2/"+name+"/manifests/"+ref, h, body)
	if err != nil {
		writeError(c.w, errorf(http.StatusInternalServerError, codeUnknown, "%v", err))
		return
	}
	if resp.StatusCode != http.StatusCreated {
		s.relay(c.w, resp, respBody)
		return
	}
	dig := resp.Header.Get("Docker-Content-Digest")
	if dig == "" {
		dig = digest.FromBytes(body).String()
	}
	a, err := s.describe(c.r.Context(), name, dig, c.r.Header.Get("Content-Type"), body)
	if err != nil {
		writeError(c.w, errorf(http.StatusBadRequest, "MANIFEST_INVALID", "%v", err))
		return
	}
	s.mu.Lock()
	p = s.st.projectByName(projectName)
	if p == nil { // deleted meanwhile
		s.mu.Unlock()
		writeError(c.w, errNotFound("project %s not found", projectName))
		return
	}
	if aerr := immutable(p); aerr != nil {
		s.mu.Unlock()
		writeError(c.w, aerr)
		return
	}
	now := s.now()
	repo := s.st.repo(p, name, true, now)
	existing := repo.Artifacts[dig]
	if existing == nil {
		a.ID, a.PushTime = s.st.next(), now
		s.markAccessoryLocked(repo, a, ref)
		repo.Artifacts[dig] = a
		existing = a
	}
	if !isDigest(ref) {
		s.ensureTagLocked(repo, existing, ref, now)
	}
	repo.Updated = now
	_ = s.saveLocked()
	ev := s.newEvent("PUSH_ARTIFACT", c, p, repo, dig, ref)
	scans := s.autoScanLocked(p, repo, existing, ref, c.user.name, c.reqID)
	s.mu.Unlock()
	s.fire(ev)
	s.startScans(scans)
	s.relay(c.w, resp, respBody)
}

// ensureTagLocked puts tag name on a as Harbor's tag controller Ensure does: nothing when a has it, else a
// new tag or the tag moved from another artifact, with a new push time. Immutability is the caller's check.
func (s *Server) ensureTagLocked(repo *repoRecord, a *artifact, name string, now time.Time) {
	old, t := repo.tagged(name)
	if old == a {
		return
	}
	if t == nil {
		t = &tag{ID: s.st.next(), Name: name}
	}
	t.PushTime = now
	repo.attach(a, t)
}

// manifestDoc is what the stand-in reads of a manifest.
type manifestDoc struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *descDoc          `json:"config"`
	Layers       []descDoc         `json:"layers"`
	Manifests    []descDoc         `json:"manifests"`
	Subject      *descDoc          `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

type descDoc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    map[string]any    `json:"platform"`
	Annotations map[string]string `json:"annotations"`
}

// describe makes the artifact record of a manifest just stored: its media types, size, index entries and,
// for an image, the extra_attrs Harbor's image processor keeps from the config (HARBOR.md §3.2).
func (s *Server) describe(ctx context.Context, name, dig, contentType string, body []byte) (*artifact, error) {
	var m manifestDoc
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decoding the manifest: %w", err)
	}
	mt := mediatype.Normalize(contentType)
	if mt == "" {
		mt = m.MediaType
	}
	a := &artifact{Digest: dig, ManifestMediaType: mt, ArtifactType: m.ArtifactType, Size: int64(len(body)), Annotations: m.Annotations}
	if m.Subject != nil {
		a.Subject = m.Subject.Digest
	}
	if mediatype.IsIndex(mt) {
		a.Children = []child{}
		for _, d := range m.Manifests {
			a.Children = append(a.Children, child{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, Platform: d.Platform, Annotations: d.Annotations})
			a.Size += d.Size
		}
		if a.ArtifactType == "" {
			a.ArtifactType = mt
		}
		return a, nil
	}
	if m.Config != nil {
		a.ConfigMediaType = m.Config.MediaType
		a.Size += m.Config.Size
		if a.ArtifactType == "" {
			a.ArtifactType = m.Config.MediaType
		}
	}
	for _, l := range m.Layers {
		a.Size += l.Size
	}
	if m.Config != nil && (m.Config.MediaType == mediatype.OCIConfig || m.Config.MediaType == mediatype.DockerConfig) {
		resp, cfg, err := s.backend(ctx, http.MethodGet, "/v2/"+name+"/blobs/"+m.Config.Digest, nil, nil)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("reading the config %s: status %d", m.Config.Digest, resp.StatusCode)
		}
		var doc map[string]any
		if err := json.Unmarshal(cfg, &doc); err != nil {
			return nil, fmt.Errorf("decoding the config %s: %w", m.Config.Digest, err)
		}
		a.ExtraAttrs = map[string]any{
			"architecture": doc["architecture"], "os": doc["os"], "created": doc["created"],
			"author": doc["author"], "config": doc["config"],
		}
		if v, ok := doc["variant"]; ok {
			a.ExtraAttrs["variant"] = v
		}
	}
	return a, nil
}

// deleteManifest is a registry DELETE by digest: Harbor refuses one by tag, deletes as the API does, and
// answers 202 (HARBOR.md §7).
func (s *Server) deleteManifest(c *call, projectName, name, ref string) {
	if !isDigest(ref) {
		writeError(c.w, errorf(http.StatusBadRequest, codeUnsupported, "unsupported digest %s", ref))
		return
	}
	s.mu.Lock()
	p := s.st.projectByName(projectName)
	repo := s.repoLocked(projectName, name)
	var a *artifact
	if repo != nil {
		a = repo.Artifacts[ref]
	}
	if a == nil {
		s.mu.Unlock()
		writeError(c.w, errNotFound("artifact %s@%s not found", name, ref))
		return
	}
	ev, gone, aerr := s.deleteArtifactLocked(c, p, repo, a)
	s.mu.Unlock()
	if aerr != nil {
		writeError(c.w, aerr)
		return
	}
	s.forget(c.r.Context(), repo.Name, gone)
	s.fire(ev)
	c.w.WriteHeader(http.StatusAccepted)
}

// deleteArtifactLocked deletes a root artifact with its tags, and the children no other artifact refers to
// and no tag names, as Harbor's deleteDeeply; it refuses a child still referred to, and an artifact with an
// immutable tag (412, HARBOR.md §7.1). The DELETE_ARTIFACT event is for the root only and names its newest
// tag (§1.3, §7). It returns the digests to forget in the backing registry, which the caller does after
// releasing the lock and before it answers, so that a push right after the answer is not undone.
func (s *Server) deleteArtifactLocked(c *call, p *project, repo *repoRecord, a *artifact) (Event, []string, *apiError) {
	if repo.referenced(a.Digest) {
		return Event{}, nil, errorf(http.StatusPreconditionFailed, codeForeignKey, "the deleting artifact is referenced by others")
	}
	for _, t := range a.Tags {
		if s.immutableLocked(p, repo.short(), t.Name) {
			return Event{}, nil, errPrecondition("the tag %s configured as immutable, cannot be deleted", t.Name)
		}
	}
	ev := s.newEvent("DELETE_ARTIFACT", c, p, repo, a.Digest, a.eventTag())
	repo.remove(a)
	gone := slices.Concat(s.dropChildrenLocked(repo, a), s.dropAccessoriesLocked(repo, a))
	repo.Updated = s.now()
	_ = s.saveLocked()
	return ev, append(gone, a.Digest), nil
}

// dropChildrenLocked deletes a's children that nothing refers to any more and that have no tag, each with its
// accessories (a platform manifest's signature), as Harbor's deleteDeeply. It returns the accessories'
// digests, to forget in the backing registry.
func (s *Server) dropChildrenLocked(repo *repoRecord, a *artifact) []string {
	var gone []string
	for _, ch := range a.Children {
		c := repo.Artifacts[ch.Digest]
		if c == nil || len(c.Tags) > 0 || repo.referenced(c.Digest) {
			continue
		}
		repo.remove(c)
		gone = append(gone, s.dropChildrenLocked(repo, c)...)
		gone = append(gone, s.dropAccessoriesLocked(repo, c)...)
	}
	return gone
}

// forget deletes manifests of repository name from the backing registry; what the stand-in's state no longer
// has is gone whether or not this succeeds.
func (s *Server) forget(ctx context.Context, name string, digests []string) {
	for _, dig := range digests {
		_, _, _ = s.backend(context.WithoutCancel(ctx), http.MethodDelete, "/v2/"+name+"/manifests/"+dig, nil, nil)
	}
}

// listRegistryTags is /v2/<name>/tags/list from the stand-in's state, sorted, paged with n and last.
func (s *Server) listRegistryTags(c *call, projectName, name string) {
	s.mu.Lock()
	var tags []string
	if repo := s.repoLocked(projectName, name); repo != nil {
		for t := range repo.tags {
			tags = append(tags, t)
		}
	}
	s.mu.Unlock()
	if tags == nil {
		writeError(c.w, errorf(http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry"))
		return
	}
	slices.Sort(tags)
	q := c.r.URL.Query()
	if last := q.Get("last"); last != "" {
		i, _ := slices.BinarySearch(tags, last)
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n >= 0 && n < len(tags) {
		tags = tags[:n]
		if n > 0 {
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[len(tags)-1]}}
			c.w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, name, next.Encode()))
		}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"name": name, "tags": tags})
}

// serveCatalog lists every repository, to a system administrator only.
func (s *Server) serveCatalog(w http.ResponseWriter, r *http.Request, u user, ok bool) {
	if !ok || !u.admin {
		w.Header().Set("Www-Authenticate", s.challenge("registry:catalog:*", ok && !u.anonymous()))
		writeError(w, errUnauthorized)
		return
	}
	s.mu.Lock()
	repos := []string{}
	for _, p := range s.st.Projects {
		for name := range p.Repos {
			repos = append(repos, name)
		}
	}
	s.mu.Unlock()
	slices.Sort(repos)
	writeJSON(w, http.StatusOK, map[string]any{"repositories": repos})
}
