package harborflow

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/platform"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/rebuilder"
)

func newHistoryCommand(cfgPath func() string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history REGISTRY/REPOSITORY",
		Short: "Print the image history of a repository: update levels, digests, tags, platforms, when, and what each base became",
		Long: `Print what the inspector learned of each digest of a repository, oldest first, and, for a base that recipes
follow, what each recipe did with it: the tag it was rebuilt as, or why not (superseded by a newer update
level's build, skipped, failed), so that no update level and no build number goes unexplained; for an image
harborflow rebuilt, where its signed SLSA provenance is (cosign verify-attestation --type slsaprovenance1 reads
it). A tag is shown on the digest it points to now. A repository with no history prints that nothing is recorded (with --json: []).`,
		Example: "  harborflow history registry.wso2.com/wso2-apim/am\n  harborflow history harbor.acme.example/wso2-dev/acme-am --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := imageref.ParseRepository(args[0])
			if err != nil {
				return fmt.Errorf("%w, e.g. registry.wso2.com/wso2-apim/am", err)
			}
			host, repository := name.Registry, name.Repository
			nc, b, err := connect(cmd.Context(), cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			kv, err := b.KeyValue(cmd.Context(), event.BucketImageHistory)
			if err != nil {
				return err
			}
			records, err := readHistory(cmd.Context(), kv, host, repository)
			if err != nil {
				return err
			}
			if len(records) == 0 {
				if asJSON {
					_, err := fmt.Fprintln(cmd.OutOrStdout(), "[]")
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "nothing is recorded for %s/%s: no push of it has been inspected\n", host, repository)
				return err
			}
			rkv, err := b.KeyValue(cmd.Context(), event.BucketRebuilds)
			if err != nil {
				return err
			}
			builds, provenance, err := readBuilds(cmd.Context(), rkv, records)
			if err != nil {
				return err
			}
			pkv, err := b.KeyValue(cmd.Context(), event.BucketPromotions)
			if err != nil {
				return err
			}
			digests := map[string]bool{}
			for _, r := range records {
				digests[r.GetDigest()] = true
			}
			promotions, err := readPromotions(cmd.Context(), pkv, digests)
			if err != nil {
				return err
			}
			if asJSON {
				return printHistoryJSON(cmd.OutOrStdout(), records, builds, promotions, provenance)
			}
			return printHistory(cmd.OutOrStdout(), records, builds, promotions, provenance)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines (protojson of ImageRecord, with \"rebuilds\": the Build records of the digest, \"promotions\": its PromotionState in each chain, and \"provenance\": where a rebuilt image's signed provenance is) instead of a table")
	return cmd
}

// readHistory returns the records of one repository, oldest first, each tag on the digest it points to now
// (see currentTags).
func readHistory(ctx context.Context, kv *bus.KV, host, repository string) ([]*harborflowv1.ImageRecord, error) {
	records, err := readEntries(ctx, kv, event.Key(host, repository)+".*", func() *harborflowv1.ImageRecord { return &harborflowv1.ImageRecord{} })
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s/%s: %w", host, repository, err)
	}
	currentTags(records)
	slices.SortStableFunc(records, func(a, b *harborflowv1.ImageRecord) int {
		return a.GetFirstSeen().AsTime().Compare(b.GetFirstSeen().AsTime())
	})
	return records, nil
}

// currentTags leaves each tag on one record only: the one it points to now. A record keeps every tag it was
// ever pushed with, so after a tag moves, the digest it left still lists it. The newest record carrying a tag
// wins: the one last seen latest (the inspector sets last_seen when it adds a tag to a record, when a tag moves
// back to a digest that already lists it, and a new record's last_seen is when it was first seen), ties going to
// the record written last (records come in KV write order). So a tag that moves back is shown on the digest it
// moved back to.
func currentTags(records []*harborflowv1.ImageRecord) {
	owner := map[string]*harborflowv1.ImageRecord{}
	for _, r := range records {
		for _, tag := range r.GetTags() {
			if o, ok := owner[tag]; !ok || !lastSeen(r).Before(lastSeen(o)) {
				owner[tag] = r
			}
		}
	}
	for _, r := range records {
		r.Tags = slices.DeleteFunc(r.Tags, func(tag string) bool { return owner[tag] != r })
	}
}

func lastSeen(r *harborflowv1.ImageRecord) time.Time {
	if r.GetLastSeen() != nil {
		return r.GetLastSeen().AsTime()
	}
	return r.GetFirstSeen().AsTime()
}

// readBuilds returns the rebuilder's build records of the records' digests (what each recipe made of a base),
// by base digest, in recipe order; and where the provenance of the records' rebuilt images is, by digest.
func readBuilds(ctx context.Context, kv *bus.KV, records []*harborflowv1.ImageRecord) (map[string][]*harborflowv1.Build, map[string]string, error) {
	out, provenance := map[string][]*harborflowv1.Build{}, map[string]string{}
	if len(records) == 0 {
		return out, provenance, nil
	}
	digests := map[string]bool{}
	for _, r := range records {
		digests[r.GetDigest()] = true
	}
	builds, err := readEntries(ctx, kv, "build.>", func() *harborflowv1.Build { return &harborflowv1.Build{} })
	if err != nil {
		return nil, nil, fmt.Errorf("reading the rebuild records: %w", err)
	}
	for _, b := range builds {
		if digests[b.GetBaseDigest()] {
			out[b.GetBaseDigest()] = append(out[b.GetBaseDigest()], b)
		}
		if d := b.GetTargetDigest(); digests[d] && b.GetResult().GetProvenance() != "" {
			provenance[d] = b.GetResult().GetProvenance()
		}
	}
	for _, bs := range out {
		slices.SortFunc(bs, func(a, b *harborflowv1.Build) int { return strings.Compare(a.GetRecipe(), b.GetRecipe()) })
	}
	return out, provenance, nil
}

// readEntries decodes every entry of kv whose key matches pattern, in the order they were written (unknown
// fields are a newer writer's and are passed over).
func readEntries[T proto.Message](ctx context.Context, kv *bus.KV, pattern string, newT func() T) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	entries, err := kv.List(ctx, pattern)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		v := newT()
		if err := e.Decode(v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func printHistoryJSON(w io.Writer, records []*harborflowv1.ImageRecord, builds map[string][]*harborflowv1.Build,
	promotions map[string][]*harborflowv1.PromotionState, provenance map[string]string) error {
	for _, r := range records {
		b, err := protojson.Marshal(r)
		if err != nil {
			return err
		}
		bs, ps, pv := builds[r.GetDigest()], promotions[r.GetDigest()], provenance[r.GetDigest()]
		if len(bs) > 0 || len(ps) > 0 || pv != "" {
			// The record's fields as they are, and the digest's build records and promotions beside them.
			fields := map[string]json.RawMessage{}
			if err := json.Unmarshal(b, &fields); err != nil {
				return err
			}
			if len(bs) > 0 {
				if fields["rebuilds"], err = marshalList(bs); err != nil {
					return err
				}
			}
			if len(ps) > 0 {
				if fields["promotions"], err = marshalList(ps); err != nil {
					return err
				}
			}
			if pv != "" {
				if fields["provenance"], err = json.Marshal(pv); err != nil {
					return err
				}
			}
			if b, err = json.Marshal(fields); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}

// marshalList is a JSON array of the protojson of each message.
func marshalList[T proto.Message](ms []T) (json.RawMessage, error) {
	list := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := protojson.Marshal(m)
		if err != nil {
			return nil, err
		}
		list = append(list, b)
	}
	return json.Marshal(list)
}

// rebuildSummary says what each recipe made of a base: "acme-am: 4.2.0.16.3", "acme-am: 4.2.0.15.2
// superseded by 4.2.0.16.3", "acme-am: failed: …".
func rebuildSummary(bs []*harborflowv1.Build) string {
	if len(bs) == 0 {
		return "-"
	}
	parts := make([]string, len(bs))
	for i, b := range bs {
		what := b.GetTag()
		if what == "" {
			what = fmt.Sprintf("update level %d", b.GetUpdateLevel())
		}
		switch b.GetState() {
		case rebuilder.StateBuilt:
		case rebuilder.StateSuperseded:
			what += " superseded by " + b.GetSupersededBy()
		case rebuilder.StateFailed:
			what += " failed: " + b.GetReason()
		case rebuilder.StateSkipped:
			what += " skipped: " + b.GetReason()
		default:
			what += " " + b.GetState() // claimed or pushed: being built, or to be redelivered
		}
		parts[i] = b.GetRecipe() + ": " + what
	}
	return strings.Join(parts, "; ")
}

func printHistory(w io.Writer, records []*harborflowv1.ImageRecord, builds map[string][]*harborflowv1.Build,
	promotions map[string][]*harborflowv1.PromotionState, provenance map[string]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIRST SEEN\tUPDATE LEVEL\tDIGEST\tKIND\tTAGS\tPLATFORMS\tREBUILDS\tPROMOTIONS\tPROVENANCE")
	for _, r := range records {
		level := "-"
		if r.UpdateLevel != nil {
			level = fmt.Sprint(r.GetUpdateLevel())
		}
		var platforms []string
		for _, p := range r.GetPlatforms() {
			platforms = append(platforms, platform.Format(p.GetOs(), p.GetArchitecture(), p.GetVariant()))
		}
		pv := provenance[r.GetDigest()]
		if pv == "" {
			pv = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetFirstSeen().AsTime().UTC().Format(time.RFC3339), level, shortDigest(r.GetDigest()),
			r.GetArtifactKind(), strings.Join(r.GetTags(), ","), strings.Join(platforms, ","), rebuildSummary(builds[r.GetDigest()]),
			promotionSummary(promotions[r.GetDigest()]), pv)
	}
	return tw.Flush()
}

// shortDigest keeps the algorithm and 12 hex digits, as docker does.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}
