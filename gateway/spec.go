package gateway

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"persona/internal/yamlstrict"
	"persona/personas"
	"persona/vectors"
)

// Spec is a brand persona: who the deployed model is, which personas of a
// library it may and may not slip into, how that is watched and what the
// rails do when it slips.
type Spec struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// SystemPrompt is put before every conversation; a client's own system
	// messages follow it.
	SystemPrompt string `yaml:"system_prompt"`
	// Disclosure is what users are told about the model they talk to
	// (served by GET /v1/persona and on the card).
	Disclosure string `yaml:"disclosure"`
	// Personas is the library the monitor reads: "organism" (embedded) or
	// a directory.
	Personas string `yaml:"personas"`
	// Allowed are the personas the deployment may be in; Forbidden those
	// it must not (default: every other persona of the library).
	Allowed   []string `yaml:"allowed"`
	Forbidden []string `yaml:"forbidden"`
	// Monitor names how each turn is read: "posterior" (the served model's
	// own likelihood under each persona's prompt; white-box), "activations"
	// (the served model's activations read by the classifier its directory
	// carries, posterior-classifier.json: one forward pass, and better on
	// wording the model was not trained on), "judge" (a
	// judge backend rates the replies; any upstream), "oracle" (the
	// persona world's rule-based reader; the organism only) or "none" (no
	// persona reading: rails act on Bounds alone, at no cost beyond the
	// projections).
	Monitor string `yaml:"monitor"`
	// SwitchRate is the posterior's per-turn persona switch rate.
	SwitchRate *float64 `yaml:"switch_rate"`
	// WholeConversation has the posterior monitor read each reply given the
	// whole conversation before it. By default it reads each reply after its
	// own user turn only, so a conversation that made a persona likely
	// (role-play pressure) does not vouch for a reply in that persona.
	WholeConversation bool   `yaml:"whole_conversation"`
	Rails             []Rail `yaml:"rails"`
	// Midstream is how often (in generated tokens; default 16, 0: never)
	// rails whose action is cap or steer read a reply while the embedded
	// engine writes it, so their control acts on the rest of that reply
	// instead of a new one.
	Midstream *int `yaml:"midstream"`
	// BlockMessage replaces a reply the rails could not bring back.
	BlockMessage string `yaml:"block_message"`
	// Principles guide the critique-and-revise action.
	Principles []string `yaml:"principles"`
	// Upstream is the model the deployment serves: a model for the embedded
	// engine (a path, or "organism"), or a backend entry (an
	// OpenAI-compatible or Anthropic API, with retries and failover) of the
	// server's --backend config. persona serve --model overrides it.
	Upstream Upstream `yaml:"upstream"`
	// Vectors names persona vectors (files from persona vectors extract, or
	// llama.cpp control vectors; relative paths are beside the spec) that
	// Steer and requests may steer with; Steer is the steering every reply
	// gets (name → strength). White-box upstreams only.
	Vectors map[string]string  `yaml:"vectors"`
	Steer   map[string]float64 `yaml:"steer"`
	// Capping holds the persona on an assistant axis: on every reply
	// (always), with the cap action, or when a request asks.
	Capping *SpecCapping `yaml:"capping"`
	// Bounds are trait bounds: the range a reply's mean projection on a
	// persona vector (a name under vectors) or on the capping axis
	// ("assistant_axis") must stay in (embedded engine), or the range of a
	// judge's 0–100 score of the reply on a trait (any upstream). Every
	// reply's projections and scores are returned and logged; a rail with
	// out_of_bounds acts when one leaves its range.
	Bounds map[string]Bound `yaml:"bounds"`
	// Overrides lists what a request's "persona" field may change: "steer"
	// (strengths of the named vectors) and "cap" (capping on or off). None
	// by default: a client cannot steer the deployment.
	Overrides []string `yaml:"overrides"`
	// Evidence points the card at stored measurements of this deployment.
	Evidence *SpecEvidence `yaml:"evidence"`
	// Watermark marks every reply of the deployment (persona serve
	// --watermark overrides it); its key comes from a file or the
	// environment, never from the spec itself.
	Watermark *SpecWatermark `yaml:"watermark"`

	File               string            `yaml:"-"`
	Library            *personas.Library `yaml:"-"`
	allowed, forbidden map[string]bool
	traits             map[string]*vectors.TraitSpec
}

// Bound is a trait bound: the range of a reply's mean projection on a
// direction, read at Layer (default: the axis's monitoring layer, or the
// last layer of the vector file).
type Bound struct {
	Layer *int     `yaml:"layer"`
	Min   *float64 `yaml:"min"`
	Max   *float64 `yaml:"max"`
	// Trait, instead of a projection, bounds a judge's 0–100 score of the
	// reply on a trait: a persona-vectors trait file (relative paths are
	// beside the spec), scored by the spec's judge backend, or by the
	// world's oracle on the organism.
	Trait string `yaml:"trait"`
}

// AxisName is the name Bounds and telemetry give the capping axis.
const AxisName = "assistant_axis"

// Upstream names what a spec serves; see Spec.Upstream.
type Upstream struct {
	Model   string `yaml:"model"`
	Backend string `yaml:"backend"`
}

// SpecWatermark says how a deployment marks its output.
type SpecWatermark struct {
	Scheme  string `yaml:"scheme"`
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	Context int    `yaml:"context"`
}

// Key reads the watermark key. A relative key file is found beside the
// spec.
func (w *SpecWatermark) Key(specFile string) ([]byte, error) {
	var raw []byte
	switch {
	case w.KeyFile != "":
		p := w.KeyFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(specFile), p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("watermark key: %w", err)
		}
		raw = data
	case w.KeyEnv != "":
		raw = []byte(os.Getenv(w.KeyEnv))
	}
	key := []byte(strings.TrimSpace(string(raw)))
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: the watermark key (%s%s) is empty", ErrSpec, w.KeyFile, w.KeyEnv)
	}
	return key, nil
}

// Rail is one rule: when its condition holds on the conversation's
// reading, its action is taken.
type Rail struct {
	Name string `yaml:"name"`
	// When: the reply is taken as off-persona if any set condition holds.
	When Condition `yaml:"when"`
	// Action is reanchor (generate again with the system prompt placed
	// again before the last user turn), cap (turn the spec's activation
	// capping on), steer (add Steer to the reply's steering), revise (a
	// critic rewrites the reply against the principles) or block (the block
	// message instead). Cap and steer act in the middle of the reply when
	// the rail fires while it is written (see Spec.Midstream), and
	// otherwise generate it again with the control on.
	Action string `yaml:"action"`
	// Steer is the steering the steer action adds (vector name → strength;
	// typically a negative strength on the trait the rail guards against).
	Steer map[string]float64 `yaml:"steer"`
	// Retries is how many times reanchor or revise may try (default 2);
	// Then is the action when they are used up (default block).
	Retries int    `yaml:"retries"`
	Then    string `yaml:"then"`
}

// Condition is a test on the persona distribution the monitor read,
// turn by turn.
type Condition struct {
	// ForbiddenAbove: the forbidden personas' total probability on the
	// newest turn exceeds this.
	ForbiddenAbove *float64 `yaml:"forbidden_above"`
	// AllowedBelow: the allowed personas' total probability on the newest
	// turn is below this.
	AllowedBelow *float64 `yaml:"allowed_below"`
	// SlopeBelow with Window: the allowed probability's least-squares slope
	// over the newest Window turns (including this one) is below this: a
	// slide that has not yet crossed a threshold.
	SlopeBelow *float64 `yaml:"slope_below"`
	Window     int      `yaml:"window"`
	// OutOfBounds: a projection of the newest reply is outside its range
	// in the spec's bounds.
	OutOfBounds bool `yaml:"out_of_bounds"`
}

// readsPersonas reports a condition on the monitor's persona reading.
func (c Condition) readsPersonas() bool {
	return c.ForbiddenAbove != nil || c.AllowedBelow != nil || c.SlopeBelow != nil
}

// Actions are the rail actions.
var Actions = []string{"reanchor", "cap", "steer", "revise", "block"}

// midstream is Spec.Midstream with its default.
func (s *Spec) midstream() int {
	if s.Midstream == nil {
		return 16
	}
	return *s.Midstream
}

// Monitors are the ways a turn can be read.
var Monitors = []string{"posterior", "activations", "judge", "oracle", "none"}

// ErrSpec is returned for a spec that cannot be used.
var ErrSpec = errors.New("bad persona spec")

// LoadSpec reads and checks a spec. Errors name the file and line.
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSpec(path, data)
}

// ParseSpec parses spec YAML; file names it in errors.
func ParseSpec(file string, data []byte) (*Spec, error) {
	fail := func(e *yamlstrict.Error) (*Spec, error) { return nil, fmt.Errorf("%w: %w", ErrSpec, e) }
	root, err := yamlstrict.Root(data)
	if err != nil {
		return fail(yamlstrict.FileError(file, err))
	}
	if root == nil {
		return fail(&yamlstrict.Error{File: file, Msg: "empty spec"})
	}
	s := &Spec{File: file}
	more, moreLine, err := yamlstrict.Decode(data, s)
	if err != nil {
		return fail(yamlstrict.FileError(file, err))
	}
	if more {
		return fail(&yamlstrict.Error{File: file, Line: moreLine, Msg: "a spec file holds one YAML document"})
	}
	at := func(field string, path ...string) *yamlstrict.Error {
		return &yamlstrict.Error{File: file, Line: yamlstrict.LineOf(root, path...), Field: field}
	}
	bad := func(field string, path []string, format string, args ...any) (*Spec, error) {
		e := at(field, path...)
		e.Msg = fmt.Sprintf(format, args...)
		return fail(e)
	}
	if s.Name == "" {
		return bad("name", []string{"name"}, "missing")
	}
	if s.SystemPrompt == "" {
		return bad("system_prompt", []string{"system_prompt"}, "missing: the prompt that makes the model the brand persona")
	}
	if s.Monitor == "" {
		s.Monitor = "posterior"
	}
	if !slices.Contains(Monitors, s.Monitor) {
		return bad("monitor", []string{"monitor"}, "%q: want posterior, activations, judge, oracle or none", s.Monitor)
	}
	if s.Midstream != nil && (*s.Midstream < 0 || *s.Midstream > 4096) {
		return bad("midstream", []string{"midstream"}, "%d: want a number of tokens in 0–4096 (0: rails read whole replies only)", *s.Midstream)
	}
	if s.SwitchRate != nil && !(*s.SwitchRate >= 0 && *s.SwitchRate < 1) {
		return bad("switch_rate", []string{"switch_rate"}, "%g must be in [0, 1)", *s.SwitchRate)
	}
	lib, err := loadLibrary(s.Personas)
	if err != nil {
		return bad("personas", []string{"personas"}, "%v", err)
	}
	s.Library = lib
	s.allowed, s.forbidden = map[string]bool{}, map[string]bool{}
	if len(s.Allowed) == 0 {
		return bad("allowed", []string{"allowed"}, "name at least one persona of the library the deployment may be in")
	}
	for i, field := range []string{"allowed", "forbidden"} {
		set := []map[string]bool{s.allowed, s.forbidden}[i]
		for j, n := range [][]string{s.Allowed, s.Forbidden}[i] {
			if _, err := lib.Get(n); err != nil {
				return bad(fmt.Sprintf("%s[%d]", field, j), []string{field, strconv.Itoa(j)}, "%v", err)
			}
			set[n] = true
		}
	}
	for n := range s.allowed {
		if s.forbidden[n] {
			return bad("forbidden", []string{"forbidden"}, "%q is both allowed and forbidden", n)
		}
	}
	if len(s.Forbidden) == 0 {
		for _, n := range lib.Names() {
			if !s.allowed[n] {
				s.forbidden[n] = true
				s.Forbidden = append(s.Forbidden, n)
			}
		}
	}
	if s.Upstream.Model != "" && s.Upstream.Backend != "" {
		return bad("upstream", []string{"upstream"}, "name a model or a backend, not both")
	}
	if s.Upstream.Backend != "" && (s.Monitor == "posterior" || s.Monitor == "activations") {
		return bad("monitor", []string{"monitor"}, "an API upstream gives no likelihoods or activations to read: use monitor: judge (or oracle for the organism's world)")
	}
	if w := s.Watermark; w != nil {
		if (w.KeyFile == "") == (w.KeyEnv == "") {
			return bad("watermark", []string{"watermark"}, "give the key as key_file or key_env (one of them; never the key itself)")
		}
		if w.Scheme != "green" && w.Scheme != "gumbel" {
			return bad("watermark.scheme", []string{"watermark", "scheme"}, "%q: want green or gumbel", w.Scheme)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Vectors)) {
		if s.Vectors[name] == "" {
			return bad("vectors."+name, []string{"vectors", name}, "no file")
		}
	}
	// steering checks strengths by vector name, at field (path in the YAML).
	steering := func(m map[string]float64, field string, path []string) (*Spec, error) {
		for _, name := range slices.Sorted(maps.Keys(m)) {
			at := append(slices.Clone(path), name)
			if _, ok := s.Vectors[name]; !ok {
				return bad(field+"."+name, at, "no vector %q under vectors", name)
			}
			if v := m[name]; math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 100 {
				return bad(field+"."+name, at, "strength %g must be finite and within ±100", v)
			}
		}
		return s, nil
	}
	if _, err := steering(s.Steer, "steer", []string{"steer"}); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(s.Bounds)) {
		b, at := s.Bounds[name], []string{"bounds", name}
		if b.Trait != "" {
			if b.Layer != nil {
				return bad("bounds."+name, at, "a judge's trait score has no layer")
			}
			for _, v := range []*float64{b.Min, b.Max} {
				if v != nil && !(*v >= 0 && *v <= 100) {
					return bad("bounds."+name, at, "%g: a trait score is 0–100", *v)
				}
			}
			t, err := vectors.LoadTraitSpec(s.path(b.Trait))
			if err != nil {
				return bad("bounds."+name+".trait", at, "%v", err)
			}
			if s.traits == nil {
				s.traits = map[string]*vectors.TraitSpec{}
			}
			s.traits[name] = t
		} else if _, ok := s.Vectors[name]; !ok && !(name == AxisName && s.Capping != nil) {
			return bad("bounds."+name, at, "no vector %q under vectors (or %s with a capping axis), and no trait file", name, AxisName)
		}
		if b.Min == nil && b.Max == nil {
			return bad("bounds."+name, at, "give min, max or both")
		}
		for _, v := range []*float64{b.Min, b.Max} {
			if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
				return bad("bounds."+name, at, "bounds must be finite")
			}
		}
		if b.Min != nil && b.Max != nil && *b.Min > *b.Max {
			return bad("bounds."+name, at, "min %g above max %g", *b.Min, *b.Max)
		}
		if b.Layer != nil && *b.Layer < 0 {
			return bad("bounds."+name+".layer", at, "layer %d", *b.Layer)
		}
	}
	if s.Capping != nil && s.Capping.Axis == "" {
		return bad("capping.axis", []string{"capping"}, "missing: the axis file (persona axis --out) to cap on")
	}
	for i, o := range s.Overrides {
		if !slices.Contains(Overrides, o) {
			return bad(fmt.Sprintf("overrides[%d]", i), []string{"overrides", strconv.Itoa(i)}, "%q: want steer, cap or spec", o)
		}
	}
	if (len(s.Vectors) > 0 || s.Capping != nil) && s.Upstream.Backend != "" {
		return bad("upstream", []string{"upstream"}, "steering and capping act on the model's activations: an API upstream has none to change")
	}
	for i := range s.Rails {
		r := &s.Rails[i]
		path := func(f ...string) []string { return append([]string{"rails", strconv.Itoa(i)}, f...) }
		field := fmt.Sprintf("rails[%d]", i)
		if r.Name == "" {
			r.Name = fmt.Sprintf("rail-%d", i+1)
		}
		c := r.When
		if !c.readsPersonas() && !c.OutOfBounds {
			return bad(field+".when", path("when"), "no condition: set forbidden_above, allowed_below, slope_below or out_of_bounds")
		}
		if c.readsPersonas() && s.Monitor == "none" {
			return bad(field+".when", path("when"), "rail %s reads personas, and monitor none reads none (out_of_bounds needs no monitor)", r.Name)
		}
		if c.OutOfBounds && len(s.Bounds) == 0 {
			return bad(field+".when.out_of_bounds", path("when"), "rail %s acts out of bounds, and the spec has no bounds", r.Name)
		}
		for name, v := range map[string]*float64{"forbidden_above": c.ForbiddenAbove, "allowed_below": c.AllowedBelow} {
			if v != nil && !(*v >= 0 && *v <= 1) {
				return bad(field+".when."+name, path("when", name), "%g is not a probability", *v)
			}
		}
		if c.SlopeBelow != nil && c.Window < 2 {
			return bad(field+".when.window", path("when"), "slope_below needs a window of at least 2 turns")
		}
		if !slices.Contains(Actions, r.Action) {
			return bad(field+".action", path("action"), "%q: want reanchor, cap, steer, revise or block", r.Action)
		}
		if r.Then == "" {
			r.Then = "block"
		}
		if !slices.Contains(Actions, r.Then) || r.Then == r.Action && r.Action != "block" {
			return bad(field+".then", path("then"), "%q: want an action other than %s", r.Then, r.Action)
		}
		if r.Retries == 0 {
			r.Retries = 2
		}
		if r.Retries < 0 || r.Retries > 8 {
			return bad(field+".retries", path("retries"), "%d: want 1–8", r.Retries)
		}
		if (r.Action == "block" || r.Then == "block") && s.BlockMessage == "" {
			return bad("block_message", []string{"block_message"}, "rail %s can block, so the spec needs a block_message", r.Name)
		}
		if (r.Action == "cap" || r.Then == "cap") && s.Capping == nil {
			return bad("capping", []string{"rails", strconv.Itoa(i)}, "rail %s caps, so the spec needs a capping axis", r.Name)
		}
		if r.Action == "steer" || r.Then == "steer" {
			if len(r.Steer) == 0 {
				return bad(field+".steer", path(), "rail %s steers, so it needs steer: {vector: strength}", r.Name)
			}
			if _, err := steering(r.Steer, field+".steer", path("steer")); err != nil {
				return nil, err
			}
		} else if len(r.Steer) > 0 {
			return bad(field+".steer", path("steer"), "only a rail whose action is steer steers")
		}
		if (r.Action == "revise" || r.Then == "revise") && len(s.Principles) == 0 {
			return bad("principles", []string{"principles"}, "rail %s revises, so the spec needs principles to revise against", r.Name)
		}
	}
	return s, nil
}

func loadLibrary(dir string) (*personas.Library, error) {
	if dir == "" || dir == "organism" {
		return personas.Default(), nil
	}
	return personas.Load(dir)
}

// mass sums the probability of the names in set.
func mass(names []string, probs []float64, set map[string]bool) float64 {
	var m float64
	for i, n := range names {
		if set[n] {
			m += probs[i]
		}
	}
	return m
}

// fires reports whether c holds on the newest turn of the reading, and
// why.
func (s *Spec) fires(c Condition, rd *Reading) (bool, string) {
	if c.OutOfBounds {
		for _, name := range slices.Sorted(maps.Keys(s.Bounds)) {
			v, ok, what := rd.Projections[name], false, "projection"
			if _, ok = rd.Projections[name]; !ok {
				v, ok = rd.Scores[name]
				what = "score"
			}
			if b := s.Bounds[name]; ok && b.Min != nil && v < *b.Min {
				return true, fmt.Sprintf("%s %s %.3g < %.3g", name, what, v, *b.Min)
			} else if ok && b.Max != nil && v > *b.Max {
				return true, fmt.Sprintf("%s %s %.3g > %.3g", name, what, v, *b.Max)
			}
		}
	}
	if len(rd.Turns) == 0 {
		return false, ""
	}
	last := rd.Turns[len(rd.Turns)-1]
	if c.ForbiddenAbove != nil {
		if m := mass(rd.Names, last, s.forbidden); m > *c.ForbiddenAbove {
			return true, fmt.Sprintf("forbidden personas at %.2f > %.2f", m, *c.ForbiddenAbove)
		}
	}
	if c.AllowedBelow != nil {
		if m := mass(rd.Names, last, s.allowed); m < *c.AllowedBelow {
			return true, fmt.Sprintf("allowed personas at %.2f < %.2f", m, *c.AllowedBelow)
		}
	}
	if c.SlopeBelow != nil && len(rd.Turns) >= c.Window {
		ys := make([]float64, c.Window)
		for i := range ys {
			ys[i] = mass(rd.Names, rd.Turns[len(rd.Turns)-c.Window+i], s.allowed)
		}
		if sl := slope(ys); sl < *c.SlopeBelow {
			return true, fmt.Sprintf("allowed personas falling %.3f a turn over %d turns", sl, c.Window)
		}
	}
	return false, ""
}

// slope is the least-squares slope of ys against 0, 1, 2, ….
func slope(ys []float64) float64 {
	n := float64(len(ys))
	var sx, sy, sxy, sxx float64
	for i, y := range ys {
		x := float64(i)
		sx, sy, sxy, sxx = sx+x, sy+y, sxy+x*y, sxx+x*x
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}
