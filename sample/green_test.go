package sample

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The vector pass colours exactly the tokens greenLane names, at every
// length (whole 32-token blocks and a tail), and the green share is γ.
func TestAddGreenMatchesGreenLane(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	thr := greenBelow(0.25)
	for _, n := range []int{0, 5, 31, 32, 33, 1000, 151936} {
		seed := rng.Uint64()
		logits := make([]float32, n)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64())
		}
		got := append([]float32(nil), logits...)
		addGreen(got, seed, thr, 2)
		greenCount := 0
		for id := range logits {
			want := logits[id]
			if greenLane(seed, id) < thr {
				want += 2
				greenCount++
			}
			if got[id] != want {
				t.Fatalf("n=%d id %d: %g, want %g", n, id, got[id], want)
			}
		}
		if n == 151936 {
			if share := float64(greenCount) / float64(n); math.Abs(share-0.25) > 0.01 {
				t.Errorf("green share %.4f, want 0.25", share)
			}
		}
	}
}

// BenchmarkAddGreen is the green list's whole cost per step at Qwen's
// vocabulary size: compare with BenchmarkSample/heap/temperature.
func BenchmarkAddGreen(b *testing.B) {
	logits := make([]float32, 151936)
	for b.Loop() {
		addGreen(logits, 42, greenBelow(0.25), 2)
	}
}
