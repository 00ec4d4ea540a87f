package harborflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

func newDLQCommand(cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, replay and drop the messages stages gave up on (stream DLQ)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newDLQListCommand(cfgPath), newDLQReplayCommand(cfgPath), newDLQDropCommand(cfgPath))
	return cmd
}

func newDLQListCommand(cfgPath func() string) *cobra.Command {
	var (
		stage  string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--stage STAGE] [--json]",
		Short: "Print the dead letters: DLQ sequence, stage, original subject, when, deliveries, reason",
		Example: `  harborflow dlq list
  harborflow dlq list --stage inspector --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subject, err := dlqSubject(stage)
			if err != nil {
				return err
			}
			nc, b, err := connect(cmd.Context(), cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			return listDeadLetters(cmd.Context(), b, cmd.OutOrStdout(), subject, asJSON)
		},
	}
	cmd.Flags().StringVar(&stage, "stage", "", "only the dead letters of STAGE (dlq.STAGE; default: every stage)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines, with the original message id and body")
	return cmd
}

func newDLQReplayCommand(cfgPath func() string) *cobra.Command {
	var (
		stage  string
		seq    uint64
		all    bool
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "replay --stage STAGE (--seq N | --all) [--dry-run]",
		Short: "Publish dead letters again on their original subject, then remove them from the DLQ",
		Long: `Publishes each chosen dead letter again on its original subject (Harborflow-Dlq-Subject), with its
original body and headers minus the Harborflow-Dlq-* ones, under a new Nats-Msg-Id derived from the original id
and the DLQ sequence: the stage's consumer gets it as a new message, and replaying the same dead letter twice
within the duplicate window stores it once. A dead letter is removed from the DLQ only after its replay was
stored. The receiver's dead letters (dlq.receiver) are webhooks that never became a message: they are refused.`,
		Example: `  harborflow dlq replay --stage inspector --seq 42 --dry-run
  harborflow dlq replay --stage inspector --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subject, err := dlqSubject(stage)
			if err != nil {
				return err
			}
			if stage == event.StageReceiver {
				return errReceiverReplay
			}
			if cmd.Flags().Changed("seq") && seq == 0 {
				return errors.New("--seq: DLQ sequences start at 1")
			}
			nc, b, err := connect(cmd.Context(), cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			var msgs []*bus.Message
			if all {
				msgs, err = readDeadLetters(cmd.Context(), b, subject)
			} else {
				msgs, err = deadLetterAt(cmd.Context(), b, subject, seq)
			}
			if err != nil {
				return err
			}
			return replayDeadLetters(cmd.Context(), b, cmd.OutOrStdout(), subject, msgs, dryRun)
		},
	}
	cmd.Flags().StringVar(&stage, "stage", "", "the stage whose dead letters to replay (dlq.STAGE)")
	cmd.Flags().Uint64Var(&seq, "seq", 0, "replay the dead letter at DLQ sequence `N` (the SEQ of dlq list)")
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter of the stage")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be replayed, change nothing")
	_ = cmd.MarkFlagRequired("stage")
	cmd.MarkFlagsOneRequired("seq", "all")
	cmd.MarkFlagsMutuallyExclusive("seq", "all")
	return cmd
}

func newDLQDropCommand(cfgPath func() string) *cobra.Command {
	var (
		stage string
		seq   uint64
	)
	cmd := &cobra.Command{
		Use:   "drop --stage STAGE --seq N",
		Short: "Remove one dead letter from the DLQ without replaying it",
		Long: `Removes the dead letter at DLQ sequence N (the SEQ of dlq list) of the stage, after printing what it was:
for a dead letter that is not to be replayed — a receiver's (dlq.receiver), an event about something gone, one
handled by hand. One at a time, by sequence: read it first with dlq list --json, it cannot be brought back.`,
		Example: "  harborflow dlq drop --stage receiver --seq 7",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subject, err := dlqSubject(stage)
			if err != nil {
				return err
			}
			if seq == 0 {
				return errors.New("--seq: DLQ sequences start at 1")
			}
			nc, b, err := connect(cmd.Context(), cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			msgs, err := deadLetterAt(cmd.Context(), b, subject, seq)
			if err != nil {
				return err
			}
			d := deadLetterOf(msgs[0])
			if err := b.DeleteMsg(cmd.Context(), event.StreamDLQ, seq); err != nil {
				return fmt.Errorf("dropping DLQ message %d: %w", seq, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "dropped DLQ message %d of %s (from %s: %s)\n", seq, d.Stage, d.Subject, d.Reason)
			return err
		},
	}
	cmd.Flags().StringVar(&stage, "stage", "", "the stage of the dead letter (dlq.STAGE)")
	cmd.Flags().Uint64Var(&seq, "seq", 0, "the DLQ sequence `N` of the dead letter (the SEQ of dlq list)")
	_ = cmd.MarkFlagRequired("stage")
	_ = cmd.MarkFlagRequired("seq")
	return cmd
}

// errReceiverReplay refuses the receiver's dead letters: they are request bodies the receiver could not turn
// into an event, kept with the HTTP path they arrived on, not messages that were ever on a subject.
var errReceiverReplay = errors.New("the receiver's dead letters (dlq.receiver) cannot be replayed: they are webhook bodies " +
	"that never became an event, and their Harborflow-Dlq-Subject is the HTTP path they arrived on, not a subject; " +
	"read them with `harborflow dlq list --stage receiver --json` and fix what the sender sends")

// stageToken is what --stage may be: one subject token, no wildcard.
var stageToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// dlqSubject is the DLQ subject of stage, or of every stage when stage is empty.
func dlqSubject(stage string) (string, error) {
	if stage == "" {
		return event.DLQSubject(">"), nil
	}
	if !stageToken.MatchString(stage) {
		return "", fmt.Errorf("--stage %q: a stage name is letters, digits, - and _ (inspector, rebuilder, …)", stage)
	}
	return event.DLQSubject(stage), nil
}

// deadLetter is one listed DLQ message.
type deadLetter struct {
	// Seq is the DLQ stream sequence, what `dlq replay --seq` takes.
	Seq   uint64 `json:"seq"`
	Stage string `json:"stage"`
	// Subject is the original subject (for the receiver: the HTTP path).
	Subject string `json:"subject"`
	// Time is when the dead letter was stored.
	Time       time.Time `json:"time"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	// ID is the original Nats-Msg-Id; empty for dead letters stored before harborflow recorded it.
	ID   string          `json:"id,omitempty"`
	Data json.RawMessage `json:"data"`
}

func deadLetterOf(m *bus.Message) deadLetter {
	stage := m.Header.Get(event.HeaderDLQStage)
	if stage == "" {
		stage = strings.TrimPrefix(m.Subject, event.DLQSubject(""))
	}
	deliveries, _ := strconv.ParseUint(m.Header.Get(event.HeaderDLQDeliveries), 10, 64)
	d := deadLetter{
		Seq: m.Sequence, Stage: stage, Subject: m.Header.Get(event.HeaderDLQSubject), Time: m.Time.UTC(),
		Deliveries: deliveries, Reason: m.Header.Get(event.HeaderDLQReason), ID: m.Header.Get(event.HeaderDLQMsgID), Data: m.Data,
	}
	if !json.Valid(d.Data) {
		d.Data, _ = json.Marshal(string(m.Data))
	}
	return d
}

func readDeadLetters(ctx context.Context, b *bus.Bus, subject string) ([]*bus.Message, error) {
	var out []*bus.Message
	for m, err := range b.Read(ctx, bus.ReadConfig{Subject: subject}) {
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// deadLetterAt returns the DLQ message at seq, which must be on subject.
func deadLetterAt(ctx context.Context, b *bus.Bus, subject string, seq uint64) ([]*bus.Message, error) {
	m, err := b.GetMsg(ctx, event.StreamDLQ, seq)
	if errors.Is(err, bus.ErrMsgNotFound) {
		return nil, fmt.Errorf("the DLQ holds no message %d: replayed or removed already, or never stored (see `harborflow dlq list`)", seq)
	}
	if err != nil {
		return nil, err
	}
	if m.Subject != subject {
		return nil, fmt.Errorf("DLQ message %d is on %s, not %s", seq, m.Subject, subject)
	}
	return []*bus.Message{m}, nil
}

func listDeadLetters(ctx context.Context, b *bus.Bus, w io.Writer, subject string, asJSON bool) error {
	msgs, err := readDeadLetters(ctx, b, subject)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		for _, m := range msgs {
			if err := enc.Encode(deadLetterOf(m)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(msgs) == 0 {
		_, err := fmt.Fprintf(w, "no dead letters on %s\n", subject)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTAGE\tSUBJECT\tSTORED\tDELIVERIES\tREASON")
	for _, m := range msgs {
		d := deadLetterOf(m)
		deliveries := "-"
		if d.Deliveries > 0 {
			deliveries = strconv.FormatUint(d.Deliveries, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Stage, d.Subject, d.Time.Format(time.RFC3339), deliveries, d.Reason)
	}
	return tw.Flush()
}

// replay is a dead letter and the message that puts it back.
type replay struct {
	dead   *bus.Message
	out    *bus.Message
	stream string
}

// replayOf returns the replay of the DLQ message m, or why it cannot be replayed.
func replayOf(m *bus.Message) (*replay, error) {
	subject := m.Header.Get(event.HeaderDLQSubject)
	switch {
	case m.Subject == event.DLQSubject(event.StageReceiver) || m.Header.Get(event.HeaderDLQStage) == event.StageReceiver ||
		strings.HasPrefix(subject, "/"):
		return nil, fmt.Errorf("DLQ message %d: %w", m.Sequence, errReceiverReplay)
	case subject == "":
		return nil, fmt.Errorf("DLQ message %d has no %s header: its original subject is unknown", m.Sequence, event.HeaderDLQSubject)
	}
	stream, err := bus.StreamOf(subject)
	if err != nil {
		return nil, fmt.Errorf("DLQ message %d cannot be replayed: its original subject %q is in no stream, so nothing would store it", m.Sequence, subject)
	}
	if stream == event.StreamDLQ {
		return nil, fmt.Errorf("DLQ message %d cannot be replayed: its original subject %q is a DLQ subject", m.Sequence, subject)
	}
	h := nats.Header{}
	for k, v := range m.Header {
		// Nats-* headers are JetStream's instructions for one publish (the dead letter's own Nats-Msg-Id among
		// them), the Harborflow-Dlq-* ones describe the dead letter: neither belongs to the original.
		if c := textproto.CanonicalMIMEHeaderKey(k); strings.HasPrefix(c, event.HeaderDLQPrefix) || strings.HasPrefix(c, "Nats-") {
			continue
		}
		h[k] = slices.Clone(v)
	}
	orig := m.Header.Get(event.HeaderDLQMsgID)
	if orig == "" {
		// Dead letters stored before Harborflow-Dlq-Msg-Id existed: their own id is as stable.
		orig = m.ID
	}
	if orig == "" {
		orig = event.ID(subject, string(m.Data))
	}
	id := event.ID(orig, "replay", strconv.FormatUint(m.Sequence, 10))
	return &replay{dead: m, out: &bus.Message{Subject: subject, ID: id, Header: h, Data: m.Data}, stream: stream}, nil
}

// replayDeadLetters replays msgs, one at a time: each is removed from the DLQ once its replay is stored. A dead
// letter that cannot be replayed is refused and left in the DLQ, and the others are replayed; a failed publish
// or removal stops the replay.
func replayDeadLetters(ctx context.Context, b *bus.Bus, w io.Writer, subject string, msgs []*bus.Message, dryRun bool) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintf(w, "no dead letters on %s\n", subject)
		return err
	}
	var refused []error
	for _, m := range msgs {
		r, err := replayOf(m)
		if err != nil {
			refused = append(refused, err)
			continue
		}
		if dryRun {
			fmt.Fprintf(w, "would replay DLQ %d (%s) to %s (stream %s) as id %s, then remove it from the DLQ\n",
				m.Sequence, m.Subject, r.out.Subject, r.stream, r.out.ID)
			continue
		}
		if err := r.run(ctx, b, w); err != nil {
			return err
		}
	}
	switch {
	case len(refused) == 1 && len(msgs) == 1:
		return refused[0]
	case len(refused) > 0:
		return fmt.Errorf("%d of %d dead letters not replayed, left in the DLQ:\n%w", len(refused), len(msgs), errors.Join(refused...))
	}
	return nil
}

// run publishes the replay and, once it is stored, removes the dead letter.
func (r *replay) run(ctx context.Context, b *bus.Bus, w io.Writer) error {
	ack, err := b.Publish(ctx, r.out)
	if err != nil {
		return fmt.Errorf("replaying DLQ message %d: %w (it stays in the DLQ)", r.dead.Sequence, err)
	}
	stored := fmt.Sprintf("stored as %s %d", ack.Stream, ack.Sequence)
	if ack.Duplicate {
		// An earlier replay of this dead letter was stored and could not remove it.
		stored = fmt.Sprintf("already stored as %s %d by an earlier replay", ack.Stream, ack.Sequence)
	}
	if err := b.DeleteMsg(ctx, event.StreamDLQ, r.dead.Sequence); err != nil && !errors.Is(err, bus.ErrMsgNotFound) {
		return fmt.Errorf("DLQ message %d was replayed to %s (%s) but is still in the DLQ: %w; replaying it again "+
			"within the duplicate window stores it once", r.dead.Sequence, r.out.Subject, stored, err)
	}
	_, err = fmt.Fprintf(w, "replayed DLQ %d (%s) to %s, id %s: %s; removed from the DLQ\n",
		r.dead.Sequence, r.dead.Subject, r.out.Subject, r.out.ID, stored)
	return err
}
