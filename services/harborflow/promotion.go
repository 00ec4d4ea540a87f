package harborflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/promoter"
)

// promotionKey is the key of one image's PromotionState in the bucket event.BucketPromotions. It is the
// contract with the promoter stage, which writes these states: event.Key("promotion", chain, digest), nothing
// else (services/promoter must use the same expression).
func promotionKey(chain, digest string) string {
	return event.Key("promotion", chain, digest)
}

// promotionPattern matches every key of one chain (promotionKey with any digest); chain "" matches every chain.
func promotionPattern(chain string) string {
	if chain == "" {
		return "promotion.*.*"
	}
	return event.Key("promotion", chain) + ".*"
}

var (
	chainName = regexp.MustCompile(`^[a-z0-9-]+$`)
	stageName = regexp.MustCompile(`^[a-z0-9._-]+$`)
	// unblockStage finds the stage an unblock hint names: "harborflow approve acme-am sha256:… --stage prod --by NAME".
	unblockStage = regexp.MustCompile(`--stage[ =]([a-z0-9._-]+)`)
)

// approveAttempts bounds the compare-and-set retries of approve: each conflict is another writer (the promoter
// or another approval) that got in between our read and our write.
const approveAttempts = 10

func newApproveCommand(cfgPath func() string) *cobra.Command {
	var stage, by string
	cmd := &cobra.Command{
		Use:   "approve CHAIN DIGEST|TAG --stage STAGE --by NAME",
		Short: "Record a person's approval for an image to enter a stage of a promotion chain",
		Long: `Record who approved an image (by digest, or by a tag it has in the chain) for a stage of a promotion
chain, and when, and ask the promoter to evaluate the promotion now (task.promoter): an approval gate that
now passes resumes it at once. Approving twice as the same person records once. A tag on two
digests of the chain names the one that entered the tag's stage last.`,
		Example: "  harborflow approve acme-am 4.2.0.16.3 --stage prod --by alice\n  harborflow approve acme-am sha256:… --stage prod --by alice",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			by = strings.TrimSpace(by)
			if by == "" {
				return errors.New("--by is required: the name of the person approving")
			}
			if !stageName.MatchString(stage) {
				return fmt.Errorf("--stage %q is not a stage name ([a-z0-9._-]+)", stage)
			}
			nc, b, err := connect(ctx, cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			kv, err := b.KeyValue(ctx, event.BucketPromotions)
			if err != nil {
				return err
			}
			st, err := resolvePromotion(ctx, kv, args[0], args[1])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if e := reachedEntry(st, stage); e != nil {
				_, err := fmt.Fprintf(w, "%s %s already reached %s (%s) at %s: nothing to approve, nothing recorded\n",
					st.GetChain(), st.GetDigest(), stage, e.GetRepository(), formatTime(e.GetEntered()))
				return err
			}
			a := &harborflowv1.Approval{Stage: stage, By: by, At: timestamppb.Now()}
			recorded, st, rev, err := recordApproval(ctx, kv, promotionKey(st.GetChain(), st.GetDigest()), a, nil)
			if err != nil {
				return err
			}
			if !recorded {
				_, err := fmt.Fprintf(w, "%s had already approved %s %s for %s at %s: nothing new recorded\n", by, st.GetChain(),
					st.GetDigest(), stage, formatTime(approvalBy(st, stage, by).GetAt()))
				return err
			}
			fmt.Fprintf(w, "recorded: %s approved %s %s for stage %s at %s\n", by, st.GetChain(), st.GetDigest(), stage, formatTime(a.GetAt()))
			if !slices.Contains(expectedStages(st), stage) {
				fmt.Fprintf(w, "note: %s is not a stage this image has reached or is evaluated for; the chain's configuration is not read here, so check that %s is a stage of %s\n",
					stage, stage, st.GetChain())
			}
			// The promoter would find the state due on its next round; the task makes that now.
			task, err := promoter.Task(st.GetChain(), st.GetDigest(), rev, "approved by "+by)
			if err != nil {
				return err
			}
			if _, err := b.Publish(ctx, task); err != nil {
				return fmt.Errorf("the approval is recorded, but asking the promoter to evaluate it now failed (its next round will): %w", err)
			}
			_, err = fmt.Fprintln(w, "asked the promoter to evaluate it now: it resumes the promotion if its gates pass; nothing else to run")
			return err
		},
	}
	cmd.Flags().StringVar(&stage, "stage", "", "the stage the approval is for (the stage the image is to enter)")
	cmd.Flags().StringVar(&by, "by", "", "who approves (recorded with the time)")
	_ = cmd.MarkFlagRequired("stage")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}

// recordApproval appends a to the PromotionState at key with compare-and-set, reading it again and retrying on
// a conflict, so that the promoter's writes and other approvals in between are kept. An approval of the same
// stage by the same person is recorded once: recorded is false when it was there already. beforeUpdate, when
// set, runs between each read and its write (tests use it to write in between).
func recordApproval(ctx context.Context, kv *bus.KV, key string, a *harborflowv1.Approval, beforeUpdate func()) (recorded bool, st *harborflowv1.PromotionState, rev uint64, err error) {
	for range approveAttempts {
		st = &harborflowv1.PromotionState{}
		rev, err := kv.Get(ctx, key, st)
		if err != nil {
			return false, nil, 0, err
		}
		if approvalBy(st, a.GetStage(), a.GetBy()) != nil {
			return false, st, rev, nil
		}
		st.Approvals = append(st.Approvals, a)
		if beforeUpdate != nil {
			beforeUpdate()
		}
		next, err := kv.Update(ctx, key, st, rev)
		if err != nil {
			if errors.Is(err, bus.ErrRevisionMismatch) {
				continue
			}
			return false, nil, 0, err
		}
		return true, st, next, nil
	}
	return false, nil, 0, fmt.Errorf("recording the approval in %s: the state changed under each of %d attempts; run approve again", key, approveAttempts)
}

func approvalBy(st *harborflowv1.PromotionState, stage, by string) *harborflowv1.Approval {
	for _, a := range st.GetApprovals() {
		if a.GetStage() == stage && a.GetBy() == by {
			return a
		}
	}
	return nil
}

func reachedEntry(st *harborflowv1.PromotionState, stage string) *harborflowv1.StageEntry {
	for _, e := range st.GetReached() {
		if e.GetStage() == stage {
			return e
		}
	}
	return nil
}

// expectedStages are the stages the state names that the image has not reached: the stage its last evaluation
// is towards, as an approval gate's unblock hint names it. The state does not name the chain's later stages.
func expectedStages(st *harborflowv1.PromotionState) []string {
	var out []string
	for _, g := range st.GetGates() {
		if m := unblockStage.FindStringSubmatch(g.GetUnblock()); m != nil && reachedEntry(st, m[1]) == nil && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// resolvePromotion returns the PromotionState of ref (a digest, or a tag the image has in the chain) in chain.
// A tag on several digests names the one that entered a stage with that tag last. An unknown chain or tag is an
// error that lists what is known.
func resolvePromotion(ctx context.Context, kv *bus.KV, chain, ref string) (*harborflowv1.PromotionState, error) {
	if !chainName.MatchString(chain) {
		return nil, fmt.Errorf("%q is not a promotion chain name ([a-z0-9-]+)", chain)
	}
	if !imageref.IsDigest(ref) && !imageref.IsTag(ref) {
		return nil, fmt.Errorf("%q is neither a digest (sha256:…) nor a tag", ref)
	}
	states, err := readEntries(ctx, kv, promotionPattern(chain), func() *harborflowv1.PromotionState { return &harborflowv1.PromotionState{} })
	if err != nil {
		return nil, fmt.Errorf("reading the promotions of chain %s: %w", chain, err)
	}
	if len(states) == 0 {
		return nil, unknownChain(ctx, kv, chain)
	}
	if imageref.IsDigest(ref) {
		for _, st := range states {
			if st.GetDigest() == ref {
				return st, nil
			}
		}
		return nil, fmt.Errorf("digest %s has not entered promotion chain %s; its digests: %s", ref, chain, strings.Join(digestsOf(states), ", "))
	}
	var found *harborflowv1.PromotionState
	var foundAt time.Time
	for _, st := range states {
		if at, ok := taggedAt(st, ref); ok && (found == nil || !at.Before(foundAt)) {
			found, foundAt = st, at
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no image of promotion chain %s has the tag %s; its tags: %s", chain, ref, strings.Join(tagsOf(states), ", "))
	}
	return found, nil
}

// taggedAt reports whether st carries tag (as one of the tags it entered the chain with, or one it got in a
// stage), and when it got it: the newest entry of a stage that lists the tag, else when it entered the chain.
func taggedAt(st *harborflowv1.PromotionState, tag string) (time.Time, bool) {
	var at time.Time
	ok := false
	for _, e := range st.GetReached() {
		if slices.Contains(e.GetTags(), tag) && (!ok || e.GetEntered().AsTime().After(at)) {
			at, ok = e.GetEntered().AsTime(), true
		}
	}
	if !ok && slices.Contains(st.GetTags(), tag) {
		ok = true
		if len(st.GetReached()) > 0 {
			at = st.GetReached()[0].GetEntered().AsTime()
		}
	}
	return at, ok
}

func unknownChain(ctx context.Context, kv *bus.KV, chain string) error {
	all, err := readEntries(ctx, kv, promotionPattern(""), func() *harborflowv1.PromotionState { return &harborflowv1.PromotionState{} })
	if err != nil {
		return fmt.Errorf("reading the promotion chains: %w", err)
	}
	var chains []string
	for _, st := range all {
		if !slices.Contains(chains, st.GetChain()) {
			chains = append(chains, st.GetChain())
		}
	}
	slices.Sort(chains)
	if len(chains) == 0 {
		return fmt.Errorf("no image has entered promotion chain %s: no promotion is recorded at all", chain)
	}
	return fmt.Errorf("no image has entered promotion chain %s; chains with images: %s", chain, strings.Join(chains, ", "))
}

func digestsOf(states []*harborflowv1.PromotionState) []string {
	out := make([]string, len(states))
	for i, st := range states {
		out[i] = st.GetDigest()
	}
	slices.Sort(out)
	return out
}

func tagsOf(states []*harborflowv1.PromotionState) []string {
	var out []string
	for _, st := range states {
		out = append(out, st.GetTags()...)
		for _, e := range st.GetReached() {
			out = append(out, e.GetTags()...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func newPromotionCommand(cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "promotion",
		Short: "Inspect promotions: where an image is in a chain and what keeps it from the next stage",
	}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show CHAIN DIGEST|TAG",
		Short: "Explain an image's promotion: stages reached, each gate's verdict and what would unblock it",
		Long: `Print the stages an image reached in a promotion chain (repository, when, tags), the promoter's last
evaluation towards the next stage (the verdict, and each gate: passed, pending or blocked, why, and what would
unblock it), the approvals given, when a scan was requested and when the promoter evaluates again on its own.
A tag on two digests of the chain names the one that entered the tag's stage last. --json prints the
PromotionState as protojson.`,
		Example: "  harborflow promotion show acme-am 4.2.0.16.3\n  harborflow promotion show acme-am sha256:… --json",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			nc, b, err := connect(ctx, cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			kv, err := b.KeyValue(ctx, event.BucketPromotions)
			if err != nil {
				return err
			}
			st, err := resolvePromotion(ctx, kv, args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				out, err := protojson.Marshal(st)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
				return err
			}
			return printPromotion(cmd.OutOrStdout(), st)
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the PromotionState as protojson instead of text")
	cmd.AddCommand(show)
	return cmd
}

func printPromotion(w io.Writer, st *harborflowv1.PromotionState) error {
	fmt.Fprintf(w, "chain %s, digest %s\ntags: %s\n\n", st.GetChain(), st.GetDigest(), orDash(strings.Join(st.GetTags(), ", ")))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tREPOSITORY\tENTERED\tTAGS")
	for _, e := range st.GetReached() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.GetStage(), e.GetRepository(), formatTime(e.GetEntered()), orDash(strings.Join(e.GetTags(), ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.GetEvaluatedAt() == nil && len(st.GetGates()) == 0 {
		fmt.Fprintln(w, "\nlast evaluation: none yet")
	} else {
		toward := ""
		if next := expectedStages(st); len(next) > 0 {
			toward = " towards " + strings.Join(next, ", ")
		}
		fmt.Fprintf(w, "\nlast evaluation%s: %s at %s\n", toward, orDash(st.GetVerdict()), formatTime(st.GetEvaluatedAt()))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GATE\tVERDICT\tREASON\tTO UNBLOCK")
		for _, g := range st.GetGates() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.GetName(), gateVerdict(g), orDash(g.GetReason()), orDash(g.GetUnblock()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(st.GetApprovals()) == 0 {
		fmt.Fprintln(w, "approvals: none")
	} else {
		fmt.Fprintln(w, "approvals:")
		for _, a := range st.GetApprovals() {
			fmt.Fprintf(w, "  %s by %s at %s\n", a.GetStage(), a.GetBy(), formatTime(a.GetAt()))
		}
	}
	fmt.Fprintf(w, "scan requested at: %s\n", formatTime(st.GetScanRequestedAt()))
	_, err := fmt.Fprintf(w, "next evaluation: %s\n", formatTime(st.GetNextEvaluation()))
	return err
}

// gateVerdict is a gate's verdict, from passed when an older writer left verdict empty.
func gateVerdict(g *harborflowv1.Gate) string {
	switch {
	case g.GetVerdict() != "":
		return g.GetVerdict()
	case g.GetPassed():
		return "passed"
	default:
		return "blocked"
	}
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readPromotions returns the PromotionStates of the given digests, by digest, in chain order. It lists every
// promotion key and keeps those of the digests: the key puts the chain before the digest, so a digest cannot be
// matched across chains by a key pattern.
func readPromotions(ctx context.Context, kv *bus.KV, digests map[string]bool) (map[string][]*harborflowv1.PromotionState, error) {
	out := map[string][]*harborflowv1.PromotionState{}
	if len(digests) == 0 {
		return out, nil
	}
	states, err := readEntries(ctx, kv, promotionPattern(""), func() *harborflowv1.PromotionState { return &harborflowv1.PromotionState{} })
	if err != nil {
		return nil, fmt.Errorf("reading the promotions: %w", err)
	}
	for _, st := range states {
		if digests[st.GetDigest()] {
			out[st.GetDigest()] = append(out[st.GetDigest()], st)
		}
	}
	for _, ss := range out {
		slices.SortFunc(ss, func(a, b *harborflowv1.PromotionState) int { return strings.Compare(a.GetChain(), b.GetChain()) })
	}
	return out, nil
}

// promotionSummary says where a digest is in each chain: "acme-am: prod", "acme-am: staging, pending: approval
// (no approval for prod)", "acme-am: dev, blocked: max_severity (High found)".
func promotionSummary(states []*harborflowv1.PromotionState) string {
	if len(states) == 0 {
		return "-"
	}
	parts := make([]string, len(states))
	for i, st := range states {
		where := "not in a stage yet"
		if r := st.GetReached(); len(r) > 0 {
			where = r[len(r)-1].GetStage()
		}
		if v := st.GetVerdict(); v == "blocked" || v == "pending" {
			var why []string
			for _, g := range st.GetGates() {
				if gateVerdict(g) == v {
					why = append(why, fmt.Sprintf("%s (%s)", g.GetName(), g.GetReason()))
				}
			}
			where += ", " + v
			if len(why) > 0 {
				where += ": " + strings.Join(why, ", ")
			}
		}
		parts[i] = st.GetChain() + ": " + where
	}
	return strings.Join(parts, "; ")
}
