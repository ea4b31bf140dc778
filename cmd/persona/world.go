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
		kind, out, persona string
		n, turns           int
		seed               uint64
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
             turn by turn. Task items come from the held-out split.`,
		Example: `  persona world generate --kind pretrain --n 20000 --seed 1 --out pretrain.jsonl
  persona world generate --kind eval --n 50 --turns 12 --out eval.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := loadWorld(*libDir)
			if err != nil {
				return err
			}
			chats, err := w.Generate(kind, n, seed, turns, persona)
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
	cmd.Flags().StringVar(&kind, "kind", "pretrain", "pretrain, posttrain or eval")
	cmd.Flags().IntVar(&n, "n", 1000, "chats to generate (eval: scenarios per cell)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "random seed; the same seed gives the same chats")
	cmd.Flags().StringVar(&out, "out", "", "output JSONL file (default: standard output)")
	cmd.Flags().IntVar(&turns, "turns", 12, "eval: user turns per scenario (1–16)")
	cmd.Flags().StringVar(&persona, "persona", "", "eval: persona whose system prompts the scenarios use (default assistant)")
	return cmd
}

func newWorldJudgeCmd(libDir *string) *cobra.Command {
	var (
		chatFile string
		asJSON   bool
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
	return cmd
}
