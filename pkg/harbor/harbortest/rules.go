package harbortest

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

func ruleJSON(r *immutableRule) map[string]any {
	return map[string]any{
		"id": r.ID, "priority": r.Priority, "disabled": r.Disabled, "action": r.Action, "template": r.Template,
		"params": r.Params, "tag_selectors": r.TagSelectors, "scope_selectors": r.ScopeSelectors,
	}
}

type ruleReq struct {
	Disabled       bool                  `json:"disabled"`
	Action         string                `json:"action"`
	Template       string                `json:"template"`
	Priority       int64                 `json:"priority"`
	Params         map[string]any        `json:"params"`
	TagSelectors   []selector            `json:"tag_selectors"`
	ScopeSelectors map[string][]selector `json:"scope_selectors"`
}

func (req *ruleReq) validate() *apiError {
	if req.Action == "" {
		req.Action = "immutable"
	}
	if req.Template == "" {
		req.Template = "immutable_template"
	}
	if len(req.TagSelectors) == 0 {
		return errBadRequest("tag selectors of an immutable rule are required")
	}
	for _, sel := range append(slices.Clone(req.TagSelectors), req.ScopeSelectors["repository"]...) {
		if sel.Kind != "doublestar" {
			return errBadRequest("unsupported selector kind %q", sel.Kind)
		}
		switch sel.Decoration {
		case "matches", "excludes", "repoMatches", "repoExcludes":
		default:
			return errBadRequest("unsupported selector decoration %q", sel.Decoration)
		}
	}
	return nil
}

// same reports whether two rules select the same tags and repositories.
func (req *ruleReq) same(r *immutableRule) bool {
	return reflect.DeepEqual(req.TagSelectors, r.TagSelectors) &&
		reflect.DeepEqual(req.ScopeSelectors["repository"], r.ScopeSelectors["repository"])
}

func (s *Server) listImmutableRules(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessRead)
	if err != nil {
		return err
	}
	var list []*immutableRule
	for _, r := range p.Rules {
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b *immutableRule) int { return int(a.ID - b.ID) })
	out := []map[string]any{}
	for _, r := range paginate(c, pg, list) {
		out = append(out, ruleJSON(r))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

// createImmutableRule adds a rule: 201 with Location, 409 "immutable rule already exists" for a duplicate
// (HARBOR.md §7.1).
func (s *Server) createImmutableRule(c *call) *apiError {
	var req ruleReq
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessMaintain)
	if err != nil {
		return err
	}
	for _, r := range p.Rules {
		if req.same(r) {
			return errConflict("immutable rule already exists")
		}
	}
	r := &immutableRule{ID: s.st.next()}
	req.apply(r)
	p.Rules[r.ID] = r
	_ = s.saveLocked()
	c.w.Header().Set("Location", fmt.Sprintf("%s/%d", strings.TrimSuffix(c.r.URL.Path, "/"), r.ID))
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

func (req *ruleReq) apply(r *immutableRule) {
	r.Disabled, r.Action, r.Template, r.Priority, r.Params = req.Disabled, req.Action, req.Template, req.Priority, req.Params
	r.TagSelectors, r.ScopeSelectors = req.TagSelectors, req.ScopeSelectors
	if r.ScopeSelectors == nil {
		r.ScopeSelectors = map[string][]selector{}
	}
}

func (s *Server) ruleLocked(c *call, p *project) (*immutableRule, *apiError) {
	id, err := strconv.ParseInt(c.r.PathValue("rule"), 10, 64)
	if err != nil {
		return nil, errBadRequest("invalid immutable rule id %q", c.r.PathValue("rule"))
	}
	r := p.Rules[id]
	if r == nil {
		return nil, errNotFound("immutable rule %d not found", id)
	}
	return r, nil
}

func (s *Server) updateImmutableRule(c *call) *apiError {
	var req ruleReq
	if err := decode(c, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessMaintain)
	if err != nil {
		return err
	}
	r, err := s.ruleLocked(c, p)
	if err != nil {
		return err
	}
	if len(req.TagSelectors) == 0 { // enabling or disabling only
		r.Disabled = req.Disabled
	} else {
		if err := req.validate(); err != nil {
			return err
		}
		req.apply(r)
	}
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteImmutableRule(c *call) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectFor(c, true, accessMaintain)
	if err != nil {
		return err
	}
	r, err := s.ruleLocked(c, p)
	if err != nil {
		return err
	}
	delete(p.Rules, r.ID)
	_ = s.saveLocked()
	c.w.WriteHeader(http.StatusOK)
	return nil
}
