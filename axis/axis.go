// Package axis finds the assistant axis of a model (Lu et al. 2026,
// arXiv 2601.10387): the direction in the residual stream that separates the default
// Assistant from the other characters the model can play.
//
// Recipe. Every persona of a library answers the same questions under each
// of its system prompts (strong and weak); a judge scores each reply 0–3 for
// how fully the role is played and only fully played replies count. A role
// vector is the mean, over a persona's kept replies, of the residual stream
// averaged over the reply's tokens. The default Assistant answers the same
// questions with no system prompt and under the Assistant persona's own
// prompts. Then, per layer,
//
//	axis[ℓ] = mean(default replies)[ℓ] − mean(role vectors)[ℓ]
//
// which points toward the Assistant. A principal component analysis of the
// mean-centred role vectors checks that the axis is the main direction along
// which roles differ (the paper finds cos(axis, PC1) > 0.71 and the Assistant
// at one end of PC1).
//
// The same file carries what drift monitoring and activation capping need:
// τ per layer, the 25th percentile of ordinary Assistant replies' projections
// on the unit axis, and a band of upper-middle layers to cap on.
//
// Layers follow package vectors: layer ℓ is the output of block ℓ.
package axis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"persona/chat"
	"persona/engine"
	"persona/internal/parallel"
	"persona/internal/stats"
	"persona/personas"
	"persona/sample"
	"persona/vectors"
)

// Name is the Set.Name of an assistant axis.
const Name = "assistant-axis"

// Judge scores how fully a reply plays a persona, from 0 (not at all) to 3
// (fully): the paper's role-play rubric. Only replies at Options.MinScore or
// above enter a role vector, so that a role the model refuses or garbles
// does not drag its vector toward the Assistant.
type Judge interface {
	Score(ctx context.Context, p *personas.Persona, msgs []chat.Message, reply string) (int, error)
}

// OracleJudge scores with an oracle that knows which persona wrote a text
// (the organism's): 3 when the oracle is sure (≥ 0.9) the persona wrote it, 2
// when it is the oracle's best guess with at least even odds, 1 when the
// persona is more likely than under a uniform guess, 0 otherwise.
type OracleJudge struct{ Oracle personas.Oracle }

// Score implements Judge.
func (j OracleJudge) Score(_ context.Context, p *personas.Persona, msgs []chat.Message, reply string) (int, error) {
	jd := j.Oracle.Verdict(msgs, reply)
	pp := jd.Posterior[p.Name]
	switch {
	case jd.Top == p.Name && pp >= 0.9:
		return 3, nil
	case jd.Top == p.Name && pp >= 0.5:
		return 2, nil
	case pp > 1/float64(max(len(jd.Posterior), 1)):
		return 1, nil
	}
	return 0, nil
}

// Options configure Build.
type Options struct {
	Library *personas.Library
	// Assistant names the library's Assistant persona (default "assistant"):
	// its system prompts are default conditions, not a role. A library
	// without it has only the no-system-prompt default.
	Assistant string
	// Questions every condition answers.
	Questions []string
	// Layers to compute the axis on (strictly ascending); empty: all.
	Layers []int
	// Samples per (system prompt, question) (default 1).
	Samples     int
	MaxTokens   int     // per reply (default 48)
	Temperature float32 // default 1: the model's own distribution
	Seed        uint64
	// Judge filters role replies; nil keeps every reply.
	Judge Judge
	// MinScore is the judge score a role reply needs (default 3: fully
	// played). Default replies are judged as the Assistant persona when it
	// is in the library, with the same bar.
	MinScore int
	// Model names the model in the file's metadata.
	Model string
	// Workers run generations in parallel (default GOMAXPROCS).
	Workers  int
	Progress func(done, total int)
}

func (o *Options) defaults() {
	if o.Assistant == "" {
		o.Assistant = personas.AssistantName
	}
	if o.Samples <= 0 {
		o.Samples = 1
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 48
	}
	if o.Temperature == 0 {
		o.Temperature = 1
	}
	if o.MinScore == 0 {
		o.MinScore = 3
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
}

// Role is one persona's measured role vector.
type Role struct {
	Name      string  `json:"name"`
	Generated int     `json:"generated"`
	Kept      int     `json:"kept"`
	MeanScore float64 `json:"mean_score,omitempty"` // judge score over generated replies
	// Vector holds the role vector per layer (nil when nothing was kept).
	Vector *vectors.Set `json:"-"`
}

// LayerStats is the PCA of the role vectors at one layer.
type LayerStats struct {
	Layer int `json:"layer"`
	// Explained is the share of the roles' variance along PC1, PC2, ….
	Explained []float64 `json:"explained_variance"`
	// Loadings are each role's coordinates on the leading components (the
	// role's loading on PC1 says where it sits on the Assistant–role
	// spectrum), in Result.Roles order of the roles that entered the PCA.
	Loadings map[string][]float64 `json:"loadings"`
	// Assistant is the default Assistant's coordinates on the same
	// components. PC1 is oriented so that the Assistant's coordinate is
	// positive.
	Assistant []float64 `json:"assistant"`
	// AssistantRank is the share of roles whose PC1 coordinate is below the
	// Assistant's: 1 means the Assistant sits at the end of PC1.
	AssistantRank float64 `json:"assistant_rank_pc1"`
	// Separation is the gap between the Assistant and the nearest role on
	// PC1 in units of the roles' PC1 standard deviation (negative when some
	// role lies beyond the Assistant).
	Separation float64 `json:"separation_pc1_sd"`
	// CosAxisPC1 is cos(axis, PC1) at this layer.
	CosAxisPC1 float64 `json:"cos_axis_pc1"`
	// AxisNorm is ‖axis‖ at this layer.
	AxisNorm float64 `json:"axis_norm"`
	// Tau is the capping floor: the 25th percentile of the default replies'
	// projections on the unit axis.
	Tau float64 `json:"tau"`
	// RoleMean is the mean projection of the role vectors on the unit axis,
	// for scale: the Assistant sits about ‖axis‖ above it.
	RoleMean float64 `json:"role_mean_projection"`

	pca *PCA
}

// Result is the axis and everything measured on the way.
type Result struct {
	Axis      *vectors.Set `json:"-"`
	Roles     []Role       `json:"roles"`
	Default   Role         `json:"default"`
	Questions int          `json:"questions"`
	Layers    []LayerStats `json:"layers"`
	// CapLayers is the band of upper-middle layers capping acts on, and
	// DriftLayer the layer drift monitoring reads (a middle layer).
	CapLayers  []int    `json:"cap_layers"`
	DriftLayer int      `json:"drift_layer"`
	Notes      []string `json:"notes,omitempty"`
}

// condition is one system prompt under which the questions are asked.
type condition struct {
	persona *personas.Persona // whose prompt; nil for no system prompt
	system  string
	def     bool // a default-Assistant condition
}

// Build generates the replies, judges them and computes the axis, the role
// PCA per layer and the capping thresholds.
func Build(ctx context.Context, e *engine.Engine, o Options) (*Result, error) {
	o.defaults()
	if o.Library == nil || len(o.Library.Personas) == 0 {
		return nil, errors.New("axis: empty persona library")
	}
	if len(o.Questions) == 0 {
		return nil, errors.New("axis: no questions")
	}
	layers := o.Layers
	if len(layers) == 0 {
		for l := range e.Model.NumLayers {
			layers = append(layers, l)
		}
	}
	for i, l := range layers {
		if l < 0 || l >= e.Model.NumLayers || (i > 0 && l <= layers[i-1]) {
			return nil, fmt.Errorf("axis: layers %v: want strictly ascending layers in 0..%d: %w", layers, e.Model.NumLayers-1, engine.ErrLayer)
		}
	}

	asst, _ := o.Library.Get(o.Assistant)
	conds := []condition{{def: true}}
	var roles []*personas.Persona
	for _, p := range o.Library.Personas {
		prompts := append(slices.Clone(p.SystemPrompts.Strong), p.SystemPrompts.Weak...)
		if p == asst {
			for _, s := range prompts {
				conds = append(conds, condition{persona: p, system: s, def: true})
			}
			continue
		}
		if len(prompts) == 0 {
			return nil, fmt.Errorf("axis: persona %q (%s) has no system prompts", p.Name, p.File)
		}
		roles = append(roles, p)
		for _, s := range prompts {
			conds = append(conds, condition{persona: p, system: s})
		}
	}
	if len(roles) < 2 {
		return nil, fmt.Errorf("axis: the library has %d persona(s) besides %q; a PCA of roles needs at least 2", len(roles), o.Assistant)
	}

	type job struct {
		c      int
		q, s   int
		result *engine.Reply
		score  int
		kept   bool
	}
	var jobs []*job
	for c := range conds {
		for q := range o.Questions {
			for s := range o.Samples {
				jobs = append(jobs, &job{c: c, q: q, s: s})
			}
		}
	}

	err := parallel.ForProgress(ctx, o.Workers, len(jobs), func(i int) error {
		j := jobs[i]
		c := conds[j.c]
		var msgs []chat.Message
		if c.system != "" {
			msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: c.system})
		}
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: o.Questions[j.q]})
		r, err := e.Reply(ctx, msgs, engine.ReplyOptions{Capture: true, Layers: layers, MaxTokens: o.MaxTokens,
			Sampling: sample.Params{Temperature: o.Temperature, Seed: o.Seed*1_000_003 + uint64(i)}})
		if err != nil {
			return err
		}
		j.result, j.score, j.kept = r, -1, r.Means != nil
		judged := c.persona
		if c.def {
			judged = asst
		}
		if o.Judge != nil && judged != nil && r.Means != nil {
			if j.score, err = o.Judge.Score(ctx, judged, msgs, r.Text); err != nil {
				return fmt.Errorf("axis: judge: %w", err)
			}
			j.kept = j.score >= o.MinScore
		}
		return nil
	}, o.Progress)
	if err != nil {
		return nil, err
	}

	res := &Result{Questions: len(o.Questions)}
	// Reduce in job order, so the sums do not depend on scheduling.
	roleAcc := map[*personas.Persona]*vectors.Accumulator{}
	roleStat := map[*personas.Persona]*Role{}
	for _, p := range roles {
		roleAcc[p] = vectors.NewAccumulator(layers)
		roleStat[p] = &Role{Name: p.Name}
	}
	defAcc, defAll := vectors.NewAccumulator(layers), vectors.NewAccumulator(layers)
	res.Default.Name = "default"
	var defMeans, defAllMeans [][][]float32
	var defScore float64
	var defScored int
	for _, j := range jobs {
		c := conds[j.c]
		if c.def {
			res.Default.Generated++
			if j.score >= 0 {
				defScore += float64(j.score)
				defScored++
			}
			if j.result.Means == nil {
				continue
			}
			if err := defAll.Add(j.result.Means); err != nil {
				return nil, err
			}
			defAllMeans = append(defAllMeans, j.result.Means)
			if j.kept {
				if err := defAcc.Add(j.result.Means); err != nil {
					return nil, err
				}
				defMeans = append(defMeans, j.result.Means)
			}
			continue
		}
		st := roleStat[c.persona]
		st.Generated++
		if j.score >= 0 {
			st.MeanScore += float64(j.score)
		}
		if j.kept {
			st.Kept++
			if err := roleAcc[c.persona].Add(j.result.Means); err != nil {
				return nil, err
			}
		}
	}
	if defScored > 0 {
		res.Default.MeanScore = defScore / float64(defScored)
	}
	res.Default.Kept = defAcc.N()
	if defAcc.N() == 0 {
		if defAll.N() == 0 {
			return nil, errors.New("axis: every default-Assistant reply was empty")
		}
		res.Notes = append(res.Notes, fmt.Sprintf("no default reply reached judge score %d as the Assistant; the default vector uses all %d non-empty default replies", o.MinScore, defAll.N()))
		defAcc, defMeans = defAll, defAllMeans
	}
	if res.Default.Vector, err = defAcc.Set("default", o.Model); err != nil {
		return nil, err
	}

	rolesAcc := vectors.NewAccumulator(layers) // one sample per role: the mean of role vectors
	var kept []*Role
	for _, p := range roles {
		st := roleStat[p]
		if st.Generated > 0 && o.Judge != nil {
			st.MeanScore /= float64(st.Generated)
		}
		if roleAcc[p].N() == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("role %q: none of %d replies reached judge score %d; left out", p.Name, st.Generated, o.MinScore))
		} else {
			if st.Vector, err = roleAcc[p].Set(p.Name, o.Model); err != nil {
				return nil, err
			}
			if err := rolesAcc.Add(st.Vector.Vectors); err != nil {
				return nil, err
			}
			kept = append(kept, st)
		}
		res.Roles = append(res.Roles, *st)
	}
	if len(kept) < 2 {
		return nil, fmt.Errorf("axis: only %d role(s) had replies at judge score ≥ %d; lower the bar (--min-score) or ask more questions", len(kept), o.MinScore)
	}
	ax, err := vectors.Difference(Name, o.Model, defAcc, rolesAcc)
	if err != nil {
		return nil, err
	}
	res.Axis = ax

	for li, l := range layers {
		ls, err := layerStats(l, li, ax, res.Default.Vector, kept, defMeans)
		if err != nil {
			return nil, fmt.Errorf("axis: layer %d: %w", l, err)
		}
		res.Layers = append(res.Layers, ls)
	}
	res.DriftLayer, res.CapLayers = DefaultLayers(e.Model.NumLayers, layers)

	// What the file needs to be used without this Result.
	m := ax.Meta
	m["method"] = "assistant_axis"
	m["recipe"] = "axis = mean(default replies) - mean(role vectors); role vector = mean over fully played replies of the response-token mean"
	m["roles"] = strings.Join(names(kept), ",")
	m["questions"] = strconv.Itoa(len(o.Questions))
	m["samples"] = strconv.Itoa(o.Samples)
	m["min_score"] = strconv.Itoa(o.MinScore)
	m["judge"] = fmt.Sprint(o.Judge != nil)
	taus := make([]float64, len(res.Layers))
	for i, ls := range res.Layers {
		taus[i] = ls.Tau
	}
	m[MetaTau] = joinFloats(taus)
	m[MetaCapLayers] = joinInts(res.CapLayers)
	m[MetaDriftLayer] = strconv.Itoa(res.DriftLayer)
	summary, err := json.Marshal(res.Layers)
	if err != nil {
		return nil, err
	}
	m["pca"] = string(summary)
	return res, nil
}

// Metadata keys an axis file carries beyond the vectors' own.
const (
	// MetaTau lists τ per layer of the file, in the file's layer order.
	MetaTau = "cap_tau"
	// MetaCapLayers is the default capping band.
	MetaCapLayers = "cap_layers"
	// MetaDriftLayer is the default layer for drift projections.
	MetaDriftLayer = "drift_layer"
)

// DefaultLayers picks, among the captured layers, a middle layer for drift
// projections and a band of upper-middle layers for capping, as the paper
// does (it reads the axis at a middle layer and caps on roughly the 55–80%
// depth range, where the persona is represented but not yet turned into
// output tokens). The drift layer is block ⌊(L−1)/2⌋ and the band
// [drift+1, ⌈3L/4⌉) (at least one layer) of the model's L blocks, restricted
// to what was captured. The band starts above the drift layer on purpose: a
// projection read inside the band of a capped run is clamped to ≥ τ by
// construction and would say nothing about drift.
func DefaultLayers(numLayers int, captured []int) (drift int, band []int) {
	nearest := func(x int) int {
		best := captured[0]
		for _, l := range captured {
			if abs(l-x) < abs(best-x) {
				best = l
			}
		}
		return best
	}
	drift = nearest((numLayers - 1) / 2)
	hi := max((3*numLayers+3)/4, drift+2)
	for _, l := range captured {
		if l > drift && l < hi && l < numLayers {
			band = append(band, l)
		}
	}
	if len(band) == 0 {
		band = []int{drift}
	}
	return drift, band
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// layerStats runs the role PCA at one layer and places the Assistant on it.
func layerStats(l, li int, ax, def *vectors.Set, roles []*Role, defMeans [][][]float32) (LayerStats, error) {
	ls := LayerStats{Layer: l, Loadings: map[string][]float64{}}
	pts := make([][]float32, len(roles))
	for i, r := range roles {
		pts[i] = r.Vector.Vectors[li]
	}
	p, err := FitPCA(pts, 3)
	if err != nil {
		return ls, err
	}
	a := p.Project(def.Vectors[li])
	if a[0] < 0 {
		p.Flip(0)
		a[0] = -a[0]
	}
	ls.pca = p
	ls.Explained = p.Explained
	ls.Assistant = a
	var pc1 []float64
	for i, r := range roles {
		ls.Loadings[r.Name] = p.Scores[i]
		pc1 = append(pc1, p.Scores[i][0])
	}
	below, top := 0, math.Inf(-1)
	for _, s := range pc1 {
		if s < a[0] {
			below++
		}
		top = math.Max(top, s)
	}
	ls.AssistantRank = float64(below) / float64(len(pc1))
	if sd := math.Sqrt(p.Variance[0]); sd > 0 {
		ls.Separation = (a[0] - top) / sd
	}
	v := ax.Vectors[li]
	comp := make([]float32, len(p.Components[0]))
	for j, x := range p.Components[0] {
		comp[j] = float32(x)
	}
	ls.CosAxisPC1 = vectors.Cosine(v, comp)
	for _, x := range v {
		ls.AxisNorm += float64(x) * float64(x)
	}
	ls.AxisNorm = math.Sqrt(ls.AxisNorm)
	var proj []float64
	for _, m := range defMeans {
		proj = append(proj, vectors.Project(m[li], v))
	}
	sort.Float64s(proj)
	ls.Tau = stats.Quantile(proj, 0.25)
	for _, r := range roles {
		ls.RoleMean += vectors.Project(r.Vector.Vectors[li], v) / float64(len(roles))
	}
	return ls, nil
}

func names(rs []*Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func joinFloats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'g', 9, 64)
	}
	return strings.Join(parts, ",")
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}
