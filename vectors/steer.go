package vectors

import (
	"context"
	"fmt"
	"math"

	"persona/chat"
	"persona/engine"
	"persona/resid"
)

// Steer returns the persona-vectors steering intervention at one layer,
// h ← h + coeff·v (v unnormalised, as in the paper: coeff ≈ 0.5–2.5 induces
// the trait, negative coefficients suppress it).
func (s *Set) Steer(layer int, coeff float32, where resid.Where) (*resid.Add, error) {
	if math.IsNaN(float64(coeff)) || math.IsInf(float64(coeff), 0) {
		return nil, fmt.Errorf("vectors %q: steering coefficient %g: %w", s.Name, coeff, ErrNotFinite)
	}
	v, err := s.Vector(layer)
	if err != nil {
		return nil, err
	}
	if j := nonFinite(v); j >= 0 {
		return nil, fmt.Errorf("vectors %q layer %d element %d is %g: %w", s.Name, layer, j, v[j], ErrNotFinite)
	}
	return &resid.Add{At: layer, Vector: v, Coeff: coeff, Where: where}, nil
}

// SteerAll steers at every layer of the set with the same coefficient: what
// llama.cpp does with a control-vector file loaded at strength coeff (which
// acts at every position, i.e. where = resid.All).
func (s *Set) SteerAll(coeff float32, where resid.Where) ([]resid.Intervention, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	out := make([]resid.Intervention, 0, len(s.Layers))
	for _, l := range s.Layers {
		a, err := s.Steer(l, coeff, where)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Cap returns the assistant-axis activation cap on a band of layers:
// h ← h + â·max(τ − ⟨h,â⟩, 0) at every position, with â the unit direction
// of each layer's vector and τ = floors[i] for layers[i] (in the units of
// Project: typically the 25th percentile of ordinary Assistant responses).
func (s *Set) Cap(layers []int, floors []float32) ([]resid.Intervention, error) {
	if len(layers) != len(floors) {
		return nil, fmt.Errorf("vectors %q: cap on %d layers with %d floors", s.Name, len(layers), len(floors))
	}
	out := make([]resid.Intervention, 0, len(layers))
	for i, l := range layers {
		f := floors[i]
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("vectors %q layer %d: cap floor %g: %w", s.Name, l, f, ErrNotFinite)
		}
		u, err := s.Unit(l)
		if err != nil {
			return nil, err
		}
		out = append(out, &resid.Clamp{At: l, Direction: u, Floor: &f, Where: resid.All})
	}
	return out, nil
}

// Ablate returns directional ablation at one layer, h ← h − ⟨h,â⟩â at every
// position: the trait's direction removed from the stream.
func (s *Set) Ablate(layer int) (*resid.Ablate, error) {
	u, err := s.Unit(layer)
	if err != nil {
		return nil, err
	}
	return &resid.Ablate{At: layer, Direction: u, Where: resid.All}, nil
}

// Interventions checks the set against a model's depth and width (clear
// errors for the wrong model) and builds the resid.Set the engine applies.
// ivs are normally made by Steer, SteerAll, Cap or Ablate on this set.
func (s *Set) Interventions(numLayers, hidden int, ivs ...resid.Intervention) (*resid.Set, error) {
	if err := s.Check(numLayers, hidden); err != nil {
		return nil, err
	}
	return resid.NewSet(numLayers, hidden, ivs...)
}

// Steered is one reply generated with c·v added at a layer.
type Steered struct {
	Coeff float64 `json:"coeff"`
	Layer int     `json:"layer"`
	Text  string  `json:"text"`
}

// SteerReplies generates the next assistant turn of msgs once per
// coefficient, with c·v[layer] added at the positions where selects: a quick
// look at what a vector does (coefficient 0 is the unsteered model).
func (s *Set) SteerReplies(ctx context.Context, e *engine.Engine, msgs []chat.Message, layer int, coeffs []float64, where resid.Where, o engine.ReplyOptions) ([]Steered, error) {
	var out []Steered
	for _, c := range coeffs {
		add, err := s.Steer(layer, float32(c), where)
		if err != nil {
			return out, err
		}
		o.Interventions = []resid.Intervention{add}
		r, err := e.Reply(ctx, msgs, o)
		if err != nil {
			return out, err
		}
		out = append(out, Steered{c, layer, r.Text})
	}
	return out, nil
}
