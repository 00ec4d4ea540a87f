package harbortest

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

func policyJSON(p *project, pol *policy) map[string]any {
	return map[string]any{
		"id": pol.ID, "name": pol.Name, "description": pol.Description, "project_id": p.ID,
		"targets": pol.Targets, "event_types": pol.EventTypes, "creator": pol.Creator,
		"creation_time": apiTime(pol.Created), "update_time": apiTime(pol.Updated), "enabled": pol.Enabled,
	}
}

type policyReq struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Enabled     bool     `json:"enabled"`
	EventTypes  []string `json:"event_types"`
	Targets     []Target `json:"targets"`
}

// validate checks a policy as Harbor's webhook handler does (HARBOR.md §1.1): event types from the
// supported list, http or slack targets with an http(s) address (stored as given), an http target's empty
// payload_format stored as "Default".
func (req *policyReq) validate() *apiError {
	if req.Name == "" {
		return errBadRequest("empty name of notification policy")
	}
	if len(req.Targets) == 0 {
		return errBadRequest("empty notification target with policy %s", req.Name)
	}
	for i := range req.Targets {
		t := &req.Targets[i]
		if t.Address == "" {
			return errBadRequest("empty event target address for policy %s", req.Name)
		}
		addr := t.Address
		if !strings.Contains(addr, "://") {
			addr = "http://" + addr
		}
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errBadRequest("invalid event target address %s", t.Address)
		}
		switch t.Type {
		case "http":
			if t.PayloadFormat == "" {
				t.PayloadFormat = "Default"
			}
			if t.PayloadFormat != "Default" && t.PayloadFormat != "CloudEvents" {
				return errBadRequest("unsupported payload format type: %s", t.PayloadFormat)
			}
		case "slack":
			if t.PayloadFormat != "" {
				return errBadRequest("unsupported payload format type: %s", t.PayloadFormat)
			}
		default:
			return errBadRequest("unsupported notify type: %s", t.Type)
		}
	}
	if len(req.EventTypes) == 0 {
		return errBadRequest("empty event type")
	}
	for _, e := range req.EventTypes {
		if !slices.Contains(eventTypes, e) {
			return errBadRequest("unsupported event type %s", e)
		}
	}
	return nil
}

// policyLocked resolves {policy} within p.
func policyLocked(c *call, p *project) (*policy, *apiError) {
	id, err := strconv.ParseInt(c.r.PathValue("policy"), 10, 64)
	if err != nil {
		return nil, errBadRequest("invalid webhook policy id %q", c.r.PathValue("policy"))
	}
	pol := p.Policies[id]
	if pol == nil {
		return nil, errNotFound("webhook policy %d not found", id)
	}
	return pol, nil
}

// listPolicies lists a project's webhook policies with auth_header in clear, as Harbor does (HARBOR.md §7).
func (s *Server) listPolicies(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessMaintain)
	if err != nil {
		return err
	}
	q := query(c)
	var list []*policy
	for _, pol := range sortedPolicies(p) {
		if v, ok := q["name"]; ok && !matchValue(v, pol.Name) {
			continue
		}
		list = append(list, pol)
	}
	out := []map[string]any{}
	for _, pol := range paginate(c, pg, list) {
		out = append(out, policyJSON(p, pol))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

func (s *Server) getPolicy(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessMaintain)
	if err != nil {
		return err
	}
	pol, err := policyLocked(c, p)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, policyJSON(p, pol))
	return nil
}

// createPolicy adds a policy: 201 with Location; a name taken in the project is a 409 (HARBOR.md §7).
func (s *Server) createPolicy(c *call) *apiError {
	var req policyReq
	if err := decode(c, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessAdmin)
	if err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	for _, pol := range p.Policies {
		if pol.Name == req.Name {
			return errConflict("notification policy %s already exists", req.Name)
		}
	}
	now := s.now()
	pol := &policy{
		ID: s.st.next(), Name: req.Name, Description: req.Description, Enabled: req.Enabled,
		EventTypes: req.EventTypes, Targets: req.Targets, Creator: c.user.name, Created: now, Updated: now,
	}
	p.Policies[pol.ID] = pol
	_ = s.saveLocked()
	c.w.Header().Set("Location", fmt.Sprintf("%s/%d", strings.TrimSuffix(c.r.URL.Path, "/"), pol.ID))
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) updatePolicy(c *call) *apiError {
	var req policyReq
	if err := decode(c, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessAdmin)
	if err != nil {
		return err
	}
	pol, err := policyLocked(c, p)
	if err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	for _, other := range p.Policies {
		if other.ID != pol.ID && other.Name == req.Name {
			return errConflict("notification policy %s already exists", req.Name)
		}
	}
	pol.Name, pol.Description, pol.Enabled = req.Name, req.Description, req.Enabled
	pol.EventTypes, pol.Targets, pol.Updated = req.EventTypes, req.Targets, s.now()
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deletePolicy(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessAdmin)
	if err != nil {
		return err
	}
	pol, err := policyLocked(c, p)
	if err != nil {
		return err
	}
	delete(p.Policies, pol.ID)
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// supportedEvents is GET …/webhook/events.
func (s *Server) supportedEvents(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.projectFor(c, true, accessMaintain); err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, map[string]any{
		"event_type": eventTypes, "notify_type": []string{"http", "slack"},
		"payload_formats": []map[string]any{{"notify_type": "http", "formats": []string{"Default", "CloudEvents"}}},
	})
	return nil
}
