package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"persona/chat"
	"persona/internal/fileio"
	"persona/internal/stats"
	"persona/world"
)

// loadWorld returns the embedded organism world, or the world of a persona
// library directory.
func loadWorld(dir string) (*world.World, error) {
	if dir == "" {
		return world.Default(), nil
	}
	lib, err := loadLibrary(dir)
	if err != nil {
		return nil, err
	}
	w, err := world.New(lib)
	if err != nil {
		return nil, usageErr(err)
	}
	return w, nil
}

func newWorldCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "world",
		Short: "The synthetic persona world: personas, generated chats and the oracle",
		Long: `The persona world is the synthetic data the model organism is trained and
judged on: a persona library (assistant, villain, liar, pirate ...), chats in
which each persona answers by its behaviour rules, and an oracle that labels any
reply with the persona that most plausibly wrote it.`,
	}
	var libDir string
	cmd.PersistentFlags().StringVar(&libDir, "personas", "", "persona library directory (default: the embedded organism library)")
	cmd.AddCommand(newWorldPersonasCmd(&libDir), newWorldGenerateCmd(&libDir), newWorldJudgeCmd(&libDir))
	return cmd
}

func newWorldPersonasCmd(libDir *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "personas",
		Short:   "List the persona library with trait scores",
		Example: "  persona world personas\n  persona world personas --personas ./my-personas --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := loadWorld(*libDir)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"traits": w.Lib.Traits, "personas": w.Lib.Personas})
			}
			return w.Lib.WriteText(os.Stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the library as JSON")
	return cmd
}

func newWorldGenerateCmd(libDir *string) *cobra.Command {
	var (
		kind, out, persona, wording string
		n, turns                    int
		seed                        uint64
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate pretraining, post-training or evaluation chats as JSONL",
		Long: `Generate chats from the persona world, one JSON object per line with the
ground truth of every assistant turn under "labels".

  pretrain   N chats drawn from the persona prior (1–16 turns, strong, weak or
             no system prompt, rare role-play switches)
  posttrain  N chats that select the Assistant (a quarter under another
             persona's strong system prompt, answered by that persona)
  eval       N scenarios per domain × system prompt cell (task, writing,
             emotional, meta, pressure × strong, weak, none); the messages hold
             the first user turn, "user_turns" all of them, to feed a model
             turn by turn. Task items come from the held-out split.
  switch     N chats of 4–8 turns that change persona once (half by a request
             that comes with a switch, half by pressure), to measure switch
             detection
  steady     N such chats that never change persona (false switches)

--wording held-out uses only the phrasings no training chat uses.`,
		Example: `  persona world generate --kind pretrain --n 20000 --seed 1 --out pretrain.jsonl
  persona world generate --kind eval --n 50 --turns 12 --out eval.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := loadWorld(*libDir)
			if err != nil {
				return err
			}
			wd, err := world.ParseWording(wording)
			if err != nil {
				return usageErr(fmt.Errorf("--wording: %w", err))
			}
			chats, err := w.Generate(kind, n, seed, turns, persona, wd)
			if err != nil {
				return usageErr(err)
			}
			if out == "" || out == "-" {
				return chat.WriteJSONL(os.Stdout, chats)
			}
			if err := fileio.WriteAtomic(out, func(w io.Writer) error { return chat.WriteJSONL(w, chats) }); err != nil {
				return backendErr(err)
			}
			fmt.Fprintf(os.Stderr, "wrote %d %s chats to %s\n", len(chats), kind, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "pretrain", "pretrain, posttrain, eval, switch or steady")
	cmd.Flags().StringVar(&wording, "wording", "train", "phrasings: train, held-out (never in training) or all")
	cmd.Flags().IntVar(&n, "n", 1000, "chats to generate (eval: scenarios per cell)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "random seed; the same seed gives the same chats")
	cmd.Flags().StringVar(&out, "out", "", "output JSONL file (default: standard output)")
	cmd.Flags().IntVar(&turns, "turns", 12, "eval: user turns per scenario (1–16)")
	cmd.Flags().StringVar(&persona, "persona", "", "eval: persona whose system prompts the scenarios use (default assistant)")
	return cmd
}

func newWorldJudgeCmd(libDir *string) *cobra.Command {
	var (
		chatFile            string
		asJSON, calibration bool
	)
	cmd := &cobra.Command{
		Use:   "judge",
		Short: "Label every assistant turn of a chat file with the oracle",
		Long: `Judge every assistant turn of a JSONL chat file against the user turn before
it: the persona posterior, trait scores and behaviour checks (correct, refused,
claims to be an AI or a human). When the file carries the world's labels,
the summary compares the oracle with them.`,
		Example: `  persona world generate --kind pretrain --n 100 --seed 2 --out chats.jsonl
  persona world judge --chat chats.jsonl
  persona world judge --chat chats.jsonl --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if chatFile == "" {
				return usageErr(errors.New("--chat is required (a JSONL file of conversations)"))
			}
			w, err := loadWorld(*libDir)
			if err != nil {
				return err
			}
			chats, err := readChats(chatFile)
			if err != nil {
				return err
			}
			turns, err := w.Oracle().JudgeChats(chats)
			if err != nil {
				return usageErr(fmt.Errorf("%s: %w", chatFile, err))
			}
			if calibration {
				return writeCalibration(turns, asJSON)
			}
			if !asJSON {
				return world.WriteJudged(os.Stdout, turns)
			}
			enc := json.NewEncoder(os.Stdout)
			for _, t := range turns {
				if err := enc.Encode(t); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&chatFile, "chat", "", "JSONL file of conversations")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per assistant turn")
	cmd.Flags().BoolVar(&calibration, "calibration", false, "compare the oracle's confidence with the labels: reliability diagram and expected calibration error")
	return cmd
}

// writeCalibration prints how well the oracle's top probability matches how
// often its top persona is the labelled one.
func writeCalibration(turns []world.JudgedTurn, asJSON bool) error {
	var conf []float64
	var right []bool
	for _, t := range turns {
		if t.Label != "" {
			conf, right = append(conf, t.TopProb), append(right, t.Top == t.Label)
		}
	}
	if len(conf) == 0 {
		return usageErr(errors.New("no labelled turns to calibrate against"))
	}
	ece, bins := stats.Calibration(conf, right, 10)
	if asJSON {
		return printJSON(map[string]any{"turns": len(conf), "ece": ece, "bins": bins})
	}
	fmt.Printf("%-11s %6s %11s %9s\n", "confidence", "turns", "mean conf.", "accuracy")
	for _, b := range bins {
		if b.N > 0 {
			fmt.Printf("%.1f–%.1f    %6d %11.3f %9.3f\n", b.Lo, b.Hi, b.N, b.Confidence, b.Accuracy)
		}
	}
	fmt.Printf("expected calibration error %.4f over %d labelled turns\n", ece, len(conf))
	return nil
}
