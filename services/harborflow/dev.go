package harborflow

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
)

func newDevCommand() *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Stand-ins for development: what harborflow talks to, on this machine",
	}
	dev.AddCommand(newDevHarborCommand())
	return dev
}

// newDevHarborCommand is `harborflow dev harbor`: the Harbor stand-in as a process, for `make run`, the demo
// and the tests of other stages. Its API, registry and token service share one address, as Harbor's do.
func newDevHarborCommand() *cobra.Command {
	var listen, data, extURL string
	cmd := &cobra.Command{
		Use:   "harbor",
		Short: "Run a Harbor stand-in: API /api/v2.0, registry /v2/ and webhooks on one address",
		Long: "Run a Harbor stand-in (pkg/harbor/harbortest) until interrupted. It starts as a fresh Harbor does: " +
			"the account admin / Harbor12345 and the public project library. Without --data everything is in memory.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var opts []harbortest.Option
			if data != "" {
				opts = append(opts, harbortest.WithDataDir(data))
			}
			if extURL != "" {
				opts = append(opts, harbortest.WithExternalURL(extURL))
			}
			s, err := harbortest.Start(cmd.Context(), listen, opts...)
			if err != nil {
				return err
			}
			user, _ := s.Admin()
			fmt.Fprintf(cmd.OutOrStdout(), "harbor stand-in listening on %s (registry %s, administrator %s)\n", s.URL(), s.Host(), user)
			<-cmd.Context().Done()
			return s.Close()
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8880", "address to listen on (host:port)")
	cmd.Flags().StringVar(&data, "data", "", "directory for the registry's content and the stand-in's state (default: in memory)")
	cmd.Flags().StringVar(&extURL, "external-url", "", "URL clients reach the stand-in at, when not the listener's (Harbor's ext_endpoint)")
	return cmd
}
