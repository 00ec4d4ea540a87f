package harborflow

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/secret"
)

func newDevCommand(cfgPath func() string) *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Stand-ins for development: what harborflow talks to, on this machine",
	}
	dev.AddCommand(newDevHarborCommand(), newDevDemoCommand(cfgPath))
	return dev
}

// newDevHarborCommand is `harborflow dev harbor`: the Harbor stand-in as a process, for `make run`, the demo
// and the tests of other stages. Its API, registry and token service share one address, as Harbor's do.
func newDevHarborCommand() *cobra.Command {
	var listen, data, extURL string
	var projects []string
	cmd := &cobra.Command{
		Use:   "harbor",
		Short: "Run a Harbor stand-in: API /api/v2.0, registry /v2/ and webhooks on one address",
		Long: "Run a Harbor stand-in (pkg/harbor/harbortest) until interrupted. It starts as a fresh Harbor does: " +
			"the account admin / Harbor12345 and the public project library, plus each --project that it does not " +
			"hold yet (a project kept in --data is left as it is). Without --data everything is in memory.",
		Example: "  harborflow dev harbor --data var/harbor --project wso2-dev:auto_scan --project wso2-prod:auto_scan",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			specs, err := parseDevProjects(projects)
			if err != nil {
				return err
			}
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
			user, password := s.Admin()
			// The projects are made as a person would make them: through the API, as the administrator.
			hc, err := harbor.New(harbor.Host{Name: s.URL(), Username: user, Password: secret.Secret(password), PlainHTTP: true})
			if err != nil {
				return errors.Join(err, s.Close())
			}
			defer hc.Close()
			for _, p := range specs {
				_, err := hc.CreateProject(cmd.Context(), p)
				switch {
				case errors.Is(err, harbor.ErrConflict):
					fmt.Fprintf(cmd.OutOrStdout(), "project %s: exists, kept as it is\n", p.Name)
				case err != nil:
					return errors.Join(fmt.Errorf("--project %s: %w", p.Name, err), s.Close())
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "project %s: created (auto_scan %t)\n", p.Name, p.AutoScan)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "harbor stand-in listening on %s (registry %s, administrator %s)\n", s.URL(), s.Host(), user)
			<-cmd.Context().Done()
			return s.Close()
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8880", "address to listen on (host:port)")
	cmd.Flags().StringVar(&data, "data", "", "directory for the registry's content and the stand-in's state (default: in memory)")
	cmd.Flags().StringVar(&extURL, "external-url", "", "URL clients reach the stand-in at, when not the listener's (Harbor's ext_endpoint)")
	cmd.Flags().StringArrayVar(&projects, "project", nil, "a private project to have, NAME or NAME:auto_scan (scan every push); repeatable")
	return cmd
}

// parseDevProjects reads the --project values: NAME, or NAME:auto_scan.
func parseDevProjects(values []string) ([]harbor.ProjectSpec, error) {
	var out []harbor.ProjectSpec
	for _, v := range values {
		name, opt, hasOpt := strings.Cut(v, ":")
		if name == "" || (hasOpt && opt != "auto_scan") {
			return nil, fmt.Errorf("--project %q: want NAME or NAME:auto_scan", v)
		}
		out = append(out, harbor.ProjectSpec{Name: name, AutoScan: hasOpt})
	}
	return out, nil
}
