package harbor

import (
	"context"
	"strconv"
	"time"

	"github.com/go-openapi/swag"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/webhook"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"

	"github.com/harborflow/harborflow/pkg/secret"
)

// Webhook payload formats (HARBOR.md §1.5).
const (
	PayloadDefault     = "Default"
	PayloadCloudEvents = "CloudEvents"
)

// WebhookPolicy is a project's webhook policy: which events go where.
type WebhookPolicy struct {
	ID          int64
	ProjectID   int64
	Name        string
	Description string
	Enabled     bool
	// EventTypes are Harbor's event types: PUSH_ARTIFACT, DELETE_ARTIFACT, SCANNING_COMPLETED, …
	EventTypes   []string
	Targets      []WebhookTarget
	Creator      string
	CreationTime time.Time
	UpdateTime   time.Time
}

// WebhookTarget is where a policy delivers.
type WebhookTarget struct {
	// Type is "http".
	Type    string
	Address string
	// AuthHeader is the whole Authorization header Harbor sends. Harbor lists it in clear (HARBOR.md §7);
	// here it is a secret.Secret, never printed.
	AuthHeader     secret.Secret
	SkipCertVerify bool
	// PayloadFormat is PayloadDefault or PayloadCloudEvents.
	PayloadFormat string
}

// WebhookPolicies lists every webhook policy of a project.
func (c *Client) WebhookPolicies(ctx context.Context, projectName string) ([]WebhookPolicy, error) {
	return list(ctx, c, "listing webhook policies of project", projectName, func(ctx context.Context, page, size int64) ([]WebhookPolicy, int64, error) {
		ok, err := c.api.Webhook.ListWebhookPoliciesOfProject(ctx, &webhook.ListWebhookPoliciesOfProjectParams{
			ProjectNameOrID: projectName, XIsResourceName: swag.Bool(true), Page: &page, PageSize: &size, Context: ctx})
		if err != nil {
			return nil, 0, err
		}
		return convert(ok.Payload, webhookPolicyOf), ok.XTotalCount, nil
	})
}

// CreateWebhookPolicy creates a webhook policy in a project and returns its id (from Location).
// ErrConflict when the project has a policy of that name (HARBOR.md §7).
func (c *Client) CreateWebhookPolicy(ctx context.Context, projectName string, p WebhookPolicy) (int64, error) {
	const op = "creating webhook policy"
	res := projectName + "/" + p.Name
	var loc string
	x, err := c.call(ctx, op, res, func(ctx context.Context) error {
		ok, err := c.api.Webhook.CreateWebhookPolicyOfProject(ctx, &webhook.CreateWebhookPolicyOfProjectParams{
			ProjectNameOrID: projectName, XIsResourceName: swag.Bool(true), Policy: webhookPolicyModel(p), Context: ctx})
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
		return 0, unexpected(op, res, x, "no policy id in Location %q", loc)
	}
	return id, nil
}

// UpdateWebhookPolicy replaces the policy p.ID of a project with p.
func (c *Client) UpdateWebhookPolicy(ctx context.Context, projectName string, p WebhookPolicy) error {
	_, err := c.call(ctx, "updating webhook policy", projectName+"/"+p.Name+" (id "+strconv.FormatInt(p.ID, 10)+")", func(ctx context.Context) error {
		_, err := c.api.Webhook.UpdateWebhookPolicyOfProject(ctx, &webhook.UpdateWebhookPolicyOfProjectParams{
			ProjectNameOrID: projectName, XIsResourceName: swag.Bool(true), WebhookPolicyID: p.ID,
			Policy: webhookPolicyModel(p), Context: ctx})
		return err
	})
	return err
}

func webhookPolicyOf(p *models.WebhookPolicy) WebhookPolicy {
	out := WebhookPolicy{ID: p.ID, ProjectID: p.ProjectID, Name: p.Name, Description: p.Description, Enabled: p.Enabled,
		EventTypes: append([]string(nil), p.EventTypes...), Creator: p.Creator,
		CreationTime: timeOf(p.CreationTime), UpdateTime: timeOf(p.UpdateTime)}
	for _, t := range p.Targets {
		if t != nil {
			out.Targets = append(out.Targets, WebhookTarget{Type: t.Type, Address: t.Address, AuthHeader: secret.Secret(t.AuthHeader),
				SkipCertVerify: t.SkipCertVerify, PayloadFormat: string(t.PayloadFormat)})
		}
	}
	return out
}

func webhookPolicyModel(p WebhookPolicy) *models.WebhookPolicy {
	m := &models.WebhookPolicy{ID: p.ID, Name: p.Name, Description: p.Description, Enabled: p.Enabled,
		EventTypes: append([]string{}, p.EventTypes...), Targets: []*models.WebhookTargetObject{}}
	for _, t := range p.Targets {
		typ := t.Type
		if typ == "" {
			typ = "http"
		}
		m.Targets = append(m.Targets, &models.WebhookTargetObject{Type: typ, Address: t.Address, AuthHeader: t.AuthHeader.Value(),
			SkipCertVerify: t.SkipCertVerify, PayloadFormat: models.PayloadFormatType(t.PayloadFormat)})
	}
	return m
}
