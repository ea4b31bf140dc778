// Command persona measures, audits and controls the personas of language
// models. Run `persona --help` for the verbs.
//
// The command is a thin layer: each verb turns its flags into a call of a
// package function and prints the result. What verbs share (exit codes,
// the root context, progress bars, JSON output, opening models and
// backends) is in cli.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "persona",
		Short: "Measure, audit and control the personas of language models",
		Long: `persona makes the persona selection model of language models measurable and
controllable: which persona a model is in, how it drifts, and how to steer it.

Models are Hugging Face directories (config.json, *.safetensors, tokenizer.json)
or GGUF files; the engine is pure Go.

Exit status: 0 ok, 1 a threshold or audit failed, 2 usage or input error,
3 backend or infrastructure error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInspectCmd(), newGenerateCmd(), newBenchCmd(), newTrainCmd())
	root.AddCommand(newServeCmd(), newKeysCmd())
	root.AddCommand(newWorldCmd(), newOrganismCmd())
	root.AddCommand(newAuditCmd())
	root.AddCommand(newPosteriorCmd(), newVectorsCmd())
	root.AddCommand(newAxisCmd(), newDriftCmd(), newExperimentCmd())
	root.AddCommand(newExportCmd(), newQuantizeCmd(), newWatermarkCmd(), newWorkerCmd())
	return root
}

func main() {
	// The first SIGINT or SIGTERM cancels the command's context, so it can
	// stop cleanly (save what finished, drain a server); a second one ends
	// the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "persona: stopping; interrupt again to exit at once")
		<-again
		fmt.Fprintln(os.Stderr, "persona: interrupted twice; exiting now")
		os.Exit(130)
	}()
	err := newRoot().ExecuteContext(ctx)
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
