package harborflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/imageref"
)

// policyName names the one webhook policy harborflow keeps in each Harbor project.
const policyName = "harborflow"

// policyEvents are the event types the stages use: pushes (inspector, promoter), deletes and retention
// (retention), scans (promoter's gates) and replications. PULL_ARTIFACT is left out: harborflow's own reads
// would fire it (HARBOR.md §1.6).
var policyEvents = []string{
	"PUSH_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED", "REPLICATION", "TAG_RETENTION",
}

// webhookPolicy is a Harbor webhook policy with one http target, as harborflow writes it.
type webhookPolicy struct {
	ID          int64
	Name        string
	Description string
	Enabled     bool
	EventTypes  []string
	Address     string
	AuthHeader  config.Secret
	Format      string // Default or CloudEvents
	// Targets is how many targets the policy has in Harbor; harborflow writes exactly one.
	Targets int
}

// webhookAPI is what setup-webhooks asks of a Harbor (*harbor.Client behind an adapter).
type webhookAPI interface {
	// WebhookPolicies lists the webhook policies of project.
	WebhookPolicies(ctx context.Context, project string) ([]webhookPolicy, error)
	// CreateWebhookPolicy creates p in project and returns its id.
	CreateWebhookPolicy(ctx context.Context, project string, p webhookPolicy) (int64, error)
	// UpdateWebhookPolicy replaces policy id of project with p.
	UpdateWebhookPolicy(ctx context.Context, project string, id int64, p webhookPolicy) error
}

// webhookTarget is one Harbor project that gets harborflow's policy, and what the policy must say.
type webhookTarget struct {
	Host    string // the Harbor, as registries[].host
	Project string
	Want    webhookPolicy
}

// webhookTargets lists the Harbor projects cfg involves — the projects of rebuild targets on a registry with
// `harbor: true`, plus extra (host/project or project, for every Harbor) — each with the policy it must have:
// the receiver's public address for the Harbor source of that host, its first secret as the auth header.
func webhookTargets(cfg *config.Config, extra []string, format string) ([]webhookTarget, error) {
	harbors := map[string]bool{}
	for _, r := range cfg.Registries {
		if r.Harbor {
			harbors[r.Host] = true
		}
	}
	if len(harbors) == 0 {
		return nil, errors.New("no registry has `harbor: true` in the configuration: there is no Harbor to configure")
	}
	projects := map[[2]string]bool{}
	for _, r := range cfg.Rebuilds {
		ref, err := imageref.ParseRepository(r.Target)
		if err != nil {
			return nil, fmt.Errorf("rebuild %s: target %q: %w", r.Name, r.Target, err)
		}
		if harbors[ref.Registry] {
			projects[[2]string{ref.Registry, ref.Project()}] = true
		}
	}
	for _, e := range extra {
		host, project, ok := strings.Cut(e, "/")
		if !ok {
			for h := range harbors {
				projects[[2]string{h, e}] = true
			}
			continue
		}
		if !harbors[host] {
			return nil, fmt.Errorf("--project %s: %s is not a registry with `harbor: true`", e, host)
		}
		projects[[2]string{host, project}] = true
	}
	base := strings.TrimRight(cfg.HTTP.PublicURL, "/")
	if base == "" {
		base = "http://" + cfg.HTTP.Listen
	}
	var out []webhookTarget
	for hp := range projects {
		src, ok := harborSource(cfg, hp[0])
		if !ok {
			return nil, fmt.Errorf("no source of kind harbor has host %s: add one under sources, so that its webhooks have an endpoint and a secret", hp[0])
		}
		out = append(out, webhookTarget{Host: hp[0], Project: hp[1], Want: webhookPolicy{
			Name:        policyName,
			Description: "harborflow: registry events of this project to " + base,
			Enabled:     true,
			EventTypes:  slices.Clone(policyEvents),
			Address:     base + "/webhooks/harbor/" + src.Name,
			AuthHeader:  src.Secrets[0],
			Format:      format,
			Targets:     1,
		}})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Host+"/"+out[i].Project < out[j].Host+"/"+out[j].Project
	})
	return out, nil
}

// harborSource is the source of kind harbor whose events come from host.
func harborSource(cfg *config.Config, host string) (config.Source, bool) {
	for _, s := range cfg.Sources {
		if s.Kind == config.SourceHarbor && s.Host == host && len(s.Secrets) > 0 {
			return s, true
		}
	}
	return config.Source{}, false
}

// policyChanges lists what differs between have and want, as a person reads it; the auth header is compared
// but never printed.
func policyChanges(have, want webhookPolicy) []string {
	var out []string
	if have.Enabled != want.Enabled {
		out = append(out, fmt.Sprintf("enabled: %t → %t", have.Enabled, want.Enabled))
	}
	h, w := slices.Clone(have.EventTypes), slices.Clone(want.EventTypes)
	slices.Sort(h)
	slices.Sort(w)
	if !slices.Equal(h, w) {
		out = append(out, fmt.Sprintf("event types: %s → %s", strings.Join(h, ","), strings.Join(w, ",")))
	}
	if have.Targets != 1 {
		out = append(out, fmt.Sprintf("targets: %d → 1", have.Targets))
	}
	if have.Address != want.Address {
		out = append(out, fmt.Sprintf("address: %s → %s", have.Address, want.Address))
	}
	if have.Format != want.Format {
		out = append(out, fmt.Sprintf("payload format: %s → %s", have.Format, want.Format))
	}
	if have.AuthHeader.Value() != want.AuthHeader.Value() {
		out = append(out, "auth header: changed (not shown)")
	}
	return out
}

// setupWebhooks gives every target its policy, through api(host), and reports each project on w: created,
// updated (with what changed), unchanged, or why it failed. A project that fails does not stop the others; the
// error lists every project that failed. With dryRun nothing is written.
func setupWebhooks(ctx context.Context, w io.Writer, targets []webhookTarget, api func(host string) (webhookAPI, error), dryRun bool) error {
	var failed []string
	report := func(t webhookTarget, format string, args ...any) {
		_, _ = fmt.Fprintf(w, "%s/%s: %s\n", t.Host, t.Project, fmt.Sprintf(format, args...))
	}
	for _, t := range targets {
		if err := setupWebhook(ctx, t, api, dryRun, report); err != nil {
			report(t, "failed: %v", err)
			failed = append(failed, t.Host+"/"+t.Project)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("webhook policy not set up in %d of %d projects: %s", len(failed), len(targets), strings.Join(failed, ", "))
	}
	return nil
}

func setupWebhook(ctx context.Context, t webhookTarget, api func(host string) (webhookAPI, error), dryRun bool,
	report func(webhookTarget, string, ...any)) error {
	h, err := api(t.Host)
	if err != nil {
		return err
	}
	have, err := h.WebhookPolicies(ctx, t.Project)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(have, func(p webhookPolicy) bool { return p.Name == policyName })
	would := ""
	if dryRun {
		would = "would be "
	}
	if i < 0 {
		if !dryRun {
			id, err := h.CreateWebhookPolicy(ctx, t.Project, t.Want)
			if err != nil {
				return err
			}
			report(t, "policy %s created (id %d): %s, %s", policyName, id, t.Want.Address, strings.Join(t.Want.EventTypes, ","))
			return nil
		}
		report(t, "policy %s %screated: %s, %s", policyName, would, t.Want.Address, strings.Join(t.Want.EventTypes, ","))
		return nil
	}
	changes := policyChanges(have[i], t.Want)
	if len(changes) == 0 {
		report(t, "policy %s unchanged (id %d)", policyName, have[i].ID)
		return nil
	}
	if !dryRun {
		if err := h.UpdateWebhookPolicy(ctx, t.Project, have[i].ID, t.Want); err != nil {
			return err
		}
	}
	report(t, "policy %s %supdated (id %d): %s", policyName, would, have[i].ID, strings.Join(changes, "; "))
	return nil
}
