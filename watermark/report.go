package watermark

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// WriteTable prints the report as the tables the measurements page quotes.
func (r *Report) WriteTable(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	rate := func(x Rate) string {
		if x.N == 0 {
			return "–"
		}
		return fmt.Sprintf("%.3f (%d/%d)", x.P, x.K, x.N)
	}
	length := func(l int) string {
		if l == 0 {
			return "whole"
		}
		return fmt.Sprint(l)
	}
	p("Detection at p < %g: marked texts flagged (true positives) and unmarked ones (false positives), by prefix length in tokens\n", r.Alpha)
	p("scheme\tprefix\tdetected\tfalse positives\tscored tokens\n")
	for _, s := range r.Schemes {
		for i, d := range s.Detection {
			p("%s\t%s\t%s\t%s\t%.0f\n", s.Watermark.Scheme, length(d.Tokens), rate(d), rate(s.FalsePositives[i]), d.MeanScored)
		}
		p("%s\thuman text\t\t%s\t%.0f\n", s.Watermark.Scheme, rate(s.Human), s.Human.MeanScored)
		for _, c := range s.Calibration {
			p("%s\twhole, p < %g\t\t%s\t\n", s.Watermark.Scheme, c.Alpha, rate(c))
		}
	}
	p("\nRobustness: whole marked texts detected after random edits of a share of their tokens\n")
	p("scheme\tedit\tshare\tdetected\n")
	for _, s := range r.Schemes {
		for _, e := range s.Robustness {
			p("%s\t%s\t%.0f%%\t%s\n", s.Watermark.Scheme, e.Edit, 100*e.Share, rate(e.Rate))
		}
	}
	p("\nQuality (%d texts each, the same requests)\n", r.Texts)
	p("sampling\ttask accuracy\tperplexity\tmean tokens\n")
	q := func(name string, q Quality) {
		acc := "–"
		if q.Accuracy.N > 0 {
			acc = q.Accuracy.String()
		}
		p("%s\t%s\t%.3f\t%.1f\n", name, acc, q.Perplexity, q.MeanTokens)
	}
	q("unmarked", r.Plain)
	for _, s := range r.Schemes {
		q(s.Watermark.Scheme, s.Quality)
	}
	p("\nEvidence by reply kind: entropy per token and the tokens a detection at p < %g needs\n", r.Alpha)
	p("scheme\tkind\treplies\tmean tokens\tentropy (nats)\tz per token\ttokens needed\n")
	kinds := func(name string, ks []Kind) {
		for _, k := range ks {
			need := "never"
			if !math.IsInf(k.Needed, 1) {
				need = fmt.Sprintf("%.0f", k.Needed)
			}
			p("%s\t%s\t%d\t%.1f\t%.2f\t%+.3f\t%s\n", name, k.Kind, k.Replies, k.Tokens, k.Entropy, k.PerToken, need)
		}
	}
	kinds("unmarked", r.Kinds)
	for _, s := range r.Schemes {
		kinds(s.Watermark.Scheme, s.Kinds)
	}
	return tw.Flush()
}
