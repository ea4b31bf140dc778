// Package watermark measures the sampler's watermarks (the schemes live in
// package sample, because they act inside every sampling step): how many
// tokens a detector needs, how often text without the mark is flagged, which
// edits the mark survives, and what it costs in task accuracy and
// perplexity. `persona watermark eval` prints its report.
package watermark

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"persona/internal/parallel"
	"persona/internal/stats"
	"persona/sample"
)

// Segment is one reply inside a generated text.
type Segment struct {
	// Kind is the request the reply answers (arithmetic, fact, story…), or
	// "text" for a plain generation.
	Kind string
	// Start and End bound the reply's tokens in Text.IDs.
	Start, End int
	// Correct is whether a task with a right answer was answered rightly;
	// nil when the request has none.
	Correct *bool
}

// Text is one generated text: the tokens the model sampled, prompts left
// out, and what the model without the watermark thought of each.
type Text struct {
	IDs []int
	// LogProbs[i] is log P(IDs[i]) under the model's own distribution at
	// temperature 1, before any watermark or sampling transformation.
	LogProbs []float32
	// Entropy[i] is the entropy (nats) of that distribution at token i.
	Entropy  []float32
	Segments []Segment
}

// Source generates text i, marked with wm (nil: not marked). Text i must
// answer the same requests whatever wm is, so that marked and unmarked texts
// differ only by the watermark.
type Source func(ctx context.Context, i int, wm *sample.Watermark) (Text, error)

// Edits are the attacks the robustness table applies to marked text: a
// share of the tokens replaced by, preceded by, or removed in favour of
// random vocabulary.
var Edits = []string{"substitute", "insert", "delete"}

// Options say what to measure.
type Options struct {
	// Schemes are the watermarks to compare, each with its key.
	Schemes []sample.Watermark
	// Texts is the number of marked texts per scheme; Nulls the number of
	// unmarked ones (the false-positive rate's denominator; the first Texts
	// of them are the quality baseline). Nulls ≥ Texts.
	Texts, Nulls int
	// Lengths are the prefix lengths, in tokens, at which detection is
	// tested (default 25, 50, 100, 200).
	Lengths []int
	// Alpha is the p-value threshold of a detection (default 1e-4).
	Alpha float64
	// EditRates are the shares of tokens each edit touches (default 0.1,
	// 0.2, 0.3); edits apply to whole texts.
	EditRates []float64
	// Vocab is the vocabulary size random edits draw from.
	Vocab int
	// Human are token sequences no model wrote, tested for false positives.
	Human [][]int
	Seed  uint64
	// Workers generate texts in parallel (default 1).
	Workers int
	// Progress, if set, is called as texts are generated.
	Progress func(done, n int)
}

// ErrOptions is returned for options that cannot make a report.
var ErrOptions = errors.New("bad watermark evaluation options")

// Rate is how many of N texts were flagged at a threshold, with the mean
// number of tokens the detector scored in them.
type Rate struct {
	Tokens int     `json:"tokens,omitempty"` // prefix length; 0: whole texts
	Alpha  float64 `json:"alpha"`
	stats.Proportion
	MeanScored float64 `json:"mean_scored"`
}

// EditRate is the detection rate after an edit.
type EditRate struct {
	Edit  string  `json:"edit"`
	Share float64 `json:"share"`
	Rate
}

// Quality is what a generation setting costs.
type Quality struct {
	// Accuracy is the share of task replies answered correctly.
	Accuracy stats.Proportion `json:"accuracy"`
	// Perplexity is exp of the mean negative log-probability of the sampled
	// tokens under the unmarked model: how unlike its own text the marked
	// text is.
	Perplexity float64 `json:"perplexity"`
	MeanTokens float64 `json:"mean_tokens"`
}

// Kind is the evidence replies of one kind carry: the low-entropy caveat in
// numbers.
type Kind struct {
	Kind     string  `json:"kind"`
	Replies  int     `json:"replies"`
	Tokens   float64 `json:"mean_tokens"`
	Entropy  float64 `json:"mean_entropy_nats"`
	PerToken float64 `json:"z_per_token"`
	// Needed is the number of tokens of this kind a detection at Alpha
	// needs, (z_α / PerToken)²; +Inf when the replies carry no signal.
	Needed float64 `json:"tokens_needed"`
}

// SchemeReport is the report of one watermark.
type SchemeReport struct {
	Watermark      sample.Watermark `json:"watermark"`
	KeyID          string           `json:"key_id"`
	Detection      []Rate           `json:"detection"`
	FalsePositives []Rate           `json:"false_positives"`
	// Calibration is the unmarked whole texts flagged at looser thresholds
	// (0.01, 0.001): with exact p-values each should be near its threshold.
	Calibration []Rate     `json:"calibration"`
	Human       Rate       `json:"human_false_positives"`
	Robustness  []EditRate `json:"robustness"`
	Quality     Quality    `json:"quality"`
	Kinds       []Kind     `json:"kinds"`
}

// Report is the evaluation of every scheme against the same prompts.
type Report struct {
	Alpha   float64        `json:"alpha"`
	Texts   int            `json:"texts"`
	Nulls   int            `json:"nulls"`
	Plain   Quality        `json:"unmarked_quality"`
	Kinds   []Kind         `json:"unmarked_kinds"`
	Schemes []SchemeReport `json:"schemes"`
}

func (o *Options) defaults() error {
	if len(o.Lengths) == 0 {
		o.Lengths = []int{25, 50, 100, 200}
	}
	if o.Alpha == 0 {
		o.Alpha = 1e-4
	}
	if o.EditRates == nil {
		o.EditRates = []float64{0.1, 0.2, 0.3}
	}
	o.Workers = max(o.Workers, 1)
	switch {
	case len(o.Schemes) == 0:
		return fmt.Errorf("%w: no watermark scheme to measure", ErrOptions)
	case o.Texts < 1 || o.Nulls < o.Texts:
		return fmt.Errorf("%w: %d marked and %d unmarked texts (want ≥ 1 and unmarked ≥ marked)", ErrOptions, o.Texts, o.Nulls)
	case !(o.Alpha > 0 && o.Alpha < 1):
		return fmt.Errorf("%w: alpha %g must be in (0, 1)", ErrOptions, o.Alpha)
	case o.Vocab < 2:
		return fmt.Errorf("%w: vocabulary of %d tokens", ErrOptions, o.Vocab)
	}
	for _, r := range o.EditRates {
		if !(r > 0 && r < 1) {
			return fmt.Errorf("%w: edit share %g must be in (0, 1)", ErrOptions, r)
		}
	}
	for _, l := range o.Lengths {
		if l < 2 {
			return fmt.Errorf("%w: prefix length %d", ErrOptions, l)
		}
	}
	for _, s := range o.Schemes {
		if err := (sample.Params{Temperature: 1, Watermark: &s}).Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Evaluate generates o.Nulls unmarked texts and o.Texts marked texts per
// scheme from src and measures every scheme on them.
func Evaluate(ctx context.Context, src Source, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	total := o.Nulls + o.Texts*len(o.Schemes)
	done := 0
	progress := func(int, int) {
		done++
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	generate := func(n int, wm *sample.Watermark) ([]Text, error) {
		texts := make([]Text, n)
		err := parallel.ForProgress(ctx, o.Workers, n, func(i int) error {
			t, err := src(ctx, i, wm)
			texts[i] = t
			return err
		}, progress)
		return texts, err
	}
	nulls, err := generate(o.Nulls, nil)
	if err != nil {
		return nil, err
	}
	rep := &Report{Alpha: o.Alpha, Texts: o.Texts, Nulls: o.Nulls, Plain: quality(nulls[:o.Texts])}
	for _, s := range o.Schemes {
		marked, err := generate(o.Texts, &s)
		if err != nil {
			return nil, err
		}
		sr, err := o.measure(s, marked, nulls)
		if err != nil {
			return nil, err
		}
		rep.Schemes = append(rep.Schemes, *sr)
	}
	// The unmarked texts' kinds, scored with the first scheme's key: the
	// null evidence per token, which should sit at zero.
	if rep.Kinds, err = o.kinds(o.Schemes[0], nulls[:o.Texts]); err != nil {
		return nil, err
	}
	return rep, nil
}

func (o *Options) measure(s sample.Watermark, marked, nulls []Text) (*SchemeReport, error) {
	sr := &SchemeReport{Watermark: s, KeyID: sample.KeyID(s.Key), Quality: quality(marked)}
	ids := func(ts []Text) [][]int {
		out := make([][]int, len(ts))
		for i, t := range ts {
			out[i] = t.IDs
		}
		return out
	}
	lengths := append(append([]int(nil), o.Lengths...), 0) // 0: whole texts
	for _, l := range lengths {
		d, err := o.rate(s, ids(marked), l, o.Alpha)
		if err != nil {
			return nil, err
		}
		f, err := o.rate(s, ids(nulls), l, o.Alpha)
		if err != nil {
			return nil, err
		}
		sr.Detection, sr.FalsePositives = append(sr.Detection, d), append(sr.FalsePositives, f)
	}
	for _, a := range []float64{1e-2, 1e-3} {
		c, err := o.rate(s, ids(nulls), 0, a)
		if err != nil {
			return nil, err
		}
		sr.Calibration = append(sr.Calibration, c)
	}
	var err error
	if sr.Human, err = o.rate(s, o.Human, 0, o.Alpha); err != nil {
		return nil, err
	}
	for _, edit := range Edits {
		for _, share := range o.EditRates {
			rng := rand.New(rand.NewPCG(o.Seed, math.Float64bits(share)^uint64(len(edit))))
			edited := make([][]int, len(marked))
			for i, t := range marked {
				edited[i] = Edit(rng, t.IDs, edit, share, o.Vocab)
			}
			r, err := o.rate(s, edited, 0, o.Alpha)
			if err != nil {
				return nil, err
			}
			sr.Robustness = append(sr.Robustness, EditRate{Edit: edit, Share: share, Rate: r})
		}
	}
	if sr.Kinds, err = o.kinds(s, marked); err != nil {
		return nil, err
	}
	return sr, nil
}

// rate tests the first l tokens of every sequence at least that long (l = 0:
// whole sequences long enough to test) at threshold alpha.
func (o *Options) rate(s sample.Watermark, seqs [][]int, l int, alpha float64) (Rate, error) {
	r := Rate{Tokens: l, Alpha: alpha}
	k, n, scored := 0, 0, 0
	for _, ids := range seqs {
		if l > 0 {
			if len(ids) < l {
				continue
			}
			ids = ids[:l]
		}
		if len(ids) <= max(s.Context, 1) {
			continue
		}
		d, err := s.Detect(ids)
		if err != nil {
			return r, err
		}
		n++
		scored += d.Tokens
		if d.PValue < alpha {
			k++
		}
	}
	r.Proportion = stats.NewProportion(k, n)
	if n > 0 {
		r.MeanScored = float64(scored) / float64(n)
	}
	return r, nil
}

// kinds pools every reply's per-token evidence and entropy by the kind of
// request it answers.
func (o *Options) kinds(s sample.Watermark, texts []Text) ([]Kind, error) {
	type acc struct {
		replies, tokens, scored int
		entropy, z              float64
	}
	by := map[string]*acc{}
	for _, t := range texts {
		scores, err := s.TokenScores(t.IDs)
		if err != nil && len(t.IDs) > 0 {
			return nil, err
		}
		for _, seg := range t.Segments {
			a := by[seg.Kind]
			if a == nil {
				a = &acc{}
				by[seg.Kind] = a
			}
			a.replies++
			for i := seg.Start; i < seg.End; i++ {
				a.tokens++
				a.entropy += float64(t.Entropy[i])
				if i < len(scores) && !math.IsNaN(scores[i]) {
					a.scored++
					a.z += scores[i]
				}
			}
		}
	}
	zAlpha := normalQuantile(1 - o.Alpha)
	var out []Kind
	for name, a := range by {
		k := Kind{Kind: name, Replies: a.replies, Tokens: float64(a.tokens) / float64(a.replies), Needed: math.Inf(1)}
		if a.tokens > 0 {
			k.Entropy = a.entropy / float64(a.tokens)
		}
		if a.scored > 0 {
			k.PerToken = a.z / float64(a.scored)
		}
		if k.PerToken > 0 {
			k.Needed = math.Ceil(zAlpha * zAlpha / (k.PerToken * k.PerToken))
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out, nil
}

func quality(texts []Text) Quality {
	var q Quality
	k, n, tokens := 0, 0, 0
	var nll float64
	for _, t := range texts {
		for _, lp := range t.LogProbs {
			nll -= float64(lp)
		}
		tokens += len(t.IDs)
		for _, s := range t.Segments {
			if s.Correct != nil {
				n++
				if *s.Correct {
					k++
				}
			}
		}
	}
	q.Accuracy = stats.NewProportion(k, n)
	if tokens > 0 {
		q.Perplexity = math.Exp(nll / float64(tokens))
		q.MeanTokens = float64(tokens) / float64(len(texts))
	}
	return q
}

// Edit returns a copy of ids with a share of its positions attacked:
// "substitute" replaces each chosen token by a random one, "insert" puts a
// random token before it, "delete" drops it.
func Edit(rng *rand.Rand, ids []int, edit string, share float64, vocab int) []int {
	out := make([]int, 0, len(ids)+int(share*float64(len(ids)))+1)
	for _, id := range ids {
		if rng.Float64() >= share {
			out = append(out, id)
			continue
		}
		switch edit {
		case "substitute":
			out = append(out, rng.IntN(vocab))
		case "insert":
			out = append(out, rng.IntN(vocab), id)
		case "delete":
		}
	}
	return out
}

// normalQuantile is the standard normal quantile by bisection on the
// complementary error function: precise enough for a threshold in a table.
func normalQuantile(p float64) float64 {
	lo, hi := -40.0, 40.0
	for range 200 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(-mid/math.Sqrt2) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
