package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"persona/engine"
	"persona/model"
)

func newQuantizeCmd() *cobra.Command {
	var (
		mix           string
		force, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "quantize IN OUT",
		Short: "Write a model as a quantized GGUF file (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0) that llama.cpp and persona run",
		Long: `Read a Hugging Face directory or a GGUF file (or an embedded model: organism,
organism-base) and write it as one GGUF file with its tokenizer and chat template,
its matrices quantized to --type. Q4_0, Q8_0 and Q6_K use one type throughout
(the output head in Q6_K unless Q8_0); the others are llama.cpp's mixes, with
the output head in Q6_K:
  Q4_K_M, Q5_K_M  Q4_K or Q5_K, with attn_v and ffn_down in Q6_K in the first
                  and last eighth of the layers and every third between
  Q3_K_M          Q3_K, with attn_v in Q5_K in the first two layers and Q4_K
                  after, ffn_down in Q5_K in the first sixteenth and Q4_K after,
                  attn_output in Q4_K
  Q2_K            Q2_K, with ffn_down and attn_output in Q3_K, attn_v in Q4_K
                  where four or more query heads share a key head, else Q3_K
Rows that are not whole blocks of a type fall back as llama.cpp's do (Q2_K and
Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0). Norms stay F32. A
quantized input is decoded first.`,
		Example: `  persona quantize ./Qwen3-0.6B qwen3-0.6b-q4_k_m.gguf --type Q4_K_M
  persona quantize organism organism-q8_0.gguf --type Q8_0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(model.Mixes, mix) {
				return usageErr(fmt.Errorf("--type %q: want one of %v", mix, model.Mixes))
			}
			in, out := args[0], args[1]
			if _, err := os.Stat(out); err == nil && !force {
				return usageErr(fmt.Errorf("%s exists (--force replaces it)", out))
			}
			e, err := loadEngine(in, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			counts, err := e.WriteQuantized(out, mix)
			if err != nil {
				return classify(err)
			}
			var parts []string
			byName := map[string]int{}
			for d, n := range counts {
				parts = append(parts, fmt.Sprintf("%v ×%d", d, n))
				byName[d.String()] = n
			}
			slices.Sort(parts)
			if asJSON {
				return printJSON(map[string]any{"out": out, "type": mix, "matrices": byName})
			}
			fmt.Printf("wrote %s (%s): matrices %s\n", out, mix, strings.Join(parts, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&mix, "type", "Q4_K_M", "quantization: "+strings.Join(model.Mixes, ", "))
	f.BoolVar(&force, "force", false, "replace an existing output file")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
