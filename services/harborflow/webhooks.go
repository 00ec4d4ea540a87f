package harborflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/harbor"
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

// webhookAPI is what setup-webhooks asks of a Harbor: *harbor.Client.
type webhookAPI interface {
	WebhookPolicies(ctx context.Context, project string) ([]harbor.WebhookPolicy, error)
	CreateWebhookPolicy(ctx context.Context, project string, p harbor.WebhookPolicy) (int64, error)
	UpdateWebhookPolicy(ctx context.Context, project string, p harbor.WebhookPolicy) error
}

// webhookTarget is one Harbor project that gets harborflow's policy, and what the policy must say.
type webhookTarget struct {
	Host    string // the Harbor, as registries[].host
	Project string
	Want    harbor.WebhookPolicy
}

// webhookTargets lists the Harbor projects cfg involves — on registries with `harbor: true`, the projects of
// rebuild targets, of promotion stages (the promoter reads their scans and pushes) and of retention patterns
// whose project is not a glob, plus extra (host/project or project, for every Harbor) — each with the policy it
// must have: the receiver's public address for the Harbor source of that host, its first secret as the auth
// header.
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
	for _, p := range cfg.Promotions {
		for _, st := range p.Stages {
			ref, err := imageref.ParseRepository(st.Repository)
			if err != nil {
				return nil, fmt.Errorf("promotion %s: stage %q: %w", p.Name, st.Repository, err)
			}
			if harbors[ref.Registry] {
				projects[[2]string{ref.Registry, ref.Project()}] = true
			}
		}
	}
	for _, r := range cfg.Retention {
		for _, g := range r.Repositories {
			parts := strings.SplitN(g, "/", 3)
			if len(parts) == 3 && harbors[parts[0]] && !strings.ContainsAny(parts[1], "*?") {
				projects[[2]string{parts[0], parts[1]}] = true
			}
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
		out = append(out, webhookTarget{Host: hp[0], Project: hp[1], Want: harbor.WebhookPolicy{
			Name:        policyName,
			Description: "harborflow: registry events of this project to " + base,
			Enabled:     true,
			EventTypes:  slices.Clone(policyEvents),
			Targets: []harbor.WebhookTarget{{Type: "http", Address: base + "/webhooks/harbor/" + src.Name,
				AuthHeader: src.Secrets[0], PayloadFormat: format}},
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

// policyChanges lists what differs between have and want (one target), as a person reads it; the auth
// header is compared but never printed.
func policyChanges(have, want harbor.WebhookPolicy) []string {
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
	wt := want.Targets[0]
	if len(have.Targets) != 1 {
		return append(out, fmt.Sprintf("targets: %d → 1 (%s)", len(have.Targets), wt.Address))
	}
	ht := have.Targets[0]
	if ht.Type != wt.Type || ht.Address != wt.Address {
		out = append(out, fmt.Sprintf("address: %s %s → %s %s", ht.Type, ht.Address, wt.Type, wt.Address))
	}
	if ht.PayloadFormat != wt.PayloadFormat {
		out = append(out, fmt.Sprintf("payload format: %s → %s", ht.PayloadFormat, wt.PayloadFormat))
	}
	if ht.SkipCertVerify != wt.SkipCertVerify {
		out = append(out, fmt.Sprintf("skip cert verify: %t → %t", ht.SkipCertVerify, wt.SkipCertVerify))
	}
	if ht.AuthHeader.Value() != wt.AuthHeader.Value() {
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
	i := slices.IndexFunc(have, func(p harbor.WebhookPolicy) bool { return p.Name == policyName })
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
			report(t, "policy %s created (id %d): %s, %s", policyName, id, t.Want.Targets[0].Address, strings.Join(t.Want.EventTypes, ","))
			return nil
		}
		report(t, "policy %s %screated: %s, %s", policyName, would, t.Want.Targets[0].Address, strings.Join(t.Want.EventTypes, ","))
		return nil
	}
	changes := policyChanges(have[i], t.Want)
	if len(changes) == 0 {
		report(t, "policy %s unchanged (id %d)", policyName, have[i].ID)
		return nil
	}
	if !dryRun {
		p := t.Want
		p.ID = have[i].ID
		if err := h.UpdateWebhookPolicy(ctx, t.Project, p); err != nil {
			return err
		}
	}
	report(t, "policy %s %supdated (id %d): %s", policyName, would, have[i].ID, strings.Join(changes, "; "))
	return nil
}

func newHarborCommand(cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{Use: "harbor", Short: "Work with the Harbors of the configuration (registries with harbor: true)"}
	var (
		projects []string
		format   string
		dryRun   bool
	)
	setup := &cobra.Command{
		Use:   "setup-webhooks",
		Short: "Give every Harbor project the configuration involves one webhook policy named harborflow",
		Long: "Harbor has webhooks per project only. For every project the configuration involves — the projects of the\n" +
			"rebuild targets, promotion stages and retention patterns (a project that is a glob: name it with --project) on\n" +
			"registries with `harbor: true`, plus --project — create or update one webhook policy named\n" +
			"harborflow: http.public_url/webhooks/harbor/<source>, the event types the stages use (" + strings.Join(policyEvents, ", ") + "),\n" +
			"the Harbor source's first secret as the auth header. A second run changes nothing; a project the account may\n" +
			"not manage is reported and the others still get their policy. Secrets are never printed. Needs the receiver's\n" +
			"secrets and the registries' credentials.",
		Example: "  harborflow harbor setup-webhooks --dry-run\n  harborflow harbor setup-webhooks --project wso2-staging --project harbor.acme.example/wso2-prod",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != harbor.PayloadDefault && format != harbor.PayloadCloudEvents {
				return fmt.Errorf("--format: %q is not %s or %s", format, harbor.PayloadDefault, harbor.PayloadCloudEvents)
			}
			cfg, err := config.Load(cfgPath(), event.StageReceiver, event.StageRebuilder)
			if err != nil {
				return err
			}
			targets, err := webhookTargets(cfg, projects, format)
			if err != nil {
				return err
			}
			clients := map[string]*harbor.Client{}
			defer func() {
				for _, c := range clients {
					c.Close()
				}
			}()
			api := func(host string) (webhookAPI, error) {
				if c, ok := clients[host]; ok {
					return c, nil
				}
				for _, r := range cfg.Registries {
					if r.Host == host && r.Harbor {
						c, err := harbor.New(r.HarborHost(), harbor.WithVersion(Version))
						if err != nil {
							return nil, err
						}
						clients[host] = c
						return c, nil
					}
				}
				return nil, fmt.Errorf("%s is not a registry with harbor: true", host)
			}
			return setupWebhooks(cmd.Context(), cmd.OutOrStdout(), targets, api, dryRun)
		},
	}
	setup.Flags().StringArrayVar(&projects, "project", nil, "another project: PROJECT (on every Harbor) or HOST/PROJECT (repeatable)")
	setup.Flags().StringVar(&format, "format", harbor.PayloadDefault, "payload format: Default or CloudEvents")
	setup.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	cmd.AddCommand(setup)
	return cmd
}
