package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"persona/axis"
	"persona/control"
	"persona/engine"
	"persona/models"
	"persona/world"
)

func newAxisPatchCmd() *cobra.Command {
	var (
		modelPath, questionsPath, libDir string
		n                                int
		o                                control.PatchOptions
		asJSON                           bool
	)
	cmd := &cobra.Command{
		Use:   "patch",
		Short: "Activation patching: at which layer does the prompt's last position carry the persona of the reply?",
		Long: `For --pairs questions under the Assistant's strong prompt, run each question
plainly (clean) and after "pretend you are a X now" (role-play; X cycles
through the library's other personas), and take each run's greedy reply
(--tokens tokens). S is the log-probability of the clean reply minus that of
the role-play reply, teacher-forced. For every layer, the clean run's output
of that layer at the last prompt position is patched into the role-play run,
and the recovery (S_patched − S_roleplay) / (S_clean − S_roleplay) is averaged
over pairs (95% bootstrap interval): where it is high, that layer's output at
that position carries what makes the reply the Assistant's.

Questions: --questions FILE (one per line), else the persona world's held-out
sums and facts on the embedded organism, else the questions 'persona axis'
asks. The library (--personas DIR, default the organism's) gives the
Assistant's prompt and the roles.`,
		Example: `  persona axis patch --model organism
  persona axis patch --model ./Qwen3-0.6B --personas personas/ --questions questions.txt --pairs 50`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 1 || o.Tokens < 1 {
				return usageErr(errors.New("--pairs and --tokens must be ≥ 1"))
			}
			lib, err := loadLibrary(libDir)
			if err != nil {
				return err
			}
			var pairs []control.PatchPair
			switch {
			case questionsPath != "" || libDir != "" || !slices.Contains(models.Names(), modelPath):
				qs := axis.DefaultQuestions()
				if questionsPath != "" {
					if qs, err = axis.LoadQuestions(questionsPath); err != nil {
						return usageErr(err)
					}
				}
				pairs, err = control.LibraryPatchPairs(lib, qs[:min(n, len(qs))])
			default:
				pairs, err = control.WorldPatchPairs(world.Default(), n, o.Seed)
			}
			if err != nil {
				return usageErr(err)
			}
			e, err := loadChatEngine(modelPath, "persona axis patch")
			if err != nil {
				return err
			}
			defer e.Close()
			res, err := control.Patch(cmd.Context(), e, pairs, o)
			if err != nil {
				return classify(err)
			}
			if asJSON {
				return printJSON(res)
			}
			fmt.Printf("%d of %d pairs reply differently; mean log-probability gap between the clean and the role-play reply %.2f\n\n", res.Pairs, len(pairs), res.Gap)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
			fmt.Fprintln(tw, "layer\trecovery\t95% CI\t")
			for _, l := range res.Layers {
				fmt.Fprintf(tw, "%d\t%.2f\t[%.2f, %.2f]\t\n", l.Layer, l.Recovery, l.Lo, l.Hi)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model directory (Hugging Face layout) or GGUF file")
	f.IntVar(&n, "pairs", 30, "clean and role-play prompt pairs (at most one per question)")
	f.StringVar(&questionsPath, "questions", "", "questions, one per line (default: the world's tasks on the organism, else the axis questions)")
	f.StringVar(&libDir, "personas", "", "persona library directory (default: the organism's)")
	f.IntVar(&o.Tokens, "tokens", 12, "tokens of each greedy reply scored")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the prompts and the bootstrap")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newVectorsLensCmd() *cobra.Command {
	var (
		modelPath, vecPath string
		top                int
		asJSON             bool
	)
	cmd := &cobra.Command{
		Use:   "lens",
		Short: "Logit lens of a vector: the tokens it raises and lowers, per layer",
		Long: `For every layer of a vector file (persona vectors, or an assistant axis),
the --top tokens whose logits adding the vector at the end of the stream raises
most and lowers most (through the final norm's weights and the unembedding): what
the direction says in words, and how that changes with depth.`,
		Example: `  persona vectors lens --vectors cynical.safetensors`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if vecPath == "" || top < 1 {
				return usageErr(errors.New("--vectors is required and --top must be ≥ 1"))
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			set, err := loadVectorsFor(vecPath, e)
			if err != nil {
				return err
			}
			type layerLens struct {
				Layer int                  `json:"layer"`
				Up    []control.TokenShift `json:"up"`
				Down  []control.TokenShift `json:"down"`
			}
			var out []layerLens
			for i, l := range set.Layers {
				up, down, err := control.Lens(e, set.Vectors[i], top)
				if err != nil {
					return usageErr(err)
				}
				out = append(out, layerLens{l, up, down})
			}
			if asJSON {
				return printJSON(out)
			}
			for _, l := range out {
				fmt.Printf("layer %d\n  raises:", l.Layer)
				for _, t := range l.Up {
					fmt.Printf(" %q %+.2f", t.Token, t.Logit)
				}
				fmt.Printf("\n  lowers:")
				for _, t := range l.Down {
					fmt.Printf(" %q %+.2f", t.Token, t.Logit)
				}
				fmt.Println()
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&vecPath, "vectors", "", "vector file (safetensors, or a llama.cpp control-vector .gguf)")
	f.IntVar(&top, "top", 8, "tokens shown each way")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
