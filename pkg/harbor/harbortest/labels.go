package harbortest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

func labelJSON(l *label) map[string]any {
	out := map[string]any{
		"id": l.ID, "name": l.Name, "description": l.Description, "color": l.Color, "scope": l.Scope,
		"creation_time": apiTime(l.Created), "update_time": apiTime(l.Updated),
	}
	if l.Scope == "p" {
		out["project_id"] = l.ProjectID
	}
	return out
}

// listLabels lists global labels (scope g, the default) or a project's (scope p with project_id).
func (s *Server) listLabels(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	params := c.r.URL.Query()
	scope := params.Get("scope")
	if scope == "" {
		scope = "g"
	}
	var pid int64
	if scope == "p" {
		var err error
		if pid, err = strconv.ParseInt(params.Get("project_id"), 10, 64); err != nil {
			return errBadRequest("must provide a valid project_id with scope p")
		}
	} else if scope != "g" {
		return errBadRequest("invalid scope %s", scope)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if scope == "p" {
		p := s.st.Projects[pid]
		if p == nil {
			return errNotFound("project %d not found", pid)
		}
		if err := s.authorize(c.user, p, accessRead); err != nil {
			return err
		}
	}
	q := query(c)
	var list []*label
	for _, l := range s.st.Labels {
		if l.Scope != scope || (scope == "p" && l.ProjectID != pid) {
			continue
		}
		if v := params.Get("name"); v != "" && !matchValue("~"+v, l.Name) {
			continue
		}
		if v, ok := q["name"]; ok && !matchValue(v, l.Name) {
			continue
		}
		list = append(list, l)
	}
	slices.SortFunc(list, func(a, b *label) int { return int(a.ID - b.ID) })
	out := []map[string]any{}
	for _, l := range paginate(c, pg, list) {
		out = append(out, labelJSON(l))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

// createLabel adds a label: global ones need a system administrator, project ones a maintainer; 201 with
// Location, a duplicate name in the scope is a 409 (HARBOR.md §7.1).
func (s *Server) createLabel(c *call) *apiError {
	var req struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Color       string `json:"color"`
		Scope       string `json:"scope"`
		ProjectID   int64  `json:"project_id"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return errBadRequest("label name is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Scope {
	case "g":
		if c.user.anonymous() {
			return errUnauthorized
		}
		if !c.user.admin {
			return errForbidden
		}
		req.ProjectID = 0
	case "p":
		p := s.st.Projects[req.ProjectID]
		if p == nil {
			return errNotFound("project %d not found", req.ProjectID)
		}
		if err := s.authorize(c.user, p, accessMaintain); err != nil {
			return err
		}
	default:
		return errBadRequest("invalid scope %q", req.Scope)
	}
	for _, l := range s.st.Labels {
		if l.Name == req.Name && l.Scope == req.Scope && l.ProjectID == req.ProjectID {
			return errConflict("label %s already exists", req.Name)
		}
	}
	now := s.now()
	l := &label{ID: s.st.next(), Name: req.Name, Description: req.Description, Color: req.Color, Scope: req.Scope,
		ProjectID: req.ProjectID, Created: now, Updated: now}
	s.st.Labels[l.ID] = l
	_ = s.saveLocked()
	c.w.Header().Set("Location", fmt.Sprintf("/api/v2.0/labels/%d", l.ID))
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

// labelLocked resolves {label}, which a user may read.
func (s *Server) labelLocked(c *call) (*label, *apiError) {
	id, err := strconv.ParseInt(c.r.PathValue("label"), 10, 64)
	if err != nil {
		return nil, errBadRequest("invalid label id %q", c.r.PathValue("label"))
	}
	l := s.st.Labels[id]
	if l == nil {
		return nil, errNotFound("label %d not found", id)
	}
	return l, nil
}

func (s *Server) getLabel(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.labelLocked(c)
	if err != nil {
		return err
	}
	if l.Scope == "p" {
		if err := s.authorize(c.user, s.st.Projects[l.ProjectID], accessRead); err != nil {
			return err
		}
	}
	writeJSON(c.w, http.StatusOK, labelJSON(l))
	return nil
}

func (s *Server) deleteLabel(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.labelLocked(c)
	if err != nil {
		return err
	}
	if l.Scope == "p" {
		if err := s.authorize(c.user, s.st.Projects[l.ProjectID], accessMaintain); err != nil {
			return err
		}
	} else if !c.user.admin {
		if c.user.anonymous() {
			return errUnauthorized
		}
		return errForbidden
	}
	delete(s.st.Labels, l.ID)
	for _, p := range s.st.Projects {
		for _, r := range p.Repos {
			for _, a := range r.Artifacts {
				a.Labels = slices.DeleteFunc(a.Labels, func(id int64) bool { return id == l.ID })
			}
		}
	}
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// addArtifactLabel is POST …/labels {"id":N}: 200, 409 when already added, 404 for an unknown label; no
// webhook (HARBOR.md §7.1).
func (s *Server) addArtifactLabel(c *call) *apiError {
	var req struct {
		ID int64 `json:"id"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, _, a, err := s.artifactFor(c, accessWrite)
	if err != nil {
		return err
	}
	l := s.st.Labels[req.ID]
	if l == nil || (l.Scope == "p" && l.ProjectID != p.ID) {
		return errNotFound("label %d not found", req.ID)
	}
	if slices.Contains(a.Labels, l.ID) {
		return errConflict("label %d is already added to the artifact %d", l.ID, a.ID)
	}
	a.Labels = append(a.Labels, l.ID)
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// removeArtifactLabel is DELETE …/labels/{id}: 200, then 404.
func (s *Server) removeArtifactLabel(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, a, err := s.artifactFor(c, accessWrite)
	if err != nil {
		return err
	}
	id, perr := strconv.ParseInt(c.r.PathValue("label"), 10, 64)
	if perr != nil || !slices.Contains(a.Labels, id) {
		return errNotFound("label %s not found on the artifact %d", c.r.PathValue("label"), a.ID)
	}
	a.Labels = slices.DeleteFunc(a.Labels, func(x int64) bool { return x == id })
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}
