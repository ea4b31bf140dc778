package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"persona/chat"
	"persona/personas"
	"persona/world"
)

// loadWorld returns the embedded organism world, or the world of a persona
// library directory.
func loadWorld(dir string) (*world.World, error) {
	if dir == "" {
		return world.Default(), nil
	}
	lib, err := personas.Load(dir)
	if err != nil {
		return nil, err
	}
	return world.New(lib)
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
				return usageErr(err)
			}
			lib := w.Lib
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"traits": lib.Traits, "personas": lib.Personas})
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.AlignRight)
			traits := lib.TraitNames()
			fmt.Fprint(tw, "persona\tprior\tsusc.\t")
			for _, t := range traits {
				fmt.Fprintf(tw, "%s\t", t)
			}
			fmt.Fprintln(tw)
			for _, p := range lib.Personas {
				fmt.Fprintf(tw, "%s\t%g\t%.2f\t", p.Name, p.Prior, p.Susceptibility)
				for _, t := range traits {
					fmt.Fprintf(tw, "%.2f\t", p.Traits[t])
				}
				fmt.Fprintln(tw)
			}
			tw.Flush()
			fmt.Println()
			bw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprint(bw, "persona\t")
			for _, t := range personas.RequestTypes {
				fmt.Fprintf(bw, "%s\t", t)
			}
			fmt.Fprintln(bw)
			for _, p := range lib.Personas {
				fmt.Fprintf(bw, "%s\t", p.Name)
				for _, t := range personas.RequestTypes {
					fmt.Fprintf(bw, "%s\t", p.Rule(t))
				}
				fmt.Fprintln(bw)
			}
			return bw.Flush()
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
				return usageErr(err)
			}
			if n < 0 {
				return usageErr(fmt.Errorf("--n %d must be ≥ 0", n))
			}
			var chats []chat.Chat
			switch kind {
			case "pretrain":
				chats = w.Pretrain(n, seed, world.DefaultPretrain())
			case "posttrain":
				chats = w.Posttrain(n, seed, world.DefaultPosttrain())
			case "eval":
				sc, err := w.Eval(seed, world.EvalOptions{Turns: turns, PerCell: n, Persona: persona})
				if err != nil {
					return usageErr(err)
				}
				for _, s := range sc {
					chats = append(chats, s.Chat())
				}
			default:
				return usageErr(fmt.Errorf("--kind %q: want pretrain, posttrain or eval", kind))
			}
			var dst io.Writer = os.Stdout
			var f *os.File
			if out != "" && out != "-" {
				if f, err = os.Create(out); err != nil {
					return usageErr(err)
				}
				dst = f
			}
			bw := bufio.NewWriter(dst)
			if err := chat.WriteJSONL(bw, chats); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "wrote %d %s chats to %s\n", len(chats), kind, out)
			}
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

// judgedTurn is one line of `persona world judge --json`.
type judgedTurn struct {
	Chat  int    `json:"chat"`
	Turn  int    `json:"turn"`
	Label string `json:"label,omitempty"`
	world.Judgement
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
				return usageErr(err)
			}
			chats, err := chat.ReadJSONLFile(chatFile)
			if err != nil {
				return usageErr(err)
			}
			o := w.Oracle()
			enc := json.NewEncoder(os.Stdout)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "chat\tturn\ttop\tp\tentropy\trequest\tbehaviour\tcorrect\tlabel")
			}
			labelled, agree := 0, 0
			for ci, c := range chats {
				labels, err := world.Labels(c)
				if err != nil {
					return usageErr(fmt.Errorf("%s: chat %d: %w", chatFile, ci+1, err))
				}
				for ti, j := range o.JudgeChat(c.Messages) {
					jt := judgedTurn{Chat: ci + 1, Turn: ti + 1, Judgement: j}
					if ti < len(labels) {
						jt.Label = labels[ti].Persona
						labelled++
						if jt.Label == j.Top {
							agree++
						}
					}
					if asJSON {
						if err := enc.Encode(jt); err != nil {
							return err
						}
						continue
					}
					correct := "-"
					if j.Correct != nil {
						correct = fmt.Sprint(*j.Correct)
					}
					fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n", jt.Chat, jt.Turn, j.Top, j.TopProb, j.Entropy,
						orDash(string(j.Request)), orDash(j.Behaviour), correct, orDash(jt.Label))
				}
			}
			if asJSON {
				return nil
			}
			tw.Flush()
			if labelled > 0 {
				fmt.Printf("\noracle agrees with the labels on %d of %d turns (%.2f%%)\n", agree, labelled, 100*float64(agree)/float64(labelled))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&chatFile, "chat", "", "JSONL file of conversations")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per assistant turn")
	return cmd
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
