package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"persona/engine"
	"persona/tensor"
)

// exportDTypes are the storage types `persona export --dtype` accepts: exact
// F32, and the two smaller types every llama.cpp and ollama build runs fast on
// a CPU.
var exportDTypes = map[string]tensor.DType{"f32": tensor.F32, "f16": tensor.F16, "q8_0": tensor.Q8_0}

func newExportCmd() *cobra.Command {
	var modelPath, out, dtype string
	var force bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write a model as a GGUF file that llama.cpp and ollama run",
		Long: `Write any model persona loads (a Hugging Face directory, a GGUF file or the
embedded organism) as one GGUF file with its tokenizer metadata and chat
template, so llama.cpp, ollama and LM Studio run exactly the model persona
measured, and persona's control vectors (vectors extract --gguf) steer it.

Matrices are stored as --dtype (f32 keeps the weights bit for bit; f16 and
q8_0 are smaller and round the weights); norms stay F32. Tokenizer metadata
comes from the model's tokenizer.json (byte-level BPE with a pre-tokenizer
llama.cpp knows) or, for a GGUF source, is copied unchanged.`,
		Example: `  persona export --gguf organism.gguf                  # the embedded organism, F32
  persona export --model organism-base --gguf base.gguf --dtype q8_0
  llama-cli -m organism.gguf --control-vector-scaled cynical.gguf 4 -p "What is 40 + 14?"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("--gguf is required"))
			}
			dt, ok := exportDTypes[strings.ToLower(dtype)]
			if !ok {
				return usageErr(fmt.Errorf("--dtype %q: want f32, f16 or q8_0", dtype))
			}
			// Refusing to overwrite protects the source: exporting a GGUF
			// onto itself would replace the file the weights are mapped from.
			if _, err := os.Stat(out); err == nil && !force {
				return usageErr(fmt.Errorf("%s exists (use --force to replace it)", out))
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			if err := e.WriteGGUF(out, dt); err != nil {
				return usageErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s, %d layers, hidden %d, vocab %d, %s)\n",
				out, e.Model.Arch, e.Model.NumLayers, e.Model.Hidden, e.Model.Vocab, strings.ToLower(dtype))
			return nil
		},
	}
	modelFlag(cmd.Flags(), &modelPath, "model to export (HF directory or GGUF file)")
	cmd.Flags().StringVar(&out, "gguf", "", "output GGUF file (required)")
	cmd.Flags().StringVar(&dtype, "dtype", "f32", "storage type of the matrices: f32, f16 or q8_0")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file")
	return cmd
}
