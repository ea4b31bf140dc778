// Package stats holds the interval estimates every measurement in persona
// reports: the Wilson score interval for a share and the percentile
// bootstrap for any statistic of independent units (conversations, probes).
// They live in one place so that an audit's rates, the organism's model card
// and drift curves are computed, and can be compared, the same way.
package stats

import (
	"fmt"
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

// Pearson is the correlation coefficient of x and y (NaN for fewer than
// three pairs or a constant series).
func Pearson(x, y []float64) float64 {
	n := float64(len(x))
	if n < 3 || len(y) != len(x) {
		return math.NaN()
	}
	var mx, my float64
	for i := range x {
		mx, my = mx+x[i], my+y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
		syy += (y[i] - my) * (y[i] - my)
	}
	return sxy / math.Sqrt(sxx*syy)
}

// Bin is one bin of a reliability diagram: predictions whose confidence
// fell in [Lo, Hi), their mean confidence and how often they were right.
type Bin struct {
	Lo, Hi     float64
	N          int
	Confidence float64
	Accuracy   float64
}

// Calibration compares confidences (the probability a judge gave its
// answer) with whether each answer was right: the reliability diagram in
// bins equal-width bins over [0, 1], and the expected calibration error,
// Σ_b (n_b/N)·|accuracy_b − confidence_b|.
func Calibration(confidence []float64, correct []bool, bins int) (ece float64, diagram []Bin) {
	diagram = make([]Bin, bins)
	for b := range diagram {
		diagram[b].Lo, diagram[b].Hi = float64(b)/float64(bins), float64(b+1)/float64(bins)
	}
	for i, c := range confidence {
		b := min(int(c*float64(bins)), bins-1)
		diagram[b].N++
		diagram[b].Confidence += c
		if correct[i] {
			diagram[b].Accuracy++
		}
	}
	for b := range diagram {
		d := &diagram[b]
		if d.N == 0 {
			continue
		}
		d.Confidence /= float64(d.N)
		d.Accuracy /= float64(d.N)
		ece += float64(d.N) / float64(len(confidence)) * math.Abs(d.Accuracy-d.Confidence)
	}
	return ece, diagram
}

// Proportion is k successes in n trials with a 95% Wilson interval.
type Proportion struct {
	K  int     `json:"k"`
	N  int     `json:"n"`
	P  float64 `json:"p"`
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// NewProportion computes the share and its Wilson score interval.
func NewProportion(k, n int) Proportion {
	p := Proportion{K: k, N: n}
	if n == 0 {
		return p
	}
	p.P = float64(k) / float64(n)
	p.Lo, p.Hi = Wilson(k, n)
	return p
}

func (p Proportion) String() string {
	return fmt.Sprintf("%.3f [%.3f, %.3f] (%d/%d)", p.P, p.Lo, p.Hi, p.K, p.N)
}

// AUROC is the area under the ROC curve of scores against binary labels:
// the probability that a positive outscores a negative, ties counting half
// (the Mann–Whitney U over n₊n₋). NaN without both classes.
func AUROC(scores []float64, positive []bool) float64 {
	type pt struct {
		s   float64
		pos bool
	}
	pts := make([]pt, len(scores))
	var np, nn float64
	for i, s := range scores {
		pts[i] = pt{s, positive[i]}
		if positive[i] {
			np++
		} else {
			nn++
		}
	}
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].s < pts[j].s })
	// Sum of the positives' ranks, ties sharing their mean rank.
	var rankSum float64
	for i := 0; i < len(pts); {
		j := i
		for j < len(pts) && pts[j].s == pts[i].s {
			j++
		}
		mean := float64(i+j+1) / 2 // ranks i+1 … j
		for k := i; k < j; k++ {
			if pts[k].pos {
				rankSum += mean
			}
		}
		i = j
	}
	return (rankSum - np*(np+1)/2) / (np * nn)
}

// LogSumExp returns log Σ exp(xs), stably; −∞ when every term is (or
// there is none).
func LogSumExp(xs []float64) float64 {
	return LogSumExpOver(len(xs), func(i int) float64 { return xs[i] })
}

// LogSumExpOver is LogSumExp of x(0), …, x(n−1), for terms computed on the
// fly.
func LogSumExpOver(n int, x func(i int) float64) float64 {
	m := math.Inf(-1)
	for i := range n {
		m = math.Max(m, x(i))
	}
	if math.IsInf(m, -1) {
		return m
	}
	s := 0.0
	for i := range n {
		s += math.Exp(x(i) - m)
	}
	return m + math.Log(s)
}
