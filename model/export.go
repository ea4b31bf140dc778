package model

import (
	"fmt"
	"reflect"

	"persona/gguf"
	"persona/tensor"
)

// ggufArch is the general.architecture llama.cpp expects for our arch.
func (c *Config) ggufArch() string { return c.Arch }

// WriteGGUF writes the model as a GGUF v3 file that llama.cpp loads, with the
// tokenizer metadata in vocab (tokenizer.ggml.* keys; llama.cpp refuses a
// model without a vocabulary). Llama-architecture q/k weights are permuted to
// the interleaved RoPE layout llama.cpp's Llama graph expects, exactly as its
// own converter does; Qwen stays half-split. Llama 3 RoPE scaling becomes a
// rope_freqs tensor.
func (m *Model) WriteGGUF(path string, vocab []gguf.KV) error {
	arch := m.ggufArch()
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
	w.AddKV("general.file_type", uint32(0))
	for _, kv := range vocab {
		w.AddKV(kv.Key, kv.Value)
	}

	permute := m.RoPEStyle != style
	add := func(name string, t tensor.Tensor, ropeHeads int) error {
		t.Name = name
		if permute && ropeHeads > 0 {
			var err error
			if t, err = permuteRoPERows(t, ropeHeads, m.HeadDim, style); err != nil {
				return err
			}
		}
		return w.AddTensor(t)
	}
	vec := func(name string, v []float32) error {
		return w.AddTensor(tensor.Tensor{Name: name, DType: tensor.F32, Shape: []int{len(v)}, Data: tensor.F32ToBytes(v)})
	}
	if err := add("token_embd.weight", m.Embed, 0); err != nil {
		return err
	}
	if err := vec("output_norm.weight", m.Norm); err != nil {
		return err
	}
	if !m.TiedEmbedding {
		if err := add("output.weight", m.Output, 0); err != nil {
			return err
		}
	}
	if m.RoPEFactors != nil {
		if err := vec("rope_freqs.weight", m.RoPEFactors); err != nil {
			return err
		}
	}
	conds := map[string]bool{"": true, "qkvbias": m.QKVBias, "qknorm": m.QKNorm}
	for i := range m.Layers {
		v := reflect.ValueOf(m.Layers[i])
		for j := 0; j < v.NumField(); j++ {
			f := v.Type().Field(j)
			if !conds[f.Tag.Get("when")] {
				continue
			}
			name := fmt.Sprintf("blk.%d.%s", i, f.Tag.Get("gguf"))
			heads := map[string]int{"Q": m.Heads, "K": m.KVHeads, "QBias": m.Heads, "KBias": m.KVHeads}[f.Name]
			var err error
			switch x := v.Field(j).Interface().(type) {
			case tensor.Tensor:
				err = add(name, x, heads)
			case []float32:
				t := tensor.Tensor{DType: tensor.F32, Shape: []int{len(x)}, Data: tensor.F32ToBytes(x)}
				err = add(name, t, heads)
			}
			if err != nil {
				return err
			}
		}
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
