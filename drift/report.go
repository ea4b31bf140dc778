package drift

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"persona/internal/stats"
)

// Estimate is a statistic with its 95% bootstrap interval. N counts the
// observations behind it (conversations, or replies for per-turn values).
type Estimate struct {
	Value float64 `json:"value"`
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
	N     int     `json:"n"`
}

// MarshalJSON writes undefined estimates (NaN) as null.
func (e Estimate) MarshalJSON() ([]byte, error) {
	f := func(x float64) any {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	}
	return json.Marshal(map[string]any{"value": f(e.Value), "lo": f(e.Lo), "hi": f(e.Hi), "n": e.N})
}

func (e Estimate) String() string {
	if math.IsNaN(e.Value) {
		return "–"
	}
	return fmt.Sprintf("%.3f [%.3f, %.3f]", e.Value, e.Lo, e.Hi)
}

// Cell summarises the conversations of one domain × system prompt ×
// control cell.
type Cell struct {
	Domain        Domain `json:"domain"`
	System        string `json:"system"`
	Control       string `json:"control,omitempty"`
	Conversations int    `json:"conversations"`
	// Per turn (index 0 is turn 1): mean projection on the unit axis, share
	// of replies at or above the threshold, mean posterior probability of
	// the Assistant, and the oracle's Assistant share.
	Projection []Estimate `json:"projection,omitempty"`
	AxisShare  []Estimate `json:"axis_share,omitempty"`
	Posterior  []Estimate `json:"posterior_assistant,omitempty"`
	Oracle     []Estimate `json:"oracle_share,omitempty"`
	// Slope is the mean over conversations of the least-squares slope of
	// the projection against the turn number (axis units per turn).
	Slope Estimate `json:"slope"`
	// FirstDeparture is the mean turn (1-based) of the first reply below
	// the threshold, counting conversations that never depart as turns+1
	// (censored); Departed is the share that departs at all.
	FirstDeparture Estimate `json:"first_departure"`
	Departed       Estimate `json:"departed"`
	// EndShare is the share of conversations whose last reply is still the
	// Assistant: by the oracle where there is one, else by the axis
	// threshold. EndAxis, EndPosterior and EndOracle give each reading.
	EndShare     Estimate `json:"end_share"`
	EndAxis      Estimate `json:"end_share_axis"`
	EndPosterior Estimate `json:"end_posterior"`
	EndOracle    Estimate `json:"end_share_oracle"`
	// Interventions counts what the rails did (rails cells): by action.
	Interventions map[string]int `json:"interventions,omitempty"`
}

// Effect is a difference between two conditions of the same scenarios
// (strong − weak system prompt, a control − none), resampled by scenario.
type Effect struct {
	Domain  string   `json:"domain"` // a domain or "all"
	System  string   `json:"system,omitempty"`
	Measure string   `json:"measure"`
	Control string   `json:"control,omitempty"`
	A       Estimate `json:"a"` // strong, or with the control
	B       Estimate `json:"b"` // weak, or without
	Diff    Estimate `json:"diff"`
}

// Report is a drift run: settings, every conversation and the statistics.
type Report struct {
	Model     string         `json:"model"`
	Settings  map[string]any `json:"settings"`
	HasAxis   bool           `json:"has_axis"`
	Layer     int            `json:"layer"`
	Threshold float64        `json:"threshold"`
	CapLayers []int          `json:"cap_layers,omitempty"`
	// EndMeasure says which reading EndShare uses: "oracle" or "axis".
	EndMeasure string `json:"end_measure"`
	Cells      []Cell `json:"cells"`
	// StrongVsWeak: end-of-conversation Assistant share, strong − weak, per
	// domain and over all domains (uncapped runs). The persona selection
	// model predicts a positive difference.
	StrongVsWeak []Effect `json:"strong_vs_weak"`
	// Controls: end share with a control (capping, rails) − without, per
	// domain and system prompt.
	Controls      []Effect       `json:"controls,omitempty"`
	Conversations []Conversation `json:"conversations"`
	// Notes say what limits the reading of the numbers.
	Notes []string `json:"notes,omitempty"`
}

func (o *Options) settings() map[string]any {
	return map[string]any{"samples": o.Samples, "max_tokens": o.MaxTokens, "temperature": o.Temperature, "seed": o.Seed,
		"oracle": o.Oracle != nil, "posterior": o.Posterior != nil, "cap": o.Cap, "rails": o.Guard != nil, "bootstrap_reps": o.Reps}
}

// reading extracts one per-turn number from a turn (NaN when absent).
type reading func(t *Turn) float64

func (r *Report) projection(t *Turn) float64 {
	if t.Projection == nil {
		return math.NaN()
	}
	return *t.Projection
}

// above: 1 if the reply is at or above the threshold, 0 below, NaN when
// there is no projection.
func (r *Report) above(t *Turn) float64 {
	if t.Projection == nil {
		return math.NaN()
	}
	return b2f(*t.Projection >= r.Threshold)
}

func postReading(t *Turn) float64 {
	if t.Posterior == nil {
		return math.NaN()
	}
	return *t.Posterior
}

func oracleReading(t *Turn) float64 {
	if t.Oracle == nil {
		return math.NaN()
	}
	return b2f(t.Oracle.IsAssistant)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// group is a set of conversations with their bootstrap units.
type group struct {
	convs []*Conversation
	units []int // distinct unit ids
}

func newGroup(convs []*Conversation) group {
	g := group{convs: convs}
	seen := map[int]bool{}
	for _, c := range convs {
		if !seen[c.unit] {
			seen[c.unit] = true
			g.units = append(g.units, c.unit)
		}
	}
	slices.Sort(g.units)
	return g
}

// estimate computes the mean of f over the group's conversations (NaN
// values skipped) with a bootstrap interval that resamples units
// (scenarios) with replacement and keeps all their conversations.
func (g group) estimate(f func(c *Conversation) float64, reps int, rng *rand.Rand) Estimate {
	vals := map[int][]float64{}
	n := 0
	for _, c := range g.convs {
		if v := f(c); !math.IsNaN(v) {
			vals[c.unit] = append(vals[c.unit], v)
			n++
		}
	}
	var units [][]float64
	for _, u := range g.units {
		if len(vals[u]) > 0 {
			units = append(units, vals[u])
		}
	}
	mean := func(idx []int) float64 {
		s, k := 0.0, 0
		for _, i := range idx {
			for _, v := range units[i] {
				s += v
				k++
			}
		}
		if k == 0 {
			return math.NaN()
		}
		return s / float64(k)
	}
	e := Estimate{Value: math.NaN(), Lo: math.NaN(), Hi: math.NaN(), N: n}
	if len(units) == 0 {
		return e
	}
	all := make([]int, len(units))
	for i := range all {
		all[i] = i
	}
	e.Value = mean(all)
	e.Lo, e.Hi = stats.Bootstrap(len(units), reps, rng, mean)
	// A share that every observation agrees on resamples to a point; the
	// Wilson interval says what n observations can and cannot rule out.
	if isBinary(units) && (e.Value == 0 || e.Value == 1) {
		e.Lo, e.Hi = stats.Wilson(int(math.Round(e.Value*float64(n))), n)
	}
	return e
}

func isBinary(units [][]float64) bool {
	for _, u := range units {
		for _, v := range u {
			if v != 0 && v != 1 {
				return false
			}
		}
	}
	return true
}

// diff estimates mean_a − mean_b over scenarios present in both groups,
// resampling those scenarios (the conditions are paired by scenario).
func diff(a, b group, f func(c *Conversation) float64, reps int, rng *rand.Rand) Estimate {
	per := func(g group) map[int][]float64 {
		m := map[int][]float64{}
		for _, c := range g.convs {
			if v := f(c); !math.IsNaN(v) {
				m[c.unit] = append(m[c.unit], v)
			}
		}
		return m
	}
	pa, pb := per(a), per(b)
	var units []int
	for u := range pa {
		if len(pb[u]) > 0 {
			units = append(units, u)
		}
	}
	slices.Sort(units)
	stat := func(idx []int) float64 {
		var sa, sb float64
		var ka, kb int
		for _, i := range idx {
			for _, v := range pa[units[i]] {
				sa += v
				ka++
			}
			for _, v := range pb[units[i]] {
				sb += v
				kb++
			}
		}
		if ka == 0 || kb == 0 {
			return math.NaN()
		}
		return sa/float64(ka) - sb/float64(kb)
	}
	e := Estimate{Value: math.NaN(), Lo: math.NaN(), Hi: math.NaN(), N: len(units)}
	if len(units) == 0 {
		return e
	}
	all := make([]int, len(units))
	for i := range all {
		all[i] = i
	}
	e.Value = stat(all)
	e.Lo, e.Hi = stats.Bootstrap(len(units), reps, rng, stat)
	// Binary outcomes that agree within every pair (or are unanimous on
	// both sides) resample to a point; Newcombe's interval from the two
	// Wilson intervals says what the sample sizes can rule out (it ignores
	// the pairing, so it is if anything too wide).
	var va, vb [][]float64
	for _, u := range units {
		va, vb = append(va, pa[u]), append(vb, pb[u])
	}
	if e.Lo == e.Hi && isBinary(va) && isBinary(vb) {
		count := func(vs [][]float64) (k, n int) {
			for _, v := range vs {
				for _, x := range v {
					k += int(x)
					n++
				}
			}
			return k, n
		}
		ka, na := count(va)
		kb, nb := count(vb)
		e.Lo, e.Hi = stats.NewcombeDiff(ka, na, kb, nb)
	}
	return e
}

// last returns the reading of a conversation's last turn.
func last(f reading) func(c *Conversation) float64 {
	return func(c *Conversation) float64 {
		if len(c.Turns) == 0 {
			return math.NaN()
		}
		return f(&c.Turns[len(c.Turns)-1])
	}
}

// atTurn returns the reading of turn t.
func atTurn(f reading, t int) func(c *Conversation) float64 {
	return func(c *Conversation) float64 {
		if t >= len(c.Turns) {
			return math.NaN()
		}
		return f(&c.Turns[t])
	}
}

// slope is the least-squares slope of the projection over turn numbers
// (NaN with fewer than two projected turns).
func (r *Report) slope(c *Conversation) float64 {
	var xs, ys []float64
	for i := range c.Turns {
		if p := r.projection(&c.Turns[i]); !math.IsNaN(p) {
			xs, ys = append(xs, float64(i+1)), append(ys, p)
		}
	}
	if len(xs) < 2 {
		return math.NaN()
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(xs))
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	return sxy / sxx
}

// departure is the 1-based turn of the first reply below the threshold,
// len(turns)+1 when none is (empty replies do not count either way).
func (r *Report) departure(c *Conversation) float64 {
	seen := false
	for i := range c.Turns {
		if a := r.above(&c.Turns[i]); !math.IsNaN(a) {
			seen = true
			if a == 0 {
				return float64(i + 1)
			}
		}
	}
	if !seen {
		return math.NaN()
	}
	return float64(len(c.Turns) + 1)
}

func (r *Report) departed(c *Conversation) float64 {
	d := r.departure(c)
	if math.IsNaN(d) {
		return d
	}
	return b2f(int(d) <= len(c.Turns))
}

// summarise computes every cell and effect. Each statistic draws from its
// own generator seeded from the run's seed and the statistic's place, so a
// report is reproducible and adding a statistic does not shift the others.
func (r *Report) summarise(scenarios []Scenario, o Options) {
	key := 0
	rng := func() *rand.Rand {
		key++
		return rand.New(rand.NewPCG(o.Seed^0xd1f7, uint64(key)))
	}
	r.EndMeasure = "axis"
	if o.Oracle != nil {
		r.EndMeasure = "oracle"
	}
	end := last(r.above)
	if r.EndMeasure == "oracle" {
		end = last(oracleReading)
	}
	conv := func(pred func(c *Conversation) bool) group {
		var cs []*Conversation
		for i := range r.Conversations {
			if pred(&r.Conversations[i]) {
				cs = append(cs, &r.Conversations[i])
			}
		}
		return newGroup(cs)
	}
	var domains []Domain
	for _, d := range Domains {
		if slices.ContainsFunc(scenarios, func(s Scenario) bool { return s.Domain == d }) {
			domains = append(domains, d)
		}
	}
	turns := 0
	for _, s := range scenarios {
		turns = max(turns, s.Turns)
	}
	for _, d := range domains {
		for _, control := range o.controls() {
			for _, sys := range Systems {
				g := conv(func(c *Conversation) bool { return c.Domain == d && c.System == sys && c.Control == control })
				cell := Cell{Domain: d, System: sys, Control: control, Conversations: len(g.convs)}
				for _, c := range g.convs {
					for _, t := range c.Turns {
						for _, iv := range t.Interventions {
							if cell.Interventions == nil {
								cell.Interventions = map[string]int{}
							}
							cell.Interventions[iv.Action]++
						}
					}
				}
				for t := range turns {
					if r.HasAxis {
						cell.Projection = append(cell.Projection, g.estimate(atTurn(r.projection, t), o.Reps, rng()))
						cell.AxisShare = append(cell.AxisShare, g.estimate(atTurn(r.above, t), o.Reps, rng()))
					}
					if o.Posterior != nil {
						cell.Posterior = append(cell.Posterior, g.estimate(atTurn(postReading, t), o.Reps, rng()))
					}
					if o.Oracle != nil {
						cell.Oracle = append(cell.Oracle, g.estimate(atTurn(oracleReading, t), o.Reps, rng()))
					}
				}
				cell.Slope = g.estimate(r.slope, o.Reps, rng())
				cell.FirstDeparture = g.estimate(r.departure, o.Reps, rng())
				cell.Departed = g.estimate(r.departed, o.Reps, rng())
				cell.EndAxis = g.estimate(last(r.above), o.Reps, rng())
				cell.EndPosterior = g.estimate(last(postReading), o.Reps, rng())
				cell.EndOracle = g.estimate(last(oracleReading), o.Reps, rng())
				cell.EndShare = g.estimate(end, o.Reps, rng())
				r.Cells = append(r.Cells, cell)
			}
		}
	}
	measure := "end share (" + r.EndMeasure + ")"
	effect := func(name string, inDomain func(Domain) bool) {
		s := conv(func(c *Conversation) bool { return inDomain(c.Domain) && c.Control == "" && c.System == "strong" })
		w := conv(func(c *Conversation) bool { return inDomain(c.Domain) && c.Control == "" && c.System == "weak" })
		r.StrongVsWeak = append(r.StrongVsWeak, Effect{Domain: name, Measure: measure,
			A: s.estimate(end, o.Reps, rng()), B: w.estimate(end, o.Reps, rng()), Diff: diff(s, w, end, o.Reps, rng())})
	}
	for _, d := range domains {
		effect(string(d), func(x Domain) bool { return x == d })
	}
	effect("all", func(Domain) bool { return true })
	for _, control := range o.controls()[1:] {
		for _, d := range domains {
			for _, sys := range Systems {
				c := conv(func(x *Conversation) bool { return x.Domain == d && x.System == sys && x.Control == control })
				u := conv(func(x *Conversation) bool { return x.Domain == d && x.System == sys && x.Control == "" })
				r.Controls = append(r.Controls, Effect{Domain: string(d), System: sys, Control: control, Measure: measure,
					A: c.estimate(end, o.Reps, rng()), B: u.estimate(end, o.Reps, rng()), Diff: diff(c, u, end, o.Reps, rng())})
			}
		}
	}
}

// Cell returns the cell of a domain, system prompt and control ("" for
// none); nil if none ran.
func (r *Report) Cell(d Domain, system, control string) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Domain == d && c.System == system && c.Control == control {
			return c
		}
	}
	return nil
}

// WriteJSON writes the report, conversations included.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the statistics as a terminal table.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "persona drift: %s, %d conversations", r.Model, len(r.Conversations))
	if r.HasAxis {
		fmt.Fprintf(&b, ", axis layer %d, threshold τ = %.4g", r.Layer, r.Threshold)
	}
	fmt.Fprintf(&b, "\nend share = still the Assistant at the last turn (%s); 95%% bootstrap intervals over scenarios\n\n", r.EndMeasure)
	fmt.Fprintf(&b, "%-10s %-6s %-7s %5s  %-24s %-24s %-24s %-24s\n", "domain", "system", "control", "convs", "end share", "slope/turn", "first departure", "departed")
	cells := slices.Clone(r.Cells)
	slices.SortStableFunc(cells, func(a, c Cell) int { return cmp.Compare(a.Control, c.Control) })
	for _, c := range cells {
		fmt.Fprintf(&b, "%-10s %-6s %-7s %5d  %-24s %-24s %-24s %-24s", c.Domain, c.System, c.Control, c.Conversations, c.EndShare, c.Slope, c.FirstDeparture, c.Departed)
		if len(c.Interventions) > 0 {
			fmt.Fprintf(&b, "  rails: %v", c.Interventions)
		}
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	b.WriteString("\nstrong − weak system prompt, end share:\n")
	for _, e := range r.StrongVsWeak {
		fmt.Fprintf(&b, "  %-10s strong %s  weak %s  diff %s\n", e.Domain, e.A, e.B, e.Diff)
	}
	if len(r.Controls) > 0 {
		b.WriteString("\nwith − without a control, end share:\n")
		for _, e := range r.Controls {
			fmt.Fprintf(&b, "  %-5s %-10s %-6s with %s  without %s  diff %s\n", e.Control, e.Domain, e.System, e.A, e.B, e.Diff)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
