package harborflow

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/bus"
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
			return printEvents(cmd.Context(), b, cmd.OutOrStdout(), subject, follow, since)
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

func printEvents(ctx context.Context, b *bus.Bus, w io.Writer, subject string, follow bool, since time.Duration) error {
	cfg := bus.ReadConfig{Subject: subject, Follow: follow}
	if since > 0 {
		cfg.Since = time.Now().Add(-since)
	}
	enc := json.NewEncoder(w)
	for m, err := range b.Read(ctx, cfg) {
		if err != nil {
			return err
		}
		line := eventLine{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject, Time: m.Time.UTC(), Headers: m.Header, Data: m.Data}
		if !json.Valid(line.Data) {
			line.Data, _ = json.Marshal(string(m.Data))
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}
