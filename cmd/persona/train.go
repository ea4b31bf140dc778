package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"persona/train"
)

func newTrainCmd() *cobra.Command {
	var (
		configPath     string
		resume, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Fine-tune a model (full or LoRA) or train one from scratch",
		Long: `Train a Llama-family model as a YAML config describes: fine-tune a Hugging Face
directory or GGUF file (all weights, or LoRA adapters), or train a new model from
scratch with a tokenizer of your choice. Data are JSONL chats
({"messages":[{"role":..,"content":..}]}, trained on assistant turns by default) or
raw text. Training-time interventions (preventative steering, ablation) apply in
the forward and backward passes and are not part of the saved model.

Writes into the config's output directory: model/ (a Hugging Face directory the
engine loads; with LoRA only when merge: true), adapter/ (PEFT adapters, with
LoRA), metrics.jsonl (one line per step) and checkpoints/. A run stopped by a
crash, kill or Ctrl-C continues with --resume, with the same loss curve and
bit-identical final weights as an uninterrupted run.

A minimal config:

  model: {base: ./SmolLM2-135M-Instruct}
  data: {train: chats.jsonl, seq_len: 512, val_fraction: 0.05}
  optim: {epochs: 1, batch: 8, lr: 1e-4, warmup: 20}
  lora: {rank: 8, targets: [q, k, v, o]}
  output: runs/sft

Exit codes: 2 for a bad config, data or model, or an incompatible checkpoint;
3 when training diverges (NaN/Inf; the last good checkpoint is kept) or the
disk fails.`,
		Example: `  persona train --config sft.yaml
  persona train --config sft.yaml --resume
  persona train --config organism.yaml --json > summary.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return usageErr(errors.New("--config is required (a YAML file; see persona train --help)"))
			}
			cfg, err := train.LoadConfig(configPath)
			if err != nil {
				return usageErr(err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opt := train.Options{Resume: resume, Log: os.Stderr}
			var bar *progressbar.ProgressBar
			if term.IsTerminal(int(os.Stderr.Fd())) {
				opt.OnStep = func(s train.StepInfo) {
					if bar == nil {
						bar = progressbar.NewOptions(s.Steps, progressbar.OptionSetWriter(os.Stderr),
							progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
							progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100e6))
						bar.Set(s.Step - 1)
					}
					desc := fmt.Sprintf("loss %.4f · %.0f tok/s", s.Loss, s.TokPerS)
					if s.ValLoss != nil {
						desc += fmt.Sprintf(" · val %.4f", *s.ValLoss)
					}
					bar.Describe(desc)
					bar.Set(s.Step)
				}
			} else {
				// Without a terminal: a log line at each tenth of the run.
				opt.OnStep = func(s train.StepInfo) {
					if s.Step%max(s.Steps/10, 1) == 0 || s.Step == s.Steps {
						line := fmt.Sprintf("step %d/%d  loss %.4f  lr %.3g  grad norm %.3g  %.0f tok/s", s.Step, s.Steps, s.Loss, s.LR, s.GradNorm, s.TokPerS)
						if s.ValLoss != nil {
							line += fmt.Sprintf("  val %.4f", *s.ValLoss)
						}
						fmt.Fprintln(os.Stderr, line)
					}
				}
			}
			tr, err := train.New(cfg, opt)
			if err != nil {
				return trainErr(err)
			}
			defer tr.Close()
			sum, err := tr.Run(ctx)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return trainErr(err)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			val := ""
			if sum.ValLoss != nil {
				val = fmt.Sprintf(", validation loss %.4f", *sum.ValLoss)
			}
			fmt.Printf("trained %d steps (%d tokens) in %.1f s, %.0f tok/s; final loss %.4f%s\n",
				sum.Steps, sum.Tokens, sum.WallS, sum.TokPerS, sum.FinalLoss, val)
			if sum.Model != "" {
				fmt.Println("model:  ", sum.Model)
			}
			if sum.Adapter != "" {
				fmt.Println("adapter:", sum.Adapter)
			}
			fmt.Println("metrics:", sum.Metrics)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML file describing the run")
	f.BoolVar(&resume, "resume", false, "continue from the latest checkpoint (the config must be unchanged)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary at the end")
	return cmd
}

// trainErr maps the trainer's errors to exit codes: the user's inputs (2),
// divergence and infrastructure (3).
func trainErr(err error) error {
	var ce *train.ConfigError
	var ie *train.InputError
	if errors.As(err, &ce) || errors.As(err, &ie) {
		return usageErr(err)
	}
	return backendErr(err)
}
