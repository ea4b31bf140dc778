package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"persona/gguf"
	"persona/internal/fileio"
	"persona/safetensors"
	"persona/tensor"
)

// WriteGGUF writes the model as a GGUF v3 file that llama.cpp loads, with the
// tokenizer metadata in vocab (tokenizer.ggml.* keys; llama.cpp refuses a
// model without a vocabulary). Llama-architecture q/k weights are permuted to
// the interleaved RoPE layout llama.cpp's Llama graph expects, exactly as its
// own converter does; Qwen stays half-split. Llama 3 RoPE scaling becomes a
// rope_freqs tensor.
func (m *Model) WriteGGUF(path string, vocab []gguf.KV) error {
	arch := m.Arch
	style, ok := ggufArchitectures[arch]
	if !ok {
		return fmt.Errorf("gguf export: architecture %q: %w", arch, ErrUnsupported)
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
	// llama.cpp's LLAMA_FTYPE_* of the matrices (it only displays it).
	w.AddKV("general.file_type", map[tensor.DType]uint32{tensor.F32: 0, tensor.F16: 1, tensor.Q8_0: 7, tensor.BF16: 32}[m.Layers[0].Q.DType])
	for _, kv := range vocab {
		w.AddKV(kv.Key, kv.Value)
	}

	if m.RoPEFactors != nil {
		w.AddTensor(tensor.Tensor{Name: "rope_freqs.weight", DType: tensor.F32, Shape: []int{len(m.RoPEFactors)}, Data: tensor.F32ToBytes(m.RoPEFactors)})
	}
	err := m.eachWeight(func(p param) error {
		t := p.T
		t.Name = p.GGUF
		if p.RoPEHeads > 0 && m.RoPEStyle != style {
			var err error
			if t, err = permuteRoPERows(t, p.RoPEHeads, m.HeadDim, style); err != nil {
				return err
			}
		}
		return w.AddTensor(t)
	})
	if err != nil {
		return err
	}
	return w.WriteFile(path)
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
	var err error
	m.eachTensor(func(name string, t *tensor.Tensor) {
		if err != nil || t.DType == d {
			return
		}
		var data []byte
		if data, err = tensor.Encode(d, t.ToF32()); err != nil {
			err = fmt.Errorf("convert %s to %v: %w", name, d, err)
			return
		}
		t.DType, t.Data = d, data
	})
	if m.TiedEmbedding {
		m.Output = m.Embed
	}
	return err
}

// hfArchitecture is the architectures[0] value written for our arch.
var hfArchitecture = map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}

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
	if m.RoPEFactors != nil && m.Llama3Scaling == nil {
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
	add := func(name string, t tensor.Tensor, ropeHeads int) error {
		t.Name = name
		if t.DType == tensor.Q8_0 {
			t = tensor.Tensor{Name: name, DType: tensor.F32, Shape: t.Shape, Data: tensor.F32ToBytes(t.ToF32())}
		}
		if ropeHeads > 0 && m.RoPEStyle != RoPEHalf {
			var err error
			if t, err = permuteRoPERows(t, ropeHeads, m.HeadDim, RoPEHalf); err != nil {
				return err
			}
		}
		tensors = append(tensors, t)
		return nil
	}
	if err := m.eachWeight(func(p param) error { return add(p.HF, p.T, p.RoPEHeads) }); err != nil {
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

// param is one stored parameter with its names in both formats.
type param struct {
	HF, GGUF string
	T        tensor.Tensor
	// RoPEHeads is the head count whose rows RoPE pairs up (q/k weights and
	// biases), else 0.
	RoPEHeads int
}

// eachWeight visits every parameter, matrices and vectors alike, in file
// order: embeddings, final norm, output head if untied, then each block.
func (m *Model) eachWeight(fn func(param) error) error {
	vec := func(v []float32) tensor.Tensor {
		return tensor.Tensor{DType: tensor.F32, Shape: []int{len(v)}, Data: tensor.F32ToBytes(v)}
	}
	top := []param{
		{"model.embed_tokens.weight", "token_embd.weight", m.Embed, 0},
		{"model.norm.weight", "output_norm.weight", vec(m.Norm), 0},
	}
	if !m.TiedEmbedding {
		top = append(top, param{"lm_head.weight", "output.weight", m.Output, 0})
	}
	for _, p := range top {
		if err := fn(p); err != nil {
			return err
		}
	}
	conds := map[string]bool{"": true, "qkvbias": m.QKVBias, "qknorm": m.QKNorm}
	for i := range m.Layers {
		v := reflect.ValueOf(m.Layers[i])
		for j := 0; j < v.NumField(); j++ {
			f := v.Type().Field(j)
			if f.Tag.Get("hf") == "" || !conds[f.Tag.Get("when")] {
				continue
			}
			p := param{
				HF:        hfNames.layer(i, f.Tag.Get("hf")),
				GGUF:      ggufNames.layer(i, f.Tag.Get("gguf")),
				RoPEHeads: map[string]int{"Q": m.Heads, "K": m.KVHeads, "QBias": m.Heads, "KBias": m.KVHeads}[f.Name],
			}
			switch x := v.Field(j).Interface().(type) {
			case tensor.Tensor:
				p.T = x
			case []float32:
				p.T = vec(x)
			}
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	return nil
}
