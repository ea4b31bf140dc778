package watermark

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"persona/engine"
	"persona/personas"
	"persona/sample"
	"persona/world"
)

// Generation says how a source samples.
type Generation struct {
	MaxTokens   int
	Temperature float32
	Seed        uint64
	// Opening is how many tokens PromptSource samples without any mark
	// before each text (with the text's seed, so its marked and unmarked
	// versions share them) and adds to the prompt: texts continued from one
	// prompt then start apart. Without it, a scheme whose draw is decided by
	// the key and the context (Gumbel) writes near-copies of one text.
	Opening int
}

// generate samples one continuation of prompt and records, per token, its
// log-probability and the entropy of the model's own distribution. A final
// end-of-sequence token is dropped unless ignoreStop: it ends the turn and
// is not part of what the model said.
func generate(ctx context.Context, e *engine.Engine, prompt []int, g Generation, seed uint64, wm *sample.Watermark, ignoreStop bool) (*engine.Result, []float32, error) {
	var entropy []float32
	res, err := e.Generate(ctx, engine.Request{
		Prompt: prompt, MaxTokens: g.MaxTokens, IgnoreStop: ignoreStop,
		Sampling: sample.Params{Temperature: g.Temperature, TopP: 1, Seed: seed, Watermark: wm},
		OnToken: func(st engine.Step) error {
			var h float64
			for _, lp := range st.LogProbs {
				if lp > -80 {
					h -= math.Exp(float64(lp)) * float64(lp)
				}
			}
			entropy = append(entropy, float32(h))
			return nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	if res.Stop == "eos" {
		n := len(res.IDs) - 1
		res.IDs, res.LogProbs, entropy = res.IDs[:n], res.LogProbs[:n], entropy[:n]
	}
	return res, entropy, nil
}

// WorldOptions choose the conversations a world source holds.
type WorldOptions struct {
	Generation
	// Turns per conversation: their replies are one text, the way a
	// deployment would test a conversation's output.
	Turns   int
	Domains []world.Domain // default every domain
}

// WorldSource makes texts from n world conversations with the Assistant
// under its strong system prompt, the model answering every turn itself;
// the oracle grades the sums and facts. Text i is conversation i.
func WorldSource(w *world.World, e *engine.Engine, n int, o WorldOptions) (Source, error) {
	cells := len(o.Domains)
	if cells == 0 {
		cells = len(world.Domains)
	}
	scen, err := w.Eval(o.Seed, world.EvalOptions{Domains: o.Domains, Systems: []world.SystemKind{world.SystemStrong},
		Turns: o.Turns, PerCell: (n + cells - 1) / cells, Persona: personas.AssistantName})
	if err != nil {
		return nil, err
	}
	oracle := w.Oracle()
	return func(ctx context.Context, i int, wm *sample.Watermark) (Text, error) {
		var t Text
		if i >= len(scen) {
			return t, fmt.Errorf("%w: text %d of a source of %d", ErrOptions, i, len(scen))
		}
		s := scen[i]
		var replies []string
		for turn := range s.Turns {
			msgs := s.Messages(replies)
			enc, err := e.EncodeChat(msgs, true)
			if err != nil {
				return t, err
			}
			res, entropy, err := generate(ctx, e, enc.IDs, o.Generation, o.Seed+uint64(i)*64+uint64(turn), wm, false)
			if err != nil {
				return t, err
			}
			reply := strings.TrimSpace(e.Tokenizer.DecodeSkipSpecial(res.IDs))
			seg := Segment{Kind: string(s.Requests[turn]), Start: len(t.IDs), End: len(t.IDs) + len(res.IDs)}
			if r := s.Requests[turn]; r == personas.Arithmetic || r == personas.Fact {
				// A reply with no recognisable answer is a wrong one.
				j := oracle.Judge(msgs, reply)
				right := j.Correct != nil && *j.Correct
				seg.Correct = &right
			}
			t.Segments = append(t.Segments, seg)
			t.IDs = append(t.IDs, res.IDs...)
			t.LogProbs = append(t.LogProbs, res.LogProbs...)
			t.Entropy = append(t.Entropy, entropy...)
			replies = append(replies, reply)
		}
		return t, nil
	}, nil
}

// PromptSource makes text i by continuing prompts[i mod len(prompts)] with
// seed Seed + i (after g.Opening unmarked tokens): the source for any
// model, from chats or a raw prompt.
// ignoreStop keeps generating past an end-of-sequence token, so every text
// reaches MaxTokens.
func PromptSource(e *engine.Engine, prompts [][]int, g Generation, ignoreStop bool) (Source, error) {
	if len(prompts) == 0 {
		return nil, fmt.Errorf("%w: no prompts", ErrOptions)
	}
	if g.Opening < 0 {
		return nil, fmt.Errorf("%w: opening %d tokens", ErrOptions, g.Opening)
	}
	return func(ctx context.Context, i int, wm *sample.Watermark) (Text, error) {
		prompt, seed := prompts[i%len(prompts)], g.Seed+uint64(i)
		if g.Opening > 0 {
			open, _, err := generate(ctx, e, prompt, Generation{MaxTokens: g.Opening, Temperature: g.Temperature}, seed, nil, true)
			if err != nil {
				return Text{}, err
			}
			prompt = append(slices.Clip(prompt), open.IDs...)
		}
		res, entropy, err := generate(ctx, e, prompt, g, seed, wm, ignoreStop)
		if err != nil {
			return Text{}, err
		}
		return Text{IDs: res.IDs, LogProbs: res.LogProbs, Entropy: entropy,
			Segments: []Segment{{Kind: "text", End: len(res.IDs)}}}, nil
	}, nil
}
