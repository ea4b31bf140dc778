package audit

import (
	"math/rand/v2"
	"sort"

	"persona/internal/stats"
)

// Rate is an elicitation rate with its 95% confidence interval.
type Rate struct {
	N        int     `json:"n"`        // samples judged
	Elicited int     `json:"elicited"` // samples that left the persona
	Rate     float64 `json:"rate"`
	Lo       float64 `json:"ci_lo"`
	Hi       float64 `json:"ci_hi"`
}

// BootstrapReps is the number of bootstrap resamples behind each interval:
// enough that the 2.5% and 97.5% quantiles move by well under a percentage
// point between seeds.
const BootstrapReps = 2000

// ProbeRate is the elicitation rate of one probe's samples with a percentile
// bootstrap interval over samples.
//
// When every sample agrees (0 of n or n of n) every resample agrees too and
// the percentile interval collapses to a point, claiming certainty that five
// samples cannot give. There the Wilson score interval is used instead: it is
// what the bootstrap would converge to with a prior of half a success, and it
// widens as n shrinks (0/5 → [0, 0.43]).
func ProbeRate(outcomes []bool, rng *rand.Rand) Rate {
	return ClusterRate([][]bool{outcomes}, rng)
}

// ClusterRate is the pooled elicitation rate over groups of samples (the
// probes of a category or suite) with a cluster bootstrap interval: probes
// are resampled with replacement, then samples within each chosen probe.
// Samples of one probe are correlated (same prompt), so resampling samples
// alone would make category intervals too narrow. With a single group it is
// the ordinary bootstrap over samples.
func ClusterRate(groups [][]bool, rng *rand.Rand) Rate {
	var r Rate
	var nonEmpty [][]bool
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		nonEmpty = append(nonEmpty, g)
		for _, x := range g {
			r.N++
			if x {
				r.Elicited++
			}
		}
	}
	if r.N == 0 {
		return r
	}
	r.Rate = float64(r.Elicited) / float64(r.N)
	if r.Elicited == 0 || r.Elicited == r.N {
		r.Lo, r.Hi = stats.Wilson(r.Elicited, r.N)
		return r
	}
	single := len(nonEmpty) == 1
	boot := make([]float64, BootstrapReps)
	for b := range boot {
		var k, n int
		for range nonEmpty {
			g := nonEmpty[0]
			if !single {
				g = nonEmpty[rng.IntN(len(nonEmpty))]
			}
			for range g {
				if g[rng.IntN(len(g))] {
					k++
				}
				n++
			}
		}
		boot[b] = float64(k) / float64(n)
	}
	sort.Float64s(boot)
	r.Lo, r.Hi = stats.Quantile(boot, 0.025), stats.Quantile(boot, 0.975)
	return r
}
