package harborflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

func newEventsCommand(cfgPath func() string) *cobra.Command {
	var (
		subject string
		follow  bool
		since   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print stored messages as JSON lines",
		Example: `  harborflow events --subject 'registry.>' --since 10m
  harborflow events --subject 'dlq.>' --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, b, err := connect(cmd.Context(), cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			return printEvents(cmd.Context(), b.JetStream(), cmd.OutOrStdout(), subject, follow, since)
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "registry.>", "subject filter (wildcards * and >)")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new messages until interrupted")
	cmd.Flags().DurationVar(&since, "since", 0, "only messages stored in the last DURATION (default: all)")
	return cmd
}

// eventLine is one printed message.
type eventLine struct {
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Subject  string              `json:"subject"`
	Time     time.Time           `json:"time"`
	Headers  map[string][]string `json:"headers,omitempty"`
	Data     json.RawMessage     `json:"data"`
}

func printEvents(ctx context.Context, js jetstream.JetStream, w io.Writer, subject string, follow bool, since time.Duration) error {
	stream, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return fmt.Errorf("finding the stream of %q: %w", subject, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if since > 0 {
		start := time.Now().Add(-since)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}
	if !follow {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		if info.NumPending == 0 {
			return nil
		}
	}
	enc := json.NewEncoder(w)
	for {
		if err := ctx.Err(); err != nil {
			return nil
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("fetching from %s: %w", stream, err)
		}
		for msg := range batch.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				return err
			}
			line := eventLine{Stream: md.Stream, Sequence: md.Sequence.Stream, Subject: msg.Subject(), Time: md.Timestamp.UTC(), Headers: msg.Headers(), Data: msg.Data()}
			if !json.Valid(line.Data) {
				line.Data, _ = json.Marshal(string(msg.Data()))
			}
			if err := enc.Encode(line); err != nil {
				return err
			}
			if !follow && md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("fetching from %s: %w", stream, err)
		}
	}
}
