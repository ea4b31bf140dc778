package posterior

import (
	"math"
	"math/rand/v2"
	"testing"
)

// brute enumerates every state path of a small chain: the exact smoothed
// hypothesis marginals, switch probabilities and most likely path.
func brute(c *chain, emis [][]float64) (smoothed [][]float64, switchProb []float64, path []int) {
	T, S := len(emis), len(c.hyp)
	smoothed = make([][]float64, T)
	for t := range smoothed {
		smoothed[t] = make([]float64, c.nHyp)
	}
	switchProb = make([]float64, T)
	states := make([]int, T)
	total, best := 0.0, math.Inf(-1)
	var visit func(t int, logp float64)
	visit = func(t int, logp float64) {
		if t == T {
			p := math.Exp(logp)
			total += p
			for u, s := range states {
				smoothed[u][c.hyp[s]] += p
				if u > 0 && c.hyp[s] != c.hyp[states[u-1]] {
					switchProb[u] += p
				}
			}
			if logp > best {
				best, path = logp, nil
				for _, s := range states {
					path = append(path, c.hyp[s])
				}
			}
			return
		}
		for s := range S {
			lp := logp + emis[t][s]
			if t == 0 {
				lp += c.prior[s]
			} else {
				lp += c.logTransition(states[t-1], s)
			}
			states[t] = s
			visit(t+1, lp)
		}
	}
	visit(0, 0)
	for t := range T {
		for h := range smoothed[t] {
			smoothed[t][h] /= total
		}
		switchProb[t] /= total
	}
	return smoothed, switchProb, path
}

// Forward–backward and Viterbi agree with enumerating every path, on random
// emissions, with personas of one and of two prompts.
func TestChainMatchesEnumeration(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		stateHyp := []int{0, 1, 1, 2}
		prior := []float64{0.5, 0.3, 0.2}
		eps := []float64{0, 0.05, 0.3}[trial%3]
		c, err := newChain(prior, stateHyp, eps)
		if err != nil {
			t.Fatal(err)
		}
		emis := make([][]float64, 5)
		for i := range emis {
			emis[i] = make([]float64, len(stateHyp))
			for s := range emis[i] {
				emis[i][s] = -3 * r.Float64() * 4
			}
		}
		d := c.decode(emis)
		sm, sw, path := brute(c, emis)
		for u := range emis {
			for h := range prior {
				if math.Abs(d.smoothed[u][h]-sm[u][h]) > 1e-9 {
					t.Fatalf("trial %d turn %d persona %d: smoothed %v, enumeration %v", trial, u, h, d.smoothed[u][h], sm[u][h])
				}
			}
			if math.Abs(d.switchProb[u]-sw[u]) > 1e-9 {
				t.Fatalf("trial %d turn %d: switch probability %v, enumeration %v", trial, u, d.switchProb[u], sw[u])
			}
			if d.path[u] != path[u] {
				t.Fatalf("trial %d: path %v, enumeration %v", trial, d.path, path)
			}
		}
		// Filtering at the last turn is smoothing at the last turn.
		for h := range prior {
			if math.Abs(d.filtered[4][h]-d.smoothed[4][h]) > 1e-9 {
				t.Fatalf("trial %d: filtered %v and smoothed %v differ at the last turn", trial, d.filtered[4], d.smoothed[4])
			}
		}
	}
}

// With ε = 0 the filtered posterior is Bayes' rule over the whole
// conversation, each persona the mixture of its prompts.
func TestChainWithoutSwitchesIsBayes(t *testing.T) {
	stateHyp := []int{0, 0, 1}
	prior := []float64{0.4, 0.6}
	c, _ := newChain(prior, stateHyp, 0)
	emis := [][]float64{{-1, -3, -2}, {-2, -1, -2.5}, {-0.5, -4, -1}}
	d := c.decode(emis)
	cum := []float64{0, 0, 0}
	for u, e := range emis {
		for s := range cum {
			cum[s] += e[s]
		}
		l0 := math.Log((math.Exp(cum[0]) + math.Exp(cum[1])) / 2)
		p0 := prior[0] * math.Exp(l0) / (prior[0]*math.Exp(l0) + prior[1]*math.Exp(cum[2]))
		if math.Abs(d.filtered[u][0]-p0) > 1e-12 {
			t.Errorf("turn %d: filtered %v, Bayes %v", u, d.filtered[u][0], p0)
		}
		if u > 0 && d.switchProb[u] != 0 {
			t.Errorf("turn %d: switch probability %v at ε = 0", u, d.switchProb[u])
		}
	}
}

// A conversation whose evidence moves from one persona to another: the
// path switches at that turn with high probability, smoothing names the
// right persona on both sides, and filtering follows one turn later.
func TestChainFindsASwitch(t *testing.T) {
	c, _ := newChain([]float64{0.5, 0.5}, []int{0, 1}, 0.05)
	var emis [][]float64
	for u := range 6 {
		if u < 3 {
			emis = append(emis, []float64{-1, -4})
		} else {
			emis = append(emis, []float64{-4, -1})
		}
	}
	d := c.decode(emis)
	want := []int{0, 0, 0, 1, 1, 1}
	for u := range want {
		if d.path[u] != want[u] || d.smoothed[u][want[u]] < 0.8 {
			t.Errorf("turn %d: path %v, smoothed %v", u, d.path, d.smoothed[u])
		}
	}
	if d.switchProb[3] < 0.8 || d.switchProb[2] > 0.1 || d.switchProb[4] > 0.1 {
		t.Errorf("switch probabilities %v", d.switchProb)
	}
	// One turn of evidence (3 nats) does not outweigh the prior against a
	// switch (ε/2 against 1−ε/2, 3.7 nats): the monitor follows a turn later.
	if d.filtered[4][1] < 0.9 || d.filtered[3][1] > 0.5 || d.filtered[2][0] < 0.9 {
		t.Errorf("filtered %v", d.filtered)
	}
	if _, err := newChain([]float64{1}, []int{0}, 1); err == nil {
		t.Error("ε = 1 accepted")
	}
}
