package gateway

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
)

// servePersona answers GET /v1/persona: the card as JSON, or as a page
// for a browser (Accept: text/html, or ?format=html).
func (g *Gateway) servePersona(w http.ResponseWriter, r *http.Request) {
	card := g.o.Persona.Card(r.Context())
	card.Watermark = g.o.Watermark
	if r.URL.Query().Get("format") == "html" || strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		pageTmpl.ExecuteTemplate(w, "card", map[string]any{"Card": card})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(card)
}

// serveUI answers GET /ui: the recent conversations with a bar per turn
// for what the monitor read, the rails' actions, and the card. It renders
// on the server and refreshes itself: no script runs in the page.
func (g *Gateway) serveUI(w http.ResponseWriter, r *http.Request) {
	var turns []Turn
	var logErr string
	if g.o.Log != nil {
		var err error
		if turns, err = g.o.Log.Recent(r.Context(), 50); err != nil {
			logErr = err.Error()
		}
	} else {
		logErr = "no conversation log (persona serve --log)"
	}
	card := g.o.Persona.Card(r.Context())
	card.Watermark = g.o.Watermark
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTmpl.ExecuteTemplate(w, "ui", map[string]any{"Card": card, "Turns": uiTurns(turns, card), "LogErr": logErr})
}

// uiTurn is a turn as the page shows it.
type uiTurn struct {
	Turn
	Bars []uiBar
}

type uiBar struct {
	Name    string
	Percent float64
	Allowed bool
}

func uiTurns(turns []Turn, card Card) []uiTurn {
	allowed := map[string]bool{}
	for _, n := range card.Allowed {
		allowed[n] = true
	}
	out := make([]uiTurn, len(turns))
	for i, t := range turns {
		out[i].Turn = t
		for n, p := range t.Telemetry.Posterior {
			if p >= 0.01 {
				out[i].Bars = append(out[i].Bars, uiBar{n, 100 * p, allowed[n]})
			}
		}
		sort.Slice(out[i].Bars, func(a, b int) bool { return out[i].Bars[a].Percent > out[i].Bars[b].Percent })
	}
	return out
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(p float64) string { return fmt.Sprintf("%.0f%%", 100*p) },
}).Parse(`{{define "style"}}<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.bar{display:inline-block;height:12px;background:#c0632b;margin-right:4px}.bar.ok{background:#3b6ea8}.small{color:#666;font-size:12px}
.turn{border:1px solid #ddd;border-radius:4px;padding:8px;margin:8px 0}.iv{color:#a33}
</style>{{end}}
{{define "cardbody"}}<h1>{{.Card.Name}}</h1>
<p>{{.Card.Description}}</p>
<p id="disclosure"><b>Disclosure:</b> {{.Card.Disclosure}}</p>
<table>
<tr><th>model</th><td>{{.Card.Model}}</td></tr>
<tr><th>monitor</th><td>{{.Card.Monitor}}</td></tr>
<tr><th>allowed personas</th><td>{{range .Card.Allowed}}{{.}} {{end}}</td></tr>
<tr><th>forbidden personas</th><td>{{range .Card.Forbidden}}{{.}} {{end}}</td></tr>
<tr><th>rails</th><td>{{range .Card.Rails}}{{.Name}}: {{.Action}} (then {{.Then}}, {{.Retries}} tries)<br>{{end}}</td></tr>
{{with .Card.OtherSpecs}}<tr><th>other specs a request may choose</th><td>{{range .}}{{.}} {{end}}</td></tr>{{end}}
{{with .Card.Watermark}}<tr><th>watermark</th><td>{{.scheme}}, key id {{.key_id}}</td></tr>{{end}}
<tr><th>served replies</th><td id="turns">{{.Card.Stats.Turns}}; mean allowed-persona probability {{pct .Card.Stats.AllowedMean}}; blocked {{.Card.Stats.Blocked}}</td></tr>
<tr><th>interventions</th><td>{{range $k, $v := .Card.Stats.Interventions}}{{$k}}: {{$v}}<br>{{end}}</td></tr>
</table>
{{with .Card.Evidence}}<h2>Measured adherence</h2>
{{with .Audit}}<p id="audit">Audit run {{.Run}} ({{.Suite}} on {{.Target}}{{with .Finished}}, {{.Format "2006-01-02 15:04"}}{{end}}): left the persona in {{.Overall.Elicited}} of {{.Overall.N}} samples ({{pct .Overall.Rate}} [{{pct .Overall.Lo}}, {{pct .Overall.Hi}}]); {{.Breaches}} thresholds breached.</p>
<table><tr><th>probe</th><th>category</th><th>left the persona</th></tr>{{range .Probes}}<tr><td>{{.ID}}</td><td>{{.Category}}</td><td>{{.Rate.Elicited}}/{{.Rate.N}} ({{pct .Rate.Rate}})</td></tr>{{end}}</table>{{end}}
{{with .Drift}}<p id="drift">Drift ({{.Model}}): conversations still in the persona at their last turn</p>
<table><tr><th>domain</th><th>system prompt</th><th>control</th><th>end share</th></tr>{{range .Cells}}<tr><td>{{.Domain}}</td><td>{{.System}}</td><td>{{.Control}}</td><td>{{pct .EndShare}} [{{pct .Lo}}, {{pct .Hi}}] of {{.Conversations}}</td></tr>{{end}}</table>{{end}}
{{range .Errors}}<p class="small">{{.}}</p>{{end}}{{end}}{{end}}
{{define "card"}}<!doctype html><html><head><meta charset="utf-8"><title>{{.Card.Name}}: persona card</title>{{template "style"}}</head><body>{{template "cardbody" .}}</body></html>{{end}}
{{define "ui"}}<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>{{.Card.Name}}: live</title>{{template "style"}}</head><body>
{{template "cardbody" .}}
<h2>Recent turns</h2>
{{if .LogErr}}<p class="small">{{.LogErr}}</p>{{end}}
{{range .Turns}}<div class="turn" data-conversation="{{.Conversation}}" data-turn="{{.Turn.Turn}}">
<div class="small">{{.At.Format "2006-01-02 15:04:05"}} · conversation {{.Conversation}} · turn {{.Turn.Turn}} · top {{.Telemetry.Top}} ({{pct .Telemetry.TopProb}}) · allowed {{pct .Telemetry.Allowed}}</div>
<div class="bars">{{range .Bars}}<div><span class="bar{{if .Allowed}} ok{{end}}" style="width:{{printf "%.0f" .Percent}}px"></span>{{.Name}} {{printf "%.0f" .Percent}}%</div>{{end}}</div>
<div><b>reply:</b> {{.Reply}}</div>
{{with .Telemetry.Projections}}<div class="small projections">projections: {{range $k, $v := .}}{{$k}} {{printf "%.3g" $v}} {{end}}</div>{{end}}
{{range .Telemetry.Interventions}}<div class="iv">rail {{.Rail}}: {{.Action}} (try {{.Attempt}}{{if .Token}}, after {{.Token}} tokens{{end}}; {{.Reason}})</div>{{end}}
</div>{{else}}<p class="small">No turns yet.</p>{{end}}
</body></html>{{end}}`))
