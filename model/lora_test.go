package model

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loraModel(t *testing.T, dropout float32) *Model {
	t.Helper()
	m, err := NewRandom(testConfigs()["llama3-gqa-rope-scaling"], 21)
	if err != nil {
		t.Fatal(err)
	}
	m.TrainableF32()
	if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8, Dropout: dropout, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}}, 1); err != nil {
		t.Fatal(err)
	}
	// Fresh adapters are the identity (B = 0); give B values so every path matters.
	r := rand.New(rand.NewPCG(8, 9))
	for i := range m.Layers {
		for _, a := range m.Layers[i].LoRA {
			for j := range a.B {
				a.B[j] = float32(r.NormFloat64() * 0.05)
			}
		}
	}
	return m
}

func TestLoRAGradients(t *testing.T) {
	m := loraModel(t, 0)
	g, err := m.NewLoRAGrads()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	row := packedRow(r, []int{6, 6}, m.Vocab)
	if _, _, err := m.ForwardBackward(row, g, TrainOptions{Scale: 1}); err != nil {
		t.Fatal(err)
	}
	params := m.Params(g)
	if len(params) != 2*7*m.NumLayers {
		t.Fatalf("%d trainable tensors, want A and B for 7 linears × %d layers", len(params), m.NumLayers)
	}
	f := func() float64 { l, _, _ := m.Loss(row, nil); return l }
	for _, p := range params {
		directionalCheck(t, p.Name, p.W, p.G, f, r)
	}
}

// Dropout masks come from the seed: the same seed gives the same gradient,
// another seed a different one.
func TestLoRADropoutSeeded(t *testing.T) {
	m := loraModel(t, 0.3)
	row := packedRow(rand.New(rand.NewPCG(3, 4)), []int{10}, m.Vocab)
	grad := func(seed uint64) []float32 {
		g, _ := m.NewLoRAGrads()
		m.ForwardBackward(row, g, TrainOptions{Scale: 1, Seed: seed})
		return append([]float32(nil), m.Params(g)[0].G...)
	}
	a, b, c := grad(5), grad(5), grad(6)
	if maxDiff(a, b) != 0 {
		t.Fatal("same seed, different gradients")
	}
	if maxDiff(a, c) == 0 {
		t.Fatal("different seeds, same gradients: dropout inactive")
	}
}

// Adapters applied at inference equal the merged weights; PEFT files round-trip.
func TestLoRAMergeAndFiles(t *testing.T) {
	m := loraModel(t, 0)
	withAdapters := m.Forward(m.NewState(), probeIDs, nil, AllLogits)

	dir := t.TempDir()
	if err := m.SaveLoRA(dir, "organism"); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	for _, want := range []string{`"peft_type": "LORA"`, `"q_proj"`, `"down_proj"`, `"r": 4`, `"lora_alpha": 8`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("adapter_config.json lacks %s:\n%s", want, cfg)
		}
	}
	fresh, _ := NewRandom(testConfigs()["llama3-gqa-rope-scaling"], 21)
	base := fresh.Forward(fresh.NewState(), probeIDs, nil, AllLogits)
	if err := fresh.LoadLoRA(dir); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(fresh.Forward(fresh.NewState(), probeIDs, nil, AllLogits), withAdapters); d != 0 {
		t.Fatalf("reloaded adapters differ by %.3g", d)
	}
	if maxDiff(base, withAdapters) < 1e-3 {
		t.Fatal("adapters do not change the model; the test cannot tell")
	}
	m.MergeLoRA()
	merged := m.Forward(m.NewState(), probeIDs, nil, AllLogits)
	if d := maxDiff(merged, withAdapters); d > 1e-4*maxAbs(withAdapters) {
		t.Fatalf("merged model differs from adapters by %.3g", d)
	}
}

func maxAbs(x []float32) float64 {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

func TestLoRABadConfigs(t *testing.T) {
	m, _ := NewRandom(testConfigs()["qwen2-bias"], 1)
	for _, c := range []LoRAConfig{
		{Rank: 0, Alpha: 1, Targets: []string{"q"}},
		{Rank: 4, Alpha: 0, Targets: []string{"q"}},
		{Rank: 4, Alpha: 8, Dropout: 1, Targets: []string{"q"}},
		{Rank: 4, Alpha: 8, Targets: []string{"attn"}},
		{Rank: 4, Alpha: 8},
	} {
		if err := m.AddLoRA(c, 1); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := m.LoadLoRA(t.TempDir()); err == nil {
		t.Error("loading adapters from an empty directory succeeded")
	}
}
