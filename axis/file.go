package axis

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"persona/engine"
	"persona/resid"
	"persona/vectors"
)

// Axis is an assistant axis ready to use on a model: the per-layer vectors
// and the thresholds Build measured with them.
type Axis struct {
	Set *vectors.Set
	// Tau[ℓ] is the capping floor and departure threshold at layer ℓ.
	Tau map[int]float64
	// CapLayers is the default capping band, DriftLayer the default
	// monitoring layer.
	CapLayers  []int
	DriftLayer int
}

// Load reads an axis file written by persona axis.
func Load(path string) (*Axis, error) {
	s, err := vectors.Load(path)
	if err != nil {
		return nil, err
	}
	a, err := FromSet(s)
	if err != nil {
		return nil, fmt.Errorf("axis %s: %w", path, err)
	}
	return a, nil
}

// FromSet reads the thresholds and layers from a set's metadata. A plain
// vector file (a persona vector, say) is refused: without τ it can neither
// cap nor say when a conversation left the Assistant.
func FromSet(s *vectors.Set) (*Axis, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	a := &Axis{Set: s, Tau: map[int]float64{}}
	raw, ok := s.Meta[MetaTau]
	if !ok {
		return nil, fmt.Errorf("vectors %q have no %s metadata: not an assistant axis (make one with persona axis)", s.Name, MetaTau)
	}
	parts := strings.Split(raw, ",")
	if len(parts) != len(s.Layers) {
		return nil, fmt.Errorf("metadata %s has %d values for %d layers", MetaTau, len(parts), len(s.Layers))
	}
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("metadata %s value %d is %q, want a finite number", MetaTau, i+1, p)
		}
		a.Tau[s.Layers[i]] = v
	}
	if a.CapLayers, ok = parseInts(s.Meta[MetaCapLayers]); !ok || len(a.CapLayers) == 0 {
		return nil, fmt.Errorf("metadata %s is %q, want a comma-separated list of layers", MetaCapLayers, s.Meta[MetaCapLayers])
	}
	dl, ok := parseInts(s.Meta[MetaDriftLayer])
	if !ok || len(dl) != 1 {
		return nil, fmt.Errorf("metadata %s is %q, want one layer", MetaDriftLayer, s.Meta[MetaDriftLayer])
	}
	a.DriftLayer = dl[0]
	for _, l := range append(slices.Clone(a.CapLayers), a.DriftLayer) {
		if _, ok := a.Tau[l]; !ok {
			return nil, fmt.Errorf("metadata names layer %d, the file has layers %v: %w", l, s.Layers, engine.ErrLayer)
		}
	}
	return a, nil
}

// Check is vectors.Set.Check: the axis must come from a model of this depth
// and width.
func (a *Axis) Check(numLayers, hidden int) error { return a.Set.Check(numLayers, hidden) }

// Project returns act's projection on the unit axis at a layer, in the
// units of Tau.
func (a *Axis) Project(layer int, act []float32) (float64, error) { return a.Set.Project(layer, act) }

// Cap returns the activation-capping interventions on the given layers
// (nil: the default band), each with its layer's τ as the floor:
// h ← h + â·max(τ − ⟨h,â⟩, 0) at every position.
func (a *Axis) Cap(layers []int) ([]resid.Intervention, error) {
	if layers == nil {
		layers = a.CapLayers
	}
	floors := make([]float32, len(layers))
	for i, l := range layers {
		t, ok := a.Tau[l]
		if !ok {
			return nil, fmt.Errorf("axis has no layer %d to cap (it has %v): %w", l, a.Set.Layers, engine.ErrLayer)
		}
		floors[i] = float32(t)
	}
	return a.Set.Cap(layers, floors)
}

func parseInts(s string) ([]int, bool) {
	if strings.TrimSpace(s) == "" {
		return nil, false
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			return nil, false
		}
		out = append(out, v)
	}
	return out, true
}
