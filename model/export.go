package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"persona/gguf"
	"persona/internal/fileio"
	"persona/safetensors"
	"persona/tensor"
)

// WriteGGUF writes the model as a GGUF v3 file that llama.cpp loads, with the
// tokenizer metadata in vocab (tokenizer.ggml.* keys; llama.cpp refuses a
// model without a vocabulary). Llama-architecture q/k weights are permuted to
// the interleaved RoPE layout llama.cpp's Llama graph expects, exactly as its
// own converter does; Qwen and Gemma stay half-split. Llama 3 RoPE scaling
// becomes a rope_freqs tensor, linear scaling two keys.
func (m *Model) WriteGGUF(path string, vocab []gguf.KV) error {
	arch := m.Arch
	style, ok := ggufArchitectures[arch]
	if !ok {
		return fmt.Errorf("gguf export: architecture %q: %w", arch, ErrUnsupported)
	}
	if err := m.ggufExpressible(); err != nil {
		return fmt.Errorf("gguf export: %w", err)
	}
	w := gguf.NewWriter()
	w.AddKV("general.architecture", arch)
	w.AddKV("general.name", "persona export")
	u32 := func(k string, v int) { w.AddKV(arch+"."+k, uint32(v)) }
	u32("context_length", m.MaxSeq)
	u32("embedding_length", m.Hidden)
	u32("block_count", m.NumLayers)
	u32("feed_forward_length", m.FFN)
	u32("attention.head_count", m.Heads)
	u32("attention.head_count_kv", m.KVHeads)
	u32("attention.key_length", m.HeadDim)
	u32("attention.value_length", m.HeadDim)
	u32("rope.dimension_count", m.HeadDim)
	u32("vocab_size", m.Vocab)
	w.AddKV(arch+".attention.layer_norm_rms_epsilon", m.NormEps)
	w.AddKV(arch+".rope.freq_base", float32(m.RoPETheta))
	if m.RoPEScaling == "linear" {
		w.AddKV(arch+".rope.scaling.type", "linear")
		w.AddKV(arch+".rope.scaling.factor", m.RoPEFactors[0])
	}
	if m.gemma() {
		if m.SlidingWindow > 0 {
			u32("attention.sliding_window", m.SlidingWindow)
			u32("attention.sliding_window_pattern", m.SlidingPattern)
		}
		if m.RoPELocalTheta > 0 {
			w.AddKV(arch+".rope.freq_base_swa", float32(m.RoPELocalTheta))
		}
		if arch == "gemma2" {
			w.AddKV(arch+".attn_logit_softcapping", m.AttnSoftcap)
		}
		if m.FinalSoftcap != 0 || arch == "gemma2" {
			w.AddKV(arch+".final_logit_softcapping", m.FinalSoftcap)
		}
	}
	if arch == "granite" {
		w.AddKV(arch+".embedding_scale", orOne(m.EmbedScale))
		w.AddKV(arch+".residual_scale", orOne(m.ResidualScale))
		w.AddKV(arch+".attention.scale", m.QueryScale())
		w.AddKV(arch+".logit_scale", orOne(m.LogitDivisor))
	}
	// llama.cpp's LLAMA_FTYPE_* of the matrices (it only displays it).
	w.AddKV("general.file_type", map[tensor.DType]uint32{tensor.F32: 0, tensor.F16: 1, tensor.Q4_0: 2, tensor.Q8_0: 7, tensor.Q5_0: 8,
		tensor.Q5_1: 9, tensor.Q4_K: 15, tensor.Q5_K: 17, tensor.Q6_K: 18, tensor.BF16: 32}[m.Layers[0].Q.DType])
	for _, kv := range vocab {
		w.AddKV(kv.Key, kv.Value)
	}

	if m.RoPEFactors != nil && m.RoPEScaling != "linear" {
		w.AddTensor(tensor.Tensor{Name: "rope_freqs.weight", DType: tensor.F32, Shape: []int{len(m.RoPEFactors)}, Data: tensor.F32ToBytes(m.RoPEFactors)})
	}
	fu := fuser{c: &m.Config, n: ggufNames}
	err := visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		t := p.Tensor()
		t.Name = p.GGUF
		if h := p.RoPEHeads(&m.Config); h > 0 && m.RoPEStyle != style {
			var err error
			if t, err = permuteRoPERows(t, h, m.HeadDim, style); err != nil {
				return err
			}
		}
		t, ok, err := fu.add(p, t)
		if !ok || err != nil {
			return err
		}
		return w.AddTensor(t)
	})
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}

// ggufExpressible says what of the model a GGUF file cannot carry so that
// llama.cpp runs it as we do: its Llama and Qwen graphs have none of the
// Gemma and Granite features, its Granite graph only Granite's scales, and
// its Gemma graphs fix the block, the embedding scale and the query scale
// (see ggufGemma), slide with a period, soft-cap attention only in Gemma 2
// and tie Gemma 2's embeddings.
func (m *Model) ggufExpressible() error {
	c := &m.Config
	switch {
	case c.Arch == "granite":
		if c.GELU || c.PostNorms || c.AttnSoftcap != 0 || c.FinalSoftcap != 0 || c.RoPELocalTheta != 0 {
			return fmt.Errorf("granite with Gemma features: %w", ErrUnsupported)
		}
		return nil
	case !c.gemma():
		if c.extras() {
			return fmt.Errorf("%s model with Gemma or Granite features: %w", c.Arch, ErrUnsupported)
		}
		return nil
	}
	var want Config
	want.Arch, want.Hidden, want.Heads, want.HeadDim, want.NumLayers = c.Arch, c.Hidden, c.Heads, c.HeadDim, c.NumLayers
	ggufGemmaScales(&want)
	switch {
	case !c.GELU || !c.PostNorms || c.EmbedScale != want.EmbedScale || c.ResidualScale != 0 || c.LogitDivisor != 0:
		return fmt.Errorf("%s without GeGLU, post-norms or √hidden embedding scale, or with Granite's scales: %w", c.Arch, ErrUnsupported)
	case c.AttnScale != want.AttnScale:
		return fmt.Errorf("%s query scale %g: llama.cpp would use %g for this shape: %w", c.Arch, c.AttnScale, want.AttnScale, ErrUnsupported)
	case c.Arch == "gemma3" && c.AttnSoftcap != 0:
		return fmt.Errorf("gemma3 with attention soft-capping: %w", ErrUnsupported)
	case c.Arch == "gemma2" && !c.TiedEmbedding:
		return fmt.Errorf("gemma2 with an output head of its own: %w (llama.cpp ties it)", ErrUnsupported)
	case c.SlidingWindow > 0 && c.SlidingPattern == 0:
		return fmt.Errorf("%s sliding every layer: %w", c.Arch, ErrUnsupported)
	}
	return nil
}

// permuteRoPERows reorders the rows of each head of a q/k weight (or bias)
// between the half-split and interleaved RoPE layouts. Going to interleaved,
// row 2i of a head takes half-split row i and row 2i+1 takes row i+d/2.
func permuteRoPERows(t tensor.Tensor, heads, hd int, to RoPEStyle) (tensor.Tensor, error) {
	rows, rb := t.Shape[0], len(t.Data)/t.Shape[0]
	if rows != heads*hd {
		return t, fmt.Errorf("tensor %q: %d rows, want %d heads × %d", t.Name, rows, heads, hd)
	}
	out := make([]byte, len(t.Data))
	half := hd / 2
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			src := [2]int{h*hd + i, h*hd + i + half}
			dst := [2]int{h*hd + 2*i, h*hd + 2*i + 1}
			if to == RoPEHalf {
				src, dst = dst, src
			}
			for k := 0; k < 2; k++ {
				copy(out[dst[k]*rb:(dst[k]+1)*rb], t.Data[src[k]*rb:(src[k]+1)*rb])
			}
		}
	}
	t.Data = out
	return t, nil
}

// Convert re-encodes every matrix (not the small norm and bias vectors) to
// the storage type d, in memory. Exporting a quantized GGUF and testing the
// engine's F16/BF16/Q8_0 paths against llama.cpp both start here.
func (m *Model) Convert(d tensor.DType) error {
	err := visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		t := p.Matrix()
		if t == nil || t.DType == d {
			return nil
		}
		data, err := tensor.Encode(d, t.ToF32())
		if err != nil {
			return fmt.Errorf("convert %s to %v: %w", p.HF, d, err)
		}
		t.DType, t.Data = d, data
		return nil
	})
	if m.TiedEmbedding {
		m.Output = m.Embed
	}
	return err
}

// hfArchitecture is the architectures[0] value written for our arch.
var hfArchitecture = map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
	"gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM", "granite": "GraniteForCausalLM", "phi3": "Phi3ForCausalLM"}

// WriteHF writes config.json and model.safetensors into dir (created if
// needed), in the layout transformers and our loader read: HF tensor names,
// half-split RoPE rows (q/k permuted back if the weights came from a Llama
// GGUF), F32/F16/BF16 kept, Q8_0 widened to F32. Tokenizer files are the
// caller's to copy.
func (m *Model) WriteHF(dir string) error {
	arch, ok := hfArchitecture[m.Arch]
	if !ok {
		return fmt.Errorf("hf export: architecture %q: %w", m.Arch, ErrUnsupported)
	}
	if m.RoPEFactors != nil && m.Llama3Scaling == nil && m.RoPEScaling != "linear" {
		return fmt.Errorf("hf export: RoPE frequency factors without llama3 scaling parameters cannot be written to config.json")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := map[string]any{
		"architectures": []string{arch}, "model_type": m.Arch,
		"hidden_size": m.Hidden, "intermediate_size": m.FFN, "num_hidden_layers": m.NumLayers,
		"num_attention_heads": m.Heads, "num_key_value_heads": m.KVHeads, "head_dim": m.HeadDim,
		"vocab_size": m.Vocab, "max_position_embeddings": m.MaxSeq, "rms_norm_eps": m.NormEps,
		"rope_theta": m.RoPETheta, "hidden_act": "silu", "tie_word_embeddings": m.TiedEmbedding,
		"attention_bias": m.QKVBias && m.Arch != "qwen2", "torch_dtype": "float32",
	}
	if m.RoPEScaling == "linear" {
		cfg["rope_scaling"] = map[string]any{"rope_type": "linear", "factor": m.RoPEFactors[0]}
	}
	if m.gemma() {
		m.hfGemmaConfig(cfg)
	}
	if m.Arch == "granite" {
		cfg["embedding_multiplier"], cfg["residual_multiplier"] = orOne(m.EmbedScale), orOne(m.ResidualScale)
		cfg["attention_multiplier"], cfg["logits_scaling"] = m.QueryScale(), orOne(m.LogitDivisor)
	}
	if m.Llama3Scaling != nil {
		s := m.Llama3Scaling
		cfg["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": s.Factor, "low_freq_factor": s.LowFreqFactor,
			"high_freq_factor": s.HighFreqFactor, "original_max_position_embeddings": s.OriginalMaxPos}
	}
	if len(m.BOS) > 0 {
		cfg["bos_token_id"] = m.BOS[0]
	}
	if len(m.EOS) > 0 {
		cfg["eos_token_id"] = m.EOS[0]
	}
	var tensors []tensor.Tensor
	fu := fuser{c: &m.Config, n: hfNames}
	add := func(p paramRef, name string, t tensor.Tensor, ropeHeads int, offset float32) error {
		t.Name = name
		if offset != 0 {
			v := slices.Clone(t.F32())
			for i := range v {
				v[i] -= offset
			}
			t.Data = tensor.F32ToBytes(v)
		}
		if t.DType == tensor.Q8_0 {
			t = tensor.Tensor{Name: name, DType: tensor.F32, Shape: t.Shape, Data: tensor.F32ToBytes(t.ToF32())}
		}
		if ropeHeads > 0 && m.RoPEStyle != RoPEHalf {
			var err error
			if t, err = permuteRoPERows(t, ropeHeads, m.HeadDim, RoPEHalf); err != nil {
				return err
			}
		}
		t, ok, err := fu.add(p, t)
		if ok && err == nil {
			tensors = append(tensors, t)
		}
		return err
	}
	if err := visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		return add(p, p.HF, p.Tensor(), p.RoPEHeads(&m.Config), p.hfOffset(&m.Config))
	}); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fileio.WriteFileAtomic(filepath.Join(dir, "config.json"), append(data, '\n'))
}

// hfGemmaConfig adds what Gemma's config classes read beyond Llama's.
func (m *Model) hfGemmaConfig(cfg map[string]any) {
	delete(cfg, "hidden_act")
	delete(cfg, "attention_bias")
	cfg["hidden_activation"] = "gelu_pytorch_tanh"
	if m.Arch == "gemma3" {
		cfg["model_type"] = "gemma3_text"
	}
	cfg["query_pre_attn_scalar"] = 1 / float64(m.QueryScale()*m.QueryScale())
	cfg["sliding_window"] = m.SlidingWindow
	types := make([]string, m.NumLayers)
	for l := range types {
		types[l] = "full_attention"
		if m.Sliding(l) {
			types[l] = "sliding_attention"
		}
	}
	cfg["layer_types"] = types
	if m.SlidingPattern > 0 {
		cfg["sliding_window_pattern"] = m.SlidingPattern
	}
	if m.RoPELocalTheta > 0 {
		cfg["rope_local_base_freq"] = m.RoPELocalTheta
	}
	orNull := func(v float32) any {
		if v == 0 {
			return nil
		}
		return v
	}
	cfg["attn_logit_softcapping"] = orNull(m.AttnSoftcap)
	cfg["final_logit_softcapping"] = orNull(m.FinalSoftcap)
}
