package vectors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strconv"

	"persona/chat"
	"persona/engine"
	"persona/internal/parallel"
	"persona/personas"
	"persona/sample"
)

// Scorer rates how strongly an answer expresses a trait. It is what the
// extraction recipe needs from a judge, defined here so that the organism's
// oracle (OracleScorer) and LLM judges behind a backend (package posterior)
// plug in alike.
type Scorer interface {
	Score(ctx context.Context, spec *TraitSpec, question, answer string) (TraitScore, error)
}

// TraitScore is a judge's reading of one answer.
type TraitScore struct {
	// Trait is 0–100: how strongly the answer expresses the trait.
	Trait float64 `json:"trait"`
	// Coherence is 0–100, or negative when the scorer does not measure it.
	Coherence float64 `json:"coherence"`
}

// OracleScorer judges with an oracle that knows which persona wrote a text:
// the ground truth on the model organism. The trait score is the oracle's posterior-weighted
// trait value (× 100) of the spec's oracle_trait; coherence is its top
// persona probability (× 100), since garbled text gets a flat posterior.
type OracleScorer struct {
	Oracle personas.Oracle
}

// Score implements Scorer.
func (o OracleScorer) Score(_ context.Context, spec *TraitSpec, question, answer string) (TraitScore, error) {
	trait := spec.OracleTrait
	if trait == "" {
		trait = spec.Name
	}
	j := o.Oracle.Verdict([]chat.Message{{Role: chat.RoleUser, Content: question}}, answer)
	v, ok := j.Traits[trait]
	if !ok {
		return TraitScore{}, fmt.Errorf("%s: the oracle has no trait %q (set oracle_trait)", spec.File, trait)
	}
	return TraitScore{Trait: 100 * v, Coherence: 100 * j.TopProb}, nil
}

// GenerateOptions size the contrastive generation.
type GenerateOptions struct {
	// Samples per (question, instruction) and side; default 10 (the paper's).
	Samples int
	// MaxTokens per answer; default 64.
	MaxTokens int
	// Temperature; default 1 (the paper samples at T = 1).
	Temperature float32
	Seed        uint64
	// Layers to capture; empty means every layer.
	Layers []int
	// Workers generating at once; default GOMAXPROCS (small models are
	// bound by per-token overheads, so two sequences at once help).
	Workers int
	// Progress is called after each scored answer.
	Progress func(done, total int) `json:"-"`
}

func (o *GenerateOptions) defaults() {
	if o.Samples <= 0 {
		o.Samples = 10
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 64
	}
	if o.Temperature == 0 {
		o.Temperature = 1
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
}

// Response is one generated answer with its score and activations.
type Response struct {
	Question string     `json:"question"`
	Pair     int        `json:"pair"`
	Positive bool       `json:"positive"`
	Text     string     `json:"text"`
	Score    TraitScore `json:"score"`
	// Mean[i] is the response-mean activation at Layers[i]; LastPrompt[i]
	// the activation of the last prompt token (the end of the assistant
	// header). Not serialised.
	Mean       [][]float32 `json:"-"`
	LastPrompt [][]float32 `json:"-"`
}

// Generate answers every question under every pair's positive and negative
// system prompt, Samples times each, scores the answers with sc and captures
// their activations (on the same context they were generated in, system
// prompt included, as in the paper).
func Generate(ctx context.Context, e *engine.Engine, spec *TraitSpec, questions []string, sc Scorer, opt GenerateOptions) ([]Response, error) {
	return generate(ctx, e, spec, questions, -1, sc, opt)
}

// GenerateBatch is Generate's answers to question q alone, with the seeds
// Generate gives them: batches played anywhere, in any order, add up to
// Generate's answers (package fleet spreads them over machines).
func GenerateBatch(ctx context.Context, e *engine.Engine, spec *TraitSpec, questions []string, q int, sc Scorer, opt GenerateOptions) ([]Response, error) {
	if q < 0 || q >= len(questions) {
		return nil, fmt.Errorf("question %d of %d: %w", q, len(questions), ErrNoQuestion)
	}
	return generate(ctx, e, spec, questions, q, sc, opt)
}

// ErrNoQuestion is a batch of a question the spec does not have.
var ErrNoQuestion = errors.New("no such question")

// generate answers question only (every question when only < 0).
func generate(ctx context.Context, e *engine.Engine, spec *TraitSpec, questions []string, only int, sc Scorer, opt GenerateOptions) ([]Response, error) {
	opt.defaults()
	m := e.Model
	for _, l := range opt.Layers {
		if l < 0 || l >= m.NumLayers {
			return nil, fmt.Errorf("layer %d, the model has layers 0..%d: %w", l, m.NumLayers-1, engine.ErrLayer)
		}
	}
	type job struct {
		q, pair, sample int
		pos             bool
		seed            uint64
	}
	var jobs []job
	for qi := range questions {
		for pi := range spec.Pairs {
			for _, pos := range []bool{true, false} {
				for s := 0; s < opt.Samples; s++ {
					// The seed follows the answer's place among all of
					// Generate's, whichever batch plays it.
					seed := opt.Seed*1_000_003 + uint64(((qi*len(spec.Pairs)+pi)*2+b2i(!pos))*opt.Samples+s)
					if only < 0 || qi == only {
						jobs = append(jobs, job{qi, pi, s, pos, seed})
					}
				}
			}
		}
	}
	out := make([]Response, len(jobs))
	err := parallel.ForProgress(ctx, opt.Workers, len(jobs), func(i int) error {
		j := jobs[i]
		var err error
		out[i], err = respond(ctx, e, spec, questions[j.q], j.pair, j.pos, sc, opt, j.seed)
		return err
	}, opt.Progress)
	return out, err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// respond generates, scores and captures one answer.
func respond(ctx context.Context, e *engine.Engine, spec *TraitSpec, question string, pair int, pos bool, sc Scorer, opt GenerateOptions, seed uint64) (Response, error) {
	r := Response{Question: question, Pair: pair, Positive: pos}
	msgs := []chat.Message{{Role: chat.RoleSystem, Content: spec.System(pair, pos)}, {Role: chat.RoleUser, Content: question}}
	rep, err := e.Reply(ctx, msgs, engine.ReplyOptions{MaxTokens: opt.MaxTokens, Capture: true, Layers: opt.Layers,
		Sampling: sample.Params{Temperature: opt.Temperature, Seed: seed}})
	if err != nil {
		return r, fmt.Errorf("question %q: %w", question, err)
	}
	r.Text = rep.Text
	if r.Score, err = sc.Score(ctx, spec, question, r.Text); err != nil {
		return r, err
	}
	// An empty answer has no response mean; the filter drops it.
	r.Mean, r.LastPrompt = rep.Means, rep.LastPrompt
	return r, nil
}

// Filter is the recipe's selection of contrastive answers.
type Filter struct {
	// Threshold: positive answers need Trait ≥ Threshold, negative answers
	// Trait < Threshold (default 50).
	Threshold float64
	// MinCoherence: answers with a measured coherence below it are dropped
	// (default 50).
	MinCoherence float64
}

// threshold is the trait score that separates the sides (default 50).
func (f Filter) threshold() float64 {
	if f.Threshold == 0 {
		return 50
	}
	return f.Threshold
}

func (f Filter) keep(r *Response) bool {
	th, mc := f.threshold(), f.MinCoherence
	if mc == 0 {
		mc = 50
	}
	if r.Mean == nil || (r.Score.Coherence >= 0 && r.Score.Coherence < mc) {
		return false
	}
	if r.Positive {
		return r.Score.Trait >= th
	}
	return r.Score.Trait < th
}

// ErrTooFewKept is returned when the filter leaves one side empty: the
// instructions did not elicit (or suppress) the trait on this model.
var ErrTooFewKept = errors.New("too few answers kept on one side")

// DifferenceOf filters responses and returns the per-layer difference of
// response means, mean(kept positive) − mean(kept negative), with the
// counts and scores in Meta.
func DifferenceOf(spec *TraitSpec, model string, layers []int, rs []Response, f Filter) (*Set, error) {
	pos, neg := NewAccumulator(layers), NewAccumulator(layers)
	var sumPos, sumNeg, allPos, allNeg float64
	var nPos, nNeg int
	for i := range rs {
		r := &rs[i]
		if r.Positive {
			allPos += r.Score.Trait
			nPos++
		} else {
			allNeg += r.Score.Trait
			nNeg++
		}
		if !f.keep(r) {
			continue
		}
		acc := neg
		if r.Positive {
			acc, sumPos = pos, sumPos+r.Score.Trait
		} else {
			sumNeg += r.Score.Trait
		}
		if err := acc.Add(r.Mean); err != nil {
			return nil, err
		}
	}
	if pos.N() == 0 || neg.N() == 0 {
		return nil, fmt.Errorf("trait %s: kept %d of %d positive and %d of %d negative answers (positive mean score %.1f, negative %.1f): %w",
			spec.Name, pos.N(), nPos, neg.N(), nNeg, allPos/math.Max(1, float64(nPos)), allNeg/math.Max(1, float64(nNeg)), ErrTooFewKept)
	}
	s, err := Difference(spec.Name, model, pos, neg)
	if err != nil {
		return nil, err
	}
	f1 := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	s.Meta["method"] = "persona_vectors"
	s.Meta["trait"] = spec.Name
	s.Meta["generated_pos"] = strconv.Itoa(nPos)
	s.Meta["generated_neg"] = strconv.Itoa(nNeg)
	s.Meta["score_mean_pos"] = f1(allPos / float64(nPos))
	s.Meta["score_mean_neg"] = f1(allNeg / float64(nNeg))
	s.Meta["score_mean_kept_pos"] = f1(sumPos / float64(pos.N()))
	s.Meta["score_mean_kept_neg"] = f1(sumNeg / float64(neg.N()))
	return s, nil
}

// ExtractOptions say how Extract generates, filters and labels a vector.
type ExtractOptions struct {
	GenerateOptions
	Filter Filter
	// Model and Judge name the model and the scorer in the vector's
	// metadata.
	Model, Judge string
}

// Extract is the persona-vectors recipe end to end: answer the spec's
// extraction questions under every instruction pair (Generate), filter and
// difference the response means (DifferenceOf), and record how in Meta. It
// returns the answers too, for inspection.
func Extract(ctx context.Context, e *engine.Engine, spec *TraitSpec, sc Scorer, o ExtractOptions) (*Set, []Response, error) {
	o.defaults()
	rs, err := Generate(ctx, e, spec, spec.Questions.Extraction, sc, o.GenerateOptions)
	if err != nil {
		return nil, rs, err
	}
	set, err := ExtractFrom(e, spec, rs, o)
	return set, rs, err
}

// ExtractFrom is Extract's second half: the vector from answers already
// generated (by Generate, or by GenerateBatch over every extraction
// question), labelled as Extract labels it.
func ExtractFrom(e *engine.Engine, spec *TraitSpec, rs []Response, o ExtractOptions) (*Set, error) {
	layers := o.Layers
	if layers == nil {
		layers = make([]int, e.Model.NumLayers)
		for i := range layers {
			layers[i] = i
		}
	}
	o.defaults()
	set, err := DifferenceOf(spec, o.Model, layers, rs, o.Filter)
	if err != nil {
		return nil, err
	}
	set.Meta["judge"] = o.Judge
	set.Meta["spec"] = filepath.Base(spec.File)
	set.Meta["samples_per_instruction"] = strconv.Itoa(o.Samples)
	set.Meta["threshold"] = strconv.FormatFloat(o.Filter.threshold(), 'g', -1, 64)
	set.Meta["architecture"] = e.Model.Arch
	return set, nil
}

// Projection is one assistant turn's projection on a vector set.
type Projection struct {
	Chat    int   `json:"chat"` // 1-based
	Turn    int   `json:"turn"` // 1-based among assistant turns
	Message int   `json:"message"`
	Layers  []int `json:"layers"`
	// Mean[i] is the response mean's projection a·v/‖v‖ at Layers[i];
	// LastPrompt[i] the projection of the last token before the reply (the
	// persona-vectors paper's predictive monitor).
	Mean       []float64 `json:"response_mean"`
	LastPrompt []float64 `json:"last_prompt"`
}

// ProjectChats projects every assistant turn of chats on s at layers (nil:
// every layer of s).
func ProjectChats(ctx context.Context, e *engine.Engine, s *Set, chats []chat.Chat, layers []int, progress func(done, total int)) ([]Projection, error) {
	if layers == nil {
		layers = s.Layers
	}
	for _, l := range layers {
		if _, err := s.Vector(l); err != nil {
			return nil, err
		}
	}
	var out []Projection
	for ci, c := range chats {
		act, err := e.Capture(ctx, c.Messages, engine.CaptureOptions{Layers: layers})
		if err != nil {
			return out, fmt.Errorf("conversation %d: %w", ci+1, err)
		}
		for k, t := range act.Turns {
			p := Projection{Chat: ci + 1, Turn: k + 1, Message: t.Message, Layers: layers}
			for i, l := range layers {
				m, lp := 0.0, 0.0
				if t.Mean != nil {
					m, _ = s.Project(l, t.Mean[i])
				}
				if t.LastPrompt != nil {
					lp, _ = s.Project(l, t.LastPrompt[i])
				}
				p.Mean, p.LastPrompt = append(p.Mean, m), append(p.LastPrompt, lp)
			}
			out = append(out, p)
		}
		if progress != nil {
			progress(ci+1, len(chats))
		}
	}
	return out, nil
}
