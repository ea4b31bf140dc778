package engine

import (
	"fmt"
	"os"
	"strings"

	"persona/gguf"
	"persona/tensor"
)

// WriteGGUF writes the model as one GGUF file with its tokenizer metadata
// and chat template, so llama.cpp and ollama run exactly the model persona
// measured. Matrices are re-encoded to d in memory first (F32 keeps them
// bit for bit); norms stay F32.
func (e *Engine) WriteGGUF(path string, d tensor.DType) error {
	return e.writeGGUF(path, func() error { return e.Model.Convert(d) })
}

// WriteQuantized writes the model as a GGUF file quantized to a mix
// (model.Mixes: Q4_0, Q8_0, Q4_K_M, Q5_K_M, Q6_K; the per-matrix choices are
// llama.cpp's) and returns how many matrices got each type.
func (e *Engine) WriteQuantized(path, mix string) (map[tensor.DType]int, error) {
	var counts map[tensor.DType]int
	err := e.writeGGUF(path, func() (err error) {
		counts, err = e.Model.Quantize(mix)
		return err
	})
	return counts, err
}

// writeGGUF re-encodes the matrices in memory (encode) and writes the file
// with the tokenizer's metadata.
func (e *Engine) writeGGUF(path string, encode func() error) error {
	vocab, err := e.ggufVocab()
	if err != nil {
		return err
	}
	if err := encode(); err != nil {
		return err
	}
	return e.Model.WriteGGUF(path, vocab)
}

// ggufVocab returns the tokenizer.* metadata of a GGUF export. A GGUF source
// already carries llama.cpp's own description of its vocabulary (possibly a
// SentencePiece one we could not re-derive), so it is copied verbatim; an HF
// directory's tokenizer is translated by GGUFMetadata, with the chat
// template from tokenizer_config.json added when the tokenizer itself has
// none, since llama.cpp and ollama take the template only from the GGUF.
func (e *Engine) ggufVocab() ([]gguf.KV, error) {
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
	hasTemplate := false
	for _, kv := range kvs {
		hasTemplate = hasTemplate || kv.Key == "tokenizer.chat_template"
		if toks, ok := kv.Value.([]string); ok && kv.Key == "tokenizer.ggml.tokens" && len(toks) != e.Model.Vocab {
			return nil, fmt.Errorf("%s: the tokenizer has %d tokens but the model's vocabulary is %d; llama.cpp needs them equal", e.Path, len(toks), e.Model.Vocab)
		}
	}
	if !hasTemplate && e.ChatConfig != nil && e.ChatConfig.Template != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: e.ChatConfig.Template})
	}
	return kvs, nil
}
