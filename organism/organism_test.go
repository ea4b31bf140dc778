package organism

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"persona/engine"
	"persona/internal/stats"
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
		p := stats.NewProportion(c.k, c.n)
		if math.Abs(p.Lo-c.lo) > 1e-3 || math.Abs(p.Hi-c.hi) > 1e-3 {
			t.Errorf("%d/%d: [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, p.Lo, p.Hi, c.lo, c.hi)
		}
	}
}

// The shipped organism keeps its headline properties, measured the way
// `persona organism eval` does but on small cells (30 samples), so the
// bounds sit well below the card's numbers: they catch a broken or swapped
// model, not a point of accuracy.
func TestShippedOrganismProperties(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the shipped organism (about 10 s)")
	}
	ctx := context.Background()
	base, err := engine.Load("../models/organism/base")
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	post, err := engine.Load("../models/organism/assistant")
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	w := world.Default()
	ev := &evaluator{opt: EvalOptions{Samples: 30, Temperature: 1, Seed: 3}, w: w, oracle: w.Oracle()}
	ev.opt.defaults()
	names := personas.Default().Names()
	inferred, err := ev.personaShares(ctx, base, ev.inferenceProbes(names))
	if err != nil {
		t.Fatal(err)
	}
	strong := ev.strongPromptProbes(names)
	baseShares, err := ev.personaShares(ctx, base, strong)
	if err != nil {
		t.Fatal(err)
	}
	postShares, err := ev.personaShares(ctx, post, strong)
	if err != nil {
		t.Fatal(err)
	}
	arith, facts, err := ev.taskAccuracy(ctx, post)
	if err != nil {
		t.Fatal(err)
	}
	assistant := postShares["assistant"]
	delete(postShares, "assistant")
	t.Logf("base: inferred from context %.3f, strong prompts %.3f; post-trained Assistant %s, other personas %.3f, held-out sums %s, facts %s",
		meanP(inferred), meanP(baseShares), assistant, meanP(postShares), arith, facts)
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"base: persona inferred from two turns of context (mean)", meanP(inferred), 0.85},
		{"base: strong system prompts followed (mean)", meanP(baseShares), 0.9},
		{"post-trained: Assistant under its strong prompt", assistant.P, 0.85},
		{"post-trained: other personas' strong prompts (mean)", meanP(postShares), 0.9},
		{"post-trained: held-out sums (greedy)", arith.P, 0.9},
		{"post-trained: held-out fact phrasings (greedy)", facts.P, 0.9},
	} {
		if c.got < c.want {
			t.Errorf("%s: %.3f < %.2f", c.what, c.got, c.want)
		}
	}
}

// --layers changes the pretrained depth and nothing else of the recipe.
func TestStageConfigLayers(t *testing.T) {
	work := t.TempDir()
	plain, err := stageConfig("pretrain", Options{Work: work})
	if err != nil {
		t.Fatal(err)
	}
	deep, err := stageConfig("pretrain", Options{Work: work, Layers: 8})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Model.Arch.Layers != 4 || deep.Model.Arch.Layers != 8 {
		t.Fatalf("layers %d and %d, want the recipe's 4 and 8", plain.Model.Arch.Layers, deep.Model.Arch.Layers)
	}
	a, b := *plain.Model.Arch, *deep.Model.Arch
	b.Layers = a.Layers
	if !reflect.DeepEqual(a, b) || plain.Optim != deep.Optim || plain.Data.SeqLen != deep.Data.SeqLen {
		t.Errorf("--layers changed more than the depth:\n%+v\n%+v", plain, deep)
	}
	post, err := stageConfig("posttrain", Options{Work: work, Layers: 8})
	if err != nil || post.Model.Arch != nil {
		t.Errorf("post-training fine-tunes the base (arch %v, %v)", post.Model.Arch, err)
	}
}
