// Package model is the embedded engine's transformer: Llama-family decoder
// weights (Llama 1/2/3, Mistral, Qwen2/2.5, Qwen3, SmolLM, Gemma 2 and 3,
// Granite, Phi-3) bound straight from
// memory-mapped Hugging Face safetensors or GGUF files, and a forward pass
// over a KV cache with residual-stream interventions (package resid) applied
// at the output of every block.
//
// The package knows nothing of tokenizers, chat or personas; package engine
// puts those together.
package model

import (
	"persona/tensor"
)

// Layer is one decoder block; its tags are described in params.go. Linear
// weights stay in their stored type (F32/F16/BF16/Q8_0) and are read in
// place; small vectors are decoded to float32 once at load.
type Layer struct {
	AttnNorm     []float32     `hf:"input_layernorm.weight" gguf:"attn_norm.weight" shape:"hidden" norm:"rms"`
	Q            tensor.Tensor `hf:"self_attn.q_proj.weight" gguf:"attn_q.weight" shape:"q,hidden" rope:"heads" lora:"q_proj"`
	K            tensor.Tensor `hf:"self_attn.k_proj.weight" gguf:"attn_k.weight" shape:"kv,hidden" rope:"kvheads" lora:"k_proj"`
	V            tensor.Tensor `hf:"self_attn.v_proj.weight" gguf:"attn_v.weight" shape:"kv,hidden" lora:"v_proj"`
	QBias        []float32     `hf:"self_attn.q_proj.bias" gguf:"attn_q.bias" shape:"q" when:"qkvbias" rope:"heads"`
	KBias        []float32     `hf:"self_attn.k_proj.bias" gguf:"attn_k.bias" shape:"kv" when:"qkvbias" rope:"kvheads"`
	VBias        []float32     `hf:"self_attn.v_proj.bias" gguf:"attn_v.bias" shape:"kv" when:"qkvbias"`
	QNorm        []float32     `hf:"self_attn.q_norm.weight" gguf:"attn_q_norm.weight" shape:"head" when:"qknorm" norm:"rms"`
	KNorm        []float32     `hf:"self_attn.k_norm.weight" gguf:"attn_k_norm.weight" shape:"head" when:"qknorm" norm:"rms"`
	O            tensor.Tensor `hf:"self_attn.o_proj.weight" gguf:"attn_output.weight" shape:"hidden,q" lora:"o_proj"`
	PostAttnNorm []float32     `hf:"post_attention_layernorm.weight" gguf:"post_attention_norm.weight" shape:"hidden" when:"postnorms" norm:"rms"`
	FFNNorm      []float32     `hf:"post_attention_layernorm.weight" hfpostnorms:"pre_feedforward_layernorm.weight" gguf:"ffn_norm.weight" shape:"hidden" norm:"rms"`
	Gate         tensor.Tensor `hf:"mlp.gate_proj.weight" gguf:"ffn_gate.weight" shape:"ffn,hidden" lora:"gate_proj"`
	Up           tensor.Tensor `hf:"mlp.up_proj.weight" gguf:"ffn_up.weight" shape:"ffn,hidden" lora:"up_proj"`
	Down         tensor.Tensor `hf:"mlp.down_proj.weight" gguf:"ffn_down.weight" shape:"hidden,ffn" lora:"down_proj"`
	PostFFNNorm  []float32     `hf:"post_feedforward_layernorm.weight" gguf:"post_ffw_norm.weight" shape:"hidden" when:"postnorms" norm:"rms"`
	// LoRA holds low-rank adapters on the linears, if any (not file tensors).
	LoRA LayerAdapters
}

// Weights are the model's parameters outside the blocks, and the blocks.
// Output is the embedding matrix itself when embeddings are tied.
type Weights struct {
	Embed  tensor.Tensor `hf:"model.embed_tokens.weight" gguf:"token_embd.weight" shape:"vocab,hidden"`
	Norm   []float32     `hf:"model.norm.weight" gguf:"output_norm.weight" shape:"hidden" norm:"rms"`
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
	visitParams(&m.Weights, &m.Config, func(p paramRef) error { t := p.Tensor(); n += int64(t.Len()); return nil })
	return n
}

// StorageTypes counts the weight tensors by storage type ("Q4_K": 14, …):
// what a quantized file is made of.
func (m *Model) StorageTypes() map[string]int {
	out := map[string]int{}
	visitParams(&m.Weights, &m.Config, func(p paramRef) error { out[p.Tensor().DType.String()]++; return nil })
	return out
}

// WeightBytes returns the bytes the weights occupy in their stored types.
func (m *Model) WeightBytes() int64 {
	var n int64
	visitParams(&m.Weights, &m.Config, func(p paramRef) error { n += int64(len(p.Tensor().Data)); return nil })
	return n
}
