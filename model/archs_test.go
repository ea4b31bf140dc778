package model

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"persona/gguf"
	"persona/safetensors"
	"persona/tensor"
)

// The config.json fields of the released Gemma 2 2B and Gemma 3 1B models
// (sizes shrunk; the Gemma fields as published) read as their transformers
// classes read them, defaults included.
func TestGemmaHFConfig(t *testing.T) {
	gemma2 := `{"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
		"head_dim": 32, "vocab_size": 320, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
		"hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256,
		"sliding_window": 4096, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
		"bos_token_id": 2, "eos_token_id": 1}`
	c, err := ParseHFConfig([]byte(gemma2), "gemma2")
	if err != nil {
		t.Fatal(err)
	}
	if !c.GELU || !c.PostNorms || !c.TiedEmbedding || c.QKNorm || c.AttnSoftcap != 50 || c.FinalSoftcap != 30 ||
		c.AttnScale != 1.0/16 || c.EmbedScale != 8 || c.SlidingWindow != 4096 || c.SlidingPattern != 2 || c.RoPELocalTheta != 0 {
		t.Errorf("gemma2: %+v", c)
	}
	if !c.Sliding(0) || c.Sliding(1) || !c.Sliding(2) {
		t.Errorf("gemma2 slides on even layers; got %v %v %v", c.Sliding(0), c.Sliding(1), c.Sliding(2))
	}

	gemma3 := `{"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1,
		"head_dim": 32, "vocab_size": 320, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
		"rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
		"hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256, "sliding_window": 512,
		"layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
			"sliding_attention", "full_attention", "sliding_attention"],
		"attn_logit_softcapping": null, "final_logit_softcapping": null}`
	c, err = ParseHFConfig([]byte(gemma3), "gemma3")
	if err != nil {
		t.Fatal(err)
	}
	if !c.QKNorm || c.AttnSoftcap != 0 || c.FinalSoftcap != 0 || c.SlidingPattern != 6 || c.SlidingWindow != 512 ||
		c.RoPELocalTheta != 10000 || c.RoPEScaling != "linear" || c.RoPEFactors[0] != 8 {
		t.Errorf("gemma3: %+v", c)
	}
	if c.Sliding(5) || !c.Sliding(6) {
		t.Error("gemma3: layer 5 is the full one of six")
	}

	for _, bad := range []struct{ change, want string }{
		{`"Gemma3ForCausalLM"->"Gemma3ForConditionalGeneration"`, "Gemma3ForCausalLM"},
		{`"hidden_activation": "gelu_pytorch_tanh"->"hidden_activation": "gelu"`, "gelu"},
		{`["sliding_attention"->["full_attention"`, "layer_types"},
		{`"rope_type": "linear"->"rope_type": "yarn"`, "yarn"},
	} {
		from, to, _ := strings.Cut(bad.change, "->")
		_, err := ParseHFConfig([]byte(strings.Replace(gemma3, from, to, 1)), "bad")
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v", bad.change, err)
		}
	}
}

// Gemma checkpoints store RMSNorm weights minus one; the export writes them
// so and the loader adds the one back.
func TestGemmaHFNormOffset(t *testing.T) {
	m, err := NewRandom(inferenceConfigs()["gemma3-local-rope"], 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.WriteHF(dir); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for name, ours := range map[string][]float32{
		"model.norm.weight": m.Norm,
		"model.layers.1.pre_feedforward_layernorm.weight":  m.Layers[1].FFNNorm,
		"model.layers.1.post_attention_layernorm.weight":   m.Layers[1].PostAttnNorm,
		"model.layers.2.post_feedforward_layernorm.weight": m.Layers[2].PostFFNNorm,
		"model.layers.0.self_attn.q_norm.weight":           m.Layers[0].QNorm,
	} {
		st, err := set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range st.ToF32() {
			if v != ours[i]-1 {
				t.Fatalf("%s[%d] = %g, want ours − 1 = %g", name, i, v, ours[i]-1)
			}
		}
	}
	back := load(t, dir)
	if back.Layers[1].FFNNorm[3] != m.Layers[1].FFNNorm[3] {
		t.Error("the loader did not add the one back")
	}
}

// What a GGUF file cannot carry for llama.cpp is refused on export, and the
// backward pass refuses the Gemma block rather than train it wrongly.
func TestGemmaRefusals(t *testing.T) {
	for name, change := range map[string]func(*Config){
		"query scale":            func(c *Config) { c.AttnScale = 0.5 },
		"gemma3 attention cap":   func(c *Config) { c.Arch = "gemma3"; c.QKNorm = true },
		"untied gemma2":          func(c *Config) { c.TiedEmbedding = false },
		"llama with post-norms":  func(c *Config) { c.Arch = "llama" },
		"sliding on every layer": func(c *Config) { c.SlidingPattern = 0 },
		"no √hidden embed scale": func(c *Config) { c.EmbedScale = 1 },
	} {
		cfg := inferenceConfigs()["gemma2-softcap-swa"]
		change(&cfg)
		m, err := NewRandom(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		err = m.WriteGGUF(filepath.Join(t.TempDir(), "m.gguf"), SyntheticVocab(cfg.Vocab))
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: export gave %v", name, err)
		}
	}
	m, _ := NewRandom(inferenceConfigs()["gemma2-softcap-swa"], 1)
	r := &Row{Tokens: []int{1, 2, 3}, Targets: []int{2, 3, 4}, Weights: []float32{1, 1, 1}, Start: []int{0, 0, 0}}
	if _, _, err := m.Loss(r, nil); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "gemma2") {
		t.Errorf("training a Gemma model: %v", err)
	}
}

// Granite's config.json multipliers (values of the released 3.x 8B model)
// become the engine's scales; a GGUF export carries them under llama.cpp's
// keys and reads back the same.
func TestGraniteConfig(t *testing.T) {
	c, err := ParseHFConfig([]byte(`{"architectures": ["GraniteForCausalLM"], "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 320, "rms_norm_eps": 1e-05, "rope_theta": 10000000.0, "hidden_act": "silu",
		"embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.0078125,
		"logits_scaling": 16.0, "tie_word_embeddings": true}`), "granite")
	if err != nil {
		t.Fatal(err)
	}
	if c.Arch != "granite" || c.EmbedScale != 12 || c.ResidualScale != 0.22 || c.AttnScale != 0.0078125 || c.LogitDivisor != 16 {
		t.Fatalf("granite: %+v", c)
	}
	m, err := NewRandom(*c, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "granite.gguf")
	if err := m.WriteGGUF(path, SyntheticVocab(c.Vocab)); err != nil {
		t.Fatal(err)
	}
	back := load(t, path)
	if back.EmbedScale != 12 || back.ResidualScale != 0.22 || back.AttnScale != 0.0078125 || back.LogitDivisor != 16 || back.RoPEStyle != RoPEInterleave {
		t.Errorf("GGUF read back %+v", back.Config)
	}
}

// Phi-3 files hold q/k/v and gate/up as single matrices, in both formats;
// the engine splits them on load (views, no copy) and fuses them on export.
// Its 128k LongRoPE variants and partial rotary models are refused.
func TestPhi3FusedFiles(t *testing.T) {
	cfg := testConfigs()["phi3-fused"]
	m, err := NewRandom(cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.WriteHF(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "phi3.gguf")
	if err := m.WriteGGUF(path, SyntheticVocab(cfg.Vocab)); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q, kv := cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim
	for _, c := range []struct {
		has  func(string) bool
		get  func(string) (tensor.Tensor, error)
		qkv  string
		gu   string
		gone []string
	}{
		{set.Has, set.Tensor, "model.layers.1.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight",
			[]string{"model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"}},
		{func(n string) bool { _, err := f.Tensor(n); return err == nil }, f.Tensor, "blk.1.attn_qkv.weight", "blk.1.ffn_up.weight",
			[]string{"blk.1.attn_q.weight", "blk.1.ffn_gate.weight"}},
	} {
		for name, rows := range map[string]int{c.qkv: q + 2*kv, c.gu: 2 * cfg.FFN} {
			st, err := c.get(name)
			if err != nil || st.Shape[0] != rows {
				t.Errorf("%s: %v rows, want %d (%v)", name, st.Shape, rows, err)
			}
		}
		for _, name := range c.gone {
			if c.has(name) {
				t.Errorf("%s stored beside its fused matrix", name)
			}
		}
	}
	for _, p := range []string{dir, path} {
		back := load(t, p)
		v := back.Layers[1].V.ToF32()
		if w := m.Layers[1].V.ToF32(); v[5] != w[5] || back.Layers[1].Up.ToF32()[7] != m.Layers[1].Up.ToF32()[7] {
			t.Errorf("%s: parts read back from the wrong rows", p)
		}
	}

	base := `{"architectures": ["Phi3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 320, "hidden_act": "silu"`
	for extra, want := range map[string]string{
		`, "partial_rotary_factor": 0.75}`:                                                 "partial_rotary_factor",
		`, "rope_scaling": {"type": "longrope", "long_factor": [1], "short_factor": [1]}}`: "longrope",
	} {
		if _, err := ParseHFConfig([]byte(base+extra), "phi3"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", extra, err)
		}
	}
	if c, err := ParseHFConfig([]byte(base+`, "sliding_window": 2047}`), "phi3"); err != nil || c.Arch != "phi3" || c.SlidingWindow != 2047 {
		t.Errorf("phi3 config: %+v, %v", c, err)
	}
}

// Attention over a chunk of queries (matrix products, attnBlock at a time)
// computes what one query at a time computes, for every shape: windows, soft
// caps and local RoPE included, from the start and from the middle of a
// cached sequence.
func TestChunkedAttentionMatchesStepwise(t *testing.T) {
	for name, cfg := range allConfigs() {
		m, err := NewRandom(cfg, 9)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int, 150)
		for i := range ids {
			ids[i] = (i*37 + 11) % cfg.Vocab
		}
		s := m.NewState()
		step := make([]float32, 0, len(ids)*cfg.Vocab)
		for _, id := range ids {
			step = append(step, m.Forward(s, []int{id}, nil, LastLogits)...)
		}
		s = m.NewState()
		chunked := m.Forward(s, ids[:100], nil, AllLogits)
		chunked = append(chunked, m.Forward(s, ids[100:], nil, AllLogits)...)
		if d := maxDiff(step, chunked); d > 1e-4 {
			t.Errorf("%s: chunked attention differs from stepwise by %.3g", name, d)
		}
	}
}
