package harborflow

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/harbor"
)

// fakeHarbor keeps webhook policies per project; projects in forbidden refuse everything.
type fakeHarbor struct {
	policies  map[string][]harbor.WebhookPolicy
	forbidden map[string]bool
	writes    int
}

var errForbidden = errors.New("forbidden: the account may not manage webhook policies of this project")

func (f *fakeHarbor) WebhookPolicies(_ context.Context, project string) ([]harbor.WebhookPolicy, error) {
	if f.forbidden[project] {
		return nil, errForbidden
	}
	return f.policies[project], nil
}

func (f *fakeHarbor) CreateWebhookPolicy(_ context.Context, project string, p harbor.WebhookPolicy) (int64, error) {
	f.writes++
	p.ID = int64(len(f.policies[project]) + 1)
	f.policies[project] = append(f.policies[project], p)
	return p.ID, nil
}

func (f *fakeHarbor) UpdateWebhookPolicy(_ context.Context, project string, p harbor.WebhookPolicy) error {
	f.writes++
	for i := range f.policies[project] {
		if f.policies[project][i].ID == p.ID {
			f.policies[project][i] = p
			return nil
		}
	}
	return errors.New("not found")
}

func webhookConfig() *config.Config {
	cfg := config.Default()
	cfg.HTTP.PublicURL = "https://harborflow.acme.example/"
	cfg.Registries = []config.Registry{{Host: "harbor.acme.example", Harbor: true}, {Host: "registry.wso2.com"}}
	cfg.Sources = []config.Source{{Name: "harbor", Kind: config.SourceHarbor, Host: "harbor.acme.example",
		Secrets: []config.Secret{"Bearer s3cr3t-first", "Bearer s3cr3t-old"}}}
	cfg.Rebuilds = []config.Rebuild{
		{Name: "acme-am", Target: "harbor.acme.example/wso2-dev/acme-am"},
		{Name: "acme-is", Target: "harbor.acme.example/wso2-dev/acme-is"},
		{Name: "mirror", Target: "registry.wso2.com/acme/am"}, // not a Harbor: no policy
	}
	return &cfg
}

// setup-webhooks creates the policy where it is missing, updates one that differs, leaves a right one alone (a
// second run writes nothing), reports a project it may not manage while the others still get their policy, and
// never prints the secret.
func TestSetupWebhooks(t *testing.T) {
	targets, err := webhookTargets(webhookConfig(), []string{"wso2-staging", "harbor.acme.example/wso2-prod", "locked"}, "Default")
	if err != nil {
		t.Fatal(err)
	}
	var projects []string
	for _, tg := range targets {
		projects = append(projects, tg.Project)
	}
	if strings.Join(projects, ",") != "locked,wso2-dev,wso2-prod,wso2-staging" {
		t.Fatalf("projects %v", projects)
	}
	want := targets[1].Want
	if tg := want.Targets[0]; len(want.Targets) != 1 || tg.Address != "https://harborflow.acme.example/webhooks/harbor/harbor" ||
		tg.AuthHeader.Value() != "Bearer s3cr3t-first" || !want.Enabled || tg.PayloadFormat != "Default" ||
		strings.Contains(strings.Join(want.EventTypes, ","), "PULL_ARTIFACT") {
		t.Errorf("wanted policy %+v", want)
	}

	stale := want
	stale.ID, stale.EventTypes = 7, []string{"PUSH_ARTIFACT"}
	stale.Targets = []harbor.WebhookTarget{want.Targets[0]}
	stale.Targets[0].AuthHeader = "Bearer s3cr3t-old"
	h := &fakeHarbor{
		policies:  map[string][]harbor.WebhookPolicy{"wso2-prod": {{ID: 3, Name: "ci"}, stale}},
		forbidden: map[string]bool{"locked": true},
	}
	api := func(string) (webhookAPI, error) { return h, nil }

	var out bytes.Buffer
	if err := setupWebhooks(context.Background(), &out, targets, api, true); err == nil || !strings.Contains(err.Error(), "harbor.acme.example/locked") {
		t.Errorf("dry run: %v, want the forbidden project named", err)
	}
	if h.writes != 0 {
		t.Errorf("a dry run wrote %d times", h.writes)
	}
	if !strings.Contains(out.String(), "harbor.acme.example/wso2-dev: policy harborflow would be created") ||
		!strings.Contains(out.String(), "harbor.acme.example/wso2-prod: policy harborflow would be updated (id 7): event types:") {
		t.Errorf("dry run said:\n%s", out.String())
	}

	out.Reset()
	err = setupWebhooks(context.Background(), &out, targets, api, false)
	if err == nil || !strings.Contains(err.Error(), "1 of 4 projects: harbor.acme.example/locked") {
		t.Errorf("run: %v, want only the forbidden project failed", err)
	}
	for _, line := range []string{
		"harbor.acme.example/locked: failed: forbidden",
		"harbor.acme.example/wso2-dev: policy harborflow created (id 1)",
		"harbor.acme.example/wso2-staging: policy harborflow created (id 1)",
		"harbor.acme.example/wso2-prod: policy harborflow updated (id 7): event types: PUSH_ARTIFACT → ",
		"auth header: changed (not shown)",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("run output lacks %q:\n%s", line, out.String())
		}
	}
	if strings.Contains(out.String(), "s3cr3t") {
		t.Errorf("the secret was printed:\n%s", out.String())
	}
	if got := h.policies["wso2-prod"]; len(got) != 2 || got[0].Name != "ci" || got[1].Targets[0].AuthHeader.Value() != "Bearer s3cr3t-first" {
		t.Errorf("wso2-prod policies after the run: %+v", got)
	}

	writes := h.writes
	out.Reset()
	delete(h.forbidden, "locked")
	kept := want
	kept.ID = 1
	h.policies["locked"] = []harbor.WebhookPolicy{kept}
	if err := setupWebhooks(context.Background(), &out, targets, api, false); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if h.writes != writes || strings.Count(out.String(), "unchanged") != 4 {
		t.Errorf("second run wrote %d times:\n%s", h.writes-writes, out.String())
	}
}

// Without a Harbor source for a host, setup-webhooks says what to add instead of writing a policy nobody reads.
func TestSetupWebhooksNeedsAHarborSource(t *testing.T) {
	cfg := webhookConfig()
	cfg.Sources = nil
	if _, err := webhookTargets(cfg, nil, "Default"); err == nil || !strings.Contains(err.Error(), "no source of kind harbor has host harbor.acme.example") {
		t.Errorf("%v", err)
	}
	cfg.Registries = nil
	if _, err := webhookTargets(cfg, nil, "Default"); err == nil || !strings.Contains(err.Error(), "harbor: true") {
		t.Errorf("%v", err)
	}
}

// The projects of promotion stages and of retention patterns whose project is literal get a policy too; a
// project glob is left to --project.
func TestWebhookTargetsOfPromotionsAndRetention(t *testing.T) {
	cfg := webhookConfig()
	cfg.Promotions = []config.Promotion{{Name: "acme-am", Stages: []config.PromotionStage{
		{Repository: "harbor.acme.example/wso2-dev/acme-am"}, {Repository: "harbor.acme.example/wso2-staging/acme-am"},
		{Repository: "harbor.acme.example/wso2-prod/acme-am"}}}}
	cfg.Retention = []config.Retention{{Repositories: []string{"harbor.acme.example/wso2-archive/acme-am", "harbor.acme.example/team-*/x"}}}
	targets, err := webhookTargets(cfg, nil, "Default")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range targets {
		got = append(got, tg.Project)
	}
	slices.Sort(got)
	if want := []string{"wso2-archive", "wso2-dev", "wso2-prod", "wso2-staging"}; !slices.Equal(got, want) {
		t.Errorf("projects %v, want %v", got, want)
	}
}
