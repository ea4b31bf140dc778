package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// RoPEStyle says which pairs of a head's dimensions RoPE rotates together.
// Hugging Face checkpoints rotate dimension i with i+head_dim/2 ("rotate
// half"); llama.cpp's GGUF conversion of Llama models permutes the q/k rows
// back to Meta's original layout, where adjacent dimensions (2i, 2i+1) form a
// pair. The weights and the style must agree; loaders set it.
type RoPEStyle int

const (
	RoPEHalf       RoPEStyle = iota // (i, i+d/2): HF, and llama.cpp's NEOX mode (Qwen2/3 in GGUF)
	RoPEInterleave                  // (2i, 2i+1): Meta's layout, llama.cpp's NORM mode (Llama in GGUF)
)

func (s RoPEStyle) String() string {
	if s == RoPEInterleave {
		return "interleaved"
	}
	return "half-split"
}

// Config holds every hyper-parameter the forward pass needs, read in one place
// from config.json or GGUF metadata.
type Config struct {
	Arch        string // "llama", "qwen2", "qwen3" (Mistral and SmolLM run as "llama")
	HFArch      string // the architectures[0] or general.architecture value as found
	Hidden      int
	FFN         int
	NumLayers   int
	Heads       int
	KVHeads     int
	HeadDim     int
	Vocab       int
	MaxSeq      int
	NormEps     float32
	RoPETheta   float64
	RoPEStyle   RoPEStyle
	RoPEFactors []float32 // optional per-frequency divisors (Llama 3 "llama3" scaling); len HeadDim/2
	RoPEScaling string    // "" or the rope_scaling type the factors came from
	// Llama3Scaling keeps config.json's llama3 rope_scaling parameters so an
	// export can write them back.
	Llama3Scaling *Llama3Scaling
	TiedEmbedding bool
	QKVBias       bool // Qwen2: biases on q, k and v projections
	QKNorm        bool // Qwen3: RMSNorm over each head of q and k before RoPE
	SlidingWindow int  // 0 = full causal attention
	BOS, EOS      []int
}

// Validate checks the invariants the forward pass relies on.
func (c *Config) Validate() error {
	switch {
	case c.Hidden <= 0 || c.NumLayers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.FFN <= 0 || c.Vocab <= 0:
		return fmt.Errorf("non-positive size in config: hidden %d, layers %d, heads %d, kv heads %d, head dim %d, ffn %d, vocab %d",
			c.Hidden, c.NumLayers, c.Heads, c.KVHeads, c.HeadDim, c.FFN, c.Vocab)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("attention heads %d not a multiple of key/value heads %d", c.Heads, c.KVHeads)
	case c.HeadDim%2 != 0:
		return fmt.Errorf("head dim %d is odd; RoPE needs pairs", c.HeadDim)
	case c.Hidden > 1<<16 || c.FFN > 1<<18 || c.NumLayers > 1024 || c.Heads > 1024 || c.Vocab > 1<<22 || c.HeadDim > 1024:
		return fmt.Errorf("implausible sizes in config (hidden %d, ffn %d, layers %d, heads %d, vocab %d)", c.Hidden, c.FFN, c.NumLayers, c.Heads, c.Vocab)
	case c.RoPEFactors != nil && len(c.RoPEFactors) != c.HeadDim/2:
		return fmt.Errorf("rope frequency factors: have %d, want head_dim/2 = %d", len(c.RoPEFactors), c.HeadDim/2)
	case c.NormEps <= 0 || c.RoPETheta <= 0:
		return fmt.Errorf("rms_norm_eps %g and rope_theta %g must be positive", c.NormEps, c.RoPETheta)
	}
	if c.MaxSeq <= 0 {
		c.MaxSeq = 4096
	}
	return nil
}

// ErrUnsupported marks a model this engine cannot run.
var ErrUnsupported = fmt.Errorf("unsupported model")

// hfConfig mirrors the fields of a Hugging Face config.json that matter here.
type hfConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumHiddenLayers       int             `json:"num_hidden_layers"`
	NumAttentionHeads     int             `json:"num_attention_heads"`
	NumKeyValueHeads      int             `json:"num_key_value_heads"`
	HeadDim               int             `json:"head_dim"`
	VocabSize             int             `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            float64         `json:"rms_norm_eps"`
	RoPETheta             float64         `json:"rope_theta"`
	RoPEScaling           *hfRoPEScaling  `json:"rope_scaling"`
	HiddenAct             string          `json:"hidden_act"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
	SlidingWindow         *int            `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
}

type hfRoPEScaling struct {
	RoPEType string `json:"rope_type"`
	Type     string `json:"type"`
	Llama3Scaling
}

// Llama3Scaling is config.json's rope_scaling for rope_type "llama3".
type Llama3Scaling struct {
	Factor         float64 `json:"factor"`
	LowFreqFactor  float64 `json:"low_freq_factor"`
	HighFreqFactor float64 `json:"high_freq_factor"`
	OriginalMaxPos float64 `json:"original_max_position_embeddings"`
}

// Factors returns the per-frequency divisors (see Llama3RoPEFactors).
func (s *Llama3Scaling) Factors(headDim int, theta float64) []float32 {
	return Llama3RoPEFactors(headDim, theta, s.Factor, s.LowFreqFactor, s.HighFreqFactor, s.OriginalMaxPos)
}

// hfArchitectures maps the architectures[0] values we run to our arch names.
var hfArchitectures = map[string]string{
	"LlamaForCausalLM":   "llama",
	"MistralForCausalLM": "llama",
	"Qwen2ForCausalLM":   "qwen2",
	"Qwen3ForCausalLM":   "qwen3",
}

// ReadHFConfig parses a Hugging Face config.json.
func ReadHFConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseHFConfig(data, path)
}

// ParseHFConfig parses config.json bytes; name is used in error messages.
func ParseHFConfig(data []byte, name string) (*Config, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(h.Architectures) == 0 {
		return nil, fmt.Errorf("%s: field \"architectures\" is missing or empty", name)
	}
	arch, ok := hfArchitectures[h.Architectures[0]]
	if !ok {
		return nil, fmt.Errorf("%s: architectures %q: %w (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)", name, h.Architectures[0], ErrUnsupported)
	}
	if h.HiddenAct != "" && h.HiddenAct != "silu" {
		return nil, fmt.Errorf("%s: hidden_act %q: %w (only silu)", name, h.HiddenAct, ErrUnsupported)
	}
	if h.MLPBias {
		return nil, fmt.Errorf("%s: mlp_bias true: %w", name, ErrUnsupported)
	}
	c := &Config{
		Arch: arch, HFArch: h.Architectures[0],
		Hidden: h.HiddenSize, FFN: h.IntermediateSize, NumLayers: h.NumHiddenLayers,
		Heads: h.NumAttentionHeads, KVHeads: h.NumKeyValueHeads, HeadDim: h.HeadDim,
		Vocab: h.VocabSize, MaxSeq: h.MaxPositionEmbeddings,
		NormEps: float32(h.RMSNormEps), RoPETheta: h.RoPETheta, RoPEStyle: RoPEHalf,
		QKVBias: arch == "qwen2" || h.AttentionBias,
		QKNorm:  arch == "qwen3",
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.RoPETheta == 0 {
		c.RoPETheta = 10000
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-6
	}
	// Llama defaults to untied embeddings, Qwen2/3 configs state theirs.
	c.TiedEmbedding = h.TieWordEmbeddings != nil && *h.TieWordEmbeddings
	if h.SlidingWindow != nil && (h.UseSlidingWindow == nil || *h.UseSlidingWindow) && arch == "llama" {
		c.SlidingWindow = *h.SlidingWindow
	}
	if s := h.RoPEScaling; s != nil {
		kind := s.RoPEType
		if kind == "" {
			kind = s.Type
		}
		switch kind {
		case "", "default":
		case "llama3":
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPos <= 0 {
				return nil, fmt.Errorf("%s: rope_scaling llama3: need factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0", name)
			}
			sc := s.Llama3Scaling
			c.RoPEScaling, c.Llama3Scaling = kind, &sc
			c.RoPEFactors = sc.Factors(c.HeadDim, c.RoPETheta)
		default:
			return nil, fmt.Errorf("%s: rope_scaling type %q: %w (supported: llama3)", name, kind, ErrUnsupported)
		}
	}
	c.BOS = tokenIDs(h.BOSTokenID)
	c.EOS = tokenIDs(h.EOSTokenID)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// tokenIDs reads a token id field that may be a number, a list or null.
func tokenIDs(raw json.RawMessage) []int {
	var one int
	if json.Unmarshal(raw, &one) == nil && len(raw) > 0 && string(raw) != "null" {
		return []int{one}
	}
	var many []int
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}

// Llama3RoPEFactors returns, per rotary frequency, the divisor that Llama 3's
// "llama3" rope scaling applies to it: 1 for high frequencies (short
// wavelengths), factor for low ones, and a smooth blend in between. Dividing
// the inverse frequency by these factors is how llama.cpp applies the same
// scaling (its rope_freqs tensor), so one mechanism serves both file formats.
func Llama3RoPEFactors(headDim int, theta, factor, lowFreqFactor, highFreqFactor, origMaxPos float64) []float32 {
	lowWavelen := origMaxPos / lowFreqFactor
	highWavelen := origMaxPos / highFreqFactor
	out := make([]float32, headDim/2)
	for i := range out {
		invFreq := math.Pow(theta, -float64(2*i)/float64(headDim))
		wavelen := 2 * math.Pi / invFreq
		var scaled float64
		switch {
		case wavelen < highWavelen:
			scaled = invFreq
		case wavelen > lowWavelen:
			scaled = invFreq / factor
		default:
			smooth := (origMaxPos/wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
			scaled = (1-smooth)*invFreq/factor + smooth*invFreq
		}
		out[i] = float32(invFreq / scaled)
	}
	return out
}
