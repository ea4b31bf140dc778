package control

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"persona/internal/stats"
)

// WriteTable prints every cell, marking the frontier (*) and the
// recommendation (→), then the recommendation in words.
func (sw *Sweep) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	verb := "expressed"
	if sw.Suppress {
		verb = "still expressed"
	}
	fmt.Fprintf(tw, "\tlayers\twhere\tstrength\tcoeff\ttrait %s\ttrait score\ttasks correct\tcoherence\tperplexity\tpositions (naive)\t\n", verb)
	for i, c := range sw.Cells {
		mark := ""
		if slices.Contains(sw.Frontier, i) {
			mark = "*"
		}
		if i == sw.Recommended {
			mark = "→" + mark
		}
		coeffs := make([]string, len(c.Coeffs))
		for k, x := range c.Coeffs {
			coeffs[k] = fmt.Sprintf("%.3g", x)
		}
		band := c.Band()
		if i == 0 {
			band, coeffs = "—", []string{"0"}
		}
		coh := "—"
		if c.Coherence >= 0 {
			coh = fmt.Sprintf("%.1f", c.Coherence)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%s\t%s\t%.1f\t%s\t%s\t%.2f\t%d (%d)\t\n", mark, band, c.Position, c.Strength, strings.Join(coeffs, ","),
			share(c.Trait.P, c.Trait.Lo, c.Trait.Hi), c.TraitMean, share(c.Accuracy.P, c.Accuracy.Lo, c.Accuracy.Hi), coh, c.Perplexity,
			c.Positions, c.NaivePositions)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if sw.Recommended < 0 {
		_, err := fmt.Fprintf(w, "\nNo setting keeps %.0f%% of the tasks correct while steering; the frontier (*) shows what each costs.\n", 100*sw.MinAcc)
		return err
	}
	c := sw.Cells[sw.Recommended]
	_, err := fmt.Fprintf(w, "\nRecommended: layers %s, %s positions, strength %g (trait %s in %.0f%% of replies against %.0f%% unsteered; %.0f%% of tasks correct against %.0f%%).\n",
		c.Band(), c.Position, c.Strength, verb, 100*c.Trait.P, 100*sw.Cells[0].Trait.P, 100*c.Accuracy.P, 100*sw.Cells[0].Accuracy.P)
	return err
}

func vectorsBand(ls []int) string { return Cell{Layers: ls}.Band() }

func share(p, lo, hi float64) string {
	return fmt.Sprintf("%.0f%% [%.0f, %.0f]", 100*p, 100*lo, 100*hi)
}

// WriteSVG draws the dose–response frontier as a self-contained SVG: every
// cell at (task accuracy, trait share), the frontier joined, the unsteered
// model and the recommendation marked.
func (sw *Sweep) WriteSVG(w io.Writer) error {
	const W, H, pad = 640, 480, 60
	sx := func(x float64) float64 { return pad + x*(W-2*pad) }
	sy := func(y float64) float64 { return H - pad - y*(H-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	title := fmt.Sprintf("Steering %s with %s: trait against competence", sw.Trait, sw.Vector)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="14">%s</text>`+"\n", pad, html.EscapeString(title))
	for _, t := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", sx(0), sy(t), sx(1), sy(t))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", sx(t), sy(0), sx(t), sy(1))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", sx(0)-6, sy(t)+4, 100*t)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f%%</text>`+"\n", sx(t), sy(0)+16, 100*t)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">held-out tasks answered correctly</text>`+"\n", W/2, H-18)
	ylabel := "replies expressing the trait"
	if sw.Suppress {
		ylabel = "replies still expressing the trait"
	}
	fmt.Fprintf(&b, `<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", H/2, ylabel)
	if sw.MinAcc > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 3"/>`+"\n", sx(sw.MinAcc), sy(0), sx(sw.MinAcc), sy(1))
	}
	front := slices.Clone(sw.Frontier)
	slices.SortFunc(front, func(i, j int) int {
		if sw.Cells[i].Accuracy.P < sw.Cells[j].Accuracy.P {
			return -1
		}
		return 1
	})
	var pts []string
	for _, i := range front {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(sw.Cells[i].Accuracy.P), sy(sw.Cells[i].Trait.P)))
	}
	if len(pts) > 1 {
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#3b6ea8" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "))
	}
	for i, c := range sw.Cells {
		fill, r := "#c0632b", 3.5
		label := fmt.Sprintf("%s %s %g", c.Band(), c.Position, c.Strength)
		switch {
		case i == 0:
			fill, r, label = "#222", 5, "unsteered"
		case i == sw.Recommended:
			fill, r = "#2a8a3e", 6
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" fill-opacity="0.8"><title>%s</title></circle>`+"\n",
			sx(c.Accuracy.P), sy(c.Trait.P), r, fill, html.EscapeString(label))
		if i == 0 || i == sw.Recommended || slices.Contains(sw.Frontier, i) {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", sx(c.Accuracy.P)+7, sy(c.Trait.P)-5, html.EscapeString(label))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteTable prints every capping setting against the uncapped model, the
// recommendation marked (→), then the recommendation in words.
func (cal *Calibration) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	var kinds []string
	if len(cal.Cells) > 0 {
		kinds = slices.Sorted(maps.Keys(cal.Cells[0].ByKind))
	}
	fmt.Fprint(tw, "\tlayers\tpercentile\tτ\tcaptured")
	for _, k := range kinds {
		fmt.Fprintf(tw, "\t%s", k)
	}
	fmt.Fprint(tw, "\tcut [95% CI of the difference]\ttasks correct\tcoherence\t\n")
	for i, c := range cal.Cells {
		mark, band, pct, taus, cut := "", "—", "—", "—", "—"
		if i == cal.Recommended {
			mark = "→"
		}
		if i > 0 {
			band, pct = vectorsBand(c.Layers), formatPercentile(c.Percentile)
			ts := make([]string, len(c.Tau))
			for k, t := range c.Tau {
				ts[k] = fmt.Sprintf("%.3g", t)
			}
			taus = strings.Join(ts, ",")
			cut = fmt.Sprintf("%+.0f%% [%+.2f, %+.2f]", 100*c.Cut, c.DiffLo, c.DiffHi)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", mark, band, pct, taus, share(c.Captured.P, c.Captured.Lo, c.Captured.Hi))
		for _, k := range kinds {
			p := c.ByKind[k]
			fmt.Fprintf(tw, "\t%d/%d", p.K, p.N)
		}
		fmt.Fprintf(tw, "\t%s\t%s\t%.2f\t\n", cut, share(c.Accuracy.P, c.Accuracy.Lo, c.Accuracy.Hi), c.Coherence)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cal.Recommended < 0 {
		_, err := fmt.Fprintf(w, "\nNo setting lowers the captured share while losing at most %.0f points of task accuracy.\n", 100*cal.MaxLoss)
		return err
	}
	c, base := cal.Cells[cal.Recommended], cal.Cells[0]
	_, err := fmt.Fprintf(w, "\nRecommended: cap layers %s at the %s th percentile (captured %.0f%% → %.0f%%, a %.0f%% cut; tasks %.0f%% → %.0f%%).\n",
		vectorsBand(c.Layers), formatPercentile(c.Percentile), 100*base.Captured.P, 100*c.Captured.P, 100*c.Cut, 100*base.Accuracy.P, 100*c.Accuracy.P)
	return err
}

// WriteTable prints the fine-tuned-from model and every arm, pooled over
// seeds, with the broad shift and the share of the narrow arm's shift each
// arm removed.
func (in *Inoculation) WriteTable(w io.Writer) error {
	kind, persona := cmp.Or(in.Kind, "the trained kind"), cmp.Or(in.Persona, "the persona")
	fmt.Fprintf(w, "Narrow data: %s prompts", kind)
	if in.Persona != "" {
		fmt.Fprintf(w, ", %s-laden", in.Persona)
	}
	fmt.Fprintf(w, "; trait %s; inoculation prompt %q; preventative coefficient %.3g; screening dropped %d samples.\n\n",
		in.Trait, in.Prompt, in.Coeff, in.Flagged)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprint(tw, "arm\tsamples\ttrait on "+kind+"\ttrait elsewhere\tread as "+persona+"\tprojection\ttasks correct\tbroad shift [95% CI]\tshift removed [95% CI]\t\n")
	row := func(name string, samples string, r Reading, shift, removed string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t\n", name, samples, proportion(r.Narrow),
			proportion(r.Broad), proportion(r.Persona), r.Projection, proportion(r.Accuracy), shift, removed)
	}
	row("before", "—", in.Base, "—", "—")
	for _, a := range in.Arms {
		rem := "—"
		if a.Removed != nil {
			rem = fmt.Sprintf("%.0f%% [%.0f, %.0f]", 100*a.Removed[0], 100*a.Removed[1], 100*a.Removed[2])
		}
		row(a.Arm, fmt.Sprint(a.Samples), a.Pooled, fmt.Sprintf("%+.3f [%+.3f, %+.3f]", a.Shift, a.ShiftLo, a.ShiftHi), rem)
	}
	return tw.Flush()
}

// proportion prints a share with its interval, or "—" when nothing was
// read.
func proportion(p stats.Proportion) string {
	if p.N == 0 {
		return "—"
	}
	return share(p.P, p.Lo, p.Hi)
}
