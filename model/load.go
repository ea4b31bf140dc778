package model

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"persona/gguf"
	"persona/safetensors"
)

// Load opens a model: a Hugging Face directory (config.json plus
// model.safetensors or a sharded index) or a GGUF file. Weights stay
// memory-mapped; Close releases them.
func Load(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return LoadHF(path)
	}
	return LoadGGUF(path)
}

// LoadHF loads a Hugging Face model directory.
func LoadHF(dir string) (*Model, error) {
	cfg, err := ReadHFConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenSet(dir)
	if err != nil {
		return nil, err
	}
	if !set.Has("lm_head.weight") {
		cfg.TiedEmbedding = true
	}
	m := &Model{Config: *cfg, Source: dir + " (safetensors)", closer: set.Close}
	if err := m.bind(set, hfNames); err != nil {
		set.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

// ggufSource adapts a GGUF file to the binder.
type ggufSource struct {
	*gguf.File
	names map[string]bool
}

func (g ggufSource) Has(name string) bool { return g.names[name] }

// ggufArchitectures lists the general.architecture values we run, and the
// RoPE pairing llama.cpp's converter leaves their q/k weights in.
var ggufArchitectures = map[string]RoPEStyle{
	"llama":   RoPEInterleave,
	"qwen2":   RoPEHalf,
	"qwen3":   RoPEHalf,
	"gemma2":  RoPEHalf,
	"gemma3":  RoPEHalf,
	"granite": RoPEInterleave,
	"phi3":    RoPEHalf,
}

// LoadGGUF loads a GGUF file (v1–v3; F32, F16, BF16 and Q8_0 tensors).
func LoadGGUF(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := FromGGUF(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// GGUFConfig reads the model hyper-parameters from GGUF metadata.
func GGUFConfig(f *gguf.File) (*Config, error) {
	arch, ok := f.String("general.architecture")
	if !ok {
		return nil, errors.New("metadata general.architecture is missing")
	}
	style, ok := ggufArchitectures[arch]
	if !ok {
		return nil, fmt.Errorf("general.architecture %q: %w (supported: llama, qwen2, qwen3, gemma2, gemma3, granite, phi3)", arch, ErrUnsupported)
	}
	var missing []string
	get := func(key string, def int) int {
		if v, ok := f.Uint(arch + "." + key); ok {
			return int(min(v, 1<<31))
		}
		if def < 0 {
			missing = append(missing, arch+"."+key)
		}
		return def
	}
	c := &Config{Arch: arch, HFArch: arch, RoPEStyle: style}
	c.Hidden = get("embedding_length", -1)
	c.FFN = get("feed_forward_length", -1)
	c.NumLayers = get("block_count", -1)
	c.Heads = get("attention.head_count", -1)
	if len(missing) > 0 {
		return nil, fmt.Errorf("metadata %s is missing", strings.Join(missing, ", "))
	}
	c.KVHeads = get("attention.head_count_kv", c.Heads)
	if c.Heads > 0 {
		c.HeadDim = get("attention.key_length", c.Hidden/c.Heads)
	}
	c.MaxSeq = get("context_length", 4096)
	c.NormEps = 1e-5
	if v, ok := f.Float(arch + ".attention.layer_norm_rms_epsilon"); ok {
		c.NormEps = float32(v)
	}
	c.RoPETheta = 10000
	if v, ok := f.Float(arch + ".rope.freq_base"); ok {
		c.RoPETheta = v
	}
	// llama.cpp reads a missing scaling type as linear, with a factor
	// that is 1 unless stated.
	if s, ok := f.String(arch + ".rope.scaling.type"); ok && s != "none" && s != "linear" {
		return nil, fmt.Errorf("%s.rope.scaling.type %q: %w (supported: none, linear)", arch, s, ErrUnsupported)
	}
	factor, ok := f.Float(arch + ".rope.scaling.factor")
	if !ok {
		factor, _ = f.Float(arch + ".rope.scale_linear")
	}
	if factor < 0 || factor != factor {
		return nil, fmt.Errorf("%s.rope.scaling.factor %g: must be positive", arch, factor)
	}
	if toks, ok := f.Strings("tokenizer.ggml.tokens"); ok {
		c.Vocab = len(toks)
	}
	c.Vocab = get("vocab_size", c.Vocab)
	c.QKNorm = arch == "qwen3" || arch == "gemma3"
	c.QKVBias = arch == "qwen2"
	if c.gemma() {
		ggufGemma(f, c)
	}
	if arch == "granite" {
		for key, dst := range map[string]*float32{"embedding_scale": &c.EmbedScale, "residual_scale": &c.ResidualScale,
			"attention.scale": &c.AttnScale, "logit_scale": &c.LogitDivisor} {
			if v, ok := f.Float(arch + "." + key); ok {
				*dst = float32(v)
			}
		}
	}
	// RoPE factors need the head dimension; linear scaling is set after it.
	if factor > 0 && factor != 1 {
		c.RoPEScaling, c.RoPEFactors = "linear", linearFactors(c.HeadDim, factor)
	}
	if id, ok := f.Uint("tokenizer.ggml.bos_token_id"); ok {
		c.BOS = []int{int(id)}
	}
	if id, ok := f.Uint("tokenizer.ggml.eos_token_id"); ok {
		c.EOS = []int{int(id)}
	}
	return c, nil
}

// ggufGemma reads Gemma 2 and 3 metadata with llama.cpp's defaults: Gemma 2
// soft-caps attention (50) and logits (30) and slides every other layer over
// 4,096 positions unless told otherwise; Gemma 3 slides only when a window
// is stated (five layers in six), its local layers on a RoPE base of 10,000,
// and caps logits only when stated. The query scale is not stored:
// llama.cpp, after Google's reference code, takes 1/√(Hidden/Heads) for the
// 27B models (46 and 62 layers) and 1/√HeadDim otherwise.
func ggufGemma(f *gguf.File, c *Config) {
	arch := c.Arch
	num := func(key string, def float64) float64 {
		if v, ok := f.Float(arch + "." + key); ok {
			return v
		}
		if v, ok := f.Uint(arch + "." + key); ok {
			return float64(v)
		}
		return def
	}
	ggufGemmaScales(c)
	if arch == "gemma2" {
		c.AttnSoftcap = float32(num("attn_logit_softcapping", 50))
		c.FinalSoftcap = float32(num("final_logit_softcapping", 30))
		c.SlidingWindow = int(num("attention.sliding_window", 4096))
		c.SlidingPattern = int(num("attention.sliding_window_pattern", 2))
		if b := num("rope.freq_base_swa", 0); b > 0 {
			c.RoPELocalTheta = b
		}
		return
	}
	c.FinalSoftcap = float32(num("final_logit_softcapping", 0))
	if w := int(num("attention.sliding_window", 0)); w > 0 {
		c.SlidingWindow = w
		c.SlidingPattern = int(num("attention.sliding_window_pattern", 6))
		c.RoPELocalTheta = num("rope.freq_base_swa", 10000)
	}
}

// ggufGemmaScales sets the Gemma block and the scales llama.cpp fixes for
// its shape.
func ggufGemmaScales(c *Config) {
	c.GELU, c.PostNorms = true, true
	c.EmbedScale = float32(math.Sqrt(float64(c.Hidden)))
	c.AttnScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	if (c.Arch == "gemma2" && c.NumLayers == 46) || (c.Arch == "gemma3" && c.NumLayers == 62) {
		c.AttnScale = float32(1 / math.Sqrt(float64(c.Hidden/c.Heads)))
	}
}

// FromGGUF binds a model to an open GGUF file; the model's Close closes f.
func FromGGUF(f *gguf.File) (*Model, error) {
	m, err := fromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", f.Path, err)
	}
	m.Source, m.closer = f.Path+" (GGUF)", f.Close
	return m, nil
}

func fromGGUF(f *gguf.File) (*Model, error) {
	cfg, err := GGUFConfig(f)
	if err != nil {
		return nil, err
	}
	src := ggufSource{File: f, names: map[string]bool{}}
	for _, t := range f.Tensors {
		src.names[t.Name] = true
	}
	if cfg.Vocab == 0 && src.names["token_embd.weight"] {
		if t, err := f.Tensor("token_embd.weight"); err == nil && len(t.Shape) == 2 {
			cfg.Vocab = t.Shape[0]
		}
	}
	cfg.TiedEmbedding = !src.names["output.weight"]
	cfg.QKVBias = cfg.QKVBias || src.names["blk.0.attn_q.bias"]
	if src.names["rope_factors_long.weight"] {
		return nil, fmt.Errorf("rope_factors_long.weight: LongRoPE (Phi-3 128k): %w", ErrUnsupported)
	}
	if src.names["rope_freqs.weight"] {
		t, err := f.Tensor("rope_freqs.weight")
		if err != nil {
			return nil, err
		}
		cfg.RoPEFactors, cfg.RoPEScaling = t.ToF32(), "rope_freqs"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: *cfg}
	if err := m.bind(src, ggufNames); err != nil {
		return nil, err
	}
	return m, nil
}
