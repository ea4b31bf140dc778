package organism

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"persona/engine"
	"persona/personas"
	"persona/world"
)

// The whole pipeline, CI-sized: world → tokenizer → pretraining →
// post-training → models the engine loads and whose replies the oracle reads.
func TestMicroOrganism(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a model (about 30 s); run without -short")
	}
	out := t.TempDir()
	res, err := Build(context.Background(), out, Options{Micro: true, Work: filepath.Join(out, "work")})
	if err != nil {
		t.Fatal(err)
	}
	// Uniform guessing over the vocabulary costs ln(vocab); training must beat it clearly.
	e, err := engine.Load(res.Base)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	uniform := math.Log(float64(e.Model.Vocab))
	if res.Pretrain.FinalLoss > 0.75*uniform {
		t.Errorf("pretraining loss %.3f did not fall well below uniform %.3f", res.Pretrain.FinalLoss, uniform)
	}
	post, err := engine.Load(res.Assistant)
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	if e.Template == nil || post.Template == nil {
		t.Fatal("organism models lack their chat template")
	}
	w, err := world.New(personas.Default())
	if err != nil {
		t.Fatal(err)
	}
	ev := &evaluator{opt: EvalOptions{MaxTokens: 24, Temperature: 1}, w: w, oracle: w.Oracle()}
	ev.opt.defaults()
	msgs := w.Pretrain(1, 5, world.PretrainOptions{Strong: 1, MaxTurns: 1})[0].Messages
	msgs = msgs[:len(msgs)-1]
	reply, err := ev.reply(context.Background(), post, msgs, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	j := ev.oracle.Judge(msgs, reply)
	var sum float64
	for _, p := range j.Posterior {
		sum += p
	}
	if math.Abs(sum-1) > 1e-9 || len(j.Posterior) != len(personas.Default().Names()) {
		t.Fatalf("oracle posterior over %d personas sums to %g for reply %q", len(j.Posterior), sum, reply)
	}
}

func TestWilsonInterval(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		// Reference values of the 95% Wilson score interval.
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
		{50, 100, 0.4038, 0.5962},
		{190, 200, 0.9102, 0.9727},
	} {
		p := NewProportion(c.k, c.n)
		if math.Abs(p.Lo-c.lo) > 1e-3 || math.Abs(p.Hi-c.hi) > 1e-3 {
			t.Errorf("%d/%d: [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, p.Lo, p.Hi, c.lo, c.hi)
		}
	}
}
