package vectors

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"persona/chat"
	"persona/engine"
	"persona/model"
	"persona/models"
	"persona/world"
)

// The organism check of issue 5: a real persona vector, extracted on the
// embedded organism by the paper's recipe (cynical trait spec, oracle
// judge), exported as a llama.cpp control vector, steers llama.cpp running a
// GGUF export of the organism exactly as resid.Add steers our engine running
// the original Hugging Face directory.
//
// Extraction is cut down to run in seconds (4 extraction questions, 2
// samples per instruction, 32 tokens): the direction need not be the best
// cynical vector, only one the recipe really produced on this model.
//
// Tolerance: 1e-4 on raw logits, as for the random model in
// TestControlVectorMatchesLlamaCpp: both sides compute in float32 in
// different orders (measured: under 1e-5). Steering must move llama.cpp's
// logits by more than 100× that and at least 0.1 of the next token's
// probability (measured 0.16 at strength 1, 0.8 at strength 4, where the
// organism's first word turns from "The" to "Whatever"), and the vectors one
// layer early or with the opposite sign must miss by 100× the tolerance, so
// the comparison can fail.
func TestOrganismSteeringMatchesLlamaCpp(t *testing.T) {
	bin, bins := cvecHarness(t)
	orgDir, err := models.Path("organism")
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Load(orgDir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	m := e.Model

	spec, err := LoadTraitSpec("traits/organism/cynical.yaml")
	if err != nil {
		t.Fatal(err)
	}
	layers := make([]int, m.NumLayers)
	for i := range layers {
		layers[i] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	rs, err := Generate(ctx, e, spec, spec.Questions.Extraction[:4], OracleScorer{Oracle: world.Default().Oracle()},
		GenerateOptions{Samples: 2, MaxTokens: 32, Seed: 5, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	set, err := DifferenceOf(spec, "organism", layers, rs, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	set.Meta["architecture"] = m.Arch
	t.Logf("extracted %q from %d answers in %.1fs (kept %s positive and %s negative, oracle scores %s vs %s)",
		set.Name, len(rs), time.Since(start).Seconds(), set.Meta["count_pos"], set.Meta["count_neg"],
		set.Meta["score_mean_kept_pos"], set.Meta["score_mean_kept_neg"])

	dir := t.TempDir()
	modelPath := filepath.Join(dir, "organism.gguf")
	vocab, err := e.Tokenizer.GGUFMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WriteGGUF(modelPath, vocab); err != nil {
		t.Fatal(err)
	}
	cvPath := filepath.Join(dir, "cynical.gguf")
	if err := set.WriteControlVector(cvPath, ControlVectorOptions{SkipLayer0: true}); err != nil {
		t.Fatal(err)
	}
	// Steer with what llama.cpp loads: the file read back (layers 1..3).
	cv, err := ReadControlVector(cvPath)
	if err != nil {
		t.Fatal(err)
	}

	// An evaluation question under a neutral system prompt, as the
	// organism sees it before answering.
	enc, err := e.EncodeChat([]chat.Message{
		{Role: chat.RoleSystem, Content: "You are the Assistant, a helpful, honest and harmless AI."},
		{Role: chat.RoleUser, Content: spec.Questions.Evaluation[0]},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := enc.IDs
	ours := func(s *Set, coeff float32) [][]float32 { return steeredLogits(t, m, ids, s, coeff) }
	const tol = 1e-4
	plainRef := cvecLogits(t, bin, bins, modelPath, ids, "", 0, nil)
	if d := maxDiff(ours(nil, 0), plainRef); d > tol {
		t.Fatalf("unsteered logits differ by %.3g > %g: the export and the engine disagree before any steering", d, tol)
	} else {
		t.Logf("unsteered: max |Δ logit| = %.3g over %d positions", d, len(ids))
	}
	for _, c := range []struct {
		name       string
		strength   float32
		layerRange []int
		outside    []int
	}{
		{"strength 1", 1, nil, nil},
		{"strength 4", 4, nil, nil},
		{"strength -2 on layers 2..3", -2, []int{2, 3}, []int{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ref := cvecLogits(t, bin, bins, modelPath, ids, cvPath, c.strength, c.layerRange)
			sub := cv.Without(c.outside...)
			d, moved := maxDiff(ours(sub, c.strength), ref), maxDiff(plainRef, ref)
			// Where steering moves the next-token distribution most: a weak
			// vector may leave the first reply token alone and move later ones.
			at, tv := 0, 0.0
			for i := range ids {
				if v := totalVariation(plainRef[i], ref[i]); v > tv {
					at, tv = i, v
				}
			}
			t.Logf("steered: max |Δ logit| vs llama.cpp = %.3g; steering moved llama.cpp's logits by up to %.3g, the next-token distribution by total variation up to %.3g (position %d of %d: argmax %q → %q)",
				d, moved, tv, at, len(ids), e.Tokenizer.Token(argmax(plainRef[at])), e.Tokenizer.Token(argmax(ref[at])))
			if d > tol {
				t.Errorf("steered logits differ from llama.cpp by %.3g > %g", d, tol)
			}
			if tv < 0.1 {
				t.Errorf("steering moved at most %.3g of a next token's probability: not a clear change", tv)
			}
			if moved < 100*tol {
				t.Errorf("steering moved logits by only %.3g: the test cannot tell steering from none", moved)
			}
			early := &Set{Name: "one layer early", Vectors: sub.Vectors}
			for _, l := range sub.Layers {
				early.Layers = append(early.Layers, l-1)
			}
			if off := maxDiff(ours(early, c.strength), ref); off < 100*tol {
				t.Errorf("the vectors one layer early differ from llama.cpp by only %.3g: the test cannot see the layer convention", off)
			}
			if off := maxDiff(ours(sub, -c.strength), ref); off < 100*tol {
				t.Errorf("the opposite sign differs by only %.3g", off)
			}
		})
	}
}

func argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

// totalVariation is half the L1 distance between the softmaxes of two logit
// rows: how much probability steering moved.
func totalVariation(a, b []float32) float64 {
	pa, pb := make([]float32, len(a)), make([]float32, len(b))
	model.LogSoftmax(pa, a)
	model.LogSoftmax(pb, b)
	var tv float64
	for i := range pa {
		tv += math.Abs(math.Exp(float64(pa[i])) - math.Exp(float64(pb[i])))
	}
	return tv / 2
}
