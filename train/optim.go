package train

import (
	"math"

	"persona/model"
)

// LRAt is the learning rate of step s (0-based) of a run of total steps:
// a linear warm-up from lr/warmup at step 0 to lr at step warmup−1, then a
// cosine decay from lr at step warmup to minLR at the last step, total−1.
// Reaching the end points exactly (not one step short) is what makes the
// boundaries testable and min_lr mean what it says.
func LRAt(s, total, warmup int, lr, minLR float64) float64 {
	if s < warmup {
		return lr * float64(s+1) / float64(warmup)
	}
	span := total - warmup - 1
	if span <= 0 {
		return lr
	}
	p := math.Min(float64(s-warmup)/float64(span), 1)
	return minLR + 0.5*(lr-minLR)*(1+math.Cos(math.Pi*p))
}

// GlobalNorm is the L2 norm of all gradients together, summed in float64 in
// parameter order so it is the same number on every run.
func GlobalNorm(ps []model.Param) float64 {
	var s float64
	for _, p := range ps {
		for _, g := range p.G {
			s += float64(g) * float64(g)
		}
	}
	return math.Sqrt(s)
}

// ClipGradNorm scales every gradient by maxNorm/norm when the global norm
// exceeds maxNorm (maxNorm ≤ 0: never), as torch.nn.utils.clip_grad_norm_
// does (including its 1e-6 guard). It returns the norm before clipping.
func ClipGradNorm(ps []model.Param, maxNorm float64) float64 {
	norm := GlobalNorm(ps)
	if maxNorm > 0 && norm > maxNorm {
		k := float32(maxNorm / (norm + 1e-6))
		for _, p := range ps {
			for i := range p.G {
				p.G[i] *= k
			}
		}
	}
	return norm
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter 2019), with
// PyTorch's torch.optim.AdamW update order:
//
//	w ← w − lr·λ·w                      (only Param.Decay tensors: matrices)
//	m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//	w ← w − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
//
// The moments are float32 like the weights; each element's update is
// computed in float64, so the result does not depend on how a compiler
// fuses float32 operations.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// M and V are the first and second moments, one per parameter, in the
	// order of the params slice given to Step.
	M, V [][]float32
	// T counts the steps taken (the bias corrections' exponent).
	T int
}

// NewAdamW allocates zero moments for ps.
func NewAdamW(ps []model.Param, beta1, beta2, eps, weightDecay float64) *AdamW {
	a := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay}
	for _, p := range ps {
		a.M = append(a.M, make([]float32, len(p.W)))
		a.V = append(a.V, make([]float32, len(p.W)))
	}
	return a
}

// Step updates every parameter from its gradient with learning rate lr.
func (a *AdamW) Step(ps []model.Param, lr float64) {
	a.T++
	bc1 := 1 - math.Pow(a.Beta1, float64(a.T))
	bc2 := 1 - math.Pow(a.Beta2, float64(a.T))
	for j, p := range ps {
		m, v := a.M[j], a.V[j]
		decay := 1.0
		if p.Decay {
			decay = 1 - lr*a.WeightDecay
		}
		for i, g32 := range p.G {
			g := float64(g32)
			mi := a.Beta1*float64(m[i]) + (1-a.Beta1)*g
			vi := a.Beta2*float64(v[i]) + (1-a.Beta2)*g*g
			m[i], v[i] = float32(mi), float32(vi)
			w := float64(p.W[i]) * decay
			w -= lr * (mi / bc1) / (math.Sqrt(vi/bc2) + a.Eps)
			p.W[i] = float32(w)
		}
	}
}
