package harborflow

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/config"
)

func newConfigCommand(cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a configuration file: every problem is printed with its line and key",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := cfgPath()
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", path, cfg)
			return err
		},
	})
	return cmd
}
