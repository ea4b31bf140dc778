package main

import (
	"os"

	"github.com/spf13/cobra"

	"persona/engine"
	"persona/models"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [MODEL]",
		Short: "Show a model's architecture, size, tokenizer and chat template",
		Example: `  persona inspect                       # the embedded organism
  persona inspect organism-base
  persona inspect model.gguf --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{models.Default}
			}
			e, err := loadEngine(args[0], engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			if asJSON {
				return printJSON(e.Info())
			}
			return e.Info().WriteText(os.Stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
