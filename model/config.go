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
	Arch        string // "llama", "qwen2", "qwen3", "gemma2", "gemma3", "granite", "phi3" (Mistral and SmolLM run as "llama")
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
	// SlidingPattern says which layers the window applies to: 0 every
	// layer (Mistral); n > 0 every layer but each n-th, that is layer l
	// slides unless l%n == n−1 (Gemma 2: 2, Gemma 3: 6).
	SlidingPattern int
	// RoPELocalTheta is the RoPE base of the sliding layers when it differs
	// from RoPETheta (Gemma 3's local layers: 10,000, without the global
	// layers' frequency factors); 0 = the global settings everywhere.
	RoPELocalTheta float64

	// Gemma 2 and 3, Granite. Zero values give the Llama block.
	GELU          bool    // GeGLU (tanh-approximate GELU) instead of SwiGLU (Gemma)
	PostNorms     bool    // RMSNorm on the attention and FFN outputs before each residual add (Gemma)
	EmbedScale    float32 // embeddings are multiplied by this (Gemma: √Hidden; Granite); 0 = 1
	AttnScale     float32 // query scale; 0 = 1/√HeadDim
	AttnSoftcap   float32 // attention scores s → c·tanh(s/c); 0 = off (Gemma 2)
	FinalSoftcap  float32 // logits likewise
	ResidualScale float32 // each block's two terms are multiplied by this before they are added (Granite); 0 = 1
	LogitDivisor  float32 // logits are divided by this (Granite's logits_scaling); 0 = 1
	BOS, EOS      []int
}

// Sliding reports whether layer l attends within the sliding window.
func (c *Config) Sliding(l int) bool {
	if c.SlidingWindow <= 0 {
		return false
	}
	n := c.SlidingPattern
	return n <= 0 || l%n != n-1
}

// QueryScale is the factor attention scores are scaled by.
func (c *Config) QueryScale() float32 {
	if c.AttnScale != 0 {
		return c.AttnScale
	}
	return float32(1 / math.Sqrt(float64(c.HeadDim)))
}

// orOne reads a scale whose zero value means 1.
func orOne(v float32) float32 {
	if v == 0 {
		return 1
	}
	return v
}

// extras reports any Gemma or Granite feature: what the Llama and Qwen
// blocks do not have.
func (c *Config) extras() bool {
	return c.GELU || c.PostNorms || c.EmbedScale != 0 || c.AttnScale != 0 || c.AttnSoftcap != 0 || c.FinalSoftcap != 0 ||
		c.RoPELocalTheta != 0 || c.ResidualScale != 0 || c.LogitDivisor != 0
}

// gemma reports an architecture whose checkpoints store RMSNorm weights as
// w−1 (its norm computes x·(1+w)); GGUF conversions store w.
func (c *Config) gemma() bool { return c.Arch == "gemma2" || c.Arch == "gemma3" }

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
	case c.SlidingWindow < 0 || c.SlidingPattern < 0 || c.RoPELocalTheta < 0:
		return fmt.Errorf("negative sliding window %d, pattern %d or local rope base %g", c.SlidingWindow, c.SlidingPattern, c.RoPELocalTheta)
	case c.AttnSoftcap < 0 || c.FinalSoftcap < 0 || c.AttnScale < 0 || c.EmbedScale < 0 || c.ResidualScale < 0 || c.LogitDivisor < 0 ||
		anyNonFinite(c.AttnSoftcap, c.FinalSoftcap, c.AttnScale, c.EmbedScale, c.ResidualScale, c.LogitDivisor):
		return fmt.Errorf("attention scale %g, embedding scale %g, residual scale %g, logit divisor %g and soft caps %g, %g must be non-negative numbers",
			c.AttnScale, c.EmbedScale, c.ResidualScale, c.LogitDivisor, c.AttnSoftcap, c.FinalSoftcap)
	}
	if c.MaxSeq <= 0 {
		c.MaxSeq = 4096
	}
	return nil
}

// anyNonFinite reports a NaN or an infinity among v.
func anyNonFinite(v ...float32) bool {
	for _, x := range v {
		if x != x || math.IsInf(float64(x), 0) {
			return true
		}
	}
	return false
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
	HiddenActivation      string          `json:"hidden_activation"` // Gemma's name for it
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
	SlidingWindow         *int            `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	SlidingWindowPattern  int             `json:"sliding_window_pattern"`
	LayerTypes            []string        `json:"layer_types"`
	RoPELocalBaseFreq     float64         `json:"rope_local_base_freq"`
	QueryPreAttnScalar    float64         `json:"query_pre_attn_scalar"`
	AttnLogitSoftcapping  *float64        `json:"attn_logit_softcapping"`
	EmbeddingMultiplier   float64         `json:"embedding_multiplier"` // Granite
	ResidualMultiplier    float64         `json:"residual_multiplier"`
	AttentionMultiplier   float64         `json:"attention_multiplier"`
	LogitsScaling         float64         `json:"logits_scaling"`
	PartialRotaryFactor   *float64        `json:"partial_rotary_factor"` // Phi-3 family
	FinalLogitSoftcapping *float64        `json:"final_logit_softcapping"`
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
	"Gemma2ForCausalLM":  "gemma2",
	"Gemma3ForCausalLM":  "gemma3",
	"GraniteForCausalLM": "granite",
	"Phi3ForCausalLM":    "phi3",
}

// supportedHF names the architectures for error messages.
const supportedHF = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, GraniteForCausalLM, Phi3ForCausalLM"

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
		hint := ""
		if h.Architectures[0] == "Gemma3ForConditionalGeneration" {
			hint = "; the text model of a multimodal Gemma 3 checkpoint must be saved on its own as Gemma3ForCausalLM"
		}
		return nil, fmt.Errorf("%s: architectures %q: %w (supported: %s%s)", name, h.Architectures[0], ErrUnsupported, supportedHF, hint)
	}
	gemma := arch == "gemma2" || arch == "gemma3"
	act, want := h.HiddenAct, "silu"
	if gemma {
		want = "gelu_pytorch_tanh"
		if h.HiddenActivation != "" {
			act = h.HiddenActivation
		}
	}
	if act != "" && act != want {
		return nil, fmt.Errorf("%s: activation %q: %w (%s runs %s)", name, act, ErrUnsupported, h.Architectures[0], want)
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
		QKNorm:  arch == "qwen3" || arch == "gemma3",
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
	if f := h.PartialRotaryFactor; f != nil && *f != 1 {
		return nil, fmt.Errorf("%s: partial_rotary_factor %g: %w (RoPE over whole heads only)", name, *f, ErrUnsupported)
	}
	if h.SlidingWindow != nil && (h.UseSlidingWindow == nil || *h.UseSlidingWindow) && (arch == "llama" || arch == "phi3") {
		c.SlidingWindow = *h.SlidingWindow
	}
	if gemma {
		if err := h.gemma(c, arch); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if arch == "granite" {
		c.EmbedScale, c.ResidualScale = float32(h.EmbeddingMultiplier), float32(h.ResidualMultiplier)
		c.AttnScale, c.LogitDivisor = float32(h.AttentionMultiplier), float32(h.LogitsScaling)
	}
	if s := h.RoPEScaling; s != nil {
		kind := s.RoPEType
		if kind == "" {
			kind = s.Type
		}
		switch kind {
		case "", "default":
		case "linear":
			if s.Factor <= 0 {
				return nil, fmt.Errorf("%s: rope_scaling linear: need factor > 0", name)
			}
			c.RoPEScaling, c.RoPEFactors = kind, linearFactors(c.HeadDim, s.Factor)
		case "llama3":
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPos <= 0 {
				return nil, fmt.Errorf("%s: rope_scaling llama3: need factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0", name)
			}
			sc := s.Llama3Scaling
			c.RoPEScaling, c.Llama3Scaling = kind, &sc
			c.RoPEFactors = sc.Factors(c.HeadDim, c.RoPETheta)
		default:
			return nil, fmt.Errorf("%s: rope_scaling type %q: %w (supported: linear, llama3; Phi-3's 128k LongRoPE models are not)", name, kind, ErrUnsupported)
		}
	}
	c.BOS = tokenIDs(h.BOSTokenID)
	c.EOS = tokenIDs(h.EOSTokenID)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// gemma sets what Gemma 2 and 3 configs add, with the defaults of their
// transformers config classes where a field is absent.
func (h *hfConfig) gemma(c *Config, arch string) error {
	c.GELU, c.PostNorms = true, true
	c.EmbedScale = float32(math.Sqrt(float64(c.Hidden)))
	scalar, window, pattern := 256.0, 4096, 2
	if arch == "gemma3" {
		pattern = 6
		c.RoPELocalTheta = 10000
		if h.RoPELocalBaseFreq > 0 {
			c.RoPELocalTheta = h.RoPELocalBaseFreq
		}
		if h.SlidingWindowPattern > 0 {
			pattern = h.SlidingWindowPattern
		}
	} else {
		c.AttnSoftcap, c.FinalSoftcap = 50, 30
	}
	if h.QueryPreAttnScalar > 0 {
		scalar = h.QueryPreAttnScalar
	}
	c.AttnScale = float32(1 / math.Sqrt(scalar))
	if h.SlidingWindow != nil {
		window = *h.SlidingWindow
	}
	if h.LayerTypes != nil {
		p, err := slidingPattern(h.LayerTypes)
		if err != nil {
			return err
		}
		pattern = p
	}
	c.SlidingWindow, c.SlidingPattern = window, pattern
	if v := h.AttnLogitSoftcapping; v != nil {
		c.AttnSoftcap = float32(*v)
	}
	if v := h.FinalLogitSoftcapping; v != nil {
		c.FinalSoftcap = float32(*v)
	}
	// Tied unless the config says otherwise (both config classes default
	// to tied; LoadHF also ties when lm_head is absent).
	c.TiedEmbedding = h.TieWordEmbeddings == nil || *h.TieWordEmbeddings
	return nil
}

// slidingPattern turns a layer_types list ("sliding_attention",
// "full_attention") into the period n for which layer l is full exactly
// when l%n == n−1, the only arrangement the engine and llama.cpp run.
func slidingPattern(types []string) (int, error) {
	for n := 1; n <= len(types)+1; n++ {
		ok := true
		for l, t := range types {
			full := l%n == n-1
			if t != "sliding_attention" && t != "full_attention" {
				return 0, fmt.Errorf("layer_types[%d] %q: %w", l, t, ErrUnsupported)
			}
			if full != (t == "full_attention") {
				ok = false
				break
			}
		}
		if ok {
			return n, nil
		}
	}
	return 0, fmt.Errorf("layer_types %v: not every n-th layer full: %w", types, ErrUnsupported)
}

// linearFactors divides every RoPE frequency by the same factor: linear
// position interpolation, as a frequency-factor vector.
func linearFactors(headDim int, factor float64) []float32 {
	out := make([]float32, headDim/2)
	for i := range out {
		out[i] = float32(factor)
	}
	return out
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
