package audit

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The 95% bootstrap interval of a probe's rate covers the true rate in about
// 95% of synthetic runs (percentile intervals run a little short at n = 40).
func TestProbeRateCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := rand.New(rand.NewPCG(3, 4))
	for _, p := range []float64{0.1, 0.3, 0.5} {
		const reps, n = 300, 40
		covered := 0
		var width float64
		for r := 0; r < reps; r++ {
			out := make([]bool, n)
			for i := range out {
				out[i] = data.Float64() < p
			}
			ci := ProbeRate(out, rng)
			if ci.Lo <= p && p <= ci.Hi {
				covered++
			}
			width += ci.Hi - ci.Lo
		}
		cov := float64(covered) / reps
		t.Logf("p=%.1f n=%d: coverage %.3f, mean width %.3f", p, n, cov, width/reps)
		if cov < 0.88 || cov > 0.99 {
			t.Errorf("p=%.1f: coverage %.3f outside [0.88, 0.99]", p, cov)
		}
	}
}

// Probes differ in how easily they elicit; the category interval must cover
// the category's mean rate, which a bootstrap over pooled samples (ignoring
// that samples of a probe share a prompt) does not.
func TestClusterRateCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	data := rand.New(rand.NewPCG(7, 8))
	const reps, probes, samples, truth = 200, 20, 10, 0.3
	covered, naiveCovered := 0, 0
	for r := 0; r < reps; r++ {
		groups := make([][]bool, probes)
		var flat []bool
		for g := range groups {
			pg := data.Float64() * 2 * truth // probe rates uniform on [0, 0.6]
			for k := 0; k < samples; k++ {
				groups[g] = append(groups[g], data.Float64() < pg)
			}
			flat = append(flat, groups[g]...)
		}
		ci := ClusterRate(groups, rng)
		if ci.Lo <= truth && truth <= ci.Hi {
			covered++
		}
		naive := ProbeRate(flat, rng)
		if naive.Lo <= truth && truth <= naive.Hi {
			naiveCovered++
		}
	}
	cov, naive := float64(covered)/reps, float64(naiveCovered)/reps
	t.Logf("cluster coverage %.3f, pooled-sample coverage %.3f", cov, naive)
	if cov < 0.88 {
		t.Errorf("cluster coverage %.3f < 0.88", cov)
	}
	if naive >= cov {
		t.Errorf("pooled bootstrap (%.3f) should cover less than the cluster bootstrap (%.3f)", naive, cov)
	}
}

func TestRateEdgeCases(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	r := ProbeRate(make([]bool, 5), rng)
	if r.Rate != 0 || r.Lo != 0 || math.Abs(r.Hi-0.4345) > 1e-3 {
		t.Errorf("0/5: %+v, want [0, 0.43] (Wilson)", r)
	}
	all := []bool{true, true, true, true, true}
	r = ProbeRate(all, rng)
	if r.Rate != 1 || r.Hi != 1 || math.Abs(r.Lo-0.5655) > 1e-3 {
		t.Errorf("5/5: %+v", r)
	}
	if r := ProbeRate(nil, rng); r.N != 0 || r.Rate != 0 {
		t.Errorf("empty: %+v", r)
	}
	// Seeded: the same seed gives the same interval.
	out := []bool{true, false, false, true, false, false, false}
	a := ProbeRate(out, rand.New(rand.NewPCG(9, 9)))
	b := ProbeRate(out, rand.New(rand.NewPCG(9, 9)))
	if a != b {
		t.Errorf("not reproducible: %+v vs %+v", a, b)
	}
}
