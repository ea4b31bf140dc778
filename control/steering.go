// Package control measures what activation control does to a model: a
// steering sweep over layers, strengths and positions that reads, per
// setting, how often the trait is expressed and how much of the model's
// competence is left, so a setting can be chosen from its dose–response
// frontier instead of guessed.
package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"persona/chat"
	"persona/engine"
	"persona/internal/stats"
	"persona/personas"
	"persona/resid"
	"persona/sample"
	"persona/vectors"
	"persona/world"
)

// Cell is one steering setting: the vector added on a band of layers (one
// layer, or several), at the positions Where selects, with Strength the
// size of the whole push relative to the layers' typical residual norm
// (split evenly over the band), so a strength means the same on any model.
type Cell struct {
	Layers   []int       `json:"layers"`
	Strength float64     `json:"strength"`
	Where    resid.Where `json:"-"`
}

// Band formats a cell's layers: "2" or "1-2" (or "0,2" when not contiguous).
func (c Cell) Band() string { return vectors.FormatLayers(c.Layers) }

// ParseBands reads "0,1,2,1-2,0-3": each comma-separated entry is one
// layer or a band a-b, checked against the model's depth.
func ParseBands(s string, numLayers int) ([][]int, error) {
	var out [][]int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, band := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && band {
			b, err = strconv.Atoi(hi)
		}
		switch {
		case err != nil:
			return nil, fmt.Errorf("%q: want a layer or a band a-b", part)
		case a < 0 || b >= numLayers || a > b:
			return nil, fmt.Errorf("%q: the model has layers 0–%d: %w", part, numLayers-1, engine.ErrLayer)
		}
		var ls []int
		for l := a; l <= b; l++ {
			ls = append(ls, l)
		}
		out = append(out, ls)
	}
	return out, nil
}

// SweepOptions say what a steering sweep runs. Its plain fields encode
// as JSON (a distributed sweep stores them); the vector, the trait and the
// scorer travel apart.
type SweepOptions struct {
	Vector *vectors.Set       `json:"-"`
	Trait  *vectors.TraitSpec `json:"-"`
	// Scorer rates each reply on the trait (0–100) and, where it can, on
	// coherence: the world's oracle on the organism, a judge elsewhere.
	Scorer vectors.Scorer `json:"-"`
	// Bands, Strengths and Positions span the cells (every combination;
	// strength 0 is the unsteered model and is run once).
	Bands     [][]int
	Strengths []float64
	Positions []resid.Where
	// Questions are the trait prompts (default: the trait's evaluation
	// questions), each asked Samples times (default 3) at Temperature.
	Questions []string
	Samples   int
	// System is the system prompt of every conversation (empty: none).
	// Suppress sets it to the trait's first positive instruction unless
	// given: negative steering against the trait's own prompt.
	System   string
	Suppress bool
	// Tasks held-out sums and facts from the persona world, asked greedily
	// in every cell (default 40); their answers are checked by the world's
	// oracle.
	Tasks       int
	MaxTokens   int     // per reply (default 48)
	Temperature float32 // trait prompts (default 1)
	Seed        uint64
	// Threshold is the trait score that counts as expressed (default 50);
	// MinAccuracy the task accuracy a recommended setting keeps (default
	// 0.9).
	Threshold   float64
	MinAccuracy float64
	Progress    func(done, total int) `json:"-"`
}

func (o *SweepOptions) defaults() {
	if len(o.Questions) == 0 && o.Trait != nil {
		o.Questions = o.Trait.Questions.Evaluation
	}
	if o.Samples <= 0 {
		o.Samples = 3
	}
	if o.Suppress && o.System == "" && o.Trait != nil && len(o.Trait.Pairs) > 0 {
		o.System = o.Trait.System(0, true)
	}
	if o.Tasks == 0 {
		o.Tasks = 40
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 48
	}
	if o.Temperature == 0 {
		o.Temperature = 1
	}
	if o.Threshold == 0 {
		o.Threshold = 50
	}
	if o.MinAccuracy == 0 {
		o.MinAccuracy = 0.9
	}
	if len(o.Positions) == 0 {
		o.Positions = []resid.Where{resid.Generated}
	}
}

// CellResult is what one setting did.
type CellResult struct {
	Cell
	Position string `json:"where"`
	// Coeffs are the raw coefficients c of h ← h + c·v, per layer of the
	// band.
	Coeffs []float64 `json:"coeffs"`
	// Trait is the share of replies to the trait prompts scoring at least
	// the threshold; TraitMean their mean score.
	Trait     stats.Proportion `json:"trait"`
	TraitMean float64          `json:"trait_mean"`
	// Accuracy is the share of held-out tasks answered correctly.
	Accuracy stats.Proportion `json:"accuracy"`
	// Coherence is the scorer's mean coherence of the trait replies (0–100;
	// the oracle's top-persona probability on the organism; −1 when the
	// scorer has none); Perplexity that of the trait replies under the
	// unsteered model.
	Coherence  float64 `json:"coherence"`
	Perplexity float64 `json:"perplexity"`
	// Positions the model ran for this cell's generations, and what they
	// would have cost with every prompt read anew.
	Positions      int `json:"positions"`
	NaivePositions int `json:"naive_positions"`
}

// Sweep is a steering sweep's outcome.
type Sweep struct {
	Vector   string  `json:"vector"`
	Trait    string  `json:"trait"`
	System   string  `json:"system,omitempty"`
	Suppress bool    `json:"suppress,omitempty"`
	Scorer   string  `json:"scorer,omitempty"`
	MinAcc   float64 `json:"min_accuracy"`
	// Norms is the typical residual norm per layer: the mean ‖h‖ over the
	// prompts' positions after the first.
	Norms map[int]float64 `json:"norms"`
	// Cells are the settings, the unsteered model first.
	Cells []CellResult `json:"cells"`
	// Frontier indexes the cells no other cell beats on both trait
	// (expressed, or suppressed) and accuracy.
	Frontier []int `json:"frontier"`
	// Recommended indexes the cell with the most trait (least, when
	// suppressing) among those keeping MinAccuracy; −1 when none does.
	Recommended int `json:"recommended"`
}

// ErrSweep is returned for options a sweep cannot run.
var ErrSweep = errors.New("steering sweep")

// Run sweeps the cells on e.
func Run(ctx context.Context, e *engine.Engine, w *world.World, o SweepOptions) (*Sweep, error) {
	p, err := NewPlan(ctx, e, w, o)
	if err != nil {
		return nil, err
	}
	total := p.Len() * (len(p.r.trait) + len(p.r.tasks))
	done := 0
	cells := make([]CellResult, p.Len())
	for i := range cells {
		if cells[i], err = p.cell(ctx, i, func() {
			done++
			if o.Progress != nil {
				o.Progress(done, total)
			}
		}); err != nil {
			return nil, err
		}
	}
	return p.Report(cells)
}

// Plan is a sweep set up on a model: its options checked, its prompts read
// once unsteered (the residual norms measured on the way) and its cells
// listed. Cells can be played one at a time and in any order (by other
// processes too: package fleet) and summarised once all are played.
type Plan struct {
	r     *runner
	cells []Cell
}

// NewPlan checks a sweep's options and sets it up on e.
func NewPlan(ctx context.Context, e *engine.Engine, w *world.World, o SweepOptions) (*Plan, error) {
	o.defaults()
	m := e.Model
	switch {
	case o.Vector == nil || o.Trait == nil || o.Scorer == nil:
		return nil, fmt.Errorf("%w: a vector, a trait and a scorer are needed", ErrSweep)
	case len(o.Bands) == 0 || len(o.Strengths) == 0:
		return nil, fmt.Errorf("%w: no layers or no strengths to sweep", ErrSweep)
	case len(o.Questions) == 0:
		return nil, fmt.Errorf("%w: no trait prompts (the trait %s has no evaluation questions)", ErrSweep, o.Trait.Name)
	}
	if err := o.Vector.Check(m.NumLayers, m.Hidden); err != nil {
		return nil, err
	}
	for _, s := range o.Strengths {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("%w: strength %g", ErrSweep, s)
		}
	}
	for _, band := range o.Bands {
		for _, l := range band {
			if _, err := o.Vector.Vector(l); err != nil {
				return nil, err
			}
		}
	}
	tasks, err := taskScenarios(w, o.Tasks, o.Seed)
	if err != nil {
		return nil, err
	}
	r := &runner{e: e, o: o, oracle: w.Oracle()}
	if err := r.prepare(ctx, tasks); err != nil {
		return nil, err
	}
	cells := []Cell{{Layers: o.Bands[0], Strength: 0, Where: resid.Generated}}
	for _, band := range o.Bands {
		for _, s := range o.Strengths {
			if s == 0 {
				continue
			}
			for _, where := range o.Positions {
				cells = append(cells, Cell{Layers: band, Strength: s, Where: where})
			}
		}
	}
	return &Plan{r: r, cells: cells}, nil
}

// Len is the number of cells.
func (p *Plan) Len() int { return len(p.cells) }

// Cell plays cell i.
func (p *Plan) Cell(ctx context.Context, i int) (CellResult, error) { return p.cell(ctx, i, func() {}) }

func (p *Plan) cell(ctx context.Context, i int, step func()) (CellResult, error) {
	if i < 0 || i >= len(p.cells) {
		return CellResult{}, fmt.Errorf("%w: cell %d of %d", ErrSweep, i, len(p.cells))
	}
	return p.r.cell(ctx, p.cells[i], step)
}

// Report summarises the played cells, in plan order (as many as Len, each
// as Cell returned it or read back from its JSON): the frontier and the
// recommendation.
func (p *Plan) Report(cells []CellResult) (*Sweep, error) {
	if len(cells) != len(p.cells) {
		return nil, fmt.Errorf("%w: %d cells played of %d", ErrSweep, len(cells), len(p.cells))
	}
	for i := range cells { // the setting as planned (a cell read back from JSON lacks Where)
		cells[i].Cell = p.cells[i]
	}
	o := p.r.o
	sw := &Sweep{Vector: o.Vector.Name, Trait: o.Trait.Name, System: o.System, Suppress: o.Suppress, MinAcc: o.MinAccuracy, Norms: p.r.norms,
		Cells: cells}
	sw.Cells[0].Position = "none"
	sw.frontier()
	return sw, nil
}

// prompt is one conversation the sweep asks, read once unsteered.
type prompt struct {
	msgs  []chat.Message
	ids   []int
	plain *engine.Prefix
}

type runner struct {
	e      *engine.Engine
	o      SweepOptions
	oracle *world.Oracle
	trait  []prompt
	tasks  []prompt
	norms  map[int]float64
}

// taskScenarios are n held-out arithmetic and fact questions.
func taskScenarios(w *world.World, n int, seed uint64) ([]world.Scenario, error) {
	if n <= 0 {
		return nil, nil
	}
	all, err := w.Eval(seed+7, world.EvalOptions{Domains: []world.Domain{world.TaskDomain}, Systems: []world.SystemKind{world.SystemNone},
		Turns: 1, PerCell: 4 * n})
	if err != nil {
		return nil, err
	}
	var out []world.Scenario
	for _, s := range all {
		if rt := s.Requests[0]; (rt == personas.Arithmetic || rt == personas.Fact) && len(out) < n {
			out = append(out, s)
		}
	}
	return out, nil
}

// prepare reads every prompt once without steering, measuring the
// residual norms on the way.
func (r *runner) prepare(ctx context.Context, tasks []world.Scenario) error {
	var layers []int
	for _, band := range r.o.Bands {
		for _, l := range band {
			if !slices.Contains(layers, l) {
				layers = append(layers, l)
			}
		}
	}
	norms := newNormMeter(r.e, layers)
	read := func(user string) (prompt, error) {
		var msgs []chat.Message
		if r.o.System != "" {
			msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: r.o.System})
		}
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: user})
		enc, err := r.e.EncodePrompt(msgs)
		if err != nil {
			return prompt{}, err
		}
		p, err := norms.prefill(ctx, enc.IDs)
		return prompt{msgs, enc.IDs, p}, err
	}
	for _, q := range r.o.Questions {
		p, err := read(q)
		if err != nil {
			return err
		}
		r.trait = append(r.trait, p)
	}
	for _, s := range tasks {
		p, err := read(s.Turns[0])
		if err != nil {
			return err
		}
		r.tasks = append(r.tasks, p)
	}
	var err error
	r.norms, err = norms.result()
	return err
}

// normMeter measures the typical residual norm per layer (the mean ‖h‖
// over the positions after the first) of the prompts it reads.
type normMeter struct {
	e      *engine.Engine
	layers []int
	sum    map[int]float64
	n      int
}

func newNormMeter(e *engine.Engine, layers []int) *normMeter {
	return &normMeter{e: e, layers: layers, sum: map[int]float64{}}
}

// prefill reads a prompt unsteered, for later generations from it, and
// adds its norms.
func (nm *normMeter) prefill(ctx context.Context, ids []int) (*engine.Prefix, error) {
	m := nm.e.Model
	caps := make([]resid.Intervention, len(nm.layers))
	for i, l := range nm.layers {
		caps[i] = &resid.Capture{At: l, Where: resid.All}
	}
	set, err := resid.NewSet(m.NumLayers, m.Hidden, caps...)
	if err != nil {
		return nil, err
	}
	p, err := nm.e.Prefill(ctx, ids, set)
	if err != nil {
		return nil, err
	}
	for i, iv := range caps {
		c := iv.(*resid.Capture)
		for k, row := range c.Rows {
			if c.Positions[k] == 0 {
				continue // the first position's norm is an outlier on many models
			}
			nm.sum[nm.layers[i]] += norm(row)
			if i == 0 {
				nm.n++
			}
		}
	}
	return p, nil
}

func (nm *normMeter) result() (map[int]float64, error) {
	if nm.n == 0 {
		return nil, fmt.Errorf("%w: no positions to measure the residual norm on", ErrSweep)
	}
	out := map[int]float64{}
	for _, l := range nm.layers {
		out[l] = nm.sum[l] / float64(nm.n)
	}
	return out, nil
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// steering returns a cell's interventions and coefficients.
func (r *runner) steering(c Cell) ([]resid.Intervention, []float64, error) {
	var ivs []resid.Intervention
	var coeffs []float64
	for _, l := range c.Layers {
		v, err := r.o.Vector.Vector(l)
		if err != nil {
			return nil, nil, err
		}
		n := norm(v)
		if n == 0 {
			return nil, nil, fmt.Errorf("%w: the vector is zero at layer %d", ErrSweep, l)
		}
		coeff := c.Strength / float64(len(c.Layers)) * r.norms[l] / n
		coeffs = append(coeffs, coeff)
		ivs = append(ivs, &resid.Add{At: l, Vector: v, Coeff: float32(coeff), Where: c.Where})
	}
	return ivs, coeffs, nil
}

// cell runs one setting: every trait prompt Samples times, every task
// once greedily.
func (r *runner) cell(ctx context.Context, c Cell, step func()) (CellResult, error) {
	m := r.e.Model
	res := CellResult{Cell: c, Position: c.Where.String()}
	ivs, coeffs, err := r.steering(c)
	if err != nil {
		return res, err
	}
	res.Coeffs = coeffs
	set, err := resid.NewSet(m.NumLayers, m.Hidden, ivs...)
	if err != nil {
		return res, err
	}
	// A cell that steers generated positions only starts from the
	// unsteered prompt; others read each prompt once under their steering.
	from := func(p prompt) (*engine.Prefix, error) {
		if c.Strength == 0 || c.Where == resid.Generated {
			return p.plain, nil
		}
		res.Positions += len(p.ids)
		return r.e.Prefill(ctx, p.ids, set)
	}
	var expressed, coherent, scored int
	var traitSum, cohSum, lpSum float64
	var lpN int
	for qi, p := range r.trait {
		pre, err := from(p)
		if err != nil {
			return res, err
		}
		for k := range r.o.Samples {
			g, err := r.e.Generate(ctx, engine.Request{From: pre, MaxTokens: r.o.MaxTokens, Interventions: set,
				Sampling: sample.Params{Temperature: r.o.Temperature, Seed: r.o.Seed + uint64(qi*1000+k)}})
			if err != nil {
				return res, err
			}
			res.Positions += len(g.IDs)
			res.NaivePositions += len(p.ids) + len(g.IDs)
			ids := g.IDs
			if g.Stop == "eos" {
				ids = ids[:len(ids)-1]
			}
			text := strings.TrimSpace(g.Text)
			sc, err := r.o.Scorer.Score(ctx, r.o.Trait, p.msgs[len(p.msgs)-1].Content, text)
			if err != nil {
				return res, err
			}
			scored++
			traitSum += sc.Trait
			if sc.Trait >= r.o.Threshold {
				expressed++
			}
			if sc.Coherence >= 0 {
				cohSum += sc.Coherence
				coherent++
			}
			lp, err := r.e.LogProbsFrom(ctx, p.plain, ids, nil)
			if err != nil {
				return res, err
			}
			for _, x := range lp {
				lpSum += float64(x)
			}
			lpN += len(lp)
		}
		step()
	}
	res.Trait, res.TraitMean = stats.NewProportion(expressed, scored), traitSum/float64(scored)
	res.Coherence = -1
	if coherent > 0 {
		res.Coherence = cohSum / float64(coherent)
	}
	if lpN > 0 {
		res.Perplexity = math.Exp(-lpSum / float64(lpN))
	}
	correct := 0
	for _, p := range r.tasks {
		pre, err := from(p)
		if err != nil {
			return res, err
		}
		g, err := r.e.Generate(ctx, engine.Request{From: pre, MaxTokens: r.o.MaxTokens, Interventions: set})
		if err != nil {
			return res, err
		}
		res.Positions += len(g.IDs)
		res.NaivePositions += len(p.ids) + len(g.IDs)
		if j := r.oracle.Judge(p.msgs, strings.TrimSpace(g.Text)); j.Correct != nil && *j.Correct {
			correct++
		}
		step()
	}
	res.Accuracy = stats.NewProportion(correct, len(r.tasks))
	return res, nil
}

// frontier marks the cells no other cell beats on both trait and accuracy,
// and recommends one.
func (sw *Sweep) frontier() {
	better := func(a, b CellResult) bool { // a at least as good as b on both, better on one
		ta, tb := a.Trait.P, b.Trait.P
		if sw.Suppress {
			ta, tb = -ta, -tb
		}
		return ta >= tb && a.Accuracy.P >= b.Accuracy.P && (ta > tb || a.Accuracy.P > b.Accuracy.P)
	}
	sw.Recommended = -1
	for i, c := range sw.Cells {
		dominated := false
		for j, d := range sw.Cells {
			if j != i && better(d, c) {
				dominated = true
				break
			}
		}
		if !dominated {
			sw.Frontier = append(sw.Frontier, i)
		}
		if i == 0 || c.Accuracy.P < sw.MinAcc {
			continue
		}
		if k := sw.Recommended; k < 0 || sw.preferred(c, sw.Cells[k]) {
			sw.Recommended = i
		}
	}
}

// preferred reports a over b for the recommendation: more trait (less when
// suppressing), then the gentler push, then fewer layers.
func (sw *Sweep) preferred(a, b CellResult) bool {
	ta, tb := a.Trait.P, b.Trait.P
	if sw.Suppress {
		ta, tb = -ta, -tb
	}
	switch {
	case ta != tb:
		return ta > tb
	case math.Abs(a.Strength) != math.Abs(b.Strength):
		return math.Abs(a.Strength) < math.Abs(b.Strength)
	}
	return len(a.Layers) < len(b.Layers)
}
