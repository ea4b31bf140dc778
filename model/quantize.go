package model

import (
	"fmt"
	"strings"

	"persona/tensor"
)

// Mixes are the quantized file types Quantize writes, named as llama.cpp
// names them: one type throughout (Q4_0, Q8_0, Q6_K), or llama.cpp's
// mixes that spend more bits where the model is most sensitive (Q2_K,
// Q3_K_M, Q4_K_M, Q5_K_M).
var Mixes = []string{"Q2_K", "Q3_K_M", "Q4_0", "Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K"}

var mixBase = map[string]tensor.DType{"Q2_K": tensor.Q2_K, "Q3_K_M": tensor.Q3_K, "Q4_0": tensor.Q4_0, "Q8_0": tensor.Q8_0,
	"Q4_K_M": tensor.Q4_K, "Q5_K_M": tensor.Q5_K, "Q6_K": tensor.Q6_K}

// Quantize re-encodes every matrix to its type in the mix, as llama.cpp's
// quantizer chooses for the Llama family: the output head (and the
// embeddings when they are tied to it) in Q6_K unless the mix is Q8_0;
// attn_v, ffn_down and attn_output by the mix (mixType); everything else in
// the mix's type. A matrix whose rows are not whole blocks of its type falls
// back as llama.cpp falls back (Q2_K and Q3_K → Q4_0, Q4_K → Q5_0, Q5_K →
// Q5_1, Q6_K → Q8_0, then F16). Phi-3's fused q/k/v matrix follows the
// attn_v rule, as in llama.cpp. It returns how many matrices got each type.
func (m *Model) Quantize(mix string) (map[tensor.DType]int, error) {
	base, ok := mixBase[mix]
	if !ok {
		return nil, fmt.Errorf("quantize: %q: want one of %v", mix, Mixes)
	}
	counts := map[tensor.DType]int{}
	err := visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		t := p.Matrix()
		if t == nil {
			return nil
		}
		want := base
		// Phi-3's fused q/k/v matrix counts as attn_v.
		fused, _, _ := m.fusionOf(p)
		role := ""
		if layer, ok := strings.CutPrefix(p.GGUF, "blk."); ok {
			_, role, _ = strings.Cut(layer, ".")
		}
		if fused != nil && fused.gguf == "attn_qkv.weight" {
			role = "attn_v.weight"
		}
		switch {
		case p.GGUF == "output.weight" || (m.TiedEmbedding && p.GGUF == "token_embd.weight"):
			if base != tensor.Q8_0 {
				want = tensor.Q6_K
			}
			if t.Cols()%base.BlockSize() != 0 {
				want = tensor.Q8_0
			}
		default:
			want = m.mixType(mix, base, role, p.Layer)
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

// mixType is the type llama.cpp's mix gives a layer's matrix by its role
// (the GGUF name after "blk.N."): the _M mixes spend Q6_K on attn_v and
// ffn_down in the first and last eighth of the layers and every third layer
// between; Q3_K_M puts attn_v in Q5_K for the first two layers and Q4_K
// after, ffn_down in Q5_K for the first sixteenth and Q4_K after, attn_output
// in Q4_K; Q2_K puts ffn_down and attn_output in Q3_K, and attn_v in Q4_K
// where four or more query heads share a key head, else Q3_K.
func (m *Model) mixType(mix string, base tensor.DType, role string, layer int) tensor.DType {
	n := m.NumLayers
	moreBits := layer < n/8 || layer >= 7*n/8 || (layer-n/8)%3 == 2
	switch mix + " " + role {
	case "Q4_K_M attn_v.weight", "Q4_K_M ffn_down.weight", "Q5_K_M attn_v.weight", "Q5_K_M ffn_down.weight":
		if moreBits {
			return tensor.Q6_K
		}
	case "Q3_K_M attn_v.weight":
		if layer < 2 {
			return tensor.Q5_K
		}
		return tensor.Q4_K
	case "Q3_K_M ffn_down.weight":
		if layer < n/16 {
			return tensor.Q5_K
		}
		return tensor.Q4_K
	case "Q3_K_M attn_output.weight":
		return tensor.Q4_K
	case "Q2_K attn_v.weight":
		if m.Heads/m.KVHeads >= 4 {
			return tensor.Q4_K
		}
		return tensor.Q3_K
	case "Q2_K ffn_down.weight", "Q2_K attn_output.weight":
		return tensor.Q3_K
	}
	return base
}

// fallback is llama.cpp's substitute for a type whose blocks do not fit a
// row of cols elements.
func fallback(d tensor.DType, cols int) tensor.DType {
	substitute := map[tensor.DType]tensor.DType{tensor.Q2_K: tensor.Q4_0, tensor.Q3_K: tensor.Q4_0, tensor.Q4_K: tensor.Q5_0,
		tensor.Q5_K: tensor.Q5_1, tensor.Q6_K: tensor.Q8_0}
	for _, next := range []tensor.DType{d, substitute[d]} {
		if next != 0 && cols%next.BlockSize() == 0 {
			return next
		}
	}
	return tensor.F16
}
