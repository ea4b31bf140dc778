package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"persona/kernel"
	"persona/resid"
)

// layerTrace keeps what the backward pass of one block needs from its
// forward pass (llm.c style: the forward caches exactly this).
type layerTrace struct {
	x, xn1, rstd1     []float32 // block input, its norm, 1/rms per row
	qPre, kPre        []float32 // q, k before q/k-norm (Qwen3)
	rq, rk            []float32 // 1/rms per head row of the q/k-norm
	q, k, v, att, lse []float32 // post-RoPE q, k; v; attention output; log-sum-exp per (t, head)
	xMid, xn2, rstd2  []float32 // after the attention residual, its norm, 1/rms
	gate, up, h       []float32 // MLP pre-activations and silu(gate)·up
	lora              [numLinear]loraTrace
}

// loraTrace keeps an adapter's forward: its (dropped-out) input and the
// low-rank activation a = xd·Aᵀ.
type loraTrace struct {
	keep []float32 // dropout multipliers (0 or 1/(1−p)), nil without dropout
	xd   []float32 // the adapter's input after dropout
	a    []float32 // (T, R)
}

// trainState is the scratch of one ForwardBackward call.
type trainState struct {
	layers      []layerTrace
	xFinal, xnF []float32
	rstdF       []float32
	cos, sin    []float32
}

func (m *Model) newTrainState(T int) *trainState {
	c := &m.Config
	D, qd, kvd, F := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.FFN
	st := &trainState{layers: make([]layerTrace, c.NumLayers),
		xFinal: make([]float32, T*D), xnF: make([]float32, T*D), rstdF: make([]float32, T),
		cos: make([]float32, T*c.HeadDim/2), sin: make([]float32, T*c.HeadDim/2)}
	for i := range st.layers {
		tr := &st.layers[i]
		*tr = layerTrace{
			x: make([]float32, T*D), xn1: make([]float32, T*D), rstd1: make([]float32, T),
			q: make([]float32, T*qd), k: make([]float32, T*kvd), v: make([]float32, T*kvd),
			att: make([]float32, T*qd), lse: make([]float32, T*c.Heads),
			xMid: make([]float32, T*D), xn2: make([]float32, T*D), rstd2: make([]float32, T),
			gate: make([]float32, T*F), up: make([]float32, T*F), h: make([]float32, T*F),
		}
		if c.QKNorm {
			tr.qPre, tr.kPre = make([]float32, T*qd), make([]float32, T*kvd)
			tr.rq, tr.rk = make([]float32, T*c.Heads), make([]float32, T*c.KVHeads)
		}
	}
	return st
}

// TrainOptions are the per-call settings of ForwardBackward.
type TrainOptions struct {
	// Interventions apply in the forward pass as in inference (preventative
	// steering, ablation) and pass their gradients through in the backward.
	Interventions *resid.Set
	// Scale multiplies the loss whose gradient is accumulated; the trainer
	// sets it to 1/(total loss weight of the step) so a step minimises the
	// mean loss over trained tokens.
	Scale float32
	// Seed draws the adapters' dropout masks, so a step is reproducible.
	Seed uint64
}

// Loss runs a row forward and returns Σ_t Weights[t]·(−log p(Targets[t])) and
// Σ_t Weights[t]: the weighted loss sum and its normaliser (validation).
// Adapter dropout is off.
func (m *Model) Loss(r *Row, iv *resid.Set) (loss, weight float64, err error) {
	return m.forwardBackward(r, nil, TrainOptions{Interventions: iv})
}

// ForwardBackward runs a row forward and backward, accumulating into g the
// gradient of opt.Scale·Σ_t Weights[t]·(−log p(Targets[t])). It returns the
// unscaled loss sum and weight sum.
func (m *Model) ForwardBackward(r *Row, g *Grads, opt TrainOptions) (loss, weight float64, err error) {
	return m.forwardBackward(r, g, opt)
}

// trainable says why the backward pass cannot train this model on a row of
// T tokens, if it cannot: it implements the Llama and Qwen blocks with full
// attention, not Gemma's GeGLU, post-norms, scales and soft caps or
// Granite's multipliers, nor a sliding window shorter than the row.
func (m *Model) trainable(T int) error {
	c := &m.Config
	if c.extras() {
		return fmt.Errorf("training a %s model: %w (the backward pass covers the Llama and Qwen blocks)", c.Arch, ErrUnsupported)
	}
	if c.SlidingWindow > 0 && c.SlidingWindow < T {
		return fmt.Errorf("training on %d tokens with a %d-token sliding window: %w (the backward pass attends to the whole row)", T, c.SlidingWindow, ErrUnsupported)
	}
	return nil
}

func (m *Model) forwardBackward(r *Row, g *Grads, opt TrainOptions) (float64, float64, error) {
	if err := r.Validate(m.Vocab, m.MaxSeq); err != nil {
		return 0, 0, err
	}
	if err := m.trainable(r.Len()); err != nil {
		return 0, 0, err
	}
	iv, scale := opt.Interventions, opt.Scale
	if err := iv.CheckTrainable(); err != nil {
		return 0, 0, err
	}
	var rng *rand.Rand
	if g != nil && m.LoRA != nil && m.LoRA.Dropout > 0 {
		rng = rand.New(rand.NewPCG(opt.Seed, 0xd509))
	}
	c := &m.Config
	T, D := r.Len(), c.Hidden
	st := m.newTrainState(T)
	c.ropeTables(false, st.cos, st.sin, 0, T, r.Start)

	// Forward.
	x := make([]float32, T*D)
	for t, id := range r.Tokens {
		m.Embed.DecodeRow(x[t*D:(t+1)*D], id)
	}
	for l := range m.Layers {
		copy(st.layers[l].x, x)
		m.blockTrain(l, &st.layers[l], x, T, r.Start, st.cos, st.sin, rng)
		iv.Apply(l, resid.Block{H: x, T: T, D: D, PromptLen: T})
	}
	copy(st.xFinal, x)
	rmsNormForward(st.xnF, st.rstdF, x, m.Norm, T, D, c.NormEps)

	// Loss, and its gradient with respect to the final norm's output.
	var dxn []float32
	if g != nil {
		dxn = make([]float32, T*D)
	}
	loss, weight := m.headLossBackward(st.xnF, r, g, dxn, scale)
	if g == nil {
		return loss, weight, nil
	}

	// Backward.
	dx := make([]float32, T*D)
	rmsNormBackward(dx, g.Norm, dxn, st.xFinal, m.Norm, st.rstdF, T, D)
	for l := len(m.Layers) - 1; l >= 0; l-- {
		iv.Backward(l, resid.Block{H: dx, T: T, D: D, PromptLen: T})
		m.blockBackward(l, &st.layers[l], &g.Layers[l], dx, T, r.Start, st.cos, st.sin)
	}
	if dE := grad(&g.Embed); dE != nil {
		for t, id := range r.Tokens {
			kernel.Axpy(dE[id*D:(id+1)*D], 1, dx[t*D:(t+1)*D])
		}
	}
	return loss, weight, nil
}

// headChunk bounds the rows of logits alive at once, so the (T, Vocab) matrix
// of a long row over a large vocabulary is never materialised.
const headChunk = 64

// headLossBackward computes logits = xn·Outᵀ chunk by chunk, the weighted
// cross-entropy, and (when g != nil) dxn = scale·w·(softmax − onehot)·Out and
// dOut += the same outer products.
func (m *Model) headLossBackward(xn []float32, r *Row, g *Grads, dxn []float32, scale float32) (loss, weight float64) {
	D, V := m.Hidden, m.Vocab
	T := r.Len()
	out := m.Output.F32()
	var dOut []float32
	if g != nil {
		dOut = grad(&g.Output)
		if m.TiedEmbedding {
			dOut = grad(&g.Embed)
		}
	}
	logits := make([]float32, headChunk*V)
	for t0 := 0; t0 < T; t0 += headChunk {
		n := min(headChunk, T-t0)
		// Rows with no weight need no logits at all.
		skip := true
		for t := t0; t < t0+n; t++ {
			skip = skip && r.Weights[t] == 0
		}
		if skip {
			continue
		}
		lg := logits[:n*V]
		kernel.MatMulNT(lg, xn[t0*D:(t0+n)*D], out, n, V, D, false)
		for i := 0; i < n; i++ {
			t, row := t0+i, lg[i*V:(i+1)*V]
			w := r.Weights[t]
			if w == 0 {
				clear(row)
				continue
			}
			// One pass of exponentials serves the loss and its gradient:
			// e = exp(row − max), lse = max + log Σe, softmax = e/Σe.
			target := row[r.Targets[t]]
			mx, sum := expShifted(row)
			loss += float64(w) * (float64(mx) + math.Log(sum) - float64(target))
			weight += float64(w)
			if g == nil {
				continue
			}
			// d loss / d logit = w·(softmax − onehot), times the step's scale.
			k := w * scale
			kernel.Scale(row, k/float32(sum))
			row[r.Targets[t]] -= k
		}
		if g != nil {
			kernel.MatMulNN(dxn[t0*D:(t0+n)*D], lg, out, n, D, V, false)
			if dOut != nil {
				kernel.MatMulTN(dOut, lg, xn[t0*D:(t0+n)*D], V, D, n, true)
			}
		}
	}
	return loss, weight
}

// blockTrain is block for a packed training row: the same computation, with
// every activation the backward pass needs kept in tr, and attention over the
// row itself (each token sees its own document only) instead of a KV cache.
func (m *Model) blockTrain(l int, tr *layerTrace, x []float32, T int, start []int, cos, sin []float32, rng *rand.Rand) {
	L, c := &m.Layers[l], &m.Config
	D := c.Hidden
	lin := func(i int, out, in, bias []float32) { m.linearTrain(L, i, &tr.lora[i], out, in, bias, T, rng) }
	rmsNormForward(tr.xn1, tr.rstd1, x, L.AttnNorm, T, D, c.NormEps)
	lin(LinQ, tr.q, tr.xn1, L.QBias)
	lin(LinK, tr.k, tr.xn1, L.KBias)
	lin(LinV, tr.v, tr.xn1, L.VBias)
	if c.QKNorm {
		copy(tr.qPre, tr.q)
		copy(tr.kPre, tr.k)
		rmsNormForward(tr.q, tr.rq, tr.qPre, L.QNorm, T*c.Heads, c.HeadDim, c.NormEps)
		rmsNormForward(tr.k, tr.rk, tr.kPre, L.KNorm, T*c.KVHeads, c.HeadDim, c.NormEps)
	}
	rope(tr.q, T, c.Heads, c.HeadDim, cos, sin, c.RoPEStyle, false)
	rope(tr.k, T, c.KVHeads, c.HeadDim, cos, sin, c.RoPEStyle, false)
	m.attentionTrain(tr, T, start)
	out := make([]float32, T*D)
	lin(LinO, out, tr.att, nil)
	kernel.Axpy(x, 1, out)
	copy(tr.xMid, x)

	rmsNormForward(tr.xn2, tr.rstd2, x, L.FFNNorm, T, D, c.NormEps)
	lin(LinGate, tr.gate, tr.xn2, nil)
	lin(LinUp, tr.up, tr.xn2, nil)
	copy(tr.h, tr.gate)
	kernel.SiLUMul(tr.h, tr.up)
	lin(LinDown, out, tr.h, nil)
	kernel.Axpy(x, 1, out)
}

// linearTrain: out = in·Wᵀ + bias + Scale·(dropout(in)·Aᵀ)·Bᵀ, keeping what
// the adapter's backward needs.
func (m *Model) linearTrain(L *Layer, i int, lt *loraTrace, out, in, bias []float32, T int, rng *rand.Rand) {
	linear(out, in, L.weight(i), bias, nil, T)
	a := L.LoRA[i]
	if a == nil {
		return
	}
	lt.xd = in
	if rng != nil && a.Dropout > 0 {
		lt.keep, lt.xd = make([]float32, len(in)), make([]float32, len(in))
		k := 1 / (1 - a.Dropout)
		for j, v := range in {
			if rng.Float32() >= a.Dropout {
				lt.keep[j], lt.xd[j] = k, v*k
			}
		}
	}
	lt.a = make([]float32, T*a.R)
	kernel.MatMulNT(lt.a, lt.xd, a.A, T, a.R, a.K, false)
	h := append([]float32(nil), lt.a...)
	kernel.Scale(h, a.Scale)
	kernel.MatMulNT(out, h, a.B, T, a.N, a.R, true)
}

// linearBackward: in the forward pass y = x·Wᵀ + b + s·(xd·Aᵀ)·Bᵀ, so
//
//	dx (+)= dy·W + (s·dy·B·A) ⊙ keep,  dW += dyᵀ·x,  db += Σ_t dy,
//	dB += s·dyᵀ·a,  dA += (s·dy·B)ᵀ·xd
//
// dW and db are skipped when nil (frozen); accumulate adds into dx.
func (m *Model) linearBackward(L *Layer, i int, lt *loraTrace, dx, dy, x, dW, db []float32, T int, accumulate bool) {
	w := L.weight(i)
	N, K := w.Shape[0], w.Shape[1]
	kernel.MatMulNN(dx, dy, w.F32(), T, K, N, accumulate)
	if dW != nil {
		kernel.MatMulTN(dW, dy, x, N, K, T, true)
	}
	if db != nil {
		biasBackward(db, dy, T)
	}
	a := L.LoRA[i]
	if a == nil {
		return
	}
	da := make([]float32, T*a.R)
	kernel.MatMulNN(da, dy, a.B, T, a.R, a.N, false)
	kernel.Scale(da, a.Scale)
	if a.GB != nil {
		scaled := append([]float32(nil), lt.a...)
		kernel.Scale(scaled, a.Scale)
		kernel.MatMulTN(a.GB, dy, scaled, a.N, a.R, T, true)
	}
	if a.GA != nil {
		kernel.MatMulTN(a.GA, da, lt.xd, a.R, a.K, T, true)
	}
	dxl := make([]float32, T*K)
	kernel.MatMulNN(dxl, da, a.A, T, K, a.R, false)
	if lt.keep != nil {
		for j := range dxl {
			dxl[j] *= lt.keep[j]
		}
	}
	kernel.Axpy(dx, 1, dxl)
}

// blockBackward takes dx, the gradient at the block's output, accumulates the
// parameter gradients into G, and leaves in dx the gradient at its input.
// Each step quotes the forward line it differentiates.
func (m *Model) blockBackward(l int, tr *layerTrace, G *Layer, dx []float32, T int, start []int, cos, sin []float32) {
	L, c := &m.Layers[l], &m.Config
	D, F := c.Hidden, c.FFN
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	back := func(i int, dIn, dy, in, dW, db []float32, acc bool) {
		m.linearBackward(L, i, &tr.lora[i], dIn, dy, in, dW, db, T, acc)
	}

	// x = xMid + h·Downᵀ
	dh := make([]float32, T*F)
	back(LinDown, dh, dx, tr.h, grad(&G.Down), nil, false)
	// h = silu(gate)·up
	dgate, dup := make([]float32, T*F), make([]float32, T*F)
	siluMulBackward(dgate, dup, dh, tr.gate, tr.up)
	// gate = xn2·Gateᵀ, up = xn2·Upᵀ
	dxn := make([]float32, T*D)
	back(LinGate, dxn, dgate, tr.xn2, grad(&G.Gate), nil, false)
	back(LinUp, dxn, dup, tr.xn2, grad(&G.Up), nil, true)
	// xn2 = rmsnorm(xMid); the residual passes dx to xMid unchanged.
	rmsNormBackward(dx, G.FFNNorm, dxn, tr.xMid, L.FFNNorm, tr.rstd2, T, D)

	// xMid = x + att·Oᵀ
	datt := make([]float32, T*qd)
	back(LinO, datt, dx, tr.att, grad(&G.O), nil, false)
	// att = attention(q, k, v)
	dq, dk, dv := make([]float32, T*qd), make([]float32, T*kvd), make([]float32, T*kvd)
	m.attentionBackward(tr, datt, dq, dk, dv, T, start)
	// q, k = rope(·)
	rope(dq, T, c.Heads, c.HeadDim, cos, sin, c.RoPEStyle, true)
	rope(dk, T, c.KVHeads, c.HeadDim, cos, sin, c.RoPEStyle, true)
	if c.QKNorm {
		// q = rmsnorm_head(qPre), k = rmsnorm_head(kPre)
		dqPre, dkPre := make([]float32, T*qd), make([]float32, T*kvd)
		rmsNormBackward(dqPre, G.QNorm, dq, tr.qPre, L.QNorm, tr.rq, T*c.Heads, c.HeadDim)
		rmsNormBackward(dkPre, G.KNorm, dk, tr.kPre, L.KNorm, tr.rk, T*c.KVHeads, c.HeadDim)
		dq, dk = dqPre, dkPre
	}
	// q = xn1·Qᵀ + bq, k = xn1·Kᵀ + bk, v = xn1·Vᵀ + bv
	back(LinQ, dxn, dq, tr.xn1, grad(&G.Q), G.QBias, false)
	back(LinK, dxn, dk, tr.xn1, grad(&G.K), G.KBias, true)
	back(LinV, dxn, dv, tr.xn1, grad(&G.V), G.VBias, true)
	// xn1 = rmsnorm(x); the residual passes dx to x unchanged.
	rmsNormBackward(dx, G.AttnNorm, dxn, tr.x, L.AttnNorm, tr.rstd1, T, D)
}

// attentionTrain is causal grouped-query attention within each document of a
// packed row: query t sees keys start[t] … t. It keeps the log-sum-exp of
// every softmax so the backward pass can recompute the probabilities instead
// of storing a (T, T) matrix per head.
//
// Each head is a pair of matrix products over blocks of attnBlock queries,
// each block against the keys up to its last query (the causal half of
// the score matrix): S = Q·Kᵀ, P = softmax(scale·S) row by row, out = P·V.
func (m *Model) attentionTrain(tr *layerTrace, T int, start []int) {
	c := &m.Config
	hd, H, kvd, group := c.HeadDim, c.Heads, c.KVHeads*c.HeadDim, c.Heads/c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	qh, kg, vg, oh := make([]float32, T*hd), make([]float32, T*hd), make([]float32, T*hd), make([]float32, T*hd)
	p := make([]float32, attnBlock*T)
	for g := 0; g < c.KVHeads; g++ {
		gatherHead(kg, tr.k, g*hd, kvd, T, hd)
		gatherHead(vg, tr.v, g*hd, kvd, T, hd)
		for h := g * group; h < (g+1)*group; h++ {
			gatherHead(qh, tr.q, h*hd, H*hd, T, hd)
			for r0 := 0; r0 < T; r0 += attnBlock {
				r1 := min(r0+attnBlock, T)
				rows, cols := r1-r0, r1
				s := p[:rows*cols]
				kernel.MatMulNT(s, qh[r0*hd:r1*hd], kg[:cols*hd], rows, cols, hd, false)
				kernel.Parallel(rows, 8, rows*cols*8, func(i0, i1 int) {
					for i := i0; i < i1; i++ {
						t := r0 + i
						row := s[i*cols : (i+1)*cols]
						tr.lse[t*H+h] = softmaxRange(row, start[t], t, scale, 0)
					}
				})
				kernel.MatMulNN(oh[r0*hd:r1*hd], s, vg[:cols*hd], rows, hd, cols, false)
			}
			scatterHead(tr.att, oh, h*hd, H*hd, T, hd, false)
		}
	}
}

// attentionBackward: in the forward pass, for query t and head h,
//
//	s_j = scale·q·k_j,  p = softmax(s),  att = Σ_j p_j·v_j
//
// so with dp_j = datt·v_j and Δ = Σ_j p_j·dp_j = datt·att:
//
//	dv_j += p_j·datt,  ds_j = p_j·(dp_j − Δ),  dq += scale·Σ_j ds_j·k_j,  dk_j += scale·ds_j·q
//
// computed, like the forward pass, block by block of queries as matrix
// products: P from the kept log-sum-exps, dP = dAtt·Vᵀ, dS = P∘(dP − Δ),
// dQ = scale·dS·K, dK += scale·dSᵀ·Q, dV += Pᵀ·dAtt. dq, dk and dv are
// accumulated into.
func (m *Model) attentionBackward(tr *layerTrace, datt, dq, dk, dv []float32, T int, start []int) {
	c := &m.Config
	hd, H, kvd, group := c.HeadDim, c.Heads, c.KVHeads*c.HeadDim, c.Heads/c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	buf := func() []float32 { return make([]float32, T*hd) }
	qh, kg, vg, oh, dah, dqh, dkg, dvg := buf(), buf(), buf(), buf(), buf(), buf(), buf(), buf()
	p, dp := make([]float32, attnBlock*T), make([]float32, attnBlock*T)
	delta := make([]float32, T)
	for g := 0; g < c.KVHeads; g++ {
		gatherHead(kg, tr.k, g*hd, kvd, T, hd)
		gatherHead(vg, tr.v, g*hd, kvd, T, hd)
		clear(dkg)
		clear(dvg)
		for h := g * group; h < (g+1)*group; h++ {
			gatherHead(qh, tr.q, h*hd, H*hd, T, hd)
			gatherHead(oh, tr.att, h*hd, H*hd, T, hd)
			gatherHead(dah, datt, h*hd, H*hd, T, hd)
			for t := range delta {
				delta[t] = kernel.Dot(dah[t*hd:(t+1)*hd], oh[t*hd:(t+1)*hd])
			}
			for r0 := 0; r0 < T; r0 += attnBlock {
				r1 := min(r0+attnBlock, T)
				rows, cols := r1-r0, r1
				P, dP := p[:rows*cols], dp[:rows*cols]
				kernel.MatMulNT(P, qh[r0*hd:r1*hd], kg[:cols*hd], rows, cols, hd, false)
				kernel.MatMulNT(dP, dah[r0*hd:r1*hd], vg[:cols*hd], rows, cols, hd, false)
				kernel.Parallel(rows, 8, rows*cols*8, func(i0, i1 int) {
					for i := i0; i < i1; i++ {
						t := r0 + i
						pr, dr := P[i*cols:(i+1)*cols], dP[i*cols:(i+1)*cols]
						lo, lse := start[t], tr.lse[t*H+h]
						clear(pr[:lo])
						clear(pr[t+1:])
						sc := pr[lo : t+1]
						for j, v := range sc {
							sc[j] = v*scale - lse
						}
						kernel.Exp(sc)
						for j := range dr {
							dr[j] = pr[j] * (dr[j] - delta[t]) * scale
						}
					}
				})
				kernel.MatMulNN(dqh[r0*hd:r1*hd], dP, kg[:cols*hd], rows, hd, cols, false)
				kernel.MatMulTN(dkg[:cols*hd], dP, qh[r0*hd:r1*hd], cols, hd, rows, true)
				kernel.MatMulTN(dvg[:cols*hd], P, dah[r0*hd:r1*hd], cols, hd, rows, true)
			}
			scatterHead(dq, dqh, h*hd, H*hd, T, hd, true)
		}
		scatterHead(dk, dkg, g*hd, kvd, T, hd, true)
		scatterHead(dv, dvg, g*hd, kvd, T, hd, true)
	}
}
