package harborflow

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

func newHistoryCommand(cfgPath func() string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "history REGISTRY/REPOSITORY",
		Short:   "Print the image history of a repository: update levels, digests, tags, platforms, when",
		Example: "  harborflow history registry.wso2.com/wso2-apim/am\n  harborflow history harbor.acme.example/wso2-dev/acme-am --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, repository, ok := strings.Cut(args[0], "/")
			if !ok || host == "" || repository == "" {
				return fmt.Errorf("%q is not REGISTRY/REPOSITORY, e.g. registry.wso2.com/wso2-apim/am", args[0])
			}
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
			if asJSON {
				return printHistoryJSON(cmd.OutOrStdout(), records)
			}
			return printHistory(cmd.OutOrStdout(), records)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines (protojson of ImageRecord) instead of a table")
	return cmd
}

// readHistory returns the records of one repository, oldest first.
func readHistory(ctx context.Context, kv jetstream.KeyValue, host, repository string) ([]*harborflowv1.ImageRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := kv.Watch(ctx, event.Key(host, repository)+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s/%s: %w", host, repository, err)
	}
	defer func() { _ = w.Stop() }()
	var records []*harborflowv1.ImageRecord
	for e := range w.Updates() {
		if e == nil {
			break // every stored record has been seen
		}
		r := &harborflowv1.ImageRecord{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(e.Value(), r); err != nil {
			return nil, fmt.Errorf("decoding history record %s: %w", e.Key(), err)
		}
		records = append(records, r)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reading the history of %s/%s: %w", host, repository, err)
	}
	slices.SortStableFunc(records, func(a, b *harborflowv1.ImageRecord) int {
		return a.GetFirstSeen().AsTime().Compare(b.GetFirstSeen().AsTime())
	})
	return records, nil
}

func printHistoryJSON(w io.Writer, records []*harborflowv1.ImageRecord) error {
	for _, r := range records {
		b, err := protojson.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}

func printHistory(w io.Writer, records []*harborflowv1.ImageRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIRST SEEN\tUPDATE LEVEL\tDIGEST\tKIND\tTAGS\tPLATFORMS")
	for _, r := range records {
		level := "-"
		if r.UpdateLevel != nil {
			level = fmt.Sprint(r.GetUpdateLevel())
		}
		var platforms []string
		for _, p := range r.GetPlatforms() {
			s := p.GetOs() + "/" + p.GetArchitecture()
			if p.GetVariant() != "" {
				s += "/" + p.GetVariant()
			}
			platforms = append(platforms, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.GetFirstSeen().AsTime().UTC().Format(time.RFC3339), level, shortDigest(r.GetDigest()),
			r.GetArtifactKind(), strings.Join(r.GetTags(), ","), strings.Join(platforms, ","))
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
