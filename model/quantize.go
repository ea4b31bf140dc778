package model

import (
	"fmt"
	"strings"

	"persona/tensor"
)

// Mixes are the quantized file types Quantize writes, named as llama.cpp
// names them: one type throughout (Q4_0, Q8_0, Q6_K), or llama.cpp's
// mixes that spend more bits where the model is most sensitive (Q4_K_M,
// Q5_K_M).
var Mixes = []string{"Q4_0", "Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K"}

var mixBase = map[string]tensor.DType{"Q4_0": tensor.Q4_0, "Q8_0": tensor.Q8_0, "Q4_K_M": tensor.Q4_K, "Q5_K_M": tensor.Q5_K, "Q6_K": tensor.Q6_K}

// Quantize re-encodes every matrix to its type in the mix, as llama.cpp's
// quantizer chooses for the Llama family: the output head (and the
// embeddings when they are tied to it) in Q6_K unless the mix is Q8_0; in
// the _M mixes, attn_v and ffn_down in Q6_K in the first and last eighth of
// the layers and every third layer between; everything else in the mix's
// type. A matrix whose rows are not whole blocks of its type falls back as
// llama.cpp falls back (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16).
// Phi-3's fused q/k/v matrix follows the attn_v rule, as in llama.cpp.
// It returns how many matrices got each type.
func (m *Model) Quantize(mix string) (map[tensor.DType]int, error) {
	base, ok := mixBase[mix]
	if !ok {
		return nil, fmt.Errorf("quantize: %q: want one of %v", mix, Mixes)
	}
	moreBits := func(i, n int) bool { return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2 }
	counts := map[tensor.DType]int{}
	err := visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		t := p.Matrix()
		if t == nil {
			return nil
		}
		want := base
		// Phi-3's fused q/k/v matrix counts as attn_v.
		fused, _, _ := m.fusionOf(p)
		attnV := strings.HasSuffix(p.GGUF, ".attn_v.weight") || (fused != nil && fused.gguf == "attn_qkv.weight")
		switch {
		case p.GGUF == "output.weight" || (m.TiedEmbedding && p.GGUF == "token_embd.weight"):
			if base != tensor.Q8_0 {
				want = tensor.Q6_K
			}
			if t.Cols()%base.BlockSize() != 0 {
				want = tensor.Q8_0
			}
		case (attnV || strings.HasSuffix(p.GGUF, ".ffn_down.weight")) &&
			(mix == "Q4_K_M" || mix == "Q5_K_M") && moreBits(p.Layer, m.NumLayers):
			want = tensor.Q6_K
		}
		want = fallback(want, t.Cols())
		counts[want]++
		if t.DType == want {
			return nil
		}
		data, err := tensor.Encode(want, t.ToF32())
		if err != nil {
			return fmt.Errorf("quantize %s to %v: %w", p.GGUF, want, err)
		}
		t.DType, t.Data = want, data
		return nil
	})
	if m.TiedEmbedding {
		m.Output = m.Embed
	}
	return counts, err
}

// fallback is llama.cpp's substitute for a type whose blocks do not fit a
// row of cols elements.
func fallback(d tensor.DType, cols int) tensor.DType {
	for _, next := range []tensor.DType{d, map[tensor.DType]tensor.DType{tensor.Q4_K: tensor.Q5_0, tensor.Q5_K: tensor.Q5_1, tensor.Q6_K: tensor.Q8_0}[d]} {
		if next != 0 && cols%next.BlockSize() == 0 {
			return next
		}
	}
	return tensor.F16
}
