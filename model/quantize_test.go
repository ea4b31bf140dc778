package model

import (
	"math"
	"slices"
	"testing"

	"persona/resid"
	"persona/tensor"
)

// A model quantized in memory runs, and the residual-stream interventions
// act on it as on any model: a capture sees every position, steering moves
// the logits. An unknown mix is refused.
func TestQuantizedInterventions(t *testing.T) {
	cfg := testConfigs()["llama3-gqa-rope-scaling"]
	cfg.Hidden, cfg.FFN, cfg.HeadDim = 256, 512, 32
	cfg.RoPEFactors = cfg.Llama3Scaling.Factors(cfg.HeadDim, cfg.RoPETheta)
	m, err := NewRandom(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := m.Quantize("Q4_K_M")
	if err != nil {
		t.Fatal(err)
	}
	if counts[tensor.Q4_K] == 0 || counts[tensor.Q6_K] == 0 || m.Layers[0].Q.DType != tensor.Q4_K {
		t.Fatalf("types %v", counts)
	}
	ids := []int{1, 5, 9, 200}
	plain := m.Forward(m.NewState(), ids, nil, AllLogits)
	v := make([]float32, m.Hidden)
	for i := range v {
		v[i] = float32(math.Cos(float64(i)))
	}
	capture := &resid.Capture{At: 1, Where: resid.All}
	set, err := resid.NewSet(m.NumLayers, m.Hidden, &resid.Add{At: 0, Vector: v, Coeff: 2, Where: resid.All}, capture)
	if err != nil {
		t.Fatal(err)
	}
	steered := m.Forward(m.NewState(), ids, set, AllLogits)
	if len(capture.Rows) != len(ids) || slices.Equal(plain, steered) {
		t.Errorf("captured %d rows of %d; steering changed the logits: %v", len(capture.Rows), len(ids), !slices.Equal(plain, steered))
	}
	if _, err := m.Quantize("Q3_K_XL"); err == nil {
		t.Error("an unknown mix accepted")
	}
}
