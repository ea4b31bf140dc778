package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
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

// sortSample is the sampler as first written: every candidate sorted by
// probability before truncation. It is the reference the heap version must
// match token for token wherever truncation fixes the order, and the
// baseline of BenchmarkSample.
func sortSample(p Params, rng *rand.Rand, logits []float32) int {
	c := make([]candidate, len(logits))
	for id, l := range logits {
		c[id] = candidate{id, l / p.Temperature}
	}
	sort.SliceStable(c, func(i, j int) bool { return c[i].p > c[j].p })
	if p.TopK > 0 && p.TopK < len(c) {
		c = c[:p.TopK]
	}
	m := c[0].p
	var sum float64
	for i := range c {
		e := math.Exp(float64(c[i].p - m))
		c[i].p = float32(e)
		sum += e
	}
	for i := range c {
		c[i].p = float32(float64(c[i].p) / sum)
	}
	if p.TopP > 0 && p.TopP < 1 {
		var cum float32
		for i := range c {
			cum += c[i].p
			if cum >= p.TopP {
				c = c[:i+1]
				break
			}
		}
	}
	if p.MinP > 0 {
		floor := p.MinP * c[0].p
		n := 1
		for n < len(c) && c[n].p >= floor {
			n++
		}
		c = c[:n]
	}
	var total float32
	for _, x := range c {
		total += x.p
	}
	r := rng.Float32() * total
	for _, x := range c {
		r -= x.p
		if r < 0 {
			return x.id
		}
	}
	return c[len(c)-1].id
}

// randomLogits are peaked like a language model's, with ties (rounded to a
// quarter) so that the id tie-break is exercised.
func randomLogits(r *rand.Rand, n int) []float32 {
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(math.Round(r.NormFloat64()*8) / 4)
	}
	return l
}

// With top-k or top-p the heap sampler draws exactly the reference's token
// for the same seed; with neither, the same distribution (TestDistribution).
func TestTruncationMatchesSortReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range []Params{
		{Temperature: 1, TopK: 1}, {Temperature: 0.7, TopK: 40}, {Temperature: 1, TopP: 0.9}, {Temperature: 1.3, TopP: 0.5},
		{Temperature: 1, TopK: 50, TopP: 0.95}, {Temperature: 0.8, TopP: 0.9, MinP: 0.05}, {Temperature: 1, TopK: 100, MinP: 0.1},
		{Temperature: 1, TopP: 0.999999},
	} {
		for trial := 0; trial < 40; trial++ {
			p.Seed = uint64(trial)
			logits := randomLogits(r, 101+r.IntN(3000))
			want := sortSample(p, rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15)), slices.Clone(logits))
			if got := New(p).Sample(slices.Clone(logits), nil); got != want {
				t.Fatalf("%+v, %d logits: drew %d, the sorting reference %d", p, len(logits), got, want)
			}
		}
	}
}

// BenchmarkSample draws from a Qwen-sized vocabulary; the sort/ cases are
// the first implementation, for the ratio.
func BenchmarkSample(b *testing.B) {
	logits := randomLogits(rand.New(rand.NewPCG(3, 4)), 151936)
	for _, c := range []struct {
		name string
		p    Params
	}{
		{"temperature", Params{Temperature: 0.7}},
		{"top-p=0.9", Params{Temperature: 0.7, TopP: 0.9}},
		{"top-k=40", Params{Temperature: 0.7, TopK: 40}},
		{"green/temperature", Params{Temperature: 0.7, Watermark: &Watermark{Scheme: "green", Key: []byte("k")}}},
		{"green/top-k=40", Params{Temperature: 0.7, TopK: 40, Watermark: &Watermark{Scheme: "green", Key: []byte("k")}}},
		{"gumbel/temperature", Params{Temperature: 0.7, Watermark: &Watermark{Scheme: "gumbel", Key: []byte("k")}}},
		{"gumbel/top-k=40", Params{Temperature: 0.7, TopK: 40, Watermark: &Watermark{Scheme: "gumbel", Key: []byte("k")}}},
	} {
		work := make([]float32, len(logits))
		b.Run("heap/"+c.name, func(b *testing.B) {
			s := New(c.p)
			// A new context every step, as in a generation: the Gumbel
			// scheme samples a repeated context without the mark.
			history := []int{0}
			for b.Loop() {
				copy(work, logits)
				history[0]++
				s.Sample(work, history)
			}
		})
		if c.p.Watermark != nil {
			continue
		}
		b.Run("sort/"+c.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(0, 0))
			for b.Loop() {
				copy(work, logits)
				sortSample(c.p, rng, work)
			}
		})
	}
}
