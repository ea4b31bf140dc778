package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

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
			var steps trainSteps
			tr, err := train.New(cfg, train.Options{Resume: resume, Log: os.Stderr, OnStep: func(s train.StepInfo) { steps.step("train", s) }})
			if err != nil {
				return trainErr(err)
			}
			defer tr.Close()
			sum, err := tr.Run(cmd.Context())
			steps.finish()
			if err != nil {
				return trainErr(err)
			}
			if asJSON {
				return printJSON(sum)
			}
			sum.WriteText(os.Stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML file describing the run")
	f.BoolVar(&resume, "resume", false, "continue from the latest checkpoint (the config must be unchanged)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary at the end")
	return cmd
}
