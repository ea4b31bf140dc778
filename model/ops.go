package model

import (
	"math"
)

// rmsNorm: out[t,:] = x[t,:] · w / sqrt(mean(x[t,:]²) + eps).
// x and out are (T, D); w is (D). out may alias x.
func rmsNorm(out, x, w []float32, T, D int, eps float32) {
	for t := 0; t < T; t++ {
		row := x[t*D : (t+1)*D]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(D)+float64(eps)))
		o := out[t*D : (t+1)*D]
		for i, v := range row {
			o[i] = v * r * w[i]
		}
	}
}

// ropeTables fills cos/sin (T, HeadDim/2) for positions pos0 … pos0+T−1:
// angle[p, i] = p · θ^(−2i/HeadDim) / factor[i]. Computed in float64 so long
// positions keep their precision.
func (c *Config) ropeTables(cos, sin []float32, pos0, T int) {
	half := c.HeadDim / 2
	for i := 0; i < half; i++ {
		inv := math.Pow(c.RoPETheta, -float64(2*i)/float64(c.HeadDim))
		if c.RoPEFactors != nil {
			inv /= float64(c.RoPEFactors[i])
		}
		for t := 0; t < T; t++ {
			s, co := math.Sincos(float64(pos0+t) * inv)
			cos[t*half+i], sin[t*half+i] = float32(co), float32(s)
		}
	}
}

// rope rotates each head of x (T, heads·HeadDim) in place by the tables from
// ropeTables, pairing dimensions as the style says.
func rope(x []float32, T, heads, hd int, cos, sin []float32, style RoPEStyle) {
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
				x0, x1 := v[a], v[b]
				v[a] = x0*c[i] - x1*s[i]
				v[b] = x0*s[i] + x1*c[i]
			}
		}
	}
}

// siluMul: gate[i] = silu(gate[i]) · up[i], the SwiGLU activation.
func siluMul(gate, up []float32) {
	for i, g := range gate {
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
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

// softmaxInPlace turns scores into probabilities (numerically stable).
func softmaxInPlace(x []float32) {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// LogSoftmax writes log-probabilities of logits into out (may alias).
func LogSoftmax(out, logits []float32) {
	m := logits[0]
	for _, v := range logits[1:] {
		m = max(m, v)
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v - m))
	}
	lse := m + float32(math.Log(sum))
	for i, v := range logits {
		out[i] = v - lse
	}
}
