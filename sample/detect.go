package sample

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"persona/internal/stats"
)

// Detection is the outcome of testing token ids for a watermark.
type Detection struct {
	Scheme string `json:"scheme"`
	// Tokens is how many (context, token) pairs were scored: each pair
	// counts once, so a repeated phrase cannot inflate the evidence.
	Tokens int `json:"tokens"`
	// Score is the number of green tokens (green) or Σ −log(1 − r) over the
	// chosen tokens (gumbel).
	Score float64 `json:"score"`
	// Z is the score's standard score under the null hypothesis (no
	// watermark), and PValue the probability of a score at least this high
	// without one: exact (binomial tail, gamma tail), not the normal
	// approximation.
	Z      float64 `json:"z"`
	PValue float64 `json:"p_value"`
}

// Detect tests ids (the whole text, prompt excluded) for the watermark. It
// needs more tokens than the context width.
func (w Watermark) Detect(ids []int) (Detection, error) {
	w, err := w.withDefaults()
	if err != nil {
		return Detection{}, err
	}
	if len(ids) <= w.Context {
		return Detection{}, fmt.Errorf("%w: %d tokens; detection needs more than the context width %d", ErrWatermark, len(ids), w.Context)
	}
	d := Detection{Scheme: w.Scheme}
	w.score(ids, func(_ int, raw float64) {
		d.Tokens++
		d.Score += raw
	})
	n := float64(d.Tokens)
	switch w.Scheme {
	case "green":
		d.Z = (d.Score - w.Gamma*n) / math.Sqrt(n*w.Gamma*(1-w.Gamma))
		d.PValue = binomialTail(d.Tokens, int(d.Score), w.Gamma)
	case "gumbel":
		d.Z = (d.Score - n) / math.Sqrt(n)
		d.PValue = gammaTail(d.Tokens, d.Score)
	}
	return d, nil
}

// score calls f for every position t whose (context, token) pair has not
// been seen earlier in ids, with the token's raw score: 1 or 0 for a green
// or red token, −log(1 − r) for the Gumbel scheme. w has its defaults.
func (w Watermark) score(ids []int, f func(t int, raw float64)) {
	seen := map[string]bool{}
	for t := w.Context; t < len(ids); t++ {
		key := pairKey(ids[t-w.Context : t+1])
		if seen[key] {
			continue
		}
		seen[key] = true
		seed := stepSeed(w.Key, ids[t-w.Context:t])
		switch w.Scheme {
		case "green":
			if green(seed, ids[t], w.Gamma) {
				f(t, 1)
			} else {
				f(t, 0)
			}
		case "gumbel":
			f(t, -math.Log(1-unit(prf(seed, ids[t]))))
		}
	}
}

// TokenScores returns each token's standardised score: its raw score minus
// the null mean, over the null standard deviation, so that a text's Z is
// the sum over its scored tokens divided by √n and the mean says how much
// evidence a token of this kind carries. Positions the detector does not
// score (the first Context tokens, repeated pairs) are NaN.
func (w Watermark) TokenScores(ids []int) ([]float64, error) {
	w, err := w.withDefaults()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(ids))
	for i := range out {
		out[i] = math.NaN()
	}
	w.score(ids, func(t int, raw float64) {
		switch w.Scheme {
		case "green":
			out[t] = (raw - w.Gamma) / math.Sqrt(w.Gamma*(1-w.Gamma))
		case "gumbel":
			out[t] = raw - 1 // Exp(1): mean 1, variance 1
		}
	})
	return out, nil
}

// Span is a stretch of ids whose watermark test falls below a p-value
// threshold.
type Span struct {
	Start, End int // token positions [Start, End)
	Detection
}

// DetectSpans slides a window of width tokens over ids (half a window at a
// time), keeps the windows whose p-value is below alpha and merges those
// that touch: where the watermarked text lies inside a mixed one. Each
// merged span is tested again as a whole.
func (w Watermark) DetectSpans(ids []int, width int, alpha float64) ([]Span, error) {
	wd, err := w.withDefaults()
	if err != nil {
		return nil, err
	}
	if !(alpha > 0 && alpha < 1) {
		return nil, fmt.Errorf("%w: alpha %g must be a probability in (0, 1)", ErrWatermark, alpha)
	}
	if width <= wd.Context {
		return nil, fmt.Errorf("%w: window of %d tokens; it must exceed the context width %d", ErrWatermark, width, wd.Context)
	}
	var hits [][2]int
	for start := 0; start < len(ids); start += max(width/2, 1) {
		end := min(start+width, len(ids))
		if end-start <= wd.Context {
			break
		}
		d, err := w.Detect(ids[start:end])
		if err != nil {
			return nil, err
		}
		if d.PValue < alpha {
			if n := len(hits); n > 0 && start <= hits[n-1][1] {
				hits[n-1][1] = end
			} else {
				hits = append(hits, [2]int{start, end})
			}
		}
		if end == len(ids) {
			break
		}
	}
	var out []Span
	for _, h := range hits {
		d, err := w.Detect(ids[h[0]:h[1]])
		if err != nil {
			return nil, err
		}
		out = append(out, Span{Start: h[0], End: h[1], Detection: d})
	}
	return out, nil
}

func pairKey(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.Itoa(id))
		b.WriteByte(',')
	}
	return b.String()
}

// binomialTail is P(X ≥ k) for X ~ Binomial(n, p), summed in log space.
func binomialTail(n, k int, p float64) float64 {
	if k <= 0 {
		return 1
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	lgN, _ := math.Lgamma(float64(n + 1))
	var terms []float64
	for i := k; i <= n; i++ {
		li, _ := math.Lgamma(float64(i + 1))
		lni, _ := math.Lgamma(float64(n - i + 1))
		terms = append(terms, lgN-li-lni+float64(i)*lp+float64(n-i)*lq)
	}
	return math.Min(1, math.Exp(stats.LogSumExp(terms)))
}

// gammaTail is P(S ≥ s) for S ~ Gamma(n, 1), the sum of n Exp(1)
// variables: the probability that a Poisson(s) variable is below n,
// e^(−s) Σ_{k<n} s^k / k!, summed in log space.
func gammaTail(n int, s float64) float64 {
	if s <= 0 {
		return 1
	}
	terms := make([]float64, n)
	ls := math.Log(s)
	for k := range n {
		lk, _ := math.Lgamma(float64(k + 1))
		terms[k] = -s + float64(k)*ls - lk
	}
	return math.Min(1, math.Exp(stats.LogSumExp(terms)))
}
