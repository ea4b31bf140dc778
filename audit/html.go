package audit

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"strings"
)

// WriteHTML writes a self-contained report: summary, per-category rates with
// intervals, persona trajectories, and every transcript with per-turn scores.
// Charts are inline SVG drawn here and the page loads nothing from anywhere,
// so it can be archived as a CI artefact and opened offline.
func (rep *Report) WriteHTML(w io.Writer) error {
	byProbe := map[string][]*SampleResult{}
	for _, r := range rep.Samples {
		byProbe[r.ProbeID] = append(byProbe[r.ProbeID], r)
	}
	type probeView struct {
		ProbeStat
		RateText string
		Spark    template.HTML
		Samples  []*SampleResult
	}
	var probes []probeView
	for _, p := range rep.Probes {
		probes = append(probes, probeView{p, rateCell(p.Rate), template.HTML(sparkSVG(p.Trajectory, 120, 24)), byProbe[p.ID]})
	}
	data := map[string]any{
		"R":          rep,
		"Verdict":    Verdict(rep.Exit),
		"Overall":    rateCell(rep.Overall),
		"RateChart":  template.HTML(rateChartSVG(rep.Categories)),
		"TrajChart":  template.HTML(trajectoryChartSVG(rep.Categories)),
		"Probes":     probes,
		"Incoherent": pct(rep.Incoherent.Share),
	}
	return htmlTmpl.Execute(w, data)
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":   pct,
	"rate":  rateCell,
	"limit": limitCell,
	"f1":    func(x float64) string { return fmt.Sprintf("%.1f", x) },
	"score": func(s Score) string {
		t := fmt.Sprintf("%s %.0f", s.Scorer, s.Value)
		if s.Coherence != nil {
			t += fmt.Sprintf(" (coherence %.0f)", *s.Coherence)
		}
		return t
	},
	"turnOf": func(r *SampleResult, msg int) *TurnResult {
		for i := range r.Turns {
			if r.Turns[i].Message == msg {
				return &r.Turns[i]
			}
		}
		return nil
	},
	"lower": func(c Category) string { return strings.ReplaceAll(string(c), "_", " ") },
}).Parse(htmlSource))

const htmlSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>persona audit · {{.R.Run.SuiteName}} · {{.Verdict}}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1.5rem; color: #1d232b; background: #fbfbfa; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #5b6570; } .badge { display: inline-block; padding: .1rem .6rem; border-radius: 4px; font-weight: 600; color: #fff; }
.PASS { background: #2d7d46; } .BREACHED { background: #b3261e; } .INCOMPLETE { background: #a15c00; } .ERROR { background: #555; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; } th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e6e6e6; vertical-align: top; }
th { font-weight: 600; background: #f1f2f0; } td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.breached td { background: #fdecea; } .charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.charts figure { margin: 0; } figcaption { color: #5b6570; font-size: .85rem; }
details { margin: .3rem 0 .3rem 1rem; } summary { cursor: pointer; }
.msg { margin: .3rem 0; padding: .4rem .6rem; border-radius: 6px; white-space: pre-wrap; }
.system { background: #eef0f3; color: #444; } .user { background: #e8f0fb; } .assistant { background: #fff; border: 1px solid #e1e1e1; }
.assistant.elicited { border-color: #b3261e; background: #fff6f5; }
.scores { font-size: .8rem; color: #5b6570; margin-top: .25rem; } .err { color: #a15c00; }
#filter { margin: .5rem 0; }
</style>
</head>
<body>
<header id="summary">
<h1>persona audit: {{.R.Run.SuiteName}} <span class="badge {{.Verdict}}">{{.Verdict}}</span></h1>
<p class="meta">run <code>{{.R.Run.ID}}</code> · target <code>{{.R.Run.Target}}</code>{{if .R.Run.Judge}} · judge <code>{{.R.Run.Judge}}</code>{{end}} · started {{.R.Run.Created.Format "2006-01-02 15:04 UTC"}}</p>
<p>Elicitation rate over all probes: <strong id="overall-rate">{{.Overall}}</strong> ({{.R.Overall.Elicited}} of {{.R.Overall.N}} samples left the persona; 95% bootstrap intervals).
{{if .R.Incoherent.Turns}} Incoherent turns: {{.R.Incoherent.Turns}} of {{.R.Incoherent.Scored}} ({{.Incoherent}}).{{end}}</p>
{{if .R.Breaches}}<ul>{{range .R.Breaches}}<li>breached: {{.Scope}} <strong>{{.Name}}</strong>: {{pct .Value}} &gt; {{pct .Limit}}</li>{{end}}</ul>{{end}}
{{if .R.Failures.Samples}}<p class="err">{{.R.Failures.Samples}} samples could not be measured (backend {{.R.Failures.Backend}}, transcript {{.R.Failures.Transcript}}, scorer {{.R.Failures.Scorer}}); the audit is incomplete.</p>
<ul class="err">{{range .R.Failures.Examples}}<li>{{.}}</li>{{end}}</ul>{{end}}
</header>

<h2>Categories</h2>
<div class="charts">
<figure>{{.RateChart}}<figcaption>Elicitation rate per category with 95% interval; ticks mark thresholds.</figcaption></figure>
<figure>{{.TrajChart}}<figcaption>Persona departure (0 = intended persona, 100 = another) per assistant turn, mean per category.</figcaption></figure>
</div>
<table>
<tr><th>category</th><th>probes</th><th>elicited</th><th>rate [95% CI]</th><th>limit</th></tr>
{{range .R.Categories}}<tr{{if .Breached}} class="breached"{{end}}><td>{{lower .Category}}</td><td class="num">{{.Probes}}</td><td class="num">{{.Rate.Elicited}}/{{.Rate.N}}</td><td class="num">{{rate .Rate}}</td><td class="num">{{limit .Limit}}</td></tr>
{{end}}</table>

<h2>Probes</h2>
<label id="filter"><input type="checkbox" id="only-elicited"> show only probes with elicited samples</label>
<table id="probes">
<tr><th>probe</th><th>category</th><th>elicited</th><th>rate [95% CI]</th><th>limit</th><th>persona per turn</th><th>errors</th></tr>
{{range .Probes}}<tr class="probe{{if .Breached}} breached{{end}}" data-elicited="{{.Rate.Elicited}}"><td><a href="#p-{{.ID}}">{{.ID}}</a></td><td>{{lower .Category}}</td><td class="num">{{.Rate.Elicited}}/{{.Rate.N}}</td><td class="num">{{.RateText}}</td><td class="num">{{limit .Limit}}</td><td>{{.Spark}}</td><td class="num">{{.Errors}}</td></tr>
{{end}}</table>

<h2>Transcripts</h2>
{{range .Probes}}<section class="transcripts" id="p-{{.ID}}" data-elicited="{{.Rate.Elicited}}">
<h3>{{.ID}} <small class="meta">{{lower .Category}} · {{.RateText}}</small></h3>
{{if .Description}}<p class="meta">{{.Description}}</p>{{end}}
{{range $s := .Samples}}<details{{if .Elicited}} open{{end}}><summary>sample {{.Sample}} · {{if eq .Status "ok"}}{{if .Elicited}}<strong>elicited</strong>{{else}}held{{end}}{{else}}<span class="err">{{.Status}} ({{.ErrorKind}})</span>{{end}} · persona per turn {{range .Turns}}{{f1 .Persona}} {{end}}</summary>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
{{range $i, $m := .Messages}}{{$t := turnOf $s $i}}<div class="msg {{$m.Role}}{{if $t}}{{if $t.Elicited}} elicited{{end}}{{end}}"><strong>{{$m.Role}}</strong>: {{$m.Content}}{{if $t}}<div class="scores">persona {{f1 $t.Persona}}{{if $t.Incoherent}} · incoherent{{end}}{{range $t.Scores}} · {{score .}}{{if .Detail}} — {{.Detail}}{{end}}{{end}}</div>{{end}}</div>
{{end}}</details>
{{end}}</section>
{{end}}
<script>
(function () {
  var box = document.getElementById("only-elicited");
  function apply() {
    var rows = document.querySelectorAll("tr.probe, section.transcripts");
    for (var i = 0; i < rows.length; i++) {
      rows[i].style.display = box.checked && rows[i].getAttribute("data-elicited") === "0" ? "none" : "";
    }
  }
  box.addEventListener("change", apply);
  apply();
  document.body.setAttribute("data-ready", "1");
})();
</script>
</body>
</html>
`

// categoryColors are distinguishable on white and in greyscale print.
var categoryColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"}

func categoryColor(c Category) string {
	for i, x := range Categories {
		if x == c {
			return categoryColors[i%len(categoryColors)]
		}
	}
	return "#555"
}

// rateChartSVG draws one horizontal bar per category (rate), a whisker for
// the interval and a tick for the threshold.
func rateChartSVG(cats []CategoryStat) string {
	const left, barW, rowH, top = 190, 300, 26, 24
	h := top + rowH*len(cats) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="elicitation rate per category">`, left+barW+60, h)
	for _, x := range []float64{0, 0.25, 0.5, 0.75, 1} {
		px := left + x*barW
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e3e3e3"/><text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#777">%s</text>`,
			px, top-6, px, h-10, px, top-10, pct(x))
	}
	for i, c := range cats {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>`, left-8, y+15, html.EscapeString(strings.ReplaceAll(string(c.Category), "_", " ")))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="14" fill="%s" opacity="0.8"><title>%s</title></rect>`,
			left, y+4, c.Rate.Rate*barW, categoryColor(c.Category), html.EscapeString(rateCell(c.Rate)))
		if c.Rate.N > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222" stroke-width="1.5"/>`, left+c.Rate.Lo*barW, y+11, left+c.Rate.Hi*barW, y+11)
		}
		if c.Limit != nil {
			col := "#2d7d46"
			if c.Breached {
				col = "#b3261e"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="3"/>`, left+*c.Limit*barW, y+1, left+*c.Limit*barW, y+21, col)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#333">%s</text>`, left+barW+6, y+15, pct(c.Rate.Rate))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// trajectoryChartSVG draws each category's mean persona departure per turn.
func trajectoryChartSVG(cats []CategoryStat) string {
	const w, h, l, r, t, bt = 420, 230, 36, 150, 12, 28
	turns := 1
	for _, c := range cats {
		turns = max(turns, len(c.Trajectory))
	}
	x := func(i int) float64 {
		if turns == 1 {
			return l
		}
		return l + float64(i)*float64(w-l-r)/float64(turns-1)
	}
	y := func(v float64) float64 { return t + (100-v)/100*float64(h-t-bt) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="persona trajectory per category">`, w, h)
	for _, v := range []float64{0, 50, 100} {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e3e3e3"/><text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#777">%.0f</text>`,
			l, y(v), w-r, y(v), l-4, y(v)+3, v)
	}
	for i := 0; i < turns; i++ {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#777">%d</text>`, x(i), h-bt+14, i+1)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="#777">assistant turn</text>`, (l+w-r)/2, h-2)
	for k, c := range cats {
		col := categoryColor(c.Category)
		var pts []string
		for i, v := range c.Trajectory {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s turn %d: %.1f</title></circle>`, x(i), y(v), col, html.EscapeString(string(c.Category)), i+1, v)
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(pts, " "), col)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" font-size="11">%s</text>`,
			w-r+10, t+k*16, col, w-r+24, t+k*16+9, html.EscapeString(strings.ReplaceAll(string(c.Category), "_", " ")))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// sparkSVG is a small line of a probe's trajectory.
func sparkSVG(xs []float64, w, h int) string {
	if len(xs) == 0 {
		return ""
	}
	var pts []string
	for i, v := range xs {
		px := 2.0
		if len(xs) > 1 {
			px = 2 + float64(i)*float64(w-4)/float64(len(xs)-1)
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, 2+(100-v)/100*float64(h-4)))
	}
	if len(pts) == 1 {
		pts = append(pts, fmt.Sprintf("%d,%s", w-2, strings.Split(pts[0], ",")[1]))
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d"><rect width="%d" height="%d" fill="#f4f4f2"/><polyline points="%s" fill="none" stroke="#b3261e" stroke-width="1.5"/></svg>`,
		w, h, w, h, strings.Join(pts, " "))
}
