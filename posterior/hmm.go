package posterior

import (
	"fmt"
	"math"

	"persona/internal/stats"
)

// The persona of a conversation is not fixed: a user asks for a pirate, the
// model drifts into another character. So the posterior is a hidden Markov
// model whose state is the persona behind each assistant turn:
//
//   - the first turn's persona is drawn from the prior π;
//   - between turns the persona stays with probability 1−ε, or is drawn
//     afresh from π with probability ε (so it may land on itself);
//   - turn t's reply is emitted with the likelihood the method measures for
//     it under each persona, given the conversation before it.
//
// With ε = 0 this is Bayes' rule over the whole conversation, the posterior
// of a model that never changes character. A persona with several system
// prompts is several states, one per prompt, sharing the persona's prior:
// the model picks one prompt and keeps it until it switches persona, which
// at ε = 0 is exactly the mixture over prompts of the whole conversation's
// likelihood.
//
// The forward pass (filtering) is what a live monitor knows after turn t;
// the forward–backward pass (smoothing) what the whole conversation says
// about turn t; the Viterbi path the single most likely sequence of
// personas, whose changes are the switch events. Everything is in log space.

// DefaultSwitchRate is ε fitted on the persona world's pretraining chats
// (FitSwitchRate; organism's TestDefaultSwitchRateFitsTheWorld keeps the
// two together): the rate at which the organism learned that conversations
// change persona, and a modest prior for real models.
const DefaultSwitchRate = 0.05

// Switch is a change of persona on the most likely path.
type Switch struct {
	Turn int    `json:"turn"` // 1-based assistant turn that the new persona wrote
	From string `json:"from"`
	To   string `json:"to"`
	// Prob is the smoothed probability that the persona changed between
	// the turn before and this one.
	Prob float64 `json:"prob"`
}

// chain is a hidden Markov model over states that each belong to one
// hypothesis.
type chain struct {
	hyp   []int     // hypothesis of each state
	prior []float64 // log prior of each state
	nHyp  int
	eps   float64
}

// newChain spreads each hypothesis's prior over its states.
func newChain(hypPrior []float64, stateHyp []int, eps float64) (*chain, error) {
	if eps < 0 || eps >= 1 || math.IsNaN(eps) {
		return nil, fmt.Errorf("switch rate %g: want 0 ≤ ε < 1", eps)
	}
	count := make([]int, len(hypPrior))
	for _, h := range stateHyp {
		count[h]++
	}
	c := &chain{hyp: stateHyp, nHyp: len(hypPrior), eps: eps, prior: make([]float64, len(stateHyp))}
	for s, h := range stateHyp {
		c.prior[s] = math.Log(hypPrior[h] / float64(count[h]))
	}
	return c, nil
}

// logTransition is log A(j→k) = log((1−ε)·[j = k] + ε·π_k).
func (c *chain) logTransition(j, k int) float64 {
	p := c.eps * math.Exp(c.prior[k])
	if j == k {
		p += 1 - c.eps
	}
	return math.Log(p)
}

// decoded is what the chain says about a sequence of turns, per hypothesis.
type decoded struct {
	filtered, smoothed [][]float64 // [turn][hypothesis]
	path               []int       // most likely hypothesis of each turn
	switchProb         []float64   // P(persona of t ≠ persona of t−1 | all turns); 0 at t = 0
}

// decode runs the forward, backward and Viterbi passes over emissions
// ([turn][state] log-likelihoods).
func (c *chain) decode(emis [][]float64) *decoded {
	T, S := len(emis), len(c.hyp)
	if T == 0 {
		return &decoded{}
	}
	logA := make([][]float64, S)
	for j := range logA {
		logA[j] = make([]float64, S)
		for k := range logA[j] {
			logA[j][k] = c.logTransition(j, k)
		}
	}
	// Forward: α_t(k) = e_t(k) + log Σ_j exp(α_{t−1}(j) + log A(j,k)),
	// normalised at every turn.
	alpha := make([][]float64, T)
	for t := range T {
		alpha[t] = make([]float64, S)
		for k := range S {
			if t == 0 {
				alpha[t][k] = c.prior[k] + emis[t][k]
				continue
			}
			alpha[t][k] = emis[t][k] + stats.LogSumExpOver(S, func(j int) float64 { return alpha[t-1][j] + logA[j][k] })
		}
		normaliseLog(alpha[t])
	}
	// Backward: β_t(j) = log Σ_k exp(log A(j,k) + e_{t+1}(k) + β_{t+1}(k)).
	beta := make([][]float64, T)
	beta[T-1] = make([]float64, S)
	for t := T - 2; t >= 0; t-- {
		beta[t] = make([]float64, S)
		for j := range S {
			beta[t][j] = stats.LogSumExpOver(S, func(k int) float64 { return logA[j][k] + emis[t+1][k] + beta[t+1][k] })
		}
		normaliseLog(beta[t]) // a constant shift per turn cancels in γ and ξ
	}
	d := &decoded{filtered: make([][]float64, T), smoothed: make([][]float64, T), switchProb: make([]float64, T)}
	for t := range T {
		gamma := make([]float64, S)
		for s := range S {
			gamma[s] = alpha[t][s] + beta[t][s]
		}
		normaliseLog(gamma)
		d.filtered[t], d.smoothed[t] = c.byHypothesis(alpha[t]), c.byHypothesis(gamma)
		if t == 0 {
			continue
		}
		// ξ_t(j,k) ∝ α_{t−1}(j)·A(j,k)·e_t(k)·β_t(k); the switch
		// probability is the mass where j and k belong to different
		// hypotheses.
		var all, change []float64
		for j := range S {
			for k := range S {
				x := alpha[t-1][j] + logA[j][k] + emis[t][k] + beta[t][k]
				all = append(all, x)
				if c.hyp[j] != c.hyp[k] {
					change = append(change, x)
				}
			}
		}
		if len(change) > 0 {
			d.switchProb[t] = math.Exp(stats.LogSumExp(change) - stats.LogSumExp(all))
		}
	}
	d.path = c.viterbi(emis, logA)
	return d
}

// viterbi returns the hypothesis of each turn on the most likely state path.
func (c *chain) viterbi(emis [][]float64, logA [][]float64) []int {
	T, S := len(emis), len(c.hyp)
	delta := make([]float64, S)
	back := make([][]int, T)
	for s := range S {
		delta[s] = c.prior[s] + emis[0][s]
	}
	for t := 1; t < T; t++ {
		next := make([]float64, S)
		back[t] = make([]int, S)
		for k := range S {
			best, arg := math.Inf(-1), 0
			for j := range S {
				if v := delta[j] + logA[j][k]; v > best {
					best, arg = v, j
				}
			}
			next[k], back[t][k] = best+emis[t][k], arg
		}
		delta = next
	}
	s := argmax(delta)
	path := make([]int, T)
	for t := T - 1; t >= 0; t-- {
		path[t] = c.hyp[s]
		if t > 0 {
			s = back[t][s]
		}
	}
	return path
}

// byHypothesis sums normalised log state probabilities into hypothesis
// probabilities.
func (c *chain) byHypothesis(logp []float64) []float64 {
	out := make([]float64, c.nHyp)
	for s, lp := range logp {
		out[c.hyp[s]] += math.Exp(lp)
	}
	return out
}

// normaliseLog shifts log probabilities to sum to 1; with no mass at all
// (every value −∞) it makes them uniform.
func normaliseLog(xs []float64) {
	z := stats.LogSumExp(xs)
	for i := range xs {
		if math.IsInf(z, -1) {
			xs[i] = -math.Log(float64(len(xs)))
		} else {
			xs[i] -= z
		}
	}
}
