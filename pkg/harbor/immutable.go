package harbor

import (
	"context"

	"github.com/go-openapi/swag"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/immutable"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"
)

// ImmutableRule is a project's immutable tag rule: tags it matches cannot be moved, copied onto or deleted
// (ErrPrecondition, HARBOR.md §7.1).
type ImmutableRule struct {
	ID       int64
	Disabled bool
	Priority int64
	// Action is "immutable"; Template "immutable_template".
	Action   string
	Template string
	// TagSelectors match tags; ScopeSelectors["repository"] match repositories.
	TagSelectors   []Selector
	ScopeSelectors map[string][]Selector
}

// Selector is a doublestar pattern of a rule: Decoration matches or excludes (tags), repoMatches or
// repoExcludes (repositories).
type Selector struct {
	Kind       string
	Decoration string
	Pattern    string
	Extras     string
}

// ImmutableRules lists every immutable tag rule of a project.
func (c *Client) ImmutableRules(ctx context.Context, projectName string) ([]ImmutableRule, error) {
	return list(ctx, c, "listing immutable tag rules of project", projectName, func(ctx context.Context, page, size int64) ([]ImmutableRule, int64, error) {
		ok, err := c.api.Immutable.ListImmuRules(ctx, &immutable.ListImmuRulesParams{
			ProjectNameOrID: projectName, XIsResourceName: swag.Bool(true), Page: &page, PageSize: &size, Context: ctx})
		if err != nil {
			return nil, 0, err
		}
		return convert(ok.Payload, immutableRuleOf), ok.XTotalCount, nil
	})
}

// CreateImmutableRule adds an immutable tag rule to a project (Action and Template default to Harbor's only
// values) and returns its id. ErrConflict when an identical rule exists.
func (c *Client) CreateImmutableRule(ctx context.Context, projectName string, r ImmutableRule) (int64, error) {
	const op = "creating immutable tag rule in project"
	if r.Action == "" {
		r.Action = "immutable"
	}
	if r.Template == "" {
		r.Template = "immutable_template"
	}
	m := &models.ImmutableRule{Disabled: r.Disabled, Priority: r.Priority, Action: r.Action, Template: r.Template,
		TagSelectors: []*models.ImmutableSelector{}, ScopeSelectors: map[string][]models.ImmutableSelector{}}
	for _, s := range r.TagSelectors {
		m.TagSelectors = append(m.TagSelectors, &models.ImmutableSelector{Kind: s.Kind, Decoration: s.Decoration, Pattern: s.Pattern, Extras: s.Extras})
	}
	for k, ss := range r.ScopeSelectors {
		for _, s := range ss {
			m.ScopeSelectors[k] = append(m.ScopeSelectors[k], models.ImmutableSelector{Kind: s.Kind, Decoration: s.Decoration, Pattern: s.Pattern, Extras: s.Extras})
		}
	}
	var loc string
	x, err := c.call(ctx, op, projectName, func(ctx context.Context) error {
		ok, err := c.api.Immutable.CreateImmuRule(ctx, &immutable.CreateImmuRuleParams{
			ProjectNameOrID: projectName, XIsResourceName: swag.Bool(true), ImmutableRule: m, Context: ctx})
		if err == nil {
			loc = ok.Location
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	id, ok := idFromLocation(loc)
	if !ok {
		return 0, unexpected(op, projectName, x, "no rule id in Location %q", loc)
	}
	return id, nil
}

func immutableRuleOf(r *models.ImmutableRule) ImmutableRule {
	out := ImmutableRule{ID: r.ID, Disabled: r.Disabled, Priority: r.Priority, Action: r.Action, Template: r.Template}
	for _, s := range r.TagSelectors {
		if s != nil {
			out.TagSelectors = append(out.TagSelectors, Selector{Kind: s.Kind, Decoration: s.Decoration, Pattern: s.Pattern, Extras: s.Extras})
		}
	}
	if len(r.ScopeSelectors) > 0 {
		out.ScopeSelectors = make(map[string][]Selector, len(r.ScopeSelectors))
		for k, ss := range r.ScopeSelectors {
			for _, s := range ss {
				out.ScopeSelectors[k] = append(out.ScopeSelectors[k], Selector{Kind: s.Kind, Decoration: s.Decoration, Pattern: s.Pattern, Extras: s.Extras})
			}
		}
	}
	return out
}
