package harbor

import (
	"context"
	"strconv"
	"time"

	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/label"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"
)

// Label scopes.
const (
	LabelScopeGlobal  = "g"
	LabelScopeProject = "p"
)

// Label is a Harbor label: a name attached to artifacts, not an image label (HARBOR.md §3.2).
type Label struct {
	ID          int64
	Name        string
	Description string
	// Color is #RRGGBB.
	Color string
	// Scope is LabelScopeGlobal or LabelScopeProject; ProjectID is the project of a project label.
	Scope        string
	ProjectID    int64
	CreationTime time.Time
	UpdateTime   time.Time
}

// Labels lists every global label (projectID 0) or every label of the project with that id.
func (c *Client) Labels(ctx context.Context, projectID int64) ([]Label, error) {
	scope, resource := LabelScopeGlobal, "global"
	p := &label.ListLabelsParams{}
	if projectID != 0 {
		scope, resource = LabelScopeProject, "of project id "+strconv.FormatInt(projectID, 10)
		p.ProjectID = &projectID
	}
	p.Scope = &scope
	return list(ctx, c, "listing labels", resource, func(ctx context.Context, page, size int64) ([]Label, int64, error) {
		pp := *p
		pp.Page, pp.PageSize, pp.Context = &page, &size, ctx
		ok, err := c.api.Label.ListLabels(ctx, &pp)
		if err != nil {
			return nil, 0, err
		}
		return convert(ok.Payload, labelOf), ok.XTotalCount, nil
	})
}

// CreateLabel creates a label (Name, Description, Color, Scope, and ProjectID for a project label; a global
// label needs a system administrator) and returns its id. ErrConflict when the name is taken.
func (c *Client) CreateLabel(ctx context.Context, l Label) (int64, error) {
	const op = "creating label"
	if l.Scope == "" {
		l.Scope = LabelScopeGlobal
		if l.ProjectID != 0 {
			l.Scope = LabelScopeProject
		}
	}
	var loc string
	x, err := c.call(ctx, op, l.Name, func(ctx context.Context) error {
		ok, err := c.api.Label.CreateLabel(ctx, &label.CreateLabelParams{Label: &models.Label{
			Name: l.Name, Description: l.Description, Color: l.Color, Scope: l.Scope, ProjectID: l.ProjectID}, Context: ctx})
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
		return 0, unexpected(op, l.Name, x, "no label id in Location %q", loc)
	}
	return id, nil
}

func labelOf(l *models.Label) Label {
	return Label{ID: l.ID, Name: l.Name, Description: l.Description, Color: l.Color, Scope: l.Scope,
		ProjectID: l.ProjectID, CreationTime: timeOf(l.CreationTime), UpdateTime: timeOf(l.UpdateTime)}
}
