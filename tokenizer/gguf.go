package tokenizer

import (
	"fmt"

	"persona/gguf"
)

// FromGGUF builds the tokenizer stored in a GGUF file's tokenizer.ggml.*
// metadata, with llama.cpp's defaults where keys are absent: SentencePiece
// ("llama") vocabularies add BOS and a space prefix, byte-level ("gpt2")
// ones add BOS only for Llama 3's pre-tokenizer.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v := &Vocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	name, _ := f.String("general.name")
	if name == "" {
		name = "gguf"
	}
	var ok bool
	if v.Model, ok = f.String("tokenizer.ggml.model"); !ok {
		return nil, fmt.Errorf("tokenizer %s: tokenizer.ggml.model: missing", name)
	}
	v.Pre, _ = f.String("tokenizer.ggml.pre")
	if v.Tokens, ok = f.Strings("tokenizer.ggml.tokens"); !ok {
		return nil, fmt.Errorf("tokenizer %s: tokenizer.ggml.tokens: missing", name)
	}
	v.Scores, _ = f.Float32s("tokenizer.ggml.scores")
	v.Types, _ = f.Int32s("tokenizer.ggml.token_type")
	v.Merges, _ = f.Strings("tokenizer.ggml.merges")
	switch v.Model {
	case "llama":
		v.AddBOS, v.AddSpacePrefix = true, true
		v.BOS, v.EOS, v.UNK = 1, 2, 0 // llama.cpp's defaults for SentencePiece
	case "gpt2":
		if v.Pre == "" {
			v.Pre = "default"
		}
		switch v.Pre {
		case "llama3", "llama-v3", "llama-bpe":
			v.AddBOS = true
		}
	}
	for _, k := range []struct {
		key string
		dst *int
	}{
		{"tokenizer.ggml.bos_token_id", &v.BOS},
		{"tokenizer.ggml.eos_token_id", &v.EOS},
		{"tokenizer.ggml.unknown_token_id", &v.UNK},
		{"tokenizer.ggml.padding_token_id", &v.PAD},
	} {
		if u, ok := f.Uint(k.key); ok {
			if u >= uint64(len(v.Tokens)) {
				return nil, fmt.Errorf("tokenizer %s: %s: id %d out of range [0, %d)", name, k.key, u, len(v.Tokens))
			}
			*k.dst = int(u)
		}
	}
	if b, ok := f.Bool("tokenizer.ggml.add_bos_token"); ok {
		v.AddBOS = b
	}
	if b, ok := f.Bool("tokenizer.ggml.add_eos_token"); ok {
		v.AddEOS = b
	}
	if b, ok := f.Bool("tokenizer.ggml.add_space_prefix"); ok {
		v.AddSpacePrefix = b
	}
	t, err := FromVocab(v, name)
	if err != nil {
		return nil, err
	}
	t.chatTemplate, _ = f.String("tokenizer.chat_template")
	return t, nil
}
