// Package sample picks the next token from logits: greedy, or a seeded random
// draw after repetition penalty, temperature, top-k, top-p and min-p, in that
// order (the order Hugging Face's generate applies its logits processors).
// The same seed, logits and history always give the same token.
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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
	// Watermark, if set, marks the sampled tokens (watermark.go).
	Watermark *Watermark `json:"watermark,omitempty"`
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
	if p.Watermark != nil {
		if _, err := p.Watermark.withDefaults(); err != nil {
			return err
		}
	}
	return nil
}

// Sampler draws tokens. It is not safe for concurrent use.
type Sampler struct {
	p  Params
	wm *Watermark // with defaults filled, nil for none
	// keyed holds the step seeds the Gumbel scheme has used: a context
	// that comes back is sampled without the mark, since the keyed draw
	// would choose the same token again and loop, and the detector counts a
	// repeated (context, token) pair only once anyway.
	keyed map[uint64]bool
	rng   *rand.Rand
	cand  []candidate
}

type candidate struct {
	id int
	p  float32
}

// New returns a sampler seeded from p.Seed. p must be valid (Validate).
func New(p Params) *Sampler {
	s := &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15))}
	if p.Watermark != nil {
		w, err := p.Watermark.withDefaults()
		if err != nil {
			panic("sample: " + err.Error())
		}
		s.wm = &w
	}
	return s
}

// Sample returns the next token id. logits is modified (penalised, scaled);
// history is the sequence so far, used by the repetition penalty. The draw
// walks the candidates by probability when top-k or top-p ranked them and by
// id otherwise: the same distribution either way.
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
	var seed uint64
	marked := false
	if s.wm != nil {
		if ctx, ok := s.wm.context(history); ok {
			seed, marked = stepSeed(s.wm.Key, ctx), true
			if s.wm.Scheme == "gumbel" {
				if s.keyed == nil {
					s.keyed = map[uint64]bool{}
				}
				marked = !s.keyed[seed]
				s.keyed[seed] = true
			}
		}
	}
	green := marked && s.wm.Scheme == "green"
	if p.Temperature == 0 {
		if green {
			return s.greenArgmax(logits, seed)
		}
		return Argmax(logits)
	}
	c := s.cand[:0]
	topk := p.TopK > 0 && p.TopK < len(logits)
	if green && !topk {
		// The bias goes into the logits before the copy: one vector pass
		// over the vocabulary (addGreen).
		addGreen(logits, seed, greenBelow(s.wm.Gamma), s.wm.Delta)
	}
	for id, l := range logits {
		c = append(c, candidate{id, l / p.Temperature})
	}
	// Truncation needs the candidates in order of probability, but only
	// the survivors: a heap yields them in O(V + kept·log V) where sorting a
	// 150k vocabulary per token cost ~140 ms. Ties go to the lower id.
	sorted := false
	if topk {
		var bias func(*candidate)
		var reach float32
		if green {
			thr, d := greenBelow(s.wm.Gamma), s.wm.Delta/p.Temperature
			bias = func(x *candidate) {
				if greenLane(seed, x.id) < thr {
					x.p += d
				}
			}
			reach = d
		}
		c = topK(c, p.TopK, bias, reach)
		sorted = true
	}
	m := c[0].p
	for _, x := range c[1:] {
		m = max(m, x.p)
	}
	var sum float64
	for i := range c {
		e := math.Exp(float64(c[i].p - m))
		c[i].p = float32(e)
		sum += e
	}
	for i := range c {
		c[i].p = float32(float64(c[i].p) / sum)
	}
	top := float32(1 / sum) // the largest probability: exp(m − m)/sum
	if p.TopP > 0 && p.TopP < 1 {
		var cum float32
		enough := func(x candidate) bool {
			cum += x.p
			return cum >= p.TopP
		}
		if sorted {
			for i, x := range c {
				if enough(x) {
					c = c[:i+1]
					break
				}
			}
		} else {
			c = largest(c, enough)
		}
	}
	if p.MinP > 0 {
		floor := p.MinP * top
		n := 0
		for _, x := range c {
			if x.p >= floor {
				c[n] = x
				n++
			}
		}
		c = c[:n]
	}
	s.cand = c
	if marked && s.wm.Scheme == "gumbel" {
		// argmax r^(1/p) over the survivors, r the step's uniform for
		// each token: an exact draw from p, decided by the key. Written as
		// argmin E/p with E = −log r ~ Exp(1); since E ≥ 1 − r, a token
		// whose 1 − r already reaches the best E/p times its p cannot win,
		// and the logarithm is taken only for the few that might.
		best, bestV := c[0].id, math.Inf(1)
		for _, x := range c {
			if x.p <= 0 {
				continue
			}
			r := unit(prf(seed, x.id))
			p := float64(x.p)
			if 1-r >= bestV*p {
				continue
			}
			if v := -math.Log(r) / p; v < bestV {
				best, bestV = x.id, v
			}
		}
		return best
	}
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

// greenArgmax is Argmax of the logits with the green list's bias added:
// only tokens within the bias of the unbiased maximum can win, so only they
// are hashed.
func (s *Sampler) greenArgmax(logits []float32, seed uint64) int {
	best := Argmax(logits)
	floor := logits[best] - s.wm.Delta
	thr := greenBelow(s.wm.Gamma)
	bestV := float32(math.Inf(-1))
	for id, l := range logits {
		if l < floor {
			continue
		}
		if greenLane(seed, id) < thr {
			l += s.wm.Delta
		}
		if l > bestV {
			best, bestV = id, l
		}
	}
	return best
}

// largest reorders c and returns its largest candidates in descending order,
// taken one by one until done(the one just taken) says to stop (or c runs
// out). It is a heap sort stopped early: the heap is built in O(len(c)) and
// each taken candidate costs O(log len(c)).
func largest(c []candidate, done func(x candidate) bool) []candidate {
	n := len(c)
	for i := n/2 - 1; i >= 0; i-- {
		siftDown(c, i, n)
	}
	for n > 0 {
		c[0], c[n-1] = c[n-1], c[0]
		n--
		siftDown(c, 0, n)
		if done(c[n]) {
			break
		}
	}
	out := c[n:]
	slices.Reverse(out)
	return out
}

// topK returns the k best candidates of c, best first; reach is the
// largest value bias adds. A min-heap of the k
// best so far turns most candidates away with one comparison, where
// largest's full heap would be built over the whole vocabulary first. A
// green-list bias, when given, is applied to a candidate only if it could
// then enter the heap (its probability plus the bias beats the worst kept):
// the watermark costs a hash for the few contenders, not for the vocabulary.
func topK(c []candidate, k int, bias func(*candidate), reach float32) []candidate {
	h := c[:k]
	if bias != nil {
		for i := range h {
			bias(&h[i])
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		siftDownWorst(h, i)
	}
	for _, x := range c[k:] {
		if bias != nil {
			if !(candidate{x.id, x.p + reach}).before(h[0]) {
				continue // not even the bias would let it in
			}
			bias(&x)
		}
		if x.before(h[0]) {
			h[0] = x
			siftDownWorst(h, 0)
		}
	}
	slices.SortFunc(h, func(a, b candidate) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	return h
}

// siftDownWorst restores, below i, the order of the heap h that keeps the
// worst candidate at the root (siftDown's mirror image).
func siftDownWorst(h []candidate, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		if r := l + 1; r < len(h) && h[l].before(h[r]) {
			l = r
		}
		if !h[i].before(h[l]) {
			return
		}
		h[i], h[l] = h[l], h[i]
		i = l
	}
}

// siftDown restores the max-heap order of c[:n] below i.
func siftDown(c []candidate, i, n int) {
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		if r := l + 1; r < n && c[r].before(c[l]) {
			l = r
		}
		if !c[l].before(c[i]) {
			return
		}
		c[i], c[l] = c[l], c[i]
		i = l
	}
}

// before orders candidates by probability, then by id.
func (a candidate) before(b candidate) bool { return a.p > b.p || a.p == b.p && a.id < b.id }

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
