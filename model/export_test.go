package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"persona/safetensors"
	"persona/tensor"
)

func maxDiff(a, b []float32) float64 {
	var worst float64
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	return worst
}

var probeIDs = []int{1, 5, 9, 200, 17, 3, 250, 11}

// Every test shape survives a Hugging Face export and reload.
func TestWriteHFRoundTrip(t *testing.T) {
	for name, cfg := range allConfigs() {
		m, err := NewRandom(cfg, 3)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := m.WriteHF(dir); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back := load(t, dir)
		if back.TiedEmbedding != cfg.TiedEmbedding || back.QKVBias != cfg.QKVBias || back.QKNorm != cfg.QKNorm || back.RoPEScaling != cfg.RoPEScaling {
			t.Fatalf("%s: config changed on the way: %+v", name, back.Config)
		}
		a := m.Forward(m.NewState(), probeIDs, nil, AllLogits)
		b := back.Forward(back.NewState(), probeIDs, nil, AllLogits)
		if d := maxDiff(a, b); d != 0 {
			t.Errorf("%s: reloaded model differs by %.3g", name, d)
		}
	}
}

// The stories260K GGUF (Meta's interleaved q/k layout) exported to Hugging
// Face layout equals the reference safetensors conversion tensor for tensor.
func TestGGUFToHFMatchesReferenceConversion(t *testing.T) {
	m := load(t, storiesPaths["gguf-v3"])
	dir := t.TempDir()
	if err := m.WriteHF(dir); err != nil {
		t.Fatal(err)
	}
	ours, err := safetensors.OpenSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	ref, err := safetensors.OpenSet(fixtures + "/stories260K/hf")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, name := range ref.Names() {
		a, err := ours.Tensor(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := ref.Tensor(name)
		if d := maxDiff(a.ToF32(), b.ToF32()); d != 0 {
			t.Errorf("%s differs from the reference conversion by %.3g", name, d)
		}
	}
}

// A checkpoint sharded over two files with an index loads as one.
func TestShardedCheckpoint(t *testing.T) {
	m, err := NewRandom(testConfigs()["qwen2-bias"], 5)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := m.WriteHF(src); err != nil {
		t.Fatal(err)
	}
	one, err := safetensors.OpenSet(src)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	dir := t.TempDir()
	shards := [2][]tensor.Tensor{}
	weightMap := map[string]string{}
	for i, name := range one.Names() {
		tt, _ := one.Tensor(name)
		tt.Name = name
		shards[i%2] = append(shards[i%2], tt)
		weightMap[name] = fmt.Sprintf("model-%05d-of-00002.safetensors", i%2+1)
	}
	for i, sh := range shards {
		if err := safetensors.Write(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)), sh, nil); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644)
	cfg, _ := os.ReadFile(filepath.Join(src, "config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	back := load(t, dir)
	a := m.Forward(m.NewState(), probeIDs, nil, AllLogits)
	b := back.Forward(back.NewState(), probeIDs, nil, AllLogits)
	if d := maxDiff(a, b); d != 0 {
		t.Fatalf("sharded model differs by %.3g", d)
	}
}

// config.json's llama3 rope_scaling gives Llama 3.1's published frequency
// factors: high frequencies untouched, low ones divided by the factor.
func TestLlama3ScalingFromConfig(t *testing.T) {
	c, err := ParseHFConfig([]byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":14336,
	"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"rms_norm_eps":1e-5,
	"rope_theta":500000.0,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
	"original_max_position_embeddings":8192,"rope_type":"llama3"}}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	f := c.RoPEFactors
	if len(f) != 64 || f[0] != 1 || f[63] != 8 {
		t.Fatalf("factors %v", f)
	}
	for i := 1; i < len(f); i++ {
		if f[i] < f[i-1] {
			t.Fatalf("factors not monotone at %d: %v", i, f)
		}
	}
	// Somewhere in the middle band the factor is strictly between 1 and 8.
	mid := false
	for _, x := range f {
		mid = mid || (x > 1 && x < 8)
	}
	if !mid {
		t.Fatal("no smoothly interpolated factor")
	}
}
