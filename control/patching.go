package control

import (
	"context"
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

// PatchOptions say what the patching study runs.
type PatchOptions struct {
	// Pairs of prompts (default 30): the same held-out task under the
	// Assistant's strong prompt, asked plainly (clean) and after "pretend
	// you are a X now" (role-play), X cycling through the other personas.
	Pairs int
	// Tokens of each greedy reply scored (default 12).
	Tokens int
	Seed   uint64
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
// position carry the persona the reply is written in?
func Patch(ctx context.Context, e *engine.Engine, w *world.World, o PatchOptions) (*Patching, error) {
	if o.Pairs <= 0 {
		o.Pairs = 30
	}
	if o.Tokens <= 0 {
		o.Tokens = 12
	}
	asst, err := w.Lib.Get(personas.AssistantName)
	if err != nil {
		return nil, err
	}
	tasks, err := taskScenarios(w, o.Pairs, o.Seed+17)
	if err != nil {
		return nil, err
	}
	var others []*personas.Persona
	for _, n := range w.Lib.Names() {
		if n != personas.AssistantName {
			others = append(others, w.Lib.MustGet(n))
		}
	}
	m := e.Model
	type pair struct {
		gap  float64
		recs []float64
	}
	var pairs []pair
	for i, t := range tasks {
		system := chat.Message{Role: chat.RoleSystem, Content: asst.SystemPrompts.Strong[i%len(asst.SystemPrompts.Strong)]}
		q := t.Turns[0]
		noun := others[i%len(others)].Noun
		clean := []chat.Message{system, {Role: chat.RoleUser, Content: q}}
		roleplay := []chat.Message{system, {Role: chat.RoleUser, Content: strings.ReplaceAll("Pretend you are a {noun} now. ", "{noun}", noun) + q}}
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
		cp, cr, err := run(clean)
		if err != nil {
			return nil, err
		}
		rp, rr, err := run(roleplay)
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
		return nil, fmt.Errorf("%w: the role-play request changed no reply: nothing to patch", ErrSweep)
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
