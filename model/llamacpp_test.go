package model

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"persona/internal/llamaref"
	"persona/internal/testref"
	"persona/tensor"
)

// Random-weight models in shapes the fixtures do not cover, written with our
// GGUF writer, give the same log-probabilities as llama.cpp (F32 KV cache,
// flash attention off) and the same greedy continuation.
//
// Tolerance: 2e-4 on log-probabilities. Both sides compute in float32 but sum
// in different orders; measured differences stay near 2e-5, and a wrong RoPE
// pairing (checked below) is off by orders of magnitude more.
func TestMatchesLlamaCpp(t *testing.T) {
	testref.Require(t, llamaref.Available())
	for name, cfg := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := NewRandom(cfg, 7)
			if err != nil {
				t.Fatal(err)
			}
			compareWithLlamaCpp(t, m, 2e-4, true)
		})
	}
}

// Stored types other than F32 load and run too. llama.cpp rounds activations
// to the weight type inside its dot products (F16, or Q8_0 blocks), which we
// do not, so the tolerance is that rounding's size, not float32 noise.
func TestMatchesLlamaCppStoredTypes(t *testing.T) {
	testref.Require(t, llamaref.Available())
	for _, c := range []struct {
		dtype tensor.DType
		tol   float64
	}{{tensor.F16, 2e-2}, {tensor.BF16, 1e-1}, {tensor.Q8_0, 1e-1}} {
		t.Run(c.dtype.String(), func(t *testing.T) {
			m, err := NewRandom(testConfigs()["llama3-gqa-rope-scaling"], 7)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Convert(c.dtype); err != nil {
				t.Fatal(err)
			}
			compareWithLlamaCpp(t, m, c.tol, false)
		})
	}
}

func compareWithLlamaCpp(t *testing.T, m *Model, tol float64, checkGreedy bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := m.WriteGGUF(path, SyntheticVocab(m.Vocab)); err != nil {
		t.Fatal(err)
	}
	// Run what was written, so the GGUF reader is on the path too.
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	ids := []int{1, 300, 17, 42, 265, 99, 3, 128, 77, 201, 64, 5, 250, 12}
	const nGreedy = 12
	ref, err := llamaref.Run(context.Background(), path, ids, nGreedy, 2)
	if err != nil {
		t.Fatal(err)
	}
	diff := func(mm *Model) float64 {
		logits := mm.Forward(mm.NewState(), ids, nil, AllLogits)
		var worst float64
		for p := range ids {
			row := logits[p*mm.Vocab : (p+1)*mm.Vocab]
			LogSoftmax(row, row)
			for v := range row {
				worst = math.Max(worst, math.Abs(float64(row[v]-ref.LogSoftmax[p][v])))
			}
		}
		return worst
	}
	worst := diff(back)
	t.Logf("max |Δ log-softmax| = %.3g over %d positions", worst, len(ids))
	if worst > tol {
		t.Errorf("max |log-softmax − llama.cpp| = %.3g > %g", worst, tol)
	}
	// The comparison must be able to fail: the same weights with the wrong
	// RoPE pairing must land far outside the tolerance.
	wrong := *back
	wrong.RoPEStyle = 1 - back.RoPEStyle
	if off := diff(&wrong); off < 10*tol {
		t.Errorf("a wrong RoPE pairing differs by only %.3g: the test cannot tell", off)
	}
	if !checkGreedy {
		return
	}
	got := greedy(back, ids, nGreedy, nil)
	for i := range ref.Greedy {
		if got[i] != ref.Greedy[i] {
			t.Fatalf("greedy step %d: %d, llama.cpp %d (ours %v, theirs %v)", i, got[i], ref.Greedy[i], got, ref.Greedy)
		}
	}
}
