// Package stats holds the interval estimates every measurement in persona
// reports: the Wilson score interval for a share and the percentile
// bootstrap for any statistic of independent units (conversations, probes).
// They live in one place so that an audit's rates, the organism's model card
// and drift curves are computed, and can be compared, the same way.
package stats

import (
	"math"
	"math/rand/v2"
	"sort"
)

// z95 is the standard normal quantile of a two-sided 95% interval.
const z95 = 1.959963984540054

// Wilson is the 95% Wilson score interval for k successes in n trials. Unlike
// the normal approximation it stays inside [0, 1] and does not collapse to a
// point at 0/n or n/n, so small cells are not reported as certain.
func Wilson(k, n int) (lo, hi float64) {
	if n <= 0 {
		return 0, 0
	}
	p, nf := float64(k)/float64(n), float64(n)
	d := 1 + z95*z95/nf
	c := (p + z95*z95/(2*nf)) / d
	h := z95 * math.Sqrt(p*(1-p)/nf+z95*z95/(4*nf*nf)) / d
	return math.Max(0, c-h), math.Min(1, c+h)
}

// Quantile of sorted xs by linear interpolation between order statistics
// (Hyndman–Fan type 7, as numpy's default); NaN for an empty slice.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// Bootstrap returns the 95% percentile interval of stat over reps resamples
// of n independent units drawn with replacement. stat receives the indices
// of one resample (its length is n) and may return NaN for a resample where
// the statistic is undefined; those resamples are dropped, and if all are
// dropped the interval is NaN. Seed rng for reproducible reports.
func Bootstrap(n, reps int, rng *rand.Rand, stat func(idx []int) float64) (lo, hi float64) {
	if n == 0 || reps <= 0 {
		return math.NaN(), math.NaN()
	}
	idx := make([]int, n)
	vals := make([]float64, 0, reps)
	for range reps {
		for i := range idx {
			idx[i] = rng.IntN(n)
		}
		if v := stat(idx); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	sort.Float64s(vals)
	return Quantile(vals, 0.025), Quantile(vals, 0.975)
}

// NewcombeDiff is the 95% interval for the difference of two independent
// shares k1/n1 − k2/n2 by Newcombe's hybrid score method (his method 10),
// built from the two Wilson intervals. It is what a bootstrap cannot give
// when both samples are unanimous (0 of n or n of n): every resample then
// agrees and the percentile interval is a point.
func NewcombeDiff(k1, n1, k2, n2 int) (lo, hi float64) {
	if n1 <= 0 || n2 <= 0 {
		return math.NaN(), math.NaN()
	}
	p1, p2 := float64(k1)/float64(n1), float64(k2)/float64(n2)
	l1, u1 := Wilson(k1, n1)
	l2, u2 := Wilson(k2, n2)
	d := p1 - p2
	return d - math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2)), d + math.Sqrt((u1-p1)*(u1-p1)+(p2-l2)*(p2-l2))
}
