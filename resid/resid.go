// Package resid describes interventions on a transformer's residual stream
// as plain data: read it (Capture), push it along a direction (Add), clamp
// its projection on a direction (Clamp, i.e. activation capping), or remove a
// direction (Ablate). The engine applies a Set at exactly one spot of its
// layer loop; a layer with no intervention costs one nil check.
//
// Layer convention, used everywhere in persona: layer ℓ (0-based) names the
// residual stream at the output of decoder block ℓ, i.e. Hugging Face's
// hidden_states[ℓ+1]. The persona-vectors code indexes hidden_states[L] (our
// layer L−1); llama.cpp control vectors name direction.N and add it to the
// output of block N, which is our layer N (so N ≥ 1 there: llama.cpp cannot
// steer block 0's output).
package resid

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Where selects the positions an intervention touches. Positions before the
// stream's prompt length are the prompt; the rest were generated.
type Where int

const (
	All Where = iota
	Prompt
	Generated
)

func (w Where) String() string {
	return [...]string{"all", "prompt", "generated"}[w]
}

// ErrWhere is returned for a position selector that is not all, prompt or
// generated.
var ErrWhere = errors.New("unknown positions (want all, prompt or generated)")

// ParseWhere reads "all", "prompt" or "generated".
func ParseWhere(s string) (Where, error) {
	for w := All; w <= Generated; w++ {
		if s == w.String() {
			return w, nil
		}
	}
	return All, fmt.Errorf("%q: %w", s, ErrWhere)
}

// includes reports whether absolute position pos is selected.
func (w Where) includes(pos, promptLen int) bool {
	switch w {
	case Prompt:
		return pos < promptLen
	case Generated:
		return pos >= promptLen
	}
	return true
}

// Block is the slice of the residual stream one forward call computed at one
// layer: T rows of width D at absolute positions Pos0 … Pos0+T−1.
type Block struct {
	H         []float32 // [T, D], modified in place
	T, D      int
	Pos0      int
	PromptLen int
}

func (b Block) row(t int) []float32 { return b.H[t*b.D : (t+1)*b.D] }

// Intervention is one operation on the residual stream at one layer.
type Intervention interface {
	// Layer is the block whose output is touched (see the package comment).
	Layer() int
	apply(b Block)
	width() int
}

// Add adds Coeff·Vector to the selected positions: persona-vector steering
// (h ← h + c·v, v unnormalised as in the persona-vectors recipe).
type Add struct {
	At     int       `json:"layer"`
	Vector []float32 `json:"vector"`
	Coeff  float32   `json:"coeff"`
	Where  Where     `json:"where"`
}

func (a *Add) Layer() int { return a.At }
func (a *Add) width() int { return len(a.Vector) }
func (a *Add) apply(b Block) {
	if a.Coeff == 0 {
		return
	}
	for t := 0; t < b.T; t++ {
		if !a.Where.includes(b.Pos0+t, b.PromptLen) {
			continue
		}
		h := b.row(t)
		for i, v := range a.Vector {
			h[i] += a.Coeff * v
		}
	}
}

// Clamp keeps the projection ⟨h, u⟩ on the unit direction u within
// [Floor, Ceiling] by moving h along u only: h ← h + u·(bound − ⟨h,u⟩) where
// the bound is violated. A nil bound is open. With a floor this is the
// assistant-axis activation cap, h ← h + u·max(τ − ⟨h,u⟩, 0).
type Clamp struct {
	At        int       `json:"layer"`
	Direction []float32 `json:"direction"` // unit length; NewSet checks
	Floor     *float32  `json:"floor,omitempty"`
	Ceiling   *float32  `json:"ceiling,omitempty"`
	Where     Where     `json:"where"`
}

func (c *Clamp) Layer() int { return c.At }
func (c *Clamp) width() int { return len(c.Direction) }
func (c *Clamp) apply(b Block) {
	for t := 0; t < b.T; t++ {
		if !c.Where.includes(b.Pos0+t, b.PromptLen) {
			continue
		}
		h := b.row(t)
		p := dot(h, c.Direction)
		var shift float32
		switch {
		case c.Floor != nil && p < *c.Floor:
			shift = *c.Floor - p
		case c.Ceiling != nil && p > *c.Ceiling:
			shift = *c.Ceiling - p
		default:
			continue
		}
		for i, u := range c.Direction {
			h[i] += shift * u
		}
	}
}

// Ablate removes the component along the unit direction u: h ← h − ⟨h,u⟩u
// (directional ablation, e.g. of a refusal or persona direction).
type Ablate struct {
	At        int       `json:"layer"`
	Direction []float32 `json:"direction"`
	Where     Where     `json:"where"`
}

func (a *Ablate) Layer() int { return a.At }
func (a *Ablate) width() int { return len(a.Direction) }
func (a *Ablate) apply(b Block) {
	for t := 0; t < b.T; t++ {
		if !a.Where.includes(b.Pos0+t, b.PromptLen) {
			continue
		}
		h := b.row(t)
		p := dot(h, a.Direction)
		for i, u := range a.Direction {
			h[i] -= p * u
		}
	}
}

// Probe reads the stream without changing it: the mean projection ⟨h,u⟩
// of the selected positions on a unit direction u, accumulated across
// forward calls (a persona vector's or the assistant axis's reading of a
// reply while it is written). It sees the stream after the interventions
// listed before it at the same layer.
type Probe struct {
	At        int
	Direction []float32 // unit length; NewSet checks
	Where     Where
	sum       float64
	n         int
}

func (p *Probe) Layer() int { return p.At }
func (p *Probe) width() int { return len(p.Direction) }
func (p *Probe) apply(b Block) {
	for t := 0; t < b.T; t++ {
		if p.Where.includes(b.Pos0+t, b.PromptLen) {
			p.sum += float64(dot(b.row(t), p.Direction))
			p.n++
		}
	}
}

// Mean returns the mean projection and the number of positions read (0:
// none, and the mean is 0).
func (p *Probe) Mean() (float64, int) {
	if p.n == 0 {
		return 0, 0
	}
	return p.sum / float64(p.n), p.n
}

// Patch replaces the stream at one absolute position with a row from
// another run: activation patching, which asks what the layer's output at
// that position carries (the rest of the run is left as it was).
type Patch struct {
	At  int
	Pos int
	Row []float32
}

func (p *Patch) Layer() int { return p.At }
func (p *Patch) width() int { return len(p.Row) }
func (p *Patch) apply(b Block) {
	if t := p.Pos - b.Pos0; t >= 0 && t < b.T {
		copy(b.row(t), p.Row)
	}
}

// Span is a half-open range of absolute token positions.
type Span struct{ Start, End int }

// Capture records the residual stream. With Spans it keeps, per span, the
// mean over the span's positions (accumulated in float64 across forward
// calls, so a span may straddle prefill and decode); without Spans it keeps
// every selected position's row. It sees the stream after the interventions
// listed before it at the same layer.
type Capture struct {
	At    int
	Spans []Span
	Where Where // used only without Spans

	// Per-token results (no Spans): Positions[i] is the position of Rows[i].
	Positions []int
	Rows      [][]float32

	sums   [][]float64
	counts []int
}

func (c *Capture) Layer() int { return c.At }
func (c *Capture) width() int { return 0 }
func (c *Capture) apply(b Block) {
	if len(c.Spans) == 0 {
		for t := 0; t < b.T; t++ {
			if c.Where.includes(b.Pos0+t, b.PromptLen) {
				c.Positions = append(c.Positions, b.Pos0+t)
				c.Rows = append(c.Rows, append([]float32(nil), b.row(t)...))
			}
		}
		return
	}
	if c.sums == nil {
		c.sums = make([][]float64, len(c.Spans))
		c.counts = make([]int, len(c.Spans))
	}
	for s, sp := range c.Spans {
		lo, hi := max(sp.Start, b.Pos0), min(sp.End, b.Pos0+b.T)
		for p := lo; p < hi; p++ {
			if c.sums[s] == nil {
				c.sums[s] = make([]float64, b.D)
			}
			for i, v := range b.row(p - b.Pos0) {
				c.sums[s][i] += float64(v)
			}
			c.counts[s]++
		}
	}
}

// Mean returns the mean row over span s, or nil if no position of it was seen.
func (c *Capture) Mean(s int) []float32 {
	if s >= len(c.counts) || c.counts[s] == 0 {
		return nil
	}
	out := make([]float32, len(c.sums[s]))
	for i, v := range c.sums[s] {
		out[i] = float32(v / float64(c.counts[s]))
	}
	return out
}

// Count returns how many positions of span s were seen.
func (c *Capture) Count(s int) int {
	if s >= len(c.counts) {
		return 0
	}
	return c.counts[s]
}

// Reset forgets everything captured, keeping the configuration.
func (c *Capture) Reset() {
	c.Positions, c.Rows, c.sums, c.counts = nil, nil, nil, nil
}

// Set is a validated collection of interventions indexed by layer. The zero
// or nil Set does nothing.
type Set struct {
	byLayer [][]Intervention
}

// NewSet checks every intervention against the model's depth and width
// (directions must be unit vectors, vectors finite and of width d) and
// indexes them by layer, preserving order within a layer.
func NewSet(layers, d int, ivs ...Intervention) (*Set, error) {
	s := &Set{byLayer: make([][]Intervention, layers)}
	for i, iv := range ivs {
		l := iv.Layer()
		if l < 0 || l >= layers {
			return nil, fmt.Errorf("intervention %d (%T): layer %d out of range [0, %d)", i, iv, l, layers)
		}
		if w := iv.width(); w != 0 && w != d {
			return nil, fmt.Errorf("intervention %d (%T) at layer %d: vector width %d, model width %d", i, iv, l, w, d)
		}
		if err := check(iv); err != nil {
			return nil, fmt.Errorf("intervention %d (%T) at layer %d: %w", i, iv, l, err)
		}
		s.byLayer[l] = append(s.byLayer[l], iv)
	}
	return s, nil
}

func check(iv Intervention) error {
	var vec []float32
	unit := false
	switch x := iv.(type) {
	case *Add:
		vec = x.Vector
		if x.Vector == nil {
			return fmt.Errorf("empty vector")
		}
		if math.IsNaN(float64(x.Coeff)) || math.IsInf(float64(x.Coeff), 0) {
			return fmt.Errorf("coefficient %g", x.Coeff)
		}
	case *Clamp:
		vec, unit = x.Direction, true
		if x.Floor == nil && x.Ceiling == nil {
			return fmt.Errorf("clamp with neither floor nor ceiling")
		}
		if x.Floor != nil && x.Ceiling != nil && *x.Floor > *x.Ceiling {
			return fmt.Errorf("floor %g above ceiling %g", *x.Floor, *x.Ceiling)
		}
	case *Ablate:
		vec, unit = x.Direction, true
	case *Probe:
		vec, unit = x.Direction, true
	case *Patch:
		vec = x.Row
		if x.Pos < 0 {
			return fmt.Errorf("position %d", x.Pos)
		}
	case *Capture:
		for _, sp := range x.Spans {
			if sp.Start < 0 || sp.End < sp.Start {
				return fmt.Errorf("bad span [%d, %d)", sp.Start, sp.End)
			}
		}
		return nil
	}
	var n2 float64
	for i, v := range vec {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("element %d is %g", i, v)
		}
		n2 += float64(v) * float64(v)
	}
	if unit && math.Abs(math.Sqrt(n2)-1) > 1e-3 {
		return fmt.Errorf("direction has norm %.4g; want a unit vector (use Unit)", math.Sqrt(n2))
	}
	return nil
}

// Layers returns the layers that have at least one intervention, ascending.
func (s *Set) Layers() []int {
	if s == nil {
		return nil
	}
	var out []int
	for l, ivs := range s.byLayer {
		if len(ivs) > 0 {
			out = append(out, l)
		}
	}
	sort.Ints(out)
	return out
}

// Apply runs the interventions of layer l on a block, in order. It is the
// one place the engine's layer loop calls.
func (s *Set) Apply(l int, b Block) {
	if s == nil || l >= len(s.byLayer) {
		return
	}
	for _, iv := range s.byLayer[l] {
		iv.apply(b)
	}
}

// Active reports whether layer l has interventions (lets callers skip work).
func (s *Set) Active(l int) bool {
	return s != nil && l < len(s.byLayer) && len(s.byLayer[l]) > 0
}

// Unit returns v/‖v‖ (a copy, computed in float64), or an error for a zero
// or non-finite vector.
func Unit(v []float32) ([]float32, error) {
	var n2 float64
	for _, x := range v {
		n2 += float64(x) * float64(x)
	}
	n := math.Sqrt(n2)
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("cannot normalise a vector of norm %g", n)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / n)
	}
	return out, nil
}

// Project returns ⟨h, u⟩.
func Project(h, u []float32) float32 { return dot(h, u) }

func dot(a, b []float32) float32 {
	var s float32
	for i, x := range b {
		s += a[i] * x
	}
	return s
}

// CheckTrainable reports interventions that training cannot pass gradients
// through. A Clamp's effect depends on which side of its bound each position
// fell; training through it is not supported.
func (s *Set) CheckTrainable() error {
	if s == nil {
		return nil
	}
	for l, ivs := range s.byLayer {
		for _, iv := range ivs {
			if _, ok := iv.(*Clamp); ok {
				return fmt.Errorf("layer %d: a clamp cannot be used while training (use add or ablate)", l)
			}
		}
	}
	return nil
}

// Backward applies the transposed Jacobian of layer l's interventions to the
// gradient held in b.H, in reverse order: Add and Capture pass the gradient
// through unchanged (adding a constant has Jacobian I); Ablate, h − ⟨h,u⟩u,
// is a projection, symmetric, so the gradient loses its u component too.
func (s *Set) Backward(l int, b Block) {
	if s == nil || l >= len(s.byLayer) {
		return
	}
	ivs := s.byLayer[l]
	for i := len(ivs) - 1; i >= 0; i-- {
		if a, ok := ivs[i].(*Ablate); ok {
			a.apply(b)
		}
	}
}
