package harborflow

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
)

func newStatusCommand(cfgPath func() string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print streams, consumers and pending counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, b, err := connect(cmd.Context(), cfgPath())
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := readStatus(cmd.Context(), b)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(st)
			}
			return st.print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

type streamStatus struct {
	Name      string           `json:"name"`
	Messages  uint64           `json:"messages"`
	Bytes     uint64           `json:"bytes"`
	FirstSeq  uint64           `json:"firstSeq"`
	LastSeq   uint64           `json:"lastSeq"`
	LastTime  time.Time        `json:"lastTime"`
	Replicas  int              `json:"replicas"`
	Consumers []consumerStatus `json:"consumers"`
}

type consumerStatus struct {
	Name        string `json:"name"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ackPending"`
	Redelivered int    `json:"redelivered"`
	Delivered   uint64 `json:"delivered"`
}

type status struct {
	Streams []streamStatus `json:"streams"`
}

func readStatus(ctx context.Context, b *bus.Bus) (*status, error) {
	st := &status{}
	for _, name := range event.StreamNames {
		info, err := b.StreamInfo(ctx, name)
		if err != nil {
			return nil, err
		}
		ss := streamStatus{Name: name, Messages: info.Messages, Bytes: info.Bytes, FirstSeq: info.FirstSeq,
			LastSeq: info.LastSeq, LastTime: info.LastTime, Replicas: info.Replicas, Consumers: []consumerStatus{}}
		// Durable consumers only: an ephemeral reader such as `harborflow events` is not a stage.
		consumers, err := b.Consumers(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, ci := range consumers {
			ss.Consumers = append(ss.Consumers, consumerStatus{Name: ci.Durable, Pending: ci.Pending, AckPending: ci.AckPending,
				Redelivered: ci.Redelivered, Delivered: ci.Delivered})
		}
		st.Streams = append(st.Streams, ss)
	}
	return st, nil
}

func (st *status) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tFIRST\tLAST\tLAST AT\tREPLICAS")
	for _, s := range st.Streams {
		last := "-"
		if !s.LastTime.IsZero() {
			last = s.LastTime.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\n", s.Name, s.Messages, s.Bytes, s.FirstSeq, s.LastSeq, last, s.Replicas)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "STREAM\tCONSUMER\tPENDING\tACK PENDING\tREDELIVERED\tDELIVERED")
	for _, s := range st.Streams {
		for _, c := range s.Consumers {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", s.Name, c.Name, c.Pending, c.AckPending, c.Redelivered, c.Delivered)
		}
	}
	return tw.Flush()
}
