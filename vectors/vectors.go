// Package vectors holds persona and steering vectors as data: one direction
// per layer of the residual stream (a trait's persona vector, the assistant
// axis), the arithmetic that extracts them from captured activations
// (response-mean differences), the projections and cosines that
// read them, the resid interventions that apply them, and their files:
// safetensors with metadata for persona, and llama.cpp control-vector GGUF
// for steering the same model in llama.cpp.
//
// Layer convention (as in package resid): layer ℓ is the residual stream at
// the output of decoder block ℓ (0-based), Hugging Face's hidden_states[ℓ+1].
// Files say so in their metadata; llama.cpp's direction.N is our layer N.
//
// All means are accumulated in float64: extraction averages thousands of
// responses of hundreds of tokens each, and float32 running sums would lose
// the small differences the vectors are made of.
package vectors

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"persona/engine"
	"persona/resid"
)

// LayerConvention is written into every file this package produces and
// required of every file it reads, so a vector indexed by another convention
// (hidden_states[L] as in the persona-vectors code) cannot be used silently
// one layer off.
const LayerConvention = "resid[l] = output of block l = HF hidden_states[l+1]"

// Set is one direction per layer for a trait or an axis.
//
// Vectors[i] belongs to Layers[i]; Layers is strictly ascending; every vector
// has the model's hidden width. Vectors are unnormalised (a persona vector's
// length is part of what c·v means); the helpers normalise where the recipe
// wants a unit direction.
type Set struct {
	// Name is what the vectors stand for: a trait ("evil") or "assistant-axis".
	Name string
	// Model identifies the model the activations came from (a path, a Hugging
	// Face id or an architecture); a vector only means something on it.
	Model   string
	Layers  []int
	Vectors [][]float32
	// Meta records how the vectors were made: method, trait, counts, judge
	// scores … Stored verbatim in the files' metadata.
	Meta map[string]string
}

// Errors callers may need to tell apart (wrapped with context).
var (
	// ErrWidth: a vector's width differs from the model's or the set's.
	ErrWidth = errors.New("wrong vector width")
	// ErrNotFinite: a vector holds NaN or ±Inf.
	ErrNotFinite = errors.New("non-finite value")
)

// Hidden returns the vectors' width (0 for an empty set).
func (s *Set) Hidden() int {
	if len(s.Vectors) == 0 {
		return 0
	}
	return len(s.Vectors[0])
}

// Validate checks the invariants every consumer relies on: at least one
// layer, layers non-negative and strictly ascending, one vector per layer,
// equal non-zero widths, finite values.
func (s *Set) Validate() error {
	if len(s.Layers) == 0 {
		return fmt.Errorf("vectors %q: no layers", s.Name)
	}
	if len(s.Vectors) != len(s.Layers) {
		return fmt.Errorf("vectors %q: %d vectors for %d layers", s.Name, len(s.Vectors), len(s.Layers))
	}
	d := len(s.Vectors[0])
	if d == 0 {
		return fmt.Errorf("vectors %q: layer %d: empty vector: %w", s.Name, s.Layers[0], ErrWidth)
	}
	for i, l := range s.Layers {
		if l < 0 {
			return fmt.Errorf("vectors %q: negative layer %d: %w", s.Name, l, engine.ErrLayer)
		}
		if i > 0 && l <= s.Layers[i-1] {
			return fmt.Errorf("vectors %q: layers not strictly ascending (%d after %d)", s.Name, l, s.Layers[i-1])
		}
		if len(s.Vectors[i]) != d {
			return fmt.Errorf("vectors %q: layer %d has width %d, layer %d has %d: %w", s.Name, l, len(s.Vectors[i]), s.Layers[0], d, ErrWidth)
		}
		if j := nonFinite(s.Vectors[i]); j >= 0 {
			return fmt.Errorf("vectors %q: layer %d element %d is %g: %w", s.Name, l, j, s.Vectors[i][j], ErrNotFinite)
		}
	}
	return nil
}

// Check validates the set and that it fits a model with numLayers blocks of
// width hidden: the errors a user sees when a vector file meets the wrong
// model.
func (s *Set) Check(numLayers, hidden int) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if d := s.Hidden(); d != hidden {
		return fmt.Errorf("vectors %q (from %q) have width %d, the model's hidden size is %d: %w", s.Name, s.Model, d, hidden, ErrWidth)
	}
	if last := s.Layers[len(s.Layers)-1]; last >= numLayers {
		return fmt.Errorf("vectors %q (from %q) have layer %d, the model has layers 0..%d: %w", s.Name, s.Model, last, numLayers-1, engine.ErrLayer)
	}
	return nil
}

// Vector returns the vector of a layer, or an engine.ErrLayer error naming the
// layers the set has.
func (s *Set) Vector(layer int) ([]float32, error) {
	i, ok := slices.BinarySearch(s.Layers, layer)
	if !ok {
		return nil, fmt.Errorf("vectors %q have no layer %d (they have %s): %w", s.Name, layer, FormatLayers(s.Layers), engine.ErrLayer)
	}
	return s.Vectors[i], nil
}

// Unit returns the unit direction of a layer's vector.
func (s *Set) Unit(layer int) ([]float32, error) {
	v, err := s.Vector(layer)
	if err != nil {
		return nil, err
	}
	u, err := Unit(v)
	if err != nil {
		return nil, fmt.Errorf("vectors %q layer %d: %w", s.Name, layer, err)
	}
	return u, nil
}

// Project returns a layer's projection of activation a onto the set's unit
// direction, a·v/‖v‖: the persona-vectors monitor.
func (s *Set) Project(layer int, a []float32) (float64, error) {
	v, err := s.Vector(layer)
	if err != nil {
		return 0, err
	}
	if len(a) != len(v) {
		return 0, fmt.Errorf("vectors %q layer %d: activation width %d, vector width %d: %w", s.Name, layer, len(a), len(v), ErrWidth)
	}
	return Project(a, v), nil
}

// Without returns a copy of the set without the given layers (e.g. layer 0
// before a llama.cpp export). Meta is shared, vectors are not copied.
func (s *Set) Without(layers ...int) *Set {
	out := &Set{Name: s.Name, Model: s.Model, Meta: s.Meta}
	for i, l := range s.Layers {
		if !slices.Contains(layers, l) {
			out.Layers = append(out.Layers, l)
			out.Vectors = append(out.Vectors, s.Vectors[i])
		}
	}
	return out
}

// Project returns a·v/‖v‖ in float64 (0 for a zero v): how far a lies along
// v's direction, in the activations' own units. a and v have equal widths
// (Set.Project checks).
func Project(a, v []float32) float64 {
	var dot, n2 float64
	for i, x := range v {
		dot += float64(a[i]) * float64(x)
		n2 += float64(x) * float64(x)
	}
	if n2 == 0 {
		return 0
	}
	return dot / math.Sqrt(n2)
}

// Cosine returns the cosine similarity of equal-width a and b (0 if either
// is zero): how well two vectors agree, e.g. the axis and PC1.
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// Unit returns v/‖v‖ computed in float64, or an error for a zero or
// non-finite v (a direction that cannot be normalised); it is resid.Unit.
func Unit(v []float32) ([]float32, error) { return resid.Unit(v) }

// Mean is a running mean of equal-width vectors, summed in float64. The zero
// value is ready to use; the first Add fixes the width.
type Mean struct {
	sum []float64
	n   int
}

// Add includes one vector.
func (m *Mean) Add(v []float32) error {
	if m.n == 0 && m.sum == nil {
		if len(v) == 0 {
			return fmt.Errorf("mean: empty vector: %w", ErrWidth)
		}
		m.sum = make([]float64, len(v))
	}
	if len(v) != len(m.sum) {
		return fmt.Errorf("mean: vector of width %d, earlier ones %d: %w", len(v), len(m.sum), ErrWidth)
	}
	if j := nonFinite(v); j >= 0 {
		return fmt.Errorf("mean: element %d is %g: %w", j, v[j], ErrNotFinite)
	}
	for i, x := range v {
		m.sum[i] += float64(x)
	}
	m.n++
	return nil
}

// N returns how many vectors were added.
func (m *Mean) N() int { return m.n }

// Value returns the mean, or nil if nothing was added.
func (m *Mean) Value() []float32 {
	if m.n == 0 {
		return nil
	}
	out := make([]float32, len(m.sum))
	for i, s := range m.sum {
		out[i] = float32(s / float64(m.n))
	}
	return out
}

// diff returns mean(m) − mean(o) in float64 before rounding.
func (m *Mean) diff(o *Mean) []float32 {
	out := make([]float32, len(m.sum))
	for i := range out {
		out[i] = float32(m.sum[i]/float64(m.n) - o.sum[i]/float64(o.n))
	}
	return out
}

// MeanDiff returns mean(pos) − mean(neg) for one layer: the persona-vector
// recipe, where each row is one response's mean activation (pos: responses
// that expressed the trait, neg: responses that did not).
func MeanDiff(pos, neg [][]float32) ([]float32, error) {
	var p, n Mean
	for i, v := range pos {
		if err := p.Add(v); err != nil {
			return nil, fmt.Errorf("positive %d: %w", i, err)
		}
	}
	for i, v := range neg {
		if err := n.Add(v); err != nil {
			return nil, fmt.Errorf("negative %d: %w", i, err)
		}
	}
	if p.n == 0 || n.n == 0 {
		return nil, fmt.Errorf("mean difference needs both sides: %d positive, %d negative", p.n, n.n)
	}
	if len(p.sum) != len(n.sum) {
		return nil, fmt.Errorf("positive width %d, negative width %d: %w", len(p.sum), len(n.sum), ErrWidth)
	}
	return p.diff(&n), nil
}

// Accumulator keeps one running Mean per layer, so extraction can stream
// captured activations (one Activations.Means row at a time) without holding
// them: one Accumulator per side of a contrast, or per role.
type Accumulator struct {
	Layers []int
	means  []Mean
}

// NewAccumulator returns an empty accumulator over the given layers.
func NewAccumulator(layers []int) *Accumulator {
	return &Accumulator{Layers: slices.Clone(layers), means: make([]Mean, len(layers))}
}

// Add includes one sample: perLayer[i] is its vector at Layers[i].
func (a *Accumulator) Add(perLayer [][]float32) error {
	if len(perLayer) != len(a.Layers) {
		return fmt.Errorf("accumulator: sample has %d layers, want %d", len(perLayer), len(a.Layers))
	}
	for i, v := range perLayer {
		if err := a.means[i].Add(v); err != nil {
			return fmt.Errorf("accumulator: layer %d: %w", a.Layers[i], err)
		}
	}
	return nil
}

// N returns how many samples were added.
func (a *Accumulator) N() int {
	if len(a.means) == 0 {
		return 0
	}
	return a.means[0].n
}

// Set returns the per-layer means as a Set (a role vector, say).
func (a *Accumulator) Set(name, model string) (*Set, error) {
	if a.N() == 0 {
		return nil, fmt.Errorf("vectors %q: no samples", name)
	}
	s := &Set{Name: name, Model: model, Layers: slices.Clone(a.Layers), Meta: map[string]string{"method": "mean", "count": strconv.Itoa(a.N())}}
	for i := range a.means {
		s.Vectors = append(s.Vectors, a.means[i].Value())
	}
	return s, s.Validate()
}

// Difference returns mean(pos) − mean(neg) per layer: a persona vector
// (pos/neg: trait-expressing vs not) or the assistant axis (pos: default
// Assistant, neg: role vectors). Meta records the method and counts.
func Difference(name, model string, pos, neg *Accumulator) (*Set, error) {
	if !slices.Equal(pos.Layers, neg.Layers) {
		return nil, fmt.Errorf("vectors %q: positive layers %s, negative layers %s", name, FormatLayers(pos.Layers), FormatLayers(neg.Layers))
	}
	if pos.N() == 0 || neg.N() == 0 {
		return nil, fmt.Errorf("vectors %q: mean difference needs both sides: %d positive, %d negative samples", name, pos.N(), neg.N())
	}
	s := &Set{Name: name, Model: model, Layers: slices.Clone(pos.Layers), Meta: map[string]string{
		"method":      "mean_diff",
		"count_pos":   strconv.Itoa(pos.N()),
		"count_neg":   strconv.Itoa(neg.N()),
		"aggregation": "mean over response tokens, then over responses",
	}}
	for i := range pos.means {
		p, n := &pos.means[i], &neg.means[i]
		if len(p.sum) != len(n.sum) {
			return nil, fmt.Errorf("vectors %q layer %d: positive width %d, negative width %d: %w", name, pos.Layers[i], len(p.sum), len(n.sum), ErrWidth)
		}
		s.Vectors = append(s.Vectors, p.diff(n))
	}
	return s, s.Validate()
}

// nonFinite returns the index of the first NaN or ±Inf in v, or −1.
func nonFinite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}

// FormatLayers prints layers compactly, as ParseLayers reads them: "1-4,7".
func FormatLayers(ls []int) string {
	if len(ls) == 0 {
		return "none"
	}
	var b []byte
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(ls[i]), 10)
		if j > i {
			b = append(b, '-')
			b = strconv.AppendInt(b, int64(ls[j]), 10)
		}
		i = j + 1
	}
	return string(b)
}

// ParseLayers reads a layer list such as "3", "1,4,7" or "8-20" for a model
// of numLayers layers: ascending, no repeats, every layer in the model. An
// empty list is nil, which callers read as every layer.
func ParseLayers(s string, numLayers int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("layers %q: %q is not a layer or a range such as 8-20", s, part)
		}
		for l := a; l <= b; l++ {
			if l < 0 || l >= numLayers {
				return nil, fmt.Errorf("layers %q: layer %d, the model has layers 0-%d: %w", s, l, numLayers-1, engine.ErrLayer)
			}
			if len(out) > 0 && l <= out[len(out)-1] {
				return nil, fmt.Errorf("layers %q: layers must be ascending without repeats", s)
			}
			out = append(out, l)
		}
	}
	return out, nil
}
