package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"persona/engine"
	"persona/gguf"
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
				return usageErr(err)
			}
			defer e.Close()
			vocab, err := exportVocab(e)
			if err != nil {
				return usageErr(err)
			}
			if err := e.Model.Convert(dt); err != nil {
				return usageErr(err)
			}
			if err := e.Model.WriteGGUF(out, vocab); err != nil {
				return backendErr(err)
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

// exportVocab returns the tokenizer.* metadata for the export. A GGUF source
// already carries llama.cpp's own description of its vocabulary (possibly a
// SentencePiece one we could not re-derive), so it is copied verbatim; an HF
// directory's tokenizer is translated by GGUFMetadata, with the chat template
// from tokenizer_config.json added when the tokenizer itself has none, since
// llama.cpp and ollama take the template only from the GGUF.
func exportVocab(e *engine.Engine) ([]gguf.KV, error) {
	if st, err := os.Stat(e.Path); err == nil && !st.IsDir() {
		f, err := gguf.Open(e.Path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var kvs []gguf.KV
		for _, kv := range f.KV {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				kvs = append(kvs, kv)
			}
		}
		if len(kvs) == 0 {
			return nil, fmt.Errorf("%s has no tokenizer metadata to export", e.Path)
		}
		return kvs, nil
	}
	kvs, err := e.Tokenizer.GGUFMetadata()
	if err != nil {
		return nil, fmt.Errorf("%s: llama.cpp cannot represent this tokenizer: %w", e.Path, err)
	}
	if n := len(kvTokens(kvs)); n != e.Model.Vocab {
		return nil, fmt.Errorf("%s: the tokenizer has %d tokens but the model's vocabulary is %d; llama.cpp needs them equal", e.Path, n, e.Model.Vocab)
	}
	hasTemplate := false
	for _, kv := range kvs {
		hasTemplate = hasTemplate || kv.Key == "tokenizer.chat_template"
	}
	if !hasTemplate && e.ChatConfig != nil && e.ChatConfig.Template != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: e.ChatConfig.Template})
	}
	return kvs, nil
}

func kvTokens(kvs []gguf.KV) []string {
	for _, kv := range kvs {
		if kv.Key == "tokenizer.ggml.tokens" {
			toks, _ := kv.Value.([]string)
			return toks
		}
	}
	return nil
}
