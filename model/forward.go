package model

import (
	"runtime"
	"slices"

	"persona/kernel"
	"persona/resid"
	"persona/tensor"
)

// Logits selects which positions of a forward call get output logits.
type Logits int

const (
	NoLogits   Logits = iota // hidden states only (activation capture)
	LastLogits               // the last position: generation
	AllLogits                // every position: teacher-forced scoring
)

// State is one sequence's KV cache and scratch space. It grows as tokens are
// added, up to the model's MaxSeq. A State is not safe for concurrent use;
// use one per sequence.
type State struct {
	m *Model
	// k[l], v[l] hold Len rows of KVHeads·HeadDim for layer l.
	k, v [][]float32
	// Len is the number of positions in the cache.
	Len int
	// PromptLen separates prompt positions (< PromptLen) from generated ones
	// for interventions restricted to either.
	PromptLen int

	buf scratch
}

// scratch holds the per-call activations of a chunk of T positions.
type scratch struct {
	T                       int
	x, xn, q, kk, vv, att   []float32
	gate, up, cos, sin, out []float32
	cosL, sinL              []float32 // sliding layers' RoPE tables, when they differ
	// Attention's buffers, which grow with the cache: the scores of a
	// decode step (a row per chunk of heads), and one head's queries,
	// outputs, keys, values and a block of probabilities for a prompt.
	scores, qh, oh, kg, vg, p []float32
}

// grow returns (*b)[:n], reallocated with room to grow when it is too short:
// attention's buffers lengthen by a position per decoded token, and
// reallocating them per token would make a step's worth of garbage.
func grow(b *[]float32, n int) []float32 {
	if cap(*b) < n {
		*b = slices.Grow((*b)[:0], n)
	}
	return (*b)[:n]
}

func (s *scratch) ensure(c *Config, T int) {
	if T <= s.T {
		return
	}
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	s.T = T
	s.x, s.xn, s.out = make([]float32, T*c.Hidden), make([]float32, T*c.Hidden), make([]float32, T*c.Hidden)
	s.q, s.att = make([]float32, T*q), make([]float32, T*q)
	s.kk, s.vv = make([]float32, T*kv), make([]float32, T*kv)
	s.gate, s.up = make([]float32, T*c.FFN), make([]float32, T*c.FFN)
	s.cos, s.sin = make([]float32, T*c.HeadDim/2), make([]float32, T*c.HeadDim/2)
	if c.localRoPE() {
		s.cosL, s.sinL = make([]float32, T*c.HeadDim/2), make([]float32, T*c.HeadDim/2)
	}
}

// NewState returns an empty sequence state.
func (m *Model) NewState() *State {
	return &State{m: m, k: make([][]float32, m.NumLayers), v: make([][]float32, m.NumLayers)}
}

// Truncate rewinds the cache to n positions (n ≤ Len), so a shared prefix can
// be reused for several continuations.
func (s *State) Truncate(n int) {
	if n < 0 || n > s.Len {
		panic("model: Truncate out of range")
	}
	kv := s.m.KVHeads * s.m.HeadDim
	for l := range s.k {
		s.k[l], s.v[l] = s.k[l][:n*kv], s.v[l][:n*kv]
	}
	s.Len = n
}

// Clone returns an independent copy of the cache (scratch is not shared).
func (s *State) Clone() *State {
	c := s.m.NewState()
	for l := range s.k {
		c.k[l] = append(make([]float32, 0, cap(s.k[l])), s.k[l]...)
		c.v[l] = append(make([]float32, 0, cap(s.v[l])), s.v[l]...)
	}
	c.Len, c.PromptLen = s.Len, s.PromptLen
	return c
}

// Forward runs tokens at positions Len … Len+T−1 through the model, appends
// their keys and values to the cache, applies the interventions (which may be
// nil) at the output of each block, and returns logits as asked: nil,
// (1, Vocab) for the last position, or (T, Vocab). The returned slice is
// owned by the caller.
func (m *Model) Forward(s *State, tokens []int, iv *resid.Set, want Logits) []float32 {
	T, D := len(tokens), m.Hidden
	if T == 0 {
		return nil
	}
	if s.Len+T > m.MaxSeq {
		panic("model: sequence longer than the model's context; callers must check Model.MaxSeq")
	}
	b := &s.buf
	b.ensure(&m.Config, T)
	x := b.x[:T*D]
	for t, id := range tokens {
		m.Embed.DecodeRow(x[t*D:(t+1)*D], id)
	}
	if m.EmbedScale != 0 {
		kernel.Scale(x, m.EmbedScale)
	}
	m.ropeTables(false, b.cos, b.sin, s.Len, T, nil)
	if m.localRoPE() {
		m.ropeTables(true, b.cosL, b.sinL, s.Len, T, nil)
	}
	for l := range m.Layers {
		m.block(s, l, T)
		iv.Apply(l, resid.Block{H: x, T: T, D: D, Pos0: s.Len, PromptLen: s.PromptLen})
	}
	s.Len += T
	switch want {
	case LastLogits:
		return m.logits(x[(T-1)*D:], 1)
	case AllLogits:
		return m.logits(x, T)
	}
	return nil
}

// Hidden returns the residual stream of the last Forward call: (T, Hidden),
// the final norm not applied. It is scratch: copy before the next call.
func (s *State) Hidden(T int) []float32 { return s.buf.x[:T*s.m.Hidden] }

// DirectionLogits is the logit lens of a residual-stream direction: how
// adding v at the end of the stream moves every token's logit, through the
// final norm's weights (its scale factor, shared by all tokens, left out)
// and the unembedding.
func (m *Model) DirectionLogits(v []float32) []float32 {
	xn := make([]float32, m.Hidden)
	for i := range xn {
		xn[i] = v[i] * m.Norm[i]
	}
	out := make([]float32, m.Vocab)
	kernel.Linear(out, xn, &m.Output, 1)
	return out
}

func (m *Model) logits(x []float32, T int) []float32 {
	xn := make([]float32, T*m.Hidden)
	rmsNorm(xn, x, m.Norm, T, m.Hidden, m.NormEps)
	out := make([]float32, T*m.Vocab)
	kernel.Linear(out, xn, &m.Output, T)
	if m.LogitDivisor != 0 {
		kernel.Scale(out, 1/m.LogitDivisor)
	}
	softcap(out, m.FinalSoftcap)
	return out
}

// block runs decoder block l on the scratch residual stream x (T, Hidden):
//
//	x += O · attention(rope(Q·norm(x)), rope(K·norm(x)), V·norm(x))
//	x += Down · (silu(Gate·norm(x)) ⊙ Up·norm(x))
//
// Gemma puts a norm on each of the two terms before it is added (PostNorms)
// and uses GELU for silu; Granite scales both terms (ResidualScale).
func (m *Model) block(s *State, l, T int) {
	L, b, c := &m.Layers[l], &s.buf, &m.Config
	D, qd, kvd := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	x, xn := b.x[:T*D], b.xn[:T*D]

	rmsNorm(xn, x, L.AttnNorm, T, D, c.NormEps)
	q, k, v := b.q[:T*qd], b.kk[:T*kvd], b.vv[:T*kvd]
	// Q, K and V share their input: one parallel region for the three
	// (one start and one wait per decode step instead of three).
	kernel.LinearMany([][]float32{q, k, v}, xn, []*tensor.Tensor{&L.Q, &L.K, &L.V}, T)
	for _, o := range [...]struct {
		out, bias []float32
		a         *Adapter
	}{{q, L.QBias, L.LoRA[LinQ]}, {k, L.KBias, L.LoRA[LinK]}, {v, L.VBias, L.LoRA[LinV]}} {
		if o.bias != nil {
			addBias(o.out, o.bias, T)
		}
		if o.a != nil {
			o.a.apply(o.out, xn, T)
		}
	}
	if c.QKNorm {
		rmsNorm(q, q, L.QNorm, T*c.Heads, c.HeadDim, c.NormEps)
		rmsNorm(k, k, L.KNorm, T*c.KVHeads, c.HeadDim, c.NormEps)
	}
	cos, sin := b.cos, b.sin
	if c.Sliding(l) && c.localRoPE() {
		cos, sin = b.cosL, b.sinL
	}
	rope(q, T, c.Heads, c.HeadDim, cos, sin, c.RoPEStyle, false)
	rope(k, T, c.KVHeads, c.HeadDim, cos, sin, c.RoPEStyle, false)
	s.k[l] = append(s.k[l], k...)
	s.v[l] = append(s.v[l], v...)
	att := b.att[:T*qd]
	m.attention(b, att, q, s.k[l], s.v[l], s.Len, T, c.Sliding(l))
	out := b.out[:T*D]
	linear(out, att, &L.O, nil, L.LoRA[LinO], T)
	if c.PostNorms {
		rmsNorm(out, out, L.PostAttnNorm, T, D, c.NormEps)
	}
	kernel.Axpy(x, orOne(c.ResidualScale), out)

	rmsNorm(xn, x, L.FFNNorm, T, D, c.NormEps)
	gate, up := b.gate[:T*c.FFN], b.up[:T*c.FFN]
	// Gate and up in one region, finished by SwiGLU chunk by chunk unless an
	// adapter must add its update to them first.
	act := kernel.SiLUMul
	if c.GELU {
		act = geluMul
	}
	if ag, au := L.LoRA[LinGate], L.LoRA[LinUp]; ag == nil && au == nil {
		kernel.LinearPair(gate, up, xn, &L.Gate, &L.Up, T, act)
	} else {
		kernel.LinearPair(gate, up, xn, &L.Gate, &L.Up, T, nil)
		if ag != nil {
			ag.apply(gate, xn, T)
		}
		if au != nil {
			au.apply(up, xn, T)
		}
		act(gate, up)
	}
	linear(out, gate, &L.Down, nil, L.LoRA[LinDown], T)
	if c.PostNorms {
		rmsNorm(out, out, L.PostFFNNorm, T, D, c.NormEps)
	}
	kernel.Axpy(x, orOne(c.ResidualScale), out)
}

// linear: out = x·Wᵀ (+ bias) (+ the adapter's low-rank update).
func linear(out, x []float32, w *tensor.Tensor, bias []float32, a *Adapter, T int) {
	kernel.Linear(out, x, w, T)
	if bias != nil {
		addBias(out, bias, T)
	}
	if a != nil {
		a.apply(out, x, T)
	}
}

// attention computes causal grouped-query attention for T queries at
// positions pos0 … pos0+T−1 against the cache (which already holds them):
//
//	att[t, h] = Σ_j softmax_j(cap(q[t,h]·K[j,g] · scale)) · V[j,g],  g = h / (Heads/KVHeads)
//
// over j ≤ pos0+t (and within the sliding window on sliding layers), with
// scale 1/√HeadDim unless the model sets its own and cap the soft cap, if
// any. Work is split over (query, head) pairs.
func (m *Model) attention(b *scratch, att, q, K, V []float32, pos0, T int, sliding bool) {
	if T >= attnGemmMinT {
		m.attentionBlocked(b, att, q, K, V, pos0, T, sliding)
		return
	}
	c := &m.Config
	hd, kvd, group := c.HeadDim, c.KVHeads*c.HeadDim, c.Heads/c.KVHeads
	scale := c.QueryScale()
	n := T * c.Heads
	// Chunks of (query, head) pairs handed out by the kernel's worker pool:
	// several per goroutine, because later queries attend to more positions.
	grain := max(1, n/(8*runtime.GOMAXPROCS(0)))
	// A chunk starts at a multiple of grain: its own row of scores.
	rows := grow(&b.scores, (n+grain-1)/grain*(pos0+T))
	kernel.Parallel(n, grain, n*(pos0+T)*hd, func(i0, i1 int) {
		scores := rows[i0/grain*(pos0+T) : (i0/grain+1)*(pos0+T)]
		for i := i0; i < i1; i++ {
			t, h := i/c.Heads, i%c.Heads
			p := pos0 + t
			lo := 0
			if sliding {
				lo = max(0, p-c.SlidingWindow+1)
			}
			qh := q[(t*c.Heads+h)*hd : (t*c.Heads+h+1)*hd]
			off := (h / group) * hd
			sc := scores[:p+1-lo]
			for j := range sc {
				sc[j] = kernel.Dot(qh, K[(lo+j)*kvd+off:(lo+j)*kvd+off+hd])
			}
			softmaxRange(sc, 0, len(sc)-1, scale, c.AttnSoftcap)
			o := att[(t*c.Heads+h)*hd : (t*c.Heads+h+1)*hd]
			clear(o)
			for j, w := range sc {
				kernel.Axpy(o, w, V[(lo+j)*kvd+off:(lo+j)*kvd+off+hd])
			}
		}
	})
}

// attnGemmMinT is the chunk length from which attention runs as matrix
// products rather than one query at a time.
const attnGemmMinT = 8

// attentionBlocked is attention for a chunk of queries as matrix products,
// head by head and attnBlock queries at a time against the keys up to the
// block's last query: S = Q·Kᵀ, P = softmax(cap(scale·S)) within each
// query's window, out = P·V.
func (m *Model) attentionBlocked(b *scratch, att, q, K, V []float32, pos0, T int, sliding bool) {
	c := &m.Config
	hd, H, kvd, group := c.HeadDim, c.Heads, c.KVHeads*c.HeadDim, c.Heads/c.KVHeads
	n := pos0 + T
	scale := c.QueryScale()
	qh, oh := grow(&b.qh, T*hd), grow(&b.oh, T*hd)
	kg, vg := grow(&b.kg, n*hd), grow(&b.vg, n*hd)
	p := grow(&b.p, attnBlock*n)
	for g := 0; g < c.KVHeads; g++ {
		gatherHead(kg, K, g*hd, kvd, n, hd)
		gatherHead(vg, V, g*hd, kvd, n, hd)
		for h := g * group; h < (g+1)*group; h++ {
			gatherHead(qh, q, h*hd, H*hd, T, hd)
			for r0 := 0; r0 < T; r0 += attnBlock {
				r1 := min(r0+attnBlock, T)
				rows, cols := r1-r0, pos0+r1
				s := p[:rows*cols]
				kernel.MatMulNT(s, qh[r0*hd:r1*hd], kg[:cols*hd], rows, cols, hd, false)
				kernel.Parallel(rows, 8, rows*cols*8, func(i0, i1 int) {
					for i := i0; i < i1; i++ {
						at := pos0 + r0 + i
						lo := 0
						if sliding {
							lo = max(0, at-c.SlidingWindow+1)
						}
						softmaxRange(s[i*cols:(i+1)*cols], lo, at, scale, c.AttnSoftcap)
					}
				})
				kernel.MatMulNN(oh[r0*hd:r1*hd], s, vg[:cols*hd], rows, hd, cols, false)
			}
			scatterHead(att, oh, h*hd, H*hd, T, hd, false)
		}
	}
}
