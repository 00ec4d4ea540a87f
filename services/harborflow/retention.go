package harborflow

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/retention"
)

func newRetentionCommand(cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Plan, apply and undo retention for one repository",
		Long: `Retention keeps the newest keep_per_version builds of each version line of a repository and deletes the
rest, never what a protected or rolling tag points to (the retention: section of the configuration). The
retention stage runs it after pushes and on its schedule; these commands run it by hand. REPOSITORY is
registry/project/repository, matched by a policy's repositories.`,
	}
	plan := &cobra.Command{
		Use:     "plan REPOSITORY",
		Short:   "Print what retention would delete and keep, and why; delete nothing",
		Example: "  harborflow retention plan harbor.acme.example/wso2-dev/acme-am",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRetention(cmd.Context(), cfgPath(), func(r *retention.Retention, _ *bus.Bus) error {
				p, err := r.Run(cmd.Context(), args[0], true)
				if err != nil {
					return err
				}
				if p == nil {
					return fmt.Errorf("no retention policy matches %s", args[0])
				}
				return printPruned(cmd.OutOrStdout(), p, "would delete")
			})
		},
	}
	apply := &cobra.Command{
		Use:   "apply REPOSITORY",
		Short: "Apply retention to a repository now and publish image.pruned (a dry_run policy is refused)",
		Long: `Plan the repository and delete what the plan deletes, now. A repository whose policy is a dry run is
refused, deleting nothing (set dry_run: false to apply it; harborflow retention plan shows what it would do).
Every deletion is recorded first, with the manifests to put it back (harborflow retention restore).`,
		Example: "  harborflow retention apply harbor.acme.example/wso2-dev/acme-am",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRetention(cmd.Context(), cfgPath(), func(r *retention.Retention, b *bus.Bus) error {
				p, err := r.Run(cmd.Context(), args[0], false)
				if err != nil {
					return err
				}
				if p == nil {
					return fmt.Errorf("no retention policy matches %s", args[0])
				}
				if p.GetDryRun() {
					return fmt.Errorf("%s: its policy is a dry run (dry_run: true): nothing deleted; set dry_run: false to apply it", args[0])
				}
				m, err := retention.PrunedMessage(p, "")
				if err != nil {
					return err
				}
				if _, err := b.Publish(cmd.Context(), m); err != nil {
					return fmt.Errorf("applied, but publishing image.pruned failed: %w", err)
				}
				return printPruned(cmd.OutOrStdout(), p, "deleted")
			})
		},
	}
	restore := &cobra.Command{
		Use:   "restore REPOSITORY DIGEST",
		Short: "Put an artifact retention deleted back, with its tags",
		Long: `Put back an artifact retention deleted from REPOSITORY: its manifests (an index's children first) and its
tags, from the record retention kept. The registry must still have its blobs: restore before Harbor's
garbage collection runs. Retention keeps a restored artifact for 7 days though its plan still says delete:
protect it (retention[].protect) or change the policy meanwhile.`,
		Example: "  harborflow retention restore harbor.acme.example/wso2-dev/acme-am sha256:…",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRetention(cmd.Context(), cfgPath(), func(r *retention.Retention, _ *bus.Bus) error {
				rec, err := r.Restore(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "restored %s@%s with tags %s (deleted because: %s)\n", rec.GetRepository(),
					rec.GetDigest(), strings.Join(rec.GetTags(), ", "), rec.GetReason())
				return err
			})
		},
	}
	cmd.AddCommand(plan, apply, restore)
	return cmd
}

// withRetention runs f with the retention stage of the configuration at path.
func withRetention(ctx context.Context, path string, f func(*retention.Retention, *bus.Bus) error) error {
	env, err := openStage(ctx, path, event.StageRetention)
	if err != nil {
		return err
	}
	defer env.close()
	r, err := newRetention(ctx, env.cfg, env.bus, env.log, func() (*registry.Client, error) { return env.reg, nil })
	if err != nil {
		return err
	}
	return f(r, env.bus)
}

// printPruned prints a run's decisions: what goes (verb), then what stays, each with its reason.
func printPruned(w io.Writer, p *harborflowv1.ImagePruned, verb string) error {
	fmt.Fprintf(w, "%s: %d to %s, %d kept\n", p.GetRepository(), len(p.GetDeleted()), strings.TrimPrefix(verb, "would "), len(p.GetKept()))
	for _, a := range p.GetDeleted() {
		fmt.Fprintf(w, "  %-12s %s %s: %s\n", verb, a.GetDigest(), strings.Join(a.GetTags(), ","), a.GetReason())
	}
	for _, a := range p.GetKept() {
		fmt.Fprintf(w, "  %-12s %s %s: %s\n", "keep", a.GetDigest(), strings.Join(a.GetTags(), ","), a.GetReason())
	}
	return nil
}
