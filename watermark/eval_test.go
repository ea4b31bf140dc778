package watermark

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"persona/sample"
)

// zipf is a source without a model: every step samples the same Zipf-like
// distribution over a vocabulary with the real sampler, so the watermark
// acts exactly as in a generation and the entropy is known.
func zipf(vocab, n int, seed uint64) Source {
	logits := make([]float32, vocab)
	var z float64
	for i := range logits {
		logits[i] = float32(-1.1 * math.Log(float64(i+1)))
		z += math.Exp(float64(logits[i]))
	}
	lp := make([]float32, vocab)
	var h float64
	for i, l := range logits {
		lp[i] = l - float32(math.Log(z))
		h -= math.Exp(float64(lp[i])) * float64(lp[i])
	}
	return func(ctx context.Context, i int, wm *sample.Watermark) (Text, error) {
		s := sample.New(sample.Params{Temperature: 1, TopP: 1, Seed: seed + uint64(i), Watermark: wm})
		history := []int{i} // a prompt token, so the first step has a context
		var t Text
		work := make([]float32, vocab)
		for range n {
			copy(work, logits)
			id := s.Sample(work, history)
			history = append(history, id)
			t.IDs = append(t.IDs, id)
			t.LogProbs = append(t.LogProbs, lp[id])
			t.Entropy = append(t.Entropy, float32(h))
		}
		right := t.IDs[0]%2 == 0
		t.Segments = []Segment{{Kind: "text", End: n, Correct: &right}}
		return t, nil
	}
}

func schemes() []sample.Watermark {
	key := []byte("evaluation key")
	return []sample.Watermark{{Scheme: "green", Key: key}, {Scheme: "gumbel", Key: key}}
}

func TestEvaluate(t *testing.T) {
	rep, err := Evaluate(context.Background(), zipf(2000, 200, 1), Options{Schemes: schemes(), Texts: 50, Nulls: 400, Vocab: 2000, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	t.Log("\n" + b.String())
	for _, s := range rep.Schemes {
		last := s.Detection[len(s.Detection)-2] // 200 tokens
		if last.Tokens != 200 || last.P < 0.95 {
			t.Errorf("%s: detected in %d of %d 200-token texts", s.Watermark.Scheme, last.K, last.N)
		}
		if s.Detection[0].P > last.P {
			t.Errorf("%s: 25 tokens detect more often (%.2f) than 200 (%.2f)", s.Watermark.Scheme, s.Detection[0].P, last.P)
		}
		// 400 unmarked texts: at p < 1e-4 a flag would be a 1-in-25
		// event; at 0.01 about 4 are expected. The texts share common
		// pairs, whose colour one key fixes for all of them, so the counts
		// may exceed their expectation a little, not by much.
		for _, f := range s.FalsePositives {
			if f.K > 1 {
				t.Errorf("%s: %d of %d unmarked texts flagged at %d tokens", s.Watermark.Scheme, f.K, f.N, f.Tokens)
			}
		}
		if c := s.Calibration[0]; c.Alpha != 0.01 || c.K > 12 {
			t.Errorf("%s: %d of %d unmarked texts below p = 0.01", s.Watermark.Scheme, c.K, c.N)
		}
		subst := s.Robustness[0]
		worst := s.Robustness[2]
		if subst.Edit != "substitute" || subst.Share != 0.1 || subst.P < worst.P {
			t.Errorf("%s: 10%% substitution %.2f, 30%% %.2f", s.Watermark.Scheme, subst.P, worst.P)
		}
		if len(s.Kinds) != 1 || s.Kinds[0].PerToken <= 0.1 || s.Kinds[0].Needed > 200 {
			t.Errorf("%s: evidence per token %+v", s.Watermark.Scheme, s.Kinds)
		}
	}
	// The Gumbel draw is an exact sample: its perplexity under the model is
	// the unmarked one's up to noise (larger than independent texts would
	// have: one key makes the same choice after a context in every text).
	plain, gumbel := rep.Plain.Perplexity, rep.Schemes[1].Quality.Perplexity
	if math.Abs(math.Log(gumbel/plain)) > 0.1 {
		t.Errorf("gumbel perplexity %.2f, unmarked %.2f", gumbel, plain)
	}
	if k := rep.Kinds[0]; math.Abs(k.PerToken) > 0.05 {
		t.Errorf("unmarked text carries evidence %+.3f per token", k.PerToken)
	}
}

// TestLowEntropy: a model that always says the same thing cannot be marked,
// and the report says so instead of flagging anything.
func TestLowEntropy(t *testing.T) {
	src := func(ctx context.Context, i int, wm *sample.Watermark) (Text, error) {
		t := Text{IDs: make([]int, 100), LogProbs: make([]float32, 100), Entropy: make([]float32, 100)}
		for k := range t.IDs {
			t.IDs[k] = k % 7 // the one continuation there is
		}
		t.Segments = []Segment{{Kind: "arithmetic", End: 100}}
		return t, nil
	}
	rep, err := Evaluate(context.Background(), src, Options{Schemes: schemes(), Texts: 5, Nulls: 5, Vocab: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Schemes {
		if d := s.Detection[len(s.Detection)-1]; d.K != 0 || d.MeanScored != 7 {
			t.Errorf("%s: %+v", s.Watermark.Scheme, d)
		}
	}
}

func TestEdit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, 10000)
	for i := range ids {
		ids[i] = i
	}
	sub := Edit(rng, ids, "substitute", 0.2, 50)
	changed := 0
	for i := range sub {
		if sub[i] != ids[i] {
			changed++
		}
	}
	if len(sub) != len(ids) || changed < 1800 || changed > 2200 {
		t.Errorf("substitute: %d tokens, %d changed", len(sub), changed)
	}
	if n := len(Edit(rng, ids, "insert", 0.2, 50)); n < 11800 || n > 12200 {
		t.Errorf("insert: %d tokens", n)
	}
	if n := len(Edit(rng, ids, "delete", 0.2, 50)); n < 7800 || n > 8200 {
		t.Errorf("delete: %d tokens", n)
	}
}

func TestOptionsRefused(t *testing.T) {
	src := zipf(100, 10, 1)
	for _, o := range []Options{
		{Texts: 1, Nulls: 1, Vocab: 100},
		{Schemes: schemes(), Texts: 0, Nulls: 1, Vocab: 100},
		{Schemes: schemes(), Texts: 5, Nulls: 2, Vocab: 100},
		{Schemes: schemes(), Texts: 1, Nulls: 1, Vocab: 100, Alpha: 2},
		{Schemes: schemes(), Texts: 1, Nulls: 1, Vocab: 1},
		{Schemes: schemes(), Texts: 1, Nulls: 1, Vocab: 100, EditRates: []float64{1.5}},
		{Schemes: schemes(), Texts: 1, Nulls: 1, Vocab: 100, Lengths: []int{1}},
	} {
		if _, err := Evaluate(context.Background(), src, o); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	if _, err := Evaluate(context.Background(), src, Options{Schemes: []sample.Watermark{{Scheme: "purple", Key: []byte("k")}}, Texts: 1, Nulls: 1, Vocab: 100}); !errors.Is(err, sample.ErrWatermark) {
		t.Errorf("unknown scheme: %v", err)
	}
}
