package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"persona/organism"
	"persona/train"
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
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Generate the world, train the tokenizer, pretrain and post-train the organism",
		Example: `  persona organism train --out models/organism
  persona organism train --micro --out /tmp/organism   # the one-minute version CI runs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var bar *progressbar.ProgressBar
			stage := ""
			opt := organism.Options{Work: work, Micro: micro, Resume: resume, Log: os.Stderr}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				opt.OnStep = func(s string, info train.StepInfo) {
					if s != stage {
						if bar != nil {
							bar.Finish()
						}
						stage = s
						bar = progressbar.NewOptions(info.Steps, progressbar.OptionSetWriter(os.Stderr),
							progressbar.OptionSetDescription(s), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
					}
					bar.Describe(fmt.Sprintf("%s loss %.3f %.0f tok/s", s, info.Loss, info.TokPerS))
					bar.Set(info.Step)
				}
			}
			res, err := organism.Build(cmd.Context(), out, opt)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return trainErr(err)
			}
			if asJS {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
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
			if term.IsTerminal(int(os.Stderr.Fd())) {
				bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("replies"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionClearOnFinish())
				opt.Progress = func(int) { bar.Add(1) }
				defer bar.Finish()
			}
			rep, err := organism.Evaluate(cmd.Context(), opt)
			if err != nil {
				return usageErr(err)
			}
			if card != "" {
				if err := os.WriteFile(card, []byte(rep.Card(dir)), 0o644); err != nil {
					return backendErr(err)
				}
			}
			if asJS {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
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
