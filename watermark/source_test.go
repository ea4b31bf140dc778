package watermark

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"persona/engine"
	"persona/internal/testmodel"
	"persona/model"
	"persona/world"
)

func TestMain(m *testing.M) { testmodel.Main(m) }

// TestLargeVocabulary runs both schemes on a random-weight model with
// Qwen3's real 151,936-token vocabulary and tokenizer, through the engine's
// generation loop: the watermark colours and draws over the full vocabulary
// and the detector finds it. Random weights make peaked distributions
// (about 0.1 nats a token at temperature 1: nothing to hide a mark in), so
// the texts are sampled at temperature 3; the numbers say what a vocabulary
// this large does, not what a trained model would.
func TestLargeVocabulary(t *testing.T) {
	e := largeVocabulary(t)
	src, err := PromptSource(e, [][]int{e.EncodeRaw("Once upon a time").IDs}, Generation{MaxTokens: 60, Temperature: 3, Seed: 3}, true)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Evaluate(context.Background(), src, Options{Schemes: schemes(), Texts: 4, Nulls: 4, Lengths: []int{25, 60}, Vocab: e.Model.Vocab, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	t.Log("\n" + b.String())
	// The Gumbel mark is certain in 60 tokens of flat distributions; the
	// green bias (δ = 2 before the temperature divides it) leaves evidence
	// in every token, but less.
	if d := rep.Schemes[1].Detection[1]; d.Tokens != 60 || d.K != d.N || d.N != 4 {
		t.Errorf("gumbel: detected in %d of %d 60-token texts", d.K, d.N)
	}
	if k := rep.Schemes[0].Kinds[0]; k.PerToken < 0.15 {
		t.Errorf("green: %+.3f z per token", k.PerToken)
	}
	for _, s := range rep.Schemes {
		if f := s.FalsePositives[2]; f.K != 0 || f.N != 4 {
			t.Errorf("%s: %d of %d unmarked texts flagged", s.Watermark.Scheme, f.K, f.N)
		}
	}
}

// largeVocabulary is a random-weight model with Qwen3's tokenizer.
func largeVocabulary(t testing.TB) *engine.Engine {
	e, err := engine.Load(testmodel.Chat(t, "qwen3", model.Config{Arch: "qwen3", Hidden: 32, FFN: 64, NumLayers: 2, Heads: 4,
		KVHeads: 2, HeadDim: 8, MaxSeq: 512, NormEps: 1e-6, RoPETheta: 1e6, TiedEmbedding: true, QKNorm: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if e.Model.Vocab < 150000 {
		t.Fatalf("vocabulary of %d tokens", e.Model.Vocab)
	}
	return e
}

// BenchmarkLargeVocabulary measures both schemes on the random-weight
// Qwen3-shaped model (temperature 3, as in TestLargeVocabulary): detection
// at 25, 50 and 100 tokens and false positives at p < 1e-4, reported as
// metrics; PERSONA_WM_TEXTS and PERSONA_WM_NULLS size it (default 40 and
// 400):
//
//	go test -run XXX -bench LargeVocabulary -benchtime 1x ./watermark
func BenchmarkLargeVocabulary(b *testing.B) {
	e := largeVocabulary(b)
	texts, nulls := envInt("PERSONA_WM_TEXTS", 40), envInt("PERSONA_WM_NULLS", 400)
	for b.Loop() {
		src, err := PromptSource(e, [][]int{e.EncodeRaw("Once upon a time").IDs}, Generation{MaxTokens: 100, Temperature: 3, Seed: 5}, true)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := Evaluate(context.Background(), src, Options{Schemes: schemes(), Texts: texts, Nulls: nulls, Lengths: []int{25, 50, 100},
			Vocab: e.Model.Vocab, Workers: 2, EditRates: []float64{}})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range rep.Schemes {
			for _, d := range s.Detection {
				at := "whole"
				if d.Tokens > 0 {
					at = strconv.Itoa(d.Tokens)
				}
				b.ReportMetric(d.P, s.Watermark.Scheme+"-detected@"+at)
			}
			f := s.FalsePositives[len(s.FalsePositives)-1]
			b.ReportMetric(float64(f.K), s.Watermark.Scheme+"-false-positives")
			b.ReportMetric(float64(f.N), s.Watermark.Scheme+"-unmarked-texts")
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestWorldSource runs world conversations on a random organism-shaped
// model: every turn's reply is a segment of the text, graded where the
// request has a right answer, and the marked and unmarked texts answer the
// same requests.
func TestWorldSource(t *testing.T) {
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	src, err := WorldSource(world.Default(), e, 3, WorldOptions{Generation: Generation{MaxTokens: 8, Temperature: 1, Seed: 1}, Turns: 3,
		Domains: []world.Domain{world.TaskDomain}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := src(context.Background(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	wm := schemes()[1]
	marked, err := src(context.Background(), 1, &wm)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range []Text{plain, marked} {
		if len(tx.Segments) != 3 || len(tx.LogProbs) != len(tx.IDs) || len(tx.Entropy) != len(tx.IDs) {
			t.Fatalf("%d segments, %d ids, %d logprobs, %d entropies", len(tx.Segments), len(tx.IDs), len(tx.LogProbs), len(tx.Entropy))
		}
		graded := 0
		for i, s := range tx.Segments {
			if s.Kind == "" || s.End < s.Start || (i > 0 && s.Start != tx.Segments[i-1].End) {
				t.Errorf("segment %d: %+v", i, s)
			}
			if s.Correct != nil {
				graded++
			}
		}
		if graded == 0 {
			t.Errorf("no task turn graded: %+v", tx.Segments)
		}
	}
	for i := range plain.Segments {
		if plain.Segments[i].Kind != marked.Segments[i].Kind {
			t.Errorf("turn %d: %s unmarked, %s marked", i, plain.Segments[i].Kind, marked.Segments[i].Kind)
		}
	}
	if _, err := src(context.Background(), 99, nil); err == nil {
		t.Error("text 99 of a 3-text source: no error")
	}
}

// With one key and one prompt the Gumbel draw starts every text the same
// way; an unmarked opening per text makes the texts start apart.
func TestOpeningSeparatesTexts(t *testing.T) {
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	gumbel := &schemes()[1]
	prompt := [][]int{e.EncodeRaw("Once").IDs}
	texts := func(opening int) [][]int {
		src, err := PromptSource(e, prompt, Generation{MaxTokens: 12, Temperature: 3, Seed: 1, Opening: opening}, true)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]int
		for i := range 6 {
			txt, err := src(context.Background(), i, gumbel)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, txt.IDs)
		}
		return out
	}
	// The first marked token's context is the prompt's last token: without
	// an opening, every text's first token is the key's choice there.
	firsts := func(ts [][]int) int {
		seen := map[int]bool{}
		for _, ids := range ts {
			seen[ids[0]] = true
		}
		return len(seen)
	}
	if n := firsts(texts(0)); n != 1 {
		t.Errorf("without an opening, %d distinct first tokens in 6 Gumbel texts from one prompt and key (want 1)", n)
	}
	if n := firsts(texts(4)); n < 3 {
		t.Errorf("with a 4-token opening only %d distinct first tokens in 6 texts", n)
	}
	if _, err := PromptSource(e, prompt, Generation{MaxTokens: 4, Opening: -1}, true); !errors.Is(err, ErrOptions) {
		t.Errorf("negative opening: %v", err)
	}
}
