package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// generate draws n tokens from fixed per-step distributions (random logits
// that depend on the step only, as a model's would on its context), with or
// without a watermark.
func generate(n, vocab int, temp float32, wm *Watermark, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 1))
	s := New(Params{Temperature: temp, Seed: seed, Watermark: wm})
	history := []int{r.IntN(vocab)}
	for range n {
		logits := randomLogits(r, vocab)
		history = append(history, s.Sample(logits, history))
	}
	return history
}

var testKey = []byte("a secret only the deployer holds")

func TestWatermarkDetects(t *testing.T) {
	for _, scheme := range Schemes {
		wm := &Watermark{Scheme: scheme, Key: testKey}
		marked := generate(200, 1000, 1, wm, 7)
		d, err := wm.Detect(marked)
		if err != nil {
			t.Fatal(err)
		}
		if d.PValue > 1e-4 || d.Z < 4 {
			t.Errorf("%s: watermarked text gives z %.2f, p %.2g", scheme, d.Z, d.PValue)
		}
		plain := generate(200, 1000, 1, nil, 7)
		if d, _ := wm.Detect(plain); d.PValue < 1e-3 {
			t.Errorf("%s: unwatermarked text gives p %.2g", scheme, d.PValue)
		}
		other := &Watermark{Scheme: scheme, Key: []byte("another key")}
		if d, _ := other.Detect(marked); d.PValue < 1e-3 {
			t.Errorf("%s: the wrong key finds the mark (p %.2g)", scheme, d.PValue)
		}
	}
}

// Without the key the null distribution holds: p-values of unwatermarked
// texts are uniform, so a 1% threshold flags about 1% of them.
func TestWatermarkNullIsCalibrated(t *testing.T) {
	for _, scheme := range Schemes {
		wm := &Watermark{Scheme: scheme, Key: testKey}
		flagged := 0
		const n = 400
		for i := range n {
			d, err := wm.Detect(generate(60, 1000, 1, nil, uint64(100+i)))
			if err != nil {
				t.Fatal(err)
			}
			if d.PValue < 0.01 {
				flagged++
			}
		}
		// 1% of 400 is 4; the 1e-4 tail of Binomial(400, 0.01) ends below 16.
		if flagged > 16 {
			t.Errorf("%s: %d of %d unwatermarked texts flagged at p < 0.01", scheme, flagged, n)
		}
	}
}

// The exponential-minimum draw is an exact draw from the distribution: the
// watermark changes which token each key picks, not how often each is picked.
func TestGumbelIsDistortionFree(t *testing.T) {
	p := []float32{0.5, 0.3, 0.15, 0.05}
	logits := make([]float32, len(p))
	count := make([]int, len(p))
	const n = 20000
	for i := range n {
		for j, q := range p {
			logits[j] = float32(math.Log(float64(q)))
		}
		s := New(Params{Temperature: 1, Watermark: &Watermark{Scheme: "gumbel", Key: testKey}})
		count[s.Sample(logits, []int{i})]++ // a new context each time
	}
	for j, q := range p {
		got := float64(count[j]) / n
		if sd := math.Sqrt(float64(q) * (1 - float64(q)) / n); math.Abs(got-float64(q)) > 5*sd {
			t.Errorf("token %d drawn %.4f of the time, want %.2f", j, got, q)
		}
	}
}

// A repeated (context, token) pair counts once: repeating a watermarked
// phrase adds no evidence, and a text that repeats one token is no
// evidence at all.
func TestWatermarkCountsPairsOnce(t *testing.T) {
	wm := Watermark{Scheme: "green", Key: testKey}
	d, err := wm.Detect([]int{5, 5, 5, 5, 5, 5, 5, 5})
	if err != nil || d.Tokens != 1 {
		t.Errorf("%+v, %v", d, err)
	}
	marked := generate(50, 1000, 1, &wm, 3)
	once, _ := wm.Detect(marked)
	twice, _ := wm.Detect(append(append([]int{}, marked...), marked[1:]...))
	if twice.Tokens > once.Tokens+1 {
		t.Errorf("repeating the text scored %d pairs, once %d", twice.Tokens, once.Tokens)
	}
}

func TestWatermarkSpans(t *testing.T) {
	wm := Watermark{Scheme: "gumbel", Key: testKey}
	plainA := generate(150, 1000, 1, nil, 11)
	marked := generate(150, 1000, 1, &wm, 12)
	plainB := generate(150, 1000, 1, nil, 13)
	ids := append(append(append([]int{}, plainA...), marked...), plainB...)
	spans, err := wm.DetectSpans(ids, 50, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 || spans[0].Start < 100 || spans[0].End > 351 || spans[0].End-spans[0].Start < 100 {
		t.Errorf("spans %+v, want one inside [151, 302)", spans)
	}
}

func TestWatermarkBadInput(t *testing.T) {
	for _, w := range []Watermark{
		{Scheme: "purple", Key: testKey},
		{Scheme: "green"},
		{Scheme: "green", Key: testKey, Gamma: 1.5},
		{Scheme: "green", Key: testKey, Context: 40},
	} {
		if _, err := w.Detect([]int{1, 2, 3}); !errors.Is(err, ErrWatermark) {
			t.Errorf("%+v: %v", w.Scheme, err)
		}
		if err := (Params{Temperature: 1, Watermark: &w}).Validate(); !errors.Is(err, ErrWatermark) {
			t.Errorf("Validate %+v: %v", w.Scheme, err)
		}
	}
	if _, err := (Watermark{Scheme: "green", Key: testKey, Context: 3}).Detect([]int{1, 2, 3}); !errors.Is(err, ErrWatermark) {
		t.Errorf("text no longer than the context: %v", err)
	}
	if KeyID(testKey) == KeyID([]byte("another key")) || len(KeyID(testKey)) != 16 {
		t.Error("key ids")
	}
}

func TestTails(t *testing.T) {
	// P(Bin(10, 0.5) ≥ 8) = 56/1024.
	if got := binomialTail(10, 8, 0.5); math.Abs(got-56.0/1024) > 1e-12 {
		t.Errorf("binomial tail %v", got)
	}
	// Gamma(1, 1) is Exp(1): P(S ≥ 2) = e^−2; Gamma(2, 1): (1 + s)e^−s.
	if got := gammaTail(1, 2); math.Abs(got-math.Exp(-2)) > 1e-12 {
		t.Errorf("gamma tail n=1: %v", got)
	}
	if got := gammaTail(2, 3); math.Abs(got-4*math.Exp(-3)) > 1e-12 {
		t.Errorf("gamma tail n=2: %v", got)
	}
}

// TestTokenScores: the standardised token scores add up to the detector's
// Z, and the positions it does not score are NaN.
func TestTokenScores(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ids := make([]int, 300)
	for i := range ids {
		ids[i] = rng.IntN(5) // small vocabulary: many repeated pairs
	}
	for _, scheme := range Schemes {
		w := Watermark{Scheme: scheme, Key: []byte("k"), Context: 2}
		d, err := w.Detect(ids)
		if err != nil {
			t.Fatal(err)
		}
		scores, err := w.TokenScores(ids)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		n := 0
		for i, s := range scores {
			if math.IsNaN(s) {
				continue
			}
			if i < 2 {
				t.Errorf("%s: position %d scored", scheme, i)
			}
			sum += s
			n++
		}
		if n != d.Tokens || n == len(ids)-2 || math.Abs(sum/math.Sqrt(float64(n))-d.Z) > 1e-9 {
			t.Errorf("%s: %d scored (detector %d of %d), Z %.6f vs %.6f", scheme, n, d.Tokens, len(ids), sum/math.Sqrt(float64(n)), d.Z)
		}
	}
}

// TestGumbelDoesNotLoop: when a context comes back, the keyed draw would
// pick the same token again; the sampler draws it without the mark, so a
// flat distribution keyed by one previous token does not fall into a cycle.
func TestGumbelDoesNotLoop(t *testing.T) {
	s := New(Params{Temperature: 1, Seed: 1, Watermark: &Watermark{Scheme: "gumbel", Key: []byte("k")}})
	logits := make([]float32, 8)
	history := []int{0}
	for range 400 {
		history = append(history, s.Sample(append([]float32(nil), logits...), history))
	}
	// A cycle would make the number of distinct (previous, next) pairs stop
	// at most 8; random draws visit nearly all 64.
	pairs := map[[2]int]bool{}
	for i := 1; i < len(history); i++ {
		pairs[[2]int{history[i-1], history[i]}] = true
	}
	if len(pairs) < 48 {
		t.Errorf("%d distinct pairs in 400 tokens over 8 symbols: the draw cycles", len(pairs))
	}
}
