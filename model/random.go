package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"

	"persona/gguf"
	"persona/tensor"
)

// NewRandom builds a model of the given shape with F32 weights drawn from a
// seeded normal distribution: matrices with std 1/√fan-in and embeddings with
// std 1, so activations and logits have order-one spread (a comparison
// between engines on such a model is sensitive; on near-uniform logits it
// would not be); norms near 1, biases small. Such models are what benchmarks and reference comparisons run on:
// any shape, no download. The weights are owned by the model, not mapped.
func NewRandom(cfg Config, seed uint64) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	m := &Model{Config: cfg, Source: "random"}
	m.Layers = make([]Layer, cfg.NumLayers)
	conds := cfg.conditions()
	fill := func(v reflect.Value) error {
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if f.Tag.Get("hf") == "" || !conds[f.Tag.Get("when")] {
				continue
			}
			shape, err := cfg.dims(f.Tag.Get("shape"))
			if err != nil {
				return err
			}
			n := 1
			for _, d := range shape {
				n *= d
			}
			w := make([]float32, n)
			switch v.Field(i).Interface().(type) {
			case tensor.Tensor:
				std := 1 / math.Sqrt(float64(shape[1]))
				if f.Name == "Embed" {
					std = 1
				}
				for j := range w {
					w[j] = float32(r.NormFloat64() * std)
				}
				v.Field(i).Set(reflect.ValueOf(tensor.Tensor{Name: f.Name, DType: tensor.F32, Shape: shape, Data: tensor.F32ToBytes(w)}))
			case []float32:
				mean, std := 1.0, 0.1 // norm weights
				if f.Tag.Get("when") == "qkvbias" {
					mean, std = 0, 0.02
				}
				for j := range w {
					w[j] = float32(mean + r.NormFloat64()*std)
				}
				v.Field(i).Set(reflect.ValueOf(w))
			}
		}
		return nil
	}
	if err := fill(reflect.ValueOf(&m.Weights).Elem()); err != nil {
		return nil, err
	}
	if cfg.TiedEmbedding {
		m.Output = m.Embed
	}
	for i := range m.Layers {
		if err := fill(reflect.ValueOf(&m.Layers[i]).Elem()); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SyntheticVocab is a SentencePiece-style GGUF vocabulary of n tokens
// (<unk>, <s>, </s>, the 256 byte tokens, then filler pieces): enough for
// llama.cpp to load a random model that is driven by token ids.
func SyntheticVocab(n int) []gguf.KV {
	toks := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3}
	for b := 0; b < 256; b++ {
		toks = append(toks, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6)
	}
	for i := len(toks); i < n; i++ {
		toks = append(toks, fmt.Sprintf("▁t%d", i))
		types = append(types, 1)
	}
	scores := make([]float32, n)
	for i := range scores {
		scores[i] = -float32(i)
	}
	return []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Value: toks[:n]},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types[:n]},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
	}
}
