package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"persona/internal/fileio"
	"persona/organism"
)

func newOrganismCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "organism",
		Short: "Build and measure the model organism trained on the persona world",
		Long: `The model organism is a small Llama-style model pretrained on the synthetic
persona world and post-trained to select the Assistant, so persona measurements
can be checked against the world's oracle. Its recipe is organism/recipe/.`,
	}
	cmd.AddCommand(newOrganismTrainCmd(), newOrganismEvalCmd())
	return cmd
}

func newOrganismTrainCmd() *cobra.Command {
	var (
		out, work           string
		micro, resume, asJS bool
		layers              int
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Generate the world, train the tokenizer, pretrain and post-train the organism",
		Example: `  persona organism train --out models/organism
  persona organism train --micro --out /tmp/organism   # the one-minute version CI runs
  persona organism train --layers 8 --out /tmp/organism-8   # the deeper variant (docs/measurements.md)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if layers < 0 {
				return usageErr(fmt.Errorf("--layers %d: want a positive number of blocks", layers))
			}
			var steps trainSteps
			res, err := organism.Build(cmd.Context(), out, organism.Options{Work: work, Micro: micro, Layers: layers, Resume: resume, Log: os.Stderr, OnStep: steps.step})
			steps.finish()
			if err != nil {
				return trainErr(err)
			}
			if asJS {
				return printJSON(res)
			}
			fmt.Printf("base model:      %s (final loss %.3f)\nassistant model: %s (final loss %.3f)\nwall time:       %.0f s\n",
				res.Base, res.Pretrain.FinalLoss, res.Assistant, res.Posttrain.FinalLoss, res.WallS)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "models/organism", "directory for base/ and assistant/")
	f.StringVar(&work, "work", "", "working directory for data, tokenizer and checkpoints (default OUT/work)")
	f.BoolVar(&micro, "micro", false, "a tiny world, model and run (about a minute on two cores)")
	f.BoolVar(&resume, "resume", false, "continue interrupted training stages from their checkpoints")
	f.IntVar(&layers, "layers", 0, "pretrain this many blocks instead of the recipe's (same width, data and schedule)")
	f.BoolVar(&asJS, "json", false, "print the result as JSON")
	return cmd
}

func newOrganismEvalCmd() *cobra.Command {
	var (
		dir, card string
		opt       organism.EvalOptions
		asJS      bool
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure the organism's persona properties with the world's oracle",
		Long: `Measure, with 95% Wilson intervals: persona inference from context and
system-prompt following on the base model; the Assistant's default, its task
accuracy on held-out items and other personas' prompts on the post-trained
model; and per-turn drift by domain and system prompt on both.`,
		Example: `  persona organism eval
  persona organism eval --samples 50 --scenarios 8 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opt.Base == "" {
				opt.Base = filepath.Join(dir, "base")
			}
			if opt.Assistant == "" {
				opt.Assistant = filepath.Join(dir, "assistant")
			}
			opt.Log = os.Stderr
			bar := newProgress("replies")
			opt.Progress = func(done int) { bar.update(done, -1) }
			rep, err := organism.Evaluate(cmd.Context(), opt)
			bar.finish()
			if err != nil {
				return classify(err)
			}
			if card != "" {
				if err := fileio.WriteFileAtomic(card, []byte(rep.Card(dir))); err != nil {
					return backendErr(err)
				}
			}
			if asJS {
				return printJSON(rep)
			}
			fmt.Print(rep.Table())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "models/organism", "directory holding base/ and assistant/")
	f.StringVar(&opt.Base, "base", "", "base model directory (default DIR/base)")
	f.StringVar(&opt.Assistant, "assistant", "", "post-trained model directory (default DIR/assistant)")
	f.IntVar(&opt.Samples, "samples", 200, "replies per persona and property")
	f.IntVar(&opt.Scenarios, "scenarios", 24, "conversations per drift cell")
	f.IntVar(&opt.Turns, "turns", 12, "turns per drift conversation")
	f.Uint64Var(&opt.Seed, "seed", 1, "seed for scenarios and sampling")
	f.Float32Var(&opt.Temperature, "temperature", 1, "sampling temperature of the replies whose persona is measured (1: the model's own distribution; task accuracy is greedy)")
	f.BoolVar(&asJS, "json", false, "print the report as JSON")
	f.StringVar(&card, "card", "", "also write the model card (Markdown) to this file")
	return cmd
}
