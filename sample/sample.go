// Package sample picks the next token from logits: greedy, or a seeded random
// draw after repetition penalty, temperature, top-k, top-p and min-p, in that
// order (the order Hugging Face's generate applies its logits processors).
// The same seed, logits and history always give the same token.
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Params configure a Sampler. The zero value is greedy decoding.
type Params struct {
	Temperature       float32 `json:"temperature"`        // 0: greedy
	TopK              int     `json:"top_k"`              // 0: off
	TopP              float32 `json:"top_p"`              // 0 or 1: off
	MinP              float32 `json:"min_p"`              // 0: off
	RepetitionPenalty float32 `json:"repetition_penalty"` // 0 or 1: off
	RepeatLastN       int     `json:"repeat_last_n"`      // window of history penalised; 0: all
	Seed              uint64  `json:"seed"`
}

// Validate reports out-of-range parameters.
func (p Params) Validate() error {
	switch {
	case p.Temperature < 0 || math.IsNaN(float64(p.Temperature)):
		return fmt.Errorf("temperature %g must be ≥ 0", p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("top-k %d must be ≥ 0", p.TopK)
	case p.TopP < 0 || p.TopP > 1:
		return fmt.Errorf("top-p %g must be in [0, 1]", p.TopP)
	case p.MinP < 0 || p.MinP > 1:
		return fmt.Errorf("min-p %g must be in [0, 1]", p.MinP)
	case p.RepetitionPenalty < 0:
		return fmt.Errorf("repetition penalty %g must be ≥ 0", p.RepetitionPenalty)
	}
	return nil
}

// Sampler draws tokens. It is not safe for concurrent use.
type Sampler struct {
	p    Params
	rng  *rand.Rand
	cand []candidate
}

type candidate struct {
	id int
	p  float32
}

// New returns a sampler seeded from p.Seed.
func New(p Params) *Sampler {
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15))}
}

// Sample returns the next token id. logits is modified (penalised, scaled);
// history is the sequence so far, used by the repetition penalty.
func (s *Sampler) Sample(logits []float32, history []int) int {
	p := s.p
	if p.RepetitionPenalty > 0 && p.RepetitionPenalty != 1 {
		h := history
		if p.RepeatLastN > 0 && len(h) > p.RepeatLastN {
			h = h[len(h)-p.RepeatLastN:]
		}
		seen := make(map[int]bool, len(h))
		for _, id := range h {
			if id < 0 || id >= len(logits) || seen[id] {
				continue
			}
			seen[id] = true
			if logits[id] > 0 {
				logits[id] /= p.RepetitionPenalty
			} else {
				logits[id] *= p.RepetitionPenalty
			}
		}
	}
	if p.Temperature == 0 {
		return Argmax(logits)
	}
	c := s.cand[:0]
	for id, l := range logits {
		c = append(c, candidate{id, l / p.Temperature})
	}
	sort.SliceStable(c, func(i, j int) bool { return c[i].p > c[j].p })
	if p.TopK > 0 && p.TopK < len(c) {
		c = c[:p.TopK]
	}
	// Softmax over the survivors (c is sorted, c[0] is the max logit).
	m := c[0].p
	var sum float64
	for i := range c {
		e := math.Exp(float64(c[i].p - m))
		c[i].p = float32(e)
		sum += e
	}
	for i := range c {
		c[i].p = float32(float64(c[i].p) / sum)
	}
	if p.TopP > 0 && p.TopP < 1 {
		var cum float32
		for i := range c {
			cum += c[i].p
			if cum >= p.TopP {
				c = c[:i+1]
				break
			}
		}
	}
	if p.MinP > 0 {
		floor := p.MinP * c[0].p
		n := 1
		for n < len(c) && c[n].p >= floor {
			n++
		}
		c = c[:n]
	}
	s.cand = c
	var total float32
	for _, x := range c {
		total += x.p
	}
	r := s.rng.Float32() * total
	for _, x := range c {
		r -= x.p
		if r < 0 {
			return x.id
		}
	}
	return c[len(c)-1].id
}

// Argmax returns the index of the largest value (the first, on ties).
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
