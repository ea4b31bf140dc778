// Command persona measures, audits and controls the personas of language
// models. Run `persona --help` for the verbs.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, shared by every verb.
const (
	exitOK      = 0
	exitFailed  = 1 // a threshold or audit failed
	exitUsage   = 2 // usage or input error
	exitBackend = 3 // backend or infrastructure error
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks bad flags or bad input files (exit 2).
func usageErr(err error) error { return &exitError{exitUsage, err} }

// backendErr marks failures of the model or infrastructure (exit 3).
func backendErr(err error) error { return &exitError{exitBackend, err} }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "persona",
		Short: "Measure, audit and control the personas of language models",
		Long: `persona makes the persona selection model of language models measurable and
controllable: which persona a model is in, how it drifts, and how to steer it.

Models are Hugging Face directories (config.json, *.safetensors, tokenizer.json)
or GGUF files; the engine is pure Go.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInspectCmd(), newGenerateCmd(), newBenchCmd(), newTrainCmd())
	root.AddCommand(newServeCmd())
	root.AddCommand(newWorldCmd(), newOrganismCmd())
	root.AddCommand(newAuditCmd())
	root.AddCommand(newPosteriorCmd(), newVectorsCmd())
	root.AddCommand(newAxisCmd(), newDriftCmd())
	root.AddCommand(newExportCmd())
	return root
}

func main() {
	err := newRoot().Execute()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintln(os.Stderr, "persona:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	// Errors from cobra itself are flag and argument problems.
	os.Exit(exitUsage)
}
