package sample

import (
	"math"
	"testing"
)

func logits() []float32 { return []float32{1, 3, 2, 0.5, 2.9} }

func TestGreedy(t *testing.T) {
	if got := New(Params{}).Sample(logits(), nil); got != 1 {
		t.Fatalf("greedy picked %d, want 1", got)
	}
}

func TestSeedReproducible(t *testing.T) {
	p := Params{Temperature: 1, Seed: 42}
	a, b := New(p), New(p)
	for i := 0; i < 200; i++ {
		if x, y := a.Sample(logits(), nil), b.Sample(logits(), nil); x != y {
			t.Fatalf("draw %d: %d vs %d with the same seed", i, x, y)
		}
	}
	c := New(Params{Temperature: 1, Seed: 43})
	same := 0
	a = New(p)
	for i := 0; i < 200; i++ {
		if a.Sample(logits(), nil) == c.Sample(logits(), nil) {
			same++
		}
	}
	if same == 200 {
		t.Fatal("different seeds gave identical draws")
	}
}

// The empirical distribution at temperature 1 matches softmax(logits).
func TestDistribution(t *testing.T) {
	s := New(Params{Temperature: 1, Seed: 7})
	const n = 40000
	counts := make([]int, 5)
	for i := 0; i < n; i++ {
		counts[s.Sample(logits(), nil)]++
	}
	var z float64
	for _, l := range logits() {
		z += math.Exp(float64(l))
	}
	for id, l := range logits() {
		want := math.Exp(float64(l)) / z
		got := float64(counts[id]) / n
		if math.Abs(got-want) > 0.01 {
			t.Errorf("token %d: frequency %.3f, softmax %.3f", id, got, want)
		}
	}
}

func TestTruncation(t *testing.T) {
	for _, c := range []struct {
		name    string
		p       Params
		allowed map[int]bool
	}{
		{"top-k 2", Params{Temperature: 1, TopK: 2}, map[int]bool{1: true, 4: true}},
		{"top-p 0.5", Params{Temperature: 1, TopP: 0.5}, map[int]bool{1: true, 4: true}},
		{"min-p 0.5", Params{Temperature: 1, MinP: 0.5}, map[int]bool{1: true, 4: true, 2: true}},
	} {
		s := New(c.p)
		for i := 0; i < 2000; i++ {
			if id := s.Sample(logits(), nil); !c.allowed[id] {
				t.Fatalf("%s: drew %d", c.name, id)
			}
		}
	}
}

func TestRepetitionPenalty(t *testing.T) {
	s := New(Params{RepetitionPenalty: 2})
	// Token 1 (logit 3) is halved to 1.5, so 4 (2.9) wins greedily.
	if got := s.Sample(logits(), []int{1, 1}); got != 4 {
		t.Fatalf("got %d, want 4", got)
	}
	l := []float32{-1, -0.1}
	New(Params{RepetitionPenalty: 2}).Sample(l, []int{1})
	if l[1] != -0.2 {
		t.Fatalf("negative logit penalised to %g, want -0.2", l[1])
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{{Temperature: -1}, {TopP: 1.5}, {MinP: -0.1}, {TopK: -3}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}
