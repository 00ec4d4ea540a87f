package harborflow

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/harborflow/harborflow/pkg/config"
)

func newConfigCommand(cfgPath func() string) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	var (
		stages []string
		strict bool
	)
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a configuration file: every problem is printed with its line and key",
		Long: "Validate every section of a configuration file, whichever stage reads it; any problem fails, with\n" +
			"its line and key. A ${NAME} whose variable is not set is listed with the key that uses it and the\n" +
			"stages that need it (" + strings.Join(config.StageNames(), ", ") + "; nats, log and ops: every process)\n" +
			"and fails only with --strict or when --stages names a stage that needs it: a process needs the\n" +
			"variables of the stages it runs, nothing else.",
		Example: "  harborflow config check deploy/harborflow.yaml\n" +
			"  harborflow config check deploy/harborflow.yaml --stages inspector,rebuilder",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := config.CheckStages(stages); err != nil {
				return fmt.Errorf("--stages: %w", err)
			}
			path := cfgPath()
			if len(args) == 1 {
				path = args[0]
			}
			cfg, unset, err := config.Check(path)
			if err != nil {
				return err
			}
			var failing []string
			for _, u := range unset {
				level := "warning"
				if strict || u.NeededBy(stages) {
					level = "error"
					if !slices.Contains(failing, u.Name) {
						failing = append(failing, u.Name)
					}
				}
				if _, err := fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", level, u); err != nil {
					return err
				}
			}
			switch {
			case len(failing) > 0 && strict:
				return fmt.Errorf("%s: not set (--strict): %s", path, strings.Join(failing, ", "))
			case len(failing) > 0:
				return fmt.Errorf("%s: not set, and needed by --stages %s: %s", path, strings.Join(stages, ","), strings.Join(failing, ", "))
			case len(unset) > 0:
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s); %d variable(s) not set: a process that runs a stage needing one will not start\n", path, cfg, len(unset))
			default:
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", path, cfg)
			}
			return err
		},
	}
	check.Flags().StringSliceVar(&stages, "stages", nil, "fail when a variable these stages need is not set ("+strings.Join(config.StageNames(), ", ")+")")
	check.Flags().BoolVar(&strict, "strict", false, "fail when any variable is not set")
	cmd.AddCommand(check)
	return cmd
}
