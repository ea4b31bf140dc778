package model

import (
	"math"

	"persona/kernel"
)

// rmsNorm: out[t,:] = x[t,:] · w / sqrt(mean(x[t,:]²) + eps).
// x and out are (T, D); w is (D). out may alias x.
func rmsNorm(out, x, w []float32, T, D int, eps float32) {
	rmsNormForward(out, nil, x, w, T, D, eps)
}

// rmsNormForward is rmsNorm that also keeps each row's 1/rms for the
// backward pass, rstd[t] = 1/sqrt(mean(x[t,:]²) + eps), unless rstd is nil.
func rmsNormForward(out, rstd, x, w []float32, T, D int, eps float32) {
	for t := 0; t < T; t++ {
		row := x[t*D : (t+1)*D]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(D)+float64(eps)))
		if rstd != nil {
			rstd[t] = r
		}
		o := out[t*D : (t+1)*D]
		for i, v := range row {
			o[i] = v * r * w[i]
		}
	}
}

// rmsNormBackward: in the forward pass y = x·r·w with r = (mean(x²)+eps)^(−½),
// so
//
//	dw[i] += Σ_t dy[t,i]·x[t,i]·r[t]
//	dx[t,:] += r·(dy⊙w) − r³/D · x · Σ_i dy[i]·w[i]·x[i]
//
// dx is accumulated into (residual streams sum their gradients); dw may be
// nil for a frozen weight.
func rmsNormBackward(dx, dw, dy, x, w, rstd []float32, T, D int) {
	for t := 0; t < T; t++ {
		xr, dyr, dxr := x[t*D:(t+1)*D], dy[t*D:(t+1)*D], dx[t*D:(t+1)*D]
		r := rstd[t]
		var dot float64
		for i := range xr {
			dot += float64(dyr[i] * w[i] * xr[i])
		}
		c := float32(dot) * r * r * r / float32(D)
		for i := range xr {
			dxr[i] += r*dyr[i]*w[i] - c*xr[i]
		}
		if dw != nil {
			for i := range xr {
				dw[i] += dyr[i] * xr[i] * r
			}
		}
	}
}

// ropeTables fills cos/sin (T, HeadDim/2) for positions pos0 … pos0+T−1, or,
// for a packed training row (start non-nil), t − start[t]:
// angle[p, i] = p · θ^(−2i/HeadDim) / factor[i], with the sliding layers'
// own base and no factors when local is set (see Config.RoPELocalTheta).
// Computed in float64 so long positions keep their precision.
func (c *Config) ropeTables(local bool, cos, sin []float32, pos0, T int, start []int) {
	half := c.HeadDim / 2
	theta, factors := c.RoPETheta, c.RoPEFactors
	if local {
		theta, factors = c.RoPELocalTheta, nil
	}
	for i := 0; i < half; i++ {
		inv := math.Pow(theta, -float64(2*i)/float64(c.HeadDim))
		if factors != nil {
			inv /= float64(factors[i])
		}
		for t := 0; t < T; t++ {
			p := pos0 + t
			if start != nil {
				p = t - start[t]
			}
			s, co := math.Sincos(float64(p) * inv)
			cos[t*half+i], sin[t*half+i] = float32(co), float32(s)
		}
	}
}

// localRoPE reports whether sliding layers rotate by tables of their own.
func (c *Config) localRoPE() bool { return c.RoPELocalTheta > 0 && c.SlidingWindow > 0 }

// rope rotates each head of x (T, heads·HeadDim) in place by the tables from
// ropeTables, pairing dimensions as the style says:
//
//	x[a]' = x[a]·cos − x[b]·sin,  x[b]' = x[a]·sin + x[b]·cos
//
// With inverse it rotates by the opposite angle, which is also the backward
// pass: the rotation is orthogonal, so its gradient is its transpose.
func rope(x []float32, T, heads, hd int, cos, sin []float32, style RoPEStyle, inverse bool) {
	sign := float32(1)
	if inverse {
		sign = -1
	}
	half := hd / 2
	for t := 0; t < T; t++ {
		c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for h := 0; h < heads; h++ {
			v := x[(t*heads+h)*hd : (t*heads+h+1)*hd]
			for i := 0; i < half; i++ {
				a, b := i, i+half
				if style == RoPEInterleave {
					a, b = 2*i, 2*i+1
				}
				x0, x1, sn := v[a], v[b], sign*s[i]
				v[a] = x0*c[i] - x1*sn
				v[b] = x0*sn + x1*c[i]
			}
		}
	}
}

// geluMul: gate[i] = gelu(gate[i]) · up[i], the GeGLU activation with
// GELU's tanh form, 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))), in float32
// as transformers' gelu_pytorch_tanh computes it. (llama.cpp looks GELU up
// in a table over float16 inputs, a relative difference of up to about
// 1e-3 per activation.)
func geluMul(gate, up []float32) {
	const c = 0.7978845608028654 // √(2/π)
	for i, g := range gate {
		x := float64(g)
		gate[i] = float32(0.5*x*(1+math.Tanh(c*(x+0.044715*x*x*x)))) * up[i]
	}
}

// softcap: x → c·tanh(x/c), Gemma 2's bound on attention scores and logits.
func softcap(x []float32, c float32) {
	if c == 0 {
		return
	}
	for i, v := range x {
		x[i] = c * float32(math.Tanh(float64(v/c)))
	}
}

// siluMulBackward: in the forward pass h = silu(g)·u, so with σ = sigmoid(g)
//
//	dg = dh·u·σ·(1 + g·(1−σ)),  du = dh·silu(g)
//
// dg holds exp(−g) (kernel.Exp) before it holds the gradient.
func siluMulBackward(dg, du, dh, g, u []float32) {
	for i, x := range g {
		dg[i] = -x
	}
	kernel.Exp(dg[:len(g)])
	for i, x := range g {
		sg := 1 / (1 + dg[i])
		dg[i] = dh[i] * u[i] * sg * (1 + x*(1-sg))
		du[i] = dh[i] * x * sg
	}
}

// biasBackward: db += Σ_t dy[t,:].
func biasBackward(db, dy []float32, T int) {
	D := len(db)
	for t := 0; t < T; t++ {
		for i, v := range dy[t*D : (t+1)*D] {
			db[i] += v
		}
	}
}

// addBias: x[t,:] += b for each of the T rows.
func addBias(x, b []float32, T int) {
	D := len(b)
	for t := 0; t < T; t++ {
		row := x[t*D : (t+1)*D]
		for i, v := range b {
			row[i] += v
		}
	}
}

// expShifted sets x[i] = exp(x[i] − max x), the stable form every softmax
// here starts from, and returns the maximum and the sum of the results.
func expShifted(x []float32) (mx float32, sum float64) {
	mx = x[0]
	for _, v := range x[1:] {
		mx = max(mx, v)
	}
	for i := range x {
		x[i] -= mx
	}
	kernel.Exp(x)
	for _, e := range x {
		sum += float64(e)
	}
	return mx, sum
}

// LogSumExp returns log Σ exp(x), computed stably around the maximum.
func LogSumExp(x []float32) float64 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v - m))
	}
	return float64(m) + math.Log(sum)
}

// LogSoftmax writes log-probabilities of logits into out (may alias).
func LogSoftmax(out, logits []float32) {
	lse := float32(LogSumExp(logits))
	for i, v := range logits {
		out[i] = v - lse
	}
}

// attnBlock is how many queries attention takes at a time when it runs as
// matrix products (training, prefill).
const attnBlock = 64

// softmaxRange turns row's scores for keys lo … t into probabilities of
// softcap(scale·score) (limit the soft cap, 0 for none), zeroes the other
// entries, and returns the log-sum-exp.
func softmaxRange(row []float32, lo, t int, scale, limit float32) float32 {
	clear(row[:lo])
	clear(row[t+1:])
	sc := row[lo : t+1]
	kernel.Scale(sc, scale)
	softcap(sc, limit)
	mx, sum := expShifted(sc)
	kernel.Scale(sc, float32(1/sum))
	return mx + float32(math.Log(sum))
}

// gatherHead copies one head's columns [off, off+hd) of the T rows of a
// (T, ld) matrix into a contiguous (T, hd) one.
func gatherHead(dst, src []float32, off, ld, T, hd int) {
	for t := 0; t < T; t++ {
		copy(dst[t*hd:(t+1)*hd], src[t*ld+off:t*ld+off+hd])
	}
}

// scatterHead writes (or adds) a contiguous (T, hd) matrix into one head's
// columns of a (T, ld) one.
func scatterHead(dst, src []float32, off, ld, T, hd int, add bool) {
	for t := 0; t < T; t++ {
		d := dst[t*ld+off : t*ld+off+hd]
		if add {
			kernel.Axpy(d, 1, src[t*hd:(t+1)*hd])
		} else {
			copy(d, src[t*hd:(t+1)*hd])
		}
	}
}
