// Package model is the embedded engine's transformer: Llama-family decoder
// weights (Llama 1/2/3, Mistral, Qwen2/2.5, Qwen3, SmolLM) bound straight from
// memory-mapped Hugging Face safetensors or GGUF files, and a forward pass
// over a KV cache with residual-stream interventions (package resid) applied
// at the output of every block.
//
// The package knows nothing of tokenizers, chat or personas; package engine
// puts those together.
package model

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"persona/tensor"
)

// Layer is one decoder block. Each field's tags give its tensor name in a
// Hugging Face checkpoint (relative to model.layers.N.) and in GGUF (relative
// to blk.N.), its shape in symbolic dimensions, and when it is present.
// Linear weights stay in their stored type (F32/F16/BF16/Q8_0) and are read
// in place; small vectors are decoded to float32 once at load.
type Layer struct {
	AttnNorm []float32     `hf:"input_layernorm.weight" gguf:"attn_norm.weight" shape:"hidden"`
	Q        tensor.Tensor `hf:"self_attn.q_proj.weight" gguf:"attn_q.weight" shape:"q,hidden"`
	K        tensor.Tensor `hf:"self_attn.k_proj.weight" gguf:"attn_k.weight" shape:"kv,hidden"`
	V        tensor.Tensor `hf:"self_attn.v_proj.weight" gguf:"attn_v.weight" shape:"kv,hidden"`
	QBias    []float32     `hf:"self_attn.q_proj.bias" gguf:"attn_q.bias" shape:"q" when:"qkvbias"`
	KBias    []float32     `hf:"self_attn.k_proj.bias" gguf:"attn_k.bias" shape:"kv" when:"qkvbias"`
	VBias    []float32     `hf:"self_attn.v_proj.bias" gguf:"attn_v.bias" shape:"kv" when:"qkvbias"`
	QNorm    []float32     `hf:"self_attn.q_norm.weight" gguf:"attn_q_norm.weight" shape:"head" when:"qknorm"`
	KNorm    []float32     `hf:"self_attn.k_norm.weight" gguf:"attn_k_norm.weight" shape:"head" when:"qknorm"`
	O        tensor.Tensor `hf:"self_attn.o_proj.weight" gguf:"attn_output.weight" shape:"hidden,q"`
	FFNNorm  []float32     `hf:"post_attention_layernorm.weight" gguf:"ffn_norm.weight" shape:"hidden"`
	Gate     tensor.Tensor `hf:"mlp.gate_proj.weight" gguf:"ffn_gate.weight" shape:"ffn,hidden"`
	Up       tensor.Tensor `hf:"mlp.up_proj.weight" gguf:"ffn_up.weight" shape:"ffn,hidden"`
	Down     tensor.Tensor `hf:"mlp.down_proj.weight" gguf:"ffn_down.weight" shape:"hidden,ffn"`
	// LoRA holds low-rank adapters on the linears, if any (not file tensors).
	LoRA LayerAdapters
}

// Weights are the model's parameters outside the blocks. Output is the
// embedding matrix itself when embeddings are tied.
type Weights struct {
	Embed  tensor.Tensor `hf:"model.embed_tokens.weight" gguf:"token_embd.weight" shape:"vocab,hidden"`
	Norm   []float32     `hf:"model.norm.weight" gguf:"output_norm.weight" shape:"hidden"`
	Output tensor.Tensor `hf:"lm_head.weight" gguf:"output.weight" shape:"vocab,hidden" when:"untied"`
	Layers []Layer
}

// Model is a loaded model: configuration and weights.
type Model struct {
	Config
	Weights
	// LoRA is the configuration of attached adapters, nil when none.
	LoRA *LoRAConfig
	// Source describes where the weights came from (path and format).
	Source string
	closer func() error
}

// Close releases the memory mappings behind the weights.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	err := m.closer()
	m.closer = nil
	return err
}

// ParamCount returns the number of parameters (tied embeddings counted once).
func (m *Model) ParamCount() int64 {
	var n int64
	m.eachWeight(func(p param) error { n += int64(p.T.Len()); return nil })
	return n
}

// WeightBytes returns the bytes the weights occupy in their stored types.
func (m *Model) WeightBytes() int64 {
	var n int64
	m.eachWeight(func(p param) error { n += int64(len(p.T.Data)); return nil })
	return n
}

// eachTensor visits every matrix (not the small float32 vectors), with its
// Hugging Face name.
func (m *Model) eachTensor(fn func(hfName string, t *tensor.Tensor)) {
	fn("model.embed_tokens.weight", &m.Embed)
	if !m.TiedEmbedding {
		fn("lm_head.weight", &m.Output)
	}
	for i := range m.Layers {
		v := reflect.ValueOf(&m.Layers[i]).Elem()
		for j := 0; j < v.NumField(); j++ {
			if t, ok := v.Field(j).Addr().Interface().(*tensor.Tensor); ok {
				fn(fmt.Sprintf("model.layers.%d.%s", i, v.Type().Field(j).Tag.Get("hf")), t)
			}
		}
	}
}

// tensorSource is what the binder needs from a weight file.
type tensorSource interface {
	Has(name string) bool
	Tensor(name string) (tensor.Tensor, error)
}

// naming turns a field's tag into a full tensor name for one file format.
type naming struct {
	tag   string // "hf" or "gguf"
	layer func(i int, rel string) string
}

var (
	hfNames   = naming{"hf", func(i int, rel string) string { return fmt.Sprintf("model.layers.%d.%s", i, rel) }}
	ggufNames = naming{"gguf", func(i int, rel string) string { return fmt.Sprintf("blk.%d.%s", i, rel) }}
)

// bind fills m.Weights from src: every tagged field whose `when` condition
// holds must be present with its declared shape.
func (m *Model) bind(src tensorSource, n naming) error {
	conds := map[string]bool{"": true, "qkvbias": m.QKVBias, "qknorm": m.QKNorm, "untied": !m.TiedEmbedding}
	if err := bindStruct(reflect.ValueOf(&m.Weights).Elem(), src, n.tag, &m.Config, conds, func(rel string) string { return rel }); err != nil {
		return err
	}
	if m.TiedEmbedding {
		m.Output = m.Embed
	}
	m.Layers = make([]Layer, m.NumLayers)
	for i := range m.Layers {
		if err := bindStruct(reflect.ValueOf(&m.Layers[i]).Elem(), src, n.tag, &m.Config, conds, func(rel string) string { return n.layer(i, rel) }); err != nil {
			return err
		}
	}
	return nil
}

func bindStruct(v reflect.Value, src tensorSource, tagName string, cfg *Config, conds map[string]bool, full func(string) string) error {
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		rel := f.Tag.Get(tagName)
		if rel == "" || !conds[f.Tag.Get("when")] {
			continue
		}
		name := full(rel)
		if !src.Has(name) {
			return fmt.Errorf("tensor %q is missing", name)
		}
		t, err := src.Tensor(name)
		if err != nil {
			return err
		}
		want, err := cfg.dims(f.Tag.Get("shape"))
		if err != nil {
			return err
		}
		if !equalShape(t.Shape, want) {
			return fmt.Errorf("tensor %q: shape %v, config says %v (%s)", name, t.Shape, want, f.Tag.Get("shape"))
		}
		switch v.Field(i).Interface().(type) {
		case tensor.Tensor:
			v.Field(i).Set(reflect.ValueOf(t))
		case []float32:
			v.Field(i).Set(reflect.ValueOf(t.ToF32()))
		}
	}
	return nil
}

// dims resolves a symbolic shape such as "kv,hidden" against the config.
func (c *Config) dims(shape string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(shape, ",") {
		d, ok := map[string]int{
			"hidden": c.Hidden, "ffn": c.FFN, "vocab": c.Vocab, "head": c.HeadDim,
			"q": c.Heads * c.HeadDim, "kv": c.KVHeads * c.HeadDim, "half": c.HeadDim / 2,
		}[s]
		if !ok {
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("model: unknown dimension %q in shape tag", s)
			}
			d = n
		}
		out = append(out, d)
	}
	return out, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
