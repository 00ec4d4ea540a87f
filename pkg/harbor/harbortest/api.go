package harbortest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// call is one API or registry request.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	user  user
	reqID string
}

// apiHandler routes /api/v2.0 (HARBOR.md §3.2).
func (s *Server) apiHandler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn func(*call) *apiError) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c := &call{w: w, r: r, user: s.apiUser(r), reqID: r.Header.Get("X-Request-Id")}
			if err := fn(c); err != nil {
				writeError(w, err)
			}
		})
	}
	const (
		base = "/api/v2.0"
		proj = base + "/projects/{project}"
		repo = proj + "/repositories/{repo}"
		art  = repo + "/artifacts/{ref}"
	)
	h("GET "+base+"/health", s.health)
	h("GET "+base+"/systeminfo", s.systemInfo)
	h("GET "+base+"/projects", s.listProjects)
	h("HEAD "+base+"/projects", s.headProject)
	h("POST "+base+"/projects", s.createProject)
	h("GET "+proj, s.getProject)
	h("PUT "+proj, s.updateProject)
	h("DELETE "+proj, s.deleteProject)
	// Harbor's swagger declares the list and the add with a trailing slash (…/metadatas/), which is what
	// go-client sends; the form without it is kept for raw callers.
	h("GET "+proj+"/metadatas", s.getMetadata)
	h("POST "+proj+"/metadatas", s.addMetadata)
	h("GET "+proj+"/metadatas/{$}", s.getMetadata)
	h("POST "+proj+"/metadatas/{$}", s.addMetadata)
	h("GET "+proj+"/metadatas/{name}", s.getMetadata)
	h("PUT "+proj+"/metadatas/{name}", s.addMetadata)
	h("DELETE "+proj+"/metadatas/{name}", s.deleteMetadata)
	h("GET "+proj+"/repositories", s.listRepositories)
	h("GET "+repo, s.getRepository)
	h("GET "+repo+"/artifacts", s.listArtifacts)
	h("POST "+repo+"/artifacts", s.copyArtifact)
	h("GET "+art, s.getArtifact)
	h("DELETE "+art, s.deleteArtifact)
	h("POST "+art+"/scan", s.scanArtifact)
	h("POST "+art+"/scan/stop", s.stopScan)
	h("GET "+art+"/accessories", s.listAccessories)
	h("GET "+art+"/tags", s.listTags)
	h("POST "+art+"/tags", s.createTag)
	h("DELETE "+art+"/tags/{tag}", s.deleteTag)
	h("POST "+art+"/labels", s.addArtifactLabel)
	h("DELETE "+art+"/labels/{label}", s.removeArtifactLabel)
	h("GET "+base+"/labels", s.listLabels)
	h("POST "+base+"/labels", s.createLabel)
	h("GET "+base+"/labels/{label}", s.getLabel)
	h("DELETE "+base+"/labels/{label}", s.deleteLabel)
	h("GET "+proj+"/immutabletagrules", s.listImmutableRules)
	h("POST "+proj+"/immutabletagrules", s.createImmutableRule)
	h("PUT "+proj+"/immutabletagrules/{rule}", s.updateImmutableRule)
	h("DELETE "+proj+"/immutabletagrules/{rule}", s.deleteImmutableRule)
	h("GET "+proj+"/webhook/policies", s.listPolicies)
	h("POST "+proj+"/webhook/policies", s.createPolicy)
	h("GET "+proj+"/webhook/policies/{policy}", s.getPolicy)
	h("PUT "+proj+"/webhook/policies/{policy}", s.updatePolicy)
	h("DELETE "+proj+"/webhook/policies/{policy}", s.deletePolicy)
	h("GET "+proj+"/webhook/events", s.supportedEvents)
	h(base+"/", func(c *call) *apiError {
		// A path that exists for other methods is a 405, as go-swagger's router answers (HARBOR.md §7:
		// POST …/webhook/policies/test).
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			other := c.r.Clone(c.r.Context())
			other.Method = m
			if _, pattern := mux.Handler(other); m != c.r.Method && pattern != base+"/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			c.w.Header().Set("Allow", strings.Join(allow, ", "))
			return errorf(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method %s is not allowed, but [%s] are", c.r.Method, strings.Join(allow, ","))
		}
		return errNotFound("%s not found", c.r.URL.Path)
	})
	return mux
}

func (s *Server) health(c *call) *apiError {
	comps := []map[string]string{}
	for _, n := range []string{"core", "database", "jobservice", "portal", "redis", "registry", "registryctl"} {
		comps = append(comps, map[string]string{"name": n, "status": "healthy"})
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"status": "healthy", "components": comps})
	return nil
}

func (s *Server) systemInfo(c *call) *apiError {
	writeJSON(c.w, http.StatusOK, map[string]any{
		"harbor_version": "v2.13.5-harbortest", "auth_mode": "db_auth", "external_url": s.url,
		"registry_url": s.host, "self_registration": false, "has_ca_root": false,
	})
	return nil
}

// decode reads a JSON body into v; a body that is not JSON is a 400, as go-swagger's.
func decode(c *call, v any) *apiError {
	b, err := io.ReadAll(io.LimitReader(c.r.Body, 1<<20))
	if err != nil {
		return errBadRequest("reading the body: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return errorf(http.StatusUnprocessableEntity, codeUnprocessable, "%s in body must be of type %s: %q", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return errBadRequest("parsing body body from \"\" failed, because %v", err)
	}
	return nil
}

// page is the paging of a list request: page from 1, page_size 10 by default and at most 100 (HARBOR.md §3.1:
// go-swagger answers 422 beyond).
type page struct{ num, size int }

func paging(c *call) (page, *apiError) {
	pg := page{num: 1, size: 10}
	q := c.r.URL.Query()
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return pg, errorf(http.StatusUnprocessableEntity, codeUnprocessable, "validation failure list:\npage in query should be greater than or equal to 1")
		}
		// Any page past every list is as empty as the next; bounded, page × page_size cannot overflow.
		pg.num = min(n, math.MaxInt32)
	}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			return pg, errorf(http.StatusUnprocessableEntity, codeUnprocessable, "validation failure list:\npage_size in query should be greater than or equal to 0")
		case n > 100:
			return pg, errorf(http.StatusUnprocessableEntity, codeUnprocessable, "validation failure list:\npage_size in query should be less than or equal to 100")
		case n > 0:
			pg.size = n
		}
	}
	return pg, nil
}

// paginate answers one page of items with X-Total-Count and Link in Harbor's form (HARBOR.md §3.1:
// path-only URLs joined by " , ").
func paginate[T any](c *call, pg page, items []T) []T {
	total := len(items)
	c.w.Header().Set("X-Total-Count", strconv.Itoa(total))
	link := func(n int, rel string) string {
		q := c.r.URL.Query()
		q.Set("page", strconv.Itoa(n))
		q.Set("page_size", strconv.Itoa(pg.size))
		return fmt.Sprintf(`<%s?%s>; rel="%s"`, c.r.URL.EscapedPath(), q.Encode(), rel)
	}
	var links []string
	if pg.num > 1 {
		links = append(links, link(pg.num-1, "prev"))
	}
	if pg.num*pg.size < total {
		links = append(links, link(pg.num+1, "next"))
	}
	if len(links) > 0 {
		c.w.Header().Set("Link", strings.Join(links, " , "))
	}
	from := min((pg.num-1)*pg.size, total)
	to := min(from+pg.size, total)
	return items[from:to]
}

// query is the q= parameter: comma-separated k=v, the value kept as written (`~v` fuzzy, `(a b)`, `{a b}`).
func query(c *call) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(c.r.URL.Query().Get("q"), ",") {
		if k, v, ok := strings.Cut(part, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// matchValue applies a q= value to s: exact, `~` fuzzy, `{a b}` any of.
func matchValue(v, s string) bool {
	switch {
	case strings.HasPrefix(v, "~"):
		return strings.Contains(s, v[1:])
	case strings.HasPrefix(v, "{") && strings.HasSuffix(v, "}"):
		return slices.Contains(strings.Fields(v[1:len(v)-1]), s)
	default:
		return v == s
	}
}

// projectLocked resolves the {project} path value; allowID for project_name_or_id parameters. s.mu is held.
func (s *Server) projectLocked(c *call, allowID bool) (*project, *apiError) {
	v := c.r.PathValue("project")
	if strings.EqualFold(c.r.Header.Get("X-Is-Resource-Name"), "true") {
		allowID = false
	}
	p := s.st.projectRef(v, allowID)
	if p == nil {
		return nil, errNotFound("project %s not found", v)
	}
	return p, nil
}

// projectFor resolves the project and checks access; s.mu is held.
func (s *Server) projectFor(c *call, allowID bool, a access) (*project, *apiError) {
	p, err := s.projectLocked(c, allowID)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c.user, p, a); err != nil {
		return nil, err
	}
	return p, nil
}

// repoName is the {repo} path value unescaped a second time: clients double-escape a/b as a%252Fb (HARBOR.md
// §3.1), the router unescapes once.
func repoName(c *call) string {
	v := c.r.PathValue("repo")
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

var projectNameRE = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

func (s *Server) projectJSON(u user, p *project) map[string]any {
	role := s.role(u, p)
	var roles []int
	if role != 0 {
		roles = []int{role}
	}
	return map[string]any{
		"project_id": p.ID, "name": p.Name, "owner_id": 1, "owner_name": p.Owner, "registry_id": 0,
		"creation_time": apiTime(p.Created), "update_time": apiTime(p.Updated), "deleted": false,
		"repo_count": len(p.Repos), "metadata": p.Metadata, "togglable": true,
		"current_user_role_id": role, "current_user_role_ids": roles,
		"cve_allowlist": map[string]any{"id": 0, "project_id": p.ID, "items": []any{}, "creation_time": apiTime(p.Created), "update_time": apiTime(p.Updated)},
	}
}

func (s *Server) listProjects(c *call) *apiError {
	pg, err := paging(c)
	if err != nil {
		return err
	}
	q := query(c)
	params := c.r.URL.Query()
	s.mu.Lock()
	var list []*project
	for _, p := range s.st.Projects {
		if !s.allowed(c.user, p, accessRead) {
			continue
		}
		if v := params.Get("name"); v != "" && !strings.Contains(p.Name, v) {
			continue
		}
		if v := params.Get("public"); v != "" && v != strconv.FormatBool(p.public()) {
			continue
		}
		if v, ok := q["name"]; ok && !matchValue(v, p.Name) {
			continue
		}
		if v, ok := q["public"]; ok && v != strconv.FormatBool(p.public()) {
			continue
		}
		if v := params.Get("owner"); v != "" && v != p.Owner {
			continue
		}
		list = append(list, p)
	}
	slices.SortFunc(list, func(a, b *project) int { return strings.Compare(a.Name, b.Name) })
	out := []map[string]any{}
	for _, p := range paginate(c, pg, list) {
		out = append(out, s.projectJSON(c.user, p))
	}
	s.mu.Unlock()
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

// headProject answers whether a project named project_name exists (200 or 404).
func (s *Server) headProject(c *call) *apiError {
	name := c.r.URL.Query().Get("project_name")
	s.mu.Lock()
	p := s.st.projectByName(name)
	s.mu.Unlock()
	if p == nil {
		c.w.WriteHeader(http.StatusNotFound)
		return nil
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// stringMetadata checks that every metadata value is a JSON string: a real Harbor answers 422 to
// {"public":false} (HARBOR.md §7).
func stringMetadata(raw map[string]json.RawMessage) (map[string]string, *apiError) {
	out := map[string]string{}
	for k, v := range raw {
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return nil, errorf(http.StatusUnprocessableEntity, codeUnprocessable, "metadata.%s in body must be of type string: %q", k, string(v))
		}
		if k == "public" || k == "auto_scan" || k == "enable_content_trust" || k == "prevent_vul" || k == "reuse_sys_cve_allowlist" {
			b, err := strconv.ParseBool(str)
			if err != nil {
				return nil, errBadRequest("invalid value of metadata %s: %s", k, str)
			}
			str = strconv.FormatBool(b)
		}
		out[k] = str
	}
	return out, nil
}

type projectReq struct {
	ProjectName string                     `json:"project_name"`
	Public      *bool                      `json:"public"`
	Metadata    map[string]json.RawMessage `json:"metadata"`
}

func (s *Server) createProject(c *call) *apiError {
	if c.user.anonymous() {
		return errUnauthorized
	}
	var req projectReq
	if err := decode(c, &req); err != nil {
		return err
	}
	md, err := stringMetadata(req.Metadata)
	if err != nil {
		return err
	}
	if req.Public != nil {
		md["public"] = strconv.FormatBool(*req.Public)
	}
	if len(req.ProjectName) > 255 || !projectNameRE.MatchString(req.ProjectName) {
		return errBadRequest("project name is not in lower case or contains illegal characters!")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.projectByName(req.ProjectName) != nil {
		return errConflict("The project named %s already exists", req.ProjectName)
	}
	p := s.st.newProject(req.ProjectName, c.user.name, md, s.now())
	_ = s.saveLocked()
	c.w.Header().Set("Location", fmt.Sprintf("/api/v2.0/projects/%d", p.ID))
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) getProject(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessRead)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, s.projectJSON(c.user, p))
	return nil
}

func (s *Server) updateProject(c *call) *apiError {
	var req projectReq
	if err := decode(c, &req); err != nil {
		return err
	}
	md, aerr := stringMetadata(req.Metadata)
	if aerr != nil {
		return aerr
	}
	if req.Public != nil {
		md["public"] = strconv.FormatBool(*req.Public)
	}
	return s.mergeMetadata(c, md)
}

// mergeMetadata sets md on the project of c, as its administrator: 200 (PUT of the project, POST of metadata).
func (s *Server) mergeMetadata(c *call, md map[string]string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessAdmin)
	if err != nil {
		return err
	}
	for k, v := range md {
		p.Metadata[k] = v
	}
	p.Updated = s.now()
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteProject(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessAdmin)
	if err != nil {
		return err
	}
	for _, r := range p.Repos {
		if len(r.Artifacts) > 0 {
			return errPrecondition("the project contains repositories, can not be deleted")
		}
	}
	delete(s.st.Projects, p.ID)
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getMetadata(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessRead)
	if err != nil {
		return err
	}
	if name := c.r.PathValue("name"); name != "" {
		v, ok := p.Metadata[name]
		if !ok {
			return errNotFound("metadata %s of project %s not found", name, p.Name)
		}
		writeJSON(c.w, http.StatusOK, map[string]string{name: v})
		return nil
	}
	writeJSON(c.w, http.StatusOK, p.Metadata)
	return nil
}

func (s *Server) addMetadata(c *call) *apiError {
	var raw map[string]json.RawMessage
	if err := decode(c, &raw); err != nil {
		return err
	}
	md, aerr := stringMetadata(raw)
	if aerr != nil {
		return aerr
	}
	if name := c.r.PathValue("name"); name != "" {
		if _, ok := md[name]; !ok || len(md) != 1 {
			return errBadRequest("the metadata %s must be the only key of the body", name)
		}
	}
	return s.mergeMetadata(c, md)
}

func (s *Server) deleteMetadata(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessAdmin)
	if err != nil {
		return err
	}
	name := c.r.PathValue("name")
	if _, ok := p.Metadata[name]; !ok {
		return errNotFound("metadata %s of project %s not found", name, p.Name)
	}
	delete(p.Metadata, name)
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func repositoryJSON(p *project, r *repoRecord) map[string]any {
	return map[string]any{
		"id": r.ID, "project_id": p.ID, "name": r.Name, "description": "", "artifact_count": len(r.roots()),
		"pull_count": r.PullCount, "creation_time": apiTime(r.Created), "update_time": apiTime(r.Updated),
	}
}

// listRepositories lists a project's repositories, newest first; their names are the full project/repo
// (HARBOR.md §3.2).
func (s *Server) listRepositories(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	q := query(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, false, accessRead)
	if err != nil {
		return err
	}
	var list []*repoRecord
	for _, r := range p.Repos {
		if v, ok := q["name"]; ok && !matchValue(v, r.Name) && !matchValue(v, r.short()) {
			continue
		}
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b *repoRecord) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	out := []map[string]any{}
	for _, r := range paginate(c, pg, list) {
		out = append(out, repositoryJSON(p, r))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

func (s *Server) getRepository(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, false, accessRead)
	if err != nil {
		return err
	}
	name := p.Name + "/" + repoName(c)
	r := p.Repos[name]
	if r == nil {
		return errNotFound("repository %s not found", name)
	}
	writeJSON(c.w, http.StatusOK, repositoryJSON(p, r))
	return nil
}
