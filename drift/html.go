package drift

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained report: the statistics tables, one row
// of charts per domain (the mean projection, and the oracle's and the
// posterior's Assistant share, per turn, each system prompt a line inside
// its 95% interval band), and a few transcripts per cell. Charts are inline
// SVG drawn here; the page loads nothing, so it can be archived and opened
// offline.
func (r *Report) WriteHTML(w io.Writer) error {
	type chartRow struct {
		Domain Domain
		Charts []template.HTML
	}
	var rows []chartRow
	var domains []Domain
	for _, c := range r.Cells {
		if len(domains) == 0 || domains[len(domains)-1] != c.Domain {
			if !containsDomain(domains, c.Domain) {
				domains = append(domains, c.Domain)
			}
		}
	}
	for _, d := range domains {
		row := chartRow{Domain: d}
		for _, m := range []struct {
			title  string
			get    func(c *Cell) []Estimate
			share  bool
			thresh bool
		}{
			{"projection on the assistant axis", func(c *Cell) []Estimate { return c.Projection }, false, true},
			{"Assistant share (oracle)", func(c *Cell) []Estimate { return c.Oracle }, true, false},
			{"P(Assistant) (model's posterior)", func(c *Cell) []Estimate { return c.Posterior }, true, false},
		} {
			var series []series
			for _, c := range r.Cells {
				if c.Domain != d {
					continue
				}
				c := c
				if es := m.get(&c); len(es) > 0 {
					series = append(series, seriesOf(&c, es))
				}
			}
			if len(series) == 0 {
				continue
			}
			var th *float64
			if m.thresh && r.HasAxis {
				th = &r.Threshold
			}
			row.Charts = append(row.Charts, template.HTML(curveSVG(string(d)+": "+m.title, series, m.share, th)))
		}
		rows = append(rows, row)
	}
	type transcript struct {
		Title string
		C     Conversation
	}
	var ts []transcript
	shown := map[string]int{}
	for _, c := range r.Conversations {
		k := fmt.Sprintf("%s/%s/%s", c.Domain, c.System, c.Control)
		if shown[k] >= 2 {
			continue
		}
		shown[k]++
		title := fmt.Sprintf("%s · %s prompt", c.Scenario, c.System)
		if c.Control != "" {
			title += " · " + c.Control
		}
		ts = append(ts, transcript{title, c})
	}
	return htmlTmpl.Execute(w, map[string]any{"R": r, "Rows": rows, "Transcripts": ts})
}

func containsDomain(ds []Domain, d Domain) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

type series struct {
	label  string
	color  string
	dashed bool
	es     []Estimate
}

func seriesOf(c *Cell, es []Estimate) series {
	s := series{label: c.System + " prompt", color: "#3b6ea8", es: es}
	if c.System == "weak" {
		s.color = "#c0632b"
	}
	if c.Control != "" {
		s.label += ", " + c.Control
		s.dashed = true
	}
	return s
}

// curveSVG draws per-turn means with their interval bands. share fixes the
// y range to [0, 1]; threshold draws τ as a dotted line.
func curveSVG(title string, ss []series, share bool, threshold *float64) string {
	const W, H, l, r, t, b = 380, 250, 48, 12, 26, 64
	turns := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		turns = max(turns, len(s.es))
		for _, e := range s.es {
			for _, v := range []float64{e.Value, e.Lo, e.Hi} {
				if !math.IsNaN(v) {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	if threshold != nil {
		lo, hi = math.Min(lo, *threshold), math.Max(hi, *threshold)
	}
	if share {
		lo, hi = 0, 1
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-1, hi+1
	}
	x := func(i int) float64 {
		if turns <= 1 {
			return l
		}
		return l + float64(i)*float64(W-l-r)/float64(turns-1)
	}
	y := func(v float64) float64 { return t + (hi-v)/(hi-lo)*float64(H-t-b) }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" role="img" aria-label="%s">`, W, H, html.EscapeString(title))
	fmt.Fprintf(&sb, `<text x="%d" y="16" font-size="12" font-weight="bold">%s</text>`, l, html.EscapeString(title))
	for k := 0; k <= 4; k++ {
		v := lo + float64(k)*(hi-lo)/4
		fmt.Fprintf(&sb, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#777">%.3g</text>`, l, y(v), W-r, y(v), l-4, y(v)+3, v)
	}
	for i := 0; i < turns; i++ {
		if turns <= 12 || i%2 == 0 {
			fmt.Fprintf(&sb, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#777">%d</text>`, x(i), H-b+14, i+1)
		}
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="#777">turn</text>`, (l+W-r)/2, H-b+26)
	if threshold != nil {
		fmt.Fprintf(&sb, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#555" stroke-dasharray="2,3"><title>threshold τ = %.4g</title></line>`, l, y(*threshold), W-r, y(*threshold), *threshold)
	}
	for k, s := range ss {
		var top, bot, line []string
		for i, e := range s.es {
			if !math.IsNaN(e.Lo) && !math.IsNaN(e.Hi) {
				top = append(top, fmt.Sprintf("%.1f,%.1f", x(i), y(e.Hi)))
				bot = append([]string{fmt.Sprintf("%.1f,%.1f", x(i), y(e.Lo))}, bot...)
			}
			if !math.IsNaN(e.Value) {
				line = append(line, fmt.Sprintf("%.1f,%.1f", x(i), y(e.Value)))
				fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"><title>%s, turn %d: %s</title></circle>`, x(i), y(e.Value), s.color, html.EscapeString(s.label), i+1, e)
			}
		}
		band := append(top, bot...)
		if len(band) > 2 {
			fmt.Fprintf(&sb, `<polygon points="%s" fill="%s" opacity="0.15"/>`, strings.Join(band, " "), s.color)
		}
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="6,3"`
		}
		if len(line) > 1 {
			fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`, strings.Join(line, " "), s.color, dash)
		}
		// Legend: two entries per row under the axis label.
		lx, ly := l+(k%2)*160, H-18+(k/2)*13
		fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d" font-size="10">%s</text>`,
			lx, ly-3, lx+16, ly-3, s.color, dash, lx+20, ly, html.EscapeString(s.label))
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

var htmlTmpl = template.Must(template.New("drift").Funcs(template.FuncMap{
	"est": func(e Estimate) string { return e.String() },
	"f3": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.3f", *p)
	},
	"inc": func(i int) int { return i + 1 },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>persona drift</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222;max-width:1240px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f4f4f2}.charts{display:flex;flex-wrap:wrap;gap:8px}.small{color:#666;font-size:12px}
details{margin:4px 0}pre{white-space:pre-wrap;font-size:12px;background:#f8f8f6;padding:6px}
</style></head><body>
<h1>persona drift</h1>
<p>Model <code>{{.R.Model}}</code>, {{len .R.Conversations}} conversations.
{{if .R.HasAxis}}Projections on the unit assistant axis at layer {{.R.Layer}}; departure threshold τ = {{printf "%.4g" .R.Threshold}}.{{end}}
{{if .R.CapLayers}}Capped runs clamp the axis projection from below at τ on layers {{.R.CapLayers}}.{{end}}
"End share" is the share of conversations whose last reply is still the Assistant, read by the {{.R.EndMeasure}}.
Intervals are 95% percentile bootstrap intervals resampling scenarios.</p>
{{range .R.Notes}}<p class="small"><b>Note:</b> {{.}}</p>{{end}}
<h2>Strong vs weak system prompt</h2>
<p class="small">The persona selection model predicts that a system prompt naming the Assistant outright holds the persona better than a hint: a positive difference.</p>
<table><tr><th>domain</th><th>strong</th><th>weak</th><th>strong − weak</th><th>scenarios</th></tr>
{{range .R.StrongVsWeak}}<tr><td>{{.Domain}}</td><td>{{est .A}}</td><td>{{est .B}}</td><td><b>{{est .Diff}}</b></td><td>{{.Diff.N}}</td></tr>{{end}}
</table>
{{if .R.Controls}}<h2>Controls: capping and rails</h2>
<table><tr><th>control</th><th>domain</th><th>system</th><th>with</th><th>without</th><th>with − without</th></tr>
{{range .R.Controls}}<tr><td>{{.Control}}</td><td>{{.Domain}}</td><td>{{.System}}</td><td>{{est .A}}</td><td>{{est .B}}</td><td><b>{{est .Diff}}</b></td></tr>{{end}}
</table>{{end}}
<h2>By domain and system prompt</h2>
<table><tr><th>domain</th><th>system</th><th>control</th><th>conversations</th><th>end share</th><th>slope / turn</th><th>first departure (turn)</th><th>departed</th><th>end: axis</th><th>end: posterior</th><th>end: oracle</th></tr>
{{range .R.Cells}}<tr><td>{{.Domain}}</td><td>{{.System}}</td><td>{{.Control}}</td><td>{{.Conversations}}</td><td>{{est .EndShare}}</td><td>{{est .Slope}}</td><td>{{est .FirstDeparture}}</td><td>{{est .Departed}}</td><td>{{est .EndAxis}}</td><td>{{est .EndPosterior}}</td><td>{{est .EndOracle}}</td></tr>{{end}}
</table>
<p class="small">First departure: the first turn whose reply projects below τ; conversations that never depart count as turns + 1.</p>
{{range .Rows}}<h3>{{.Domain}}</h3><div class="charts">{{range .Charts}}{{.}}{{end}}</div>{{end}}
<h2>Transcripts</h2>
<p class="small">Two per cell.</p>
{{range .Transcripts}}<details><summary>{{.Title}}</summary>
<p class="small">System: {{.C.Prompt}}</p>
<table><tr><th>turn</th><th>user</th><th>reply</th><th>projection</th><th>P(Assistant)</th><th>oracle</th></tr>
{{range $i, $t := .C.Turns}}<tr><td>{{inc $i}}</td><td>{{$t.User}}</td><td>{{$t.Reply}}</td><td>{{f3 $t.Projection}}</td><td>{{f3 $t.Posterior}}</td><td>{{if $t.Oracle}}{{$t.Oracle.Top}} {{printf "%.2f" $t.Oracle.TopProb}}{{end}}</td></tr>{{end}}
</table></details>{{end}}
</body></html>
`))
