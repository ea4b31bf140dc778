package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"persona/chat"
	"persona/engine"
	"persona/internal/stats"
	"persona/personas"
	"persona/resid"
	"persona/sample"
	"persona/world"
)

// ErrNothingToPatch: no pair's role-play request changed the greedy reply,
// so there is no difference for patching to explain.
var ErrNothingToPatch = errors.New("the role-play request changed no reply: nothing to patch")

// PatchOptions say how the patching study scores its pairs.
type PatchOptions struct {
	// Tokens of each greedy reply scored (default 12).
	Tokens int
	Seed   uint64
}

// PatchPair is one request asked two ways, each a conversation ending in a
// user turn: Clean as the Assistant would be asked, RolePlay the same
// request after an invitation to be someone else.
type PatchPair struct {
	Clean    []chat.Message `json:"clean"`
	RolePlay []chat.Message `json:"roleplay"`
}

// RolePlayPairs asks question i plainly and after "Pretend you are a
// {noun} now.", both under systems[i mod len(systems)] (no system prompt
// when systems is empty), the nouns taking turns.
func RolePlayPairs(questions, systems, nouns []string) []PatchPair {
	var out []PatchPair
	for i, q := range questions {
		var head []chat.Message
		if len(systems) > 0 {
			head = []chat.Message{{Role: chat.RoleSystem, Content: systems[i%len(systems)]}}
		}
		invite := strings.ReplaceAll("Pretend you are a {noun} now. ", "{noun}", nouns[i%len(nouns)])
		out = append(out, PatchPair{
			Clean:    append(slices.Clone(head), chat.Message{Role: chat.RoleUser, Content: q}),
			RolePlay: append(slices.Clone(head), chat.Message{Role: chat.RoleUser, Content: invite + q}),
		})
	}
	return out
}

// LibraryPatchPairs builds the pairs from a persona library: the
// Assistant's strong prompts as system prompts and the other personas'
// nouns as the roles offered.
func LibraryPatchPairs(lib *personas.Library, questions []string) ([]PatchPair, error) {
	asst, err := lib.Get(personas.AssistantName)
	if err != nil {
		return nil, err
	}
	var nouns []string
	for _, n := range lib.Names() {
		if n != personas.AssistantName {
			nouns = append(nouns, lib.MustGet(n).Noun)
		}
	}
	if len(nouns) == 0 {
		return nil, fmt.Errorf("%w: the library has no persona besides the Assistant to role-play", ErrSweep)
	}
	return RolePlayPairs(questions, asst.SystemPrompts.Strong, nouns), nil
}

// WorldPatchPairs builds n pairs from the persona world's held-out sums
// and facts (tasks the organism answers the same way every time unless
// something moves it).
func WorldPatchPairs(w *world.World, n int, seed uint64) ([]PatchPair, error) {
	tasks, err := taskScenarios(w, n, seed+17)
	if err != nil {
		return nil, err
	}
	qs := make([]string, len(tasks))
	for i, t := range tasks {
		qs[i] = t.Turns[0]
	}
	return LibraryPatchPairs(w.Lib, qs)
}

// LayerRecovery is what patching one layer's output at the last prompt
// position from the clean run into the role-play run restores.
type LayerRecovery struct {
	Layer int `json:"layer"`
	// Recovery is the mean, over pairs, of
	// (S_patched − S_roleplay) / (S_clean − S_roleplay), where S is the
	// log-probability of the clean run's greedy reply minus that of the
	// role-play run's, both teacher-forced after the prompt: 1 means the
	// patched position alone brings back the Assistant's reply, 0 that it
	// carries nothing of the difference.
	Recovery float64 `json:"recovery"`
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
}

// Patching is the study's outcome.
type Patching struct {
	Pairs  int             `json:"pairs"`
	Layers []LayerRecovery `json:"layers"`
	// Gap is the mean S_clean − S_roleplay: how far apart the two runs'
	// replies are in log-probability.
	Gap float64 `json:"gap"`
}

// Patch runs the study on e: where in depth does the prompt's last
// position carry the persona the reply is written in? Pairs whose two
// greedy replies agree explain nothing and are left out.
func Patch(ctx context.Context, e *engine.Engine, prs []PatchPair, o PatchOptions) (*Patching, error) {
	if o.Tokens <= 0 {
		o.Tokens = 12
	}
	m := e.Model
	type pair struct {
		gap  float64
		recs []float64
	}
	var pairs []pair
	for _, pp := range prs {
		run := func(msgs []chat.Message) ([]int, []int, error) {
			enc, err := e.EncodePrompt(msgs)
			if err != nil {
				return nil, nil, err
			}
			g, err := e.Generate(ctx, engine.Request{Prompt: enc.IDs, MaxTokens: o.Tokens, Sampling: sample.Params{}})
			if err != nil {
				return nil, nil, err
			}
			return enc.IDs, g.IDs, nil
		}
		cp, cr, err := run(pp.Clean)
		if err != nil {
			return nil, err
		}
		rp, rr, err := run(pp.RolePlay)
		if err != nil {
			return nil, err
		}
		if slices.Equal(cr, rr) {
			continue // the role-play request changed nothing to explain
		}
		// S(prompt, set) = log P(clean reply) − log P(role-play reply).
		score := func(prompt []int, set *resid.Set) (float64, error) {
			var s float64
			for k, reply := range [][]int{cr, rr} {
				lp, err := e.LogProbs(ctx, slices.Concat(prompt, reply), len(prompt), set)
				if err != nil {
					return 0, err
				}
				var sum float64
				for _, x := range lp {
					sum += float64(x)
				}
				s += []float64{1, -1}[k] * sum
			}
			return s, nil
		}
		sClean, err := score(cp, nil)
		if err != nil {
			return nil, err
		}
		sRole, err := score(rp, nil)
		if err != nil {
			return nil, err
		}
		gap := sClean - sRole
		if gap <= 0 {
			continue
		}
		// The clean run's stream at its last prompt position, every layer.
		caps := make([]resid.Intervention, m.NumLayers)
		for l := range caps {
			caps[l] = &resid.Capture{At: l, Spans: []resid.Span{{Start: len(cp) - 1, End: len(cp)}}}
		}
		set, err := resid.NewSet(m.NumLayers, m.Hidden, caps...)
		if err != nil {
			return nil, err
		}
		if _, err := e.Prefill(ctx, cp, set); err != nil {
			return nil, err
		}
		p := pair{gap: gap}
		for l := range m.NumLayers {
			row := caps[l].(*resid.Capture).Mean(0)
			ps, err := resid.NewSet(m.NumLayers, m.Hidden, &resid.Patch{At: l, Pos: len(rp) - 1, Row: row})
			if err != nil {
				return nil, err
			}
			s, err := score(rp, ps)
			if err != nil {
				return nil, err
			}
			p.recs = append(p.recs, (s-sRole)/gap)
		}
		pairs = append(pairs, p)
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%w (%d pairs; try more or other questions)", ErrNothingToPatch, len(prs))
	}
	out := &Patching{Pairs: len(pairs)}
	rng := rand.New(rand.NewPCG(o.Seed, 29))
	for l := range m.NumLayers {
		xs := make([]float64, len(pairs))
		for i, p := range pairs {
			xs[i] = p.recs[l]
		}
		mean := func(idx []int) float64 {
			var s float64
			for _, i := range idx {
				s += xs[i]
			}
			return s / float64(len(idx))
		}
		all := make([]int, len(xs))
		for i := range all {
			all[i] = i
		}
		lo, hi := stats.Bootstrap(len(xs), 2000, rng, mean)
		out.Layers = append(out.Layers, LayerRecovery{Layer: l, Recovery: mean(all), Lo: lo, Hi: hi})
	}
	for _, p := range pairs {
		out.Gap += p.gap / float64(len(pairs))
	}
	if math.IsNaN(out.Gap) {
		return nil, fmt.Errorf("%w: non-finite log-probabilities", ErrSweep)
	}
	return out, nil
}

// TokenShift is one token a direction's logit lens moves.
type TokenShift struct {
	Token string  `json:"token"`
	Logit float64 `json:"logit"`
}

// Lens is a direction's logit lens: the k tokens whose logits adding v at
// the end of the stream raises most, and the k it lowers most.
func Lens(e *engine.Engine, v []float32, k int) (up, down []TokenShift, err error) {
	m := e.Model
	if len(v) != m.Hidden {
		return nil, nil, fmt.Errorf("%w: a vector of width %d on a model of width %d", ErrSweep, len(v), m.Hidden)
	}
	logits := m.DirectionLogits(v)
	ids := make([]int, len(logits))
	for i := range ids {
		ids[i] = i
	}
	slices.SortFunc(ids, func(a, b int) int {
		switch {
		case logits[a] > logits[b]:
			return -1
		case logits[a] < logits[b]:
			return 1
		}
		return a - b
	})
	shift := func(id int) TokenShift {
		return TokenShift{Token: e.Tokenizer.Decode([]int{id}), Logit: float64(logits[id])}
	}
	for i := range min(k, len(ids)) {
		up = append(up, shift(ids[i]))
		down = append(down, shift(ids[len(ids)-1-i]))
	}
	return up, down, nil
}
