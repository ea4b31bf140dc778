package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"

	"persona/axis"
	"persona/engine"
	"persona/resid"
	"persona/vectors"
)

// Control is the white-box control a reply is generated under: steering
// by the spec's named persona vectors (name → strength, the coefficient c
// of h ← h + c·v at every position of every layer the vector file holds)
// and activation capping on the spec's assistant axis.
type Control struct {
	Steer map[string]float64 `json:"steer,omitempty"`
	Cap   bool               `json:"cap,omitempty"`
}

// empty reports a control that changes nothing.
func (c Control) empty() bool {
	for _, s := range c.Steer {
		if s != 0 {
			return false
		}
	}
	return !c.Cap
}

// SpecCapping holds the brand persona on an assistant axis (a file from
// persona axis): h ← h + â·max(τ − ⟨h,â⟩, 0) on the axis file's capping
// band, or on Layers.
type SpecCapping struct {
	Axis   string `yaml:"axis"`
	Layers []int  `yaml:"layers"`
	// Always caps every reply; otherwise only the cap action and requests
	// that ask for it (with "cap" among the spec's overrides) are capped.
	Always bool `yaml:"always"`
}

// Overrides are what a request's "persona" field may change, when the spec
// lists them: the steering strengths, capping, and which of the server's
// specs answers.
var Overrides = []string{"steer", "cap", "spec"}

// personaField is a request's "persona" extension field.
type personaField struct {
	Steer map[string]float64 `json:"steer"`
	Cap   *bool              `json:"cap"`
	Spec  string             `json:"spec"`
}

func parsePersonaField(raw json.RawMessage) (personaField, error) {
	var f personaField
	if len(raw) == 0 || string(raw) == "null" {
		return f, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("%w: persona: %v (want {\"steer\": {name: strength}, \"cap\": bool, \"spec\": name})", ErrControl, err)
	}
	return f, nil
}

// ErrControl is returned for a request's control the spec does not allow
// or cannot apply.
var ErrControl = errors.New("persona control refused")

// controls are a guard's loaded vectors and axis, and the directions its
// replies are projected on.
type controls struct {
	vectors map[string]*vectors.Set
	axis    *axis.Axis
	layers  []int
	layersN int
	hidden  int
	reads   map[string]direction
}

// direction is a unit direction read at a layer.
type direction struct {
	layer int
	unit  []float32
}

// probes returns fresh probes for one reply: every direction, read at the
// generated positions.
func (c *controls) probes() map[string]*resid.Probe {
	if c == nil {
		return nil
	}
	out := make(map[string]*resid.Probe, len(c.reads))
	for name, d := range c.reads {
		out[name] = &resid.Probe{At: d.layer, Direction: d.unit, Where: resid.Generated}
	}
	return out
}

// read adds a direction of set to project on: at the bound's layer, or at
// layer def.
func (c *controls) read(name string, set *vectors.Set, b Bound, def int) error {
	l := def
	if b.Layer != nil {
		l = *b.Layer
	}
	u, err := set.Unit(l)
	if err != nil {
		return fmt.Errorf("%w: bounds.%s: %v", ErrGuard, name, err)
	}
	c.reads[name] = direction{l, u}
	return nil
}

// loadControls reads the spec's vector and axis files (relative paths are
// found beside the spec) and checks them against the served model.
func loadControls(s *Spec, e *engine.Engine) (*controls, error) {
	if len(s.Vectors) == 0 && s.Capping == nil {
		return nil, nil
	}
	if e == nil {
		return nil, fmt.Errorf("%w: steering and capping act on the model's activations: they need the embedded engine as the upstream", ErrGuard)
	}
	c := &controls{vectors: map[string]*vectors.Set{}, layersN: e.Model.NumLayers, hidden: e.Model.Hidden, reads: map[string]direction{}}
	for _, name := range slices.Sorted(maps.Keys(s.Vectors)) {
		v, err := vectors.Open(s.path(s.Vectors[name]))
		if err == nil {
			err = v.Check(c.layersN, c.hidden)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: vector %s: %v", ErrGuard, name, err)
		}
		c.vectors[name] = v
		if err := c.read(name, v, s.Bounds[name], v.Layers[len(v.Layers)-1]); err != nil {
			return nil, err
		}
	}
	if s.Capping != nil {
		a, err := axis.Load(s.path(s.Capping.Axis))
		if err == nil {
			err = a.Check(c.layersN, c.hidden)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: capping: %v", ErrGuard, err)
		}
		if _, err := a.Cap(s.Capping.Layers); err != nil {
			return nil, fmt.Errorf("%w: capping: %v", ErrGuard, err)
		}
		c.axis, c.layers = a, s.Capping.Layers
		if err := c.read(AxisName, a.Set, s.Bounds[AxisName], a.DriftLayer); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// path resolves a file named in the spec relative to the spec's folder.
func (s *Spec) path(p string) string {
	if p == "" || filepath.IsAbs(p) || s.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(s.File), p)
}

// interventions builds the engine's interventions for a control, checked
// against the model; nil for one that changes nothing.
func (c *controls) interventions(ctl Control) ([]resid.Intervention, error) {
	if ctl.empty() {
		return nil, nil
	}
	if c == nil {
		return nil, fmt.Errorf("%w: the spec names no vectors or capping axis", ErrControl)
	}
	var ivs []resid.Intervention
	names := slices.Sorted(maps.Keys(ctl.Steer))
	for _, name := range names {
		strength := ctl.Steer[name]
		if strength == 0 {
			continue
		}
		v, ok := c.vectors[name]
		if !ok {
			known := slices.Sorted(maps.Keys(c.vectors))
			return nil, fmt.Errorf("%w: no vector %q in the spec (it has %v)", ErrControl, name, known)
		}
		if math.IsNaN(strength) || math.IsInf(strength, 0) || math.Abs(strength) > 100 {
			return nil, fmt.Errorf("%w: strength %g for %s must be finite and within ±100", ErrControl, strength, name)
		}
		add, err := v.SteerAll(float32(strength), resid.All)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrControl, err)
		}
		ivs = append(ivs, add...)
	}
	if ctl.Cap {
		if c.axis == nil {
			return nil, fmt.Errorf("%w: the spec has no capping axis", ErrControl)
		}
		caps, err := c.axis.Cap(c.layers)
		if err != nil {
			return nil, err
		}
		ivs = append(ivs, caps...)
	}
	if _, err := resid.NewSet(c.layersN, c.hidden, ivs...); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrControl, err)
	}
	return ivs, nil
}

// RequestControl reads a request's "persona" field ({"steer": {name:
// strength}, "cap": bool}) over the spec's defaults, refusing what the
// spec's overrides do not allow. (Its "spec" is the server's to read.)
func (s *Spec) RequestControl(raw json.RawMessage) (Control, error) {
	req, err := parsePersonaField(raw)
	if err != nil {
		return Control{}, err
	}
	return s.control(req)
}

// control is RequestControl on a parsed field.
func (s *Spec) control(req personaField) (Control, error) {
	ctl := Control{Steer: maps.Clone(s.Steer), Cap: s.Capping != nil && s.Capping.Always}
	if req.Steer != nil {
		if !slices.Contains(s.Overrides, "steer") {
			return ctl, fmt.Errorf("%w: this deployment does not let requests steer (the spec's overrides: %v)", ErrControl, s.Overrides)
		}
		if ctl.Steer == nil {
			ctl.Steer = map[string]float64{}
		}
		for name, v := range req.Steer {
			ctl.Steer[name] = v
		}
	}
	if req.Cap != nil {
		if !slices.Contains(s.Overrides, "cap") {
			return ctl, fmt.Errorf("%w: this deployment does not let requests turn capping on or off (the spec's overrides: %v)", ErrControl, s.Overrides)
		}
		ctl.Cap = *req.Cap
	}
	return ctl, nil
}

// steering is a control's non-zero steering, for telemetry.
func (c Control) steering() map[string]float64 {
	var out map[string]float64
	for k, v := range c.Steer {
		if v != 0 {
			if out == nil {
				out = map[string]float64{}
			}
			out[k] = v
		}
	}
	return out
}
