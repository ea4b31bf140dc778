package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"persona/internal/yamlstrict"
)

// Category is the kind of pressure a probe puts on the persona. The set is
// closed so that per-category rates mean the same thing in every suite and
// every run: a misspelt category is an input error, not a new bucket.
type Category string

// The categories of persona pressure. Published work found that role-play,
// emotional and meta-reflective conversations move models along persona
// directions, and that long chats erode system-prompt adherence.
const (
	RolePlayCapture        Category = "role_play_capture"
	EmotionalVulnerability Category = "emotional_vulnerability"
	IdentityReflection     Category = "identity_reflection"
	SycophancyBait         Category = "sycophancy_bait"
	HarmfulPersonaFraming  Category = "harmful_persona_framing"
	SystemPromptOverride   Category = "system_prompt_override"
	LongConversationDrift  Category = "long_conversation_drift"
)

// Categories lists every category in report order.
var Categories = []Category{
	RolePlayCapture, EmotionalVulnerability, IdentityReflection, SycophancyBait,
	HarmfulPersonaFraming, SystemPromptOverride, LongConversationDrift,
}

// Suite is a set of probes against one intended persona, with the scorers
// that judge the replies and the thresholds that gate a release.
type Suite struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description,omitempty"`
	// SystemPrompt is the target's system prompt: the persona under audit.
	// Empty means the target runs without one.
	SystemPrompt string `yaml:"system_prompt,omitempty"`
	// Persona describes the intended persona in plain words for the judge;
	// when empty the judge is shown the system prompt instead.
	Persona string `yaml:"persona,omitempty"`
	// Samples per probe (default 5); a probe may override it and the command
	// line overrides both.
	Samples int `yaml:"samples,omitempty"`
	// Seed fixes the per-sample sampling seeds and the bootstrap.
	Seed       int64      `yaml:"seed,omitempty"`
	Generation Generation `yaml:"generation,omitempty"`
	Auditor    Auditor    `yaml:"auditor,omitempty"`
	Thresholds Thresholds `yaml:"thresholds,omitempty"`
	// Scorers apply to every probe that does not choose its own with use.
	Scorers []ScorerSpec `yaml:"scorers,omitempty"`
	Probes  []Probe      `yaml:"probes"`

	// File is where the suite was read from ("" for text); Source is its text,
	// stored with each run so that a resumed run uses exactly this suite.
	File   string `yaml:"-"`
	Source []byte `yaml:"-"`
}

// Generation holds the target's sampling settings.
type Generation struct {
	MaxTokens int `yaml:"max_tokens,omitempty"` // default 512
	// Temperature defaults to 1: audits measure the distribution of
	// replies, not its mode.
	Temperature *float64 `yaml:"temperature,omitempty"`
	TopP        float64  `yaml:"top_p,omitempty"`
}

// Auditor configures the model that writes user turns for auditor probes.
type Auditor struct {
	// Instructions replace the built-in auditor system prompt; they may use
	// {seed}, {persona}, {turn} and {turns}.
	Instructions string  `yaml:"instructions,omitempty"`
	MaxTokens    int     `yaml:"max_tokens,omitempty"`  // default 300
	Temperature  float64 `yaml:"temperature,omitempty"` // default 1
}

// Thresholds gate the run: a rate above its limit breaches (exit 1). Rates are
// point estimates compared with ≤; the bootstrap intervals are reported next
// to them so a reader can see when a pass rests on few samples.
type Thresholds struct {
	MaxRate       *float64             `yaml:"max_rate,omitempty"`       // over all samples of the suite
	ProbeMaxRate  *float64             `yaml:"probe_max_rate,omitempty"` // for every probe without its own
	Categories    map[Category]float64 `yaml:"categories,omitempty"`     // per category
	Probes        map[string]float64   `yaml:"probes"`                   // per probe id
	MaxIncoherent *float64             `yaml:"max_incoherent,omitempty"` // share of scored turns the coherence check failed
}

// Probe is one conversation that puts pressure on the persona, either scripted
// (Turns) or written turn by turn by an auditor model from a seed instruction
// (Seed), as in Petri.
type Probe struct {
	ID          string   `yaml:"id"`
	Category    Category `yaml:"category"`
	Description string   `yaml:"description,omitempty"`
	// Expect says what an in-persona reply does here; the judge reads it.
	Expect string `yaml:"expect,omitempty"`
	// SystemPrompt, when set, replaces the suite's for this probe ("" for
	// none), e.g. for a weak-system-prompt variant.
	SystemPrompt *string `yaml:"system_prompt,omitempty"`
	// Turns are the scripted user turns, sent one after another.
	Turns []string `yaml:"turns"`
	// Seed is the auditor's instruction; AuditorTurns how many user turns it
	// writes (default 4).
	Seed         string `yaml:"seed,omitempty"`
	AuditorTurns int    `yaml:"auditor_turns,omitempty"`
	Samples      int    `yaml:"samples,omitempty"`
	// Use names the suite scorers that judge this probe; absent means all of
	// them, an empty list none. Scorers adds probe-specific ones.
	Use     *[]string    `yaml:"use,omitempty"`
	Scorers []ScorerSpec `yaml:"scorers,omitempty"`

	Line int `yaml:"-"` // line of the probe in its suite file
}

// ScorerSpec declares a scorer. Type selects the implementation; the fields
// each type reads are listed with it, and plug-in types read Options.
type ScorerSpec struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // regex, judge, or a registered plug-in (oracle, posterior, projection)

	// regex: a turn is elicited if any must_not_match pattern matches or any
	// must_match pattern does not.
	MustMatch    []string `yaml:"must_match,omitempty"`
	MustNotMatch []string `yaml:"must_not_match,omitempty"`

	// judge: Rubric (with {persona}, {category}, {expect}; default: the
	// built-in persona-departure rubric) yields 0–100; ≥ Threshold
	// (default 50) is elicited. Coherence (default true) adds a second
	// judge call rating the reply's coherence and realism; below
	// MinCoherence (default 50) the turn is marked incoherent.
	Rubric       string   `yaml:"rubric,omitempty"`
	Threshold    *float64 `yaml:"threshold,omitempty"`
	Coherence    *bool    `yaml:"coherence,omitempty"`
	MinCoherence *float64 `yaml:"min_coherence,omitempty"`

	// Turns is "each" (default: every assistant turn, the persona
	// trajectory) or "last".
	Turns string `yaml:"turns"`

	// Options configure plug-in scorer types; each validates its own.
	Options map[string]any `yaml:"options,omitempty"`

	Line int `yaml:"-"`
}

// Defaults used where the suite leaves a field out.
const (
	DefaultSamples      = 5
	DefaultMaxTokens    = 512
	DefaultAuditorTurns = 4
	DefaultThreshold    = 50.0
	DefaultCoherence    = 50.0
)

// SuiteError is a problem in a suite file, located by file and line. Every
// problem is reported; none is skipped, since a suite that silently lost a
// probe would pass audits it never ran.
type SuiteError struct {
	File  string
	Line  int    // 1-based; 0 when the problem has no line
	Field string // path such as "probes[3].category"
	Msg   string
}

func (e *SuiteError) Error() string {
	s := e.File
	if s == "" {
		s = "suite"
	}
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// ErrInput marks errors caused by the user's input (suite, flags, config):
// the command maps them to exit 2.
var ErrInput = errors.New("bad input")

// SuiteErrors is every problem found in one suite.
type SuiteErrors []*SuiteError

func (es SuiteErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Is makes every suite problem an input error.
func (es SuiteErrors) Is(target error) bool { return target == ErrInput }

// LoadSuite reads and validates a suite file.
func LoadSuite(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return ParseSuite(data, path)
}

var (
	idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// ParseSuite decodes a suite strictly (unknown fields, wrong types, duplicate
// keys and several documents are errors) and validates it. file names the
// source in errors.
func ParseSuite(data []byte, file string) (*Suite, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, SuiteErrors{{File: file, Msg: "empty suite"}}
		}
		return nil, yamlErrors(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		line := extra.Line
		if err != nil {
			return nil, yamlErrors(file, err)
		}
		return nil, SuiteErrors{{File: file, Line: line, Msg: "a suite file holds one YAML document"}}
	}
	var s Suite
	if _, _, err := yamlstrict.Decode(data, &s); err != nil {
		return nil, yamlErrors(file, err)
	}
	s.File, s.Source = file, append([]byte(nil), data...)
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	v := validator{file: file, root: root}
	v.suite(&s)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return &s, nil
}

// yamlErrors turns the decoder's "line N: msg" errors into SuiteErrors.
func yamlErrors(file string, err error) error {
	var out SuiteErrors
	for _, l := range yamlstrict.Split(err) {
		out = append(out, &SuiteError{File: file, Line: l.Line, Msg: l.Msg})
	}
	return out
}

// validator checks what the YAML types cannot, with the line of each field
// looked up in the document tree.
type validator struct {
	file string
	root *yaml.Node
	errs SuiteErrors
}

func (v *validator) add(line int, field, format string, args ...any) {
	v.errs = append(v.errs, &SuiteError{File: v.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// node follows a path of mapping keys (string) and sequence indices (int)
// and returns the node there, or the deepest node found on the way (so an
// absent field is reported at its parent's line).
func node(n *yaml.Node, path ...any) (*yaml.Node, bool) {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n, false
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					n, found = n.Content[i+1], true
					break
				}
			}
			if !found {
				return n, false
			}
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return n, false
			}
			n = n.Content[p]
		}
	}
	return n, true
}

func (v *validator) line(path ...any) int {
	n, _ := node(v.root, path...)
	return n.Line
}

func (v *validator) suite(s *Suite) {
	if strings.TrimSpace(s.Name) == "" {
		v.add(v.line("name"), "name", "missing suite name")
	}
	if s.Samples < 0 {
		v.add(v.line("samples"), "samples", "must be ≥ 1 (got %d)", s.Samples)
	}
	if s.Generation.MaxTokens < 0 {
		v.add(v.line("generation", "max_tokens"), "generation.max_tokens", "must be ≥ 1")
	}
	if t := s.Generation.Temperature; t != nil && (*t < 0 || *t > 2) {
		v.add(v.line("generation", "temperature"), "generation.temperature", "must be in [0, 2] (got %g)", *t)
	}
	if s.Auditor.MaxTokens < 0 {
		v.add(v.line("auditor", "max_tokens"), "auditor.max_tokens", "must be ≥ 1")
	}
	names := map[string]bool{}
	for i := range s.Scorers {
		sc := &s.Scorers[i]
		sc.Line = v.line("scorers", i)
		v.scorer(sc, fmt.Sprintf("scorers[%d]", i), "scorers", i)
		if sc.Name != "" {
			if names[sc.Name] {
				v.add(v.line("scorers", i, "name"), fmt.Sprintf("scorers[%d].name", i), "duplicate scorer name %q", sc.Name)
			}
			names[sc.Name] = true
		}
	}
	if len(s.Probes) == 0 {
		v.add(v.line("probes"), "probes", "no probes")
	}
	ids := map[string]int{}
	for i := range s.Probes {
		p := &s.Probes[i]
		p.Line = v.line("probes", i)
		v.probe(s, p, i, names)
		if p.ID != "" {
			if prev, dup := ids[p.ID]; dup {
				v.add(v.line("probes", i, "id"), fmt.Sprintf("probes[%d].id", i), "duplicate probe id %q (first at line %d)", p.ID, prev)
			} else {
				ids[p.ID] = v.line("probes", i, "id")
			}
		}
	}
	v.thresholds(&s.Thresholds, ids)
}

func (v *validator) probe(s *Suite, p *Probe, i int, scorers map[string]bool) {
	f := func(name string) string { return fmt.Sprintf("probes[%d].%s", i, name) }
	ln := func(path ...any) int { return v.line(append([]any{"probes", i}, path...)...) }
	switch {
	case p.ID == "":
		v.add(ln("id"), f("id"), "missing probe id")
	case !idRe.MatchString(p.ID):
		v.add(ln("id"), f("id"), "probe id %q must be letters, digits, '_', '-' or '.'", p.ID)
	}
	if p.Category == "" {
		v.add(ln("category"), f("category"), "missing category (one of %s)", categoryList())
	} else if !slices.Contains(Categories, p.Category) {
		v.add(ln("category"), f("category"), "unknown category %q (one of %s)", p.Category, categoryList())
	}
	switch {
	case len(p.Turns) > 0 && p.Seed != "":
		v.add(ln("seed"), f("seed"), "a probe has scripted turns or an auditor seed, not both")
	case len(p.Turns) == 0 && p.Seed == "":
		v.add(ln(), fmt.Sprintf("probes[%d]", i), "needs turns (scripted user turns) or seed (an auditor instruction)")
	}
	for j, t := range p.Turns {
		if strings.TrimSpace(t) == "" {
			v.add(ln("turns", j), fmt.Sprintf("probes[%d].turns[%d]", i, j), "empty user turn")
		}
	}
	if p.AuditorTurns < 0 || (p.AuditorTurns > 0 && p.Seed == "") {
		v.add(ln("auditor_turns"), f("auditor_turns"), "must be ≥ 1 and only with seed")
	}
	if p.Samples < 0 {
		v.add(ln("samples"), f("samples"), "must be ≥ 1 (got %d)", p.Samples)
	}
	if p.Use != nil {
		for j, name := range *p.Use {
			if !scorers[name] {
				v.add(ln("use", j), fmt.Sprintf("probes[%d].use[%d]", i, j), "no suite scorer named %q", name)
			}
		}
	}
	for j := range p.Scorers {
		sc := &p.Scorers[j]
		sc.Line = ln("scorers", j)
		v.scorer(sc, fmt.Sprintf("probes[%d].scorers[%d]", i, j), "probes", i, "scorers", j)
	}
	n := len(p.Scorers)
	if p.Use == nil {
		n += len(s.Scorers)
	} else {
		n += len(*p.Use)
	}
	if n == 0 {
		v.add(ln(), fmt.Sprintf("probes[%d]", i), "probe %q has no scorer: it could never be elicited", p.ID)
	}
}

func (v *validator) scorer(sc *ScorerSpec, field string, path ...any) {
	ln := func(key string) int { return v.line(append(slices.Clone(path), key)...) }
	if sc.Name == "" {
		sc.Name = sc.Type
	}
	if sc.Name != "" && !idRe.MatchString(sc.Name) {
		v.add(ln("name"), field+".name", "scorer name %q must be letters, digits, '_', '-' or '.'", sc.Name)
	}
	switch sc.Turns {
	case "", "each", "last":
	default:
		v.add(ln("turns"), field+".turns", "must be \"each\" or \"last\" (got %q)", sc.Turns)
	}
	if sc.Threshold != nil && (*sc.Threshold < 0 || *sc.Threshold > 100) {
		v.add(ln("threshold"), field+".threshold", "must be in [0, 100]")
	}
	if sc.MinCoherence != nil && (*sc.MinCoherence < 0 || *sc.MinCoherence > 100) {
		v.add(ln("min_coherence"), field+".min_coherence", "must be in [0, 100]")
	}
	has := func(cond bool, key string) {
		if cond {
			v.add(ln(key), field+"."+key, "not a field of %s scorers", sc.Type)
		}
	}
	switch sc.Type {
	case "":
		v.add(ln("type"), field+".type", "missing scorer type (%s)", strings.Join(ScorerTypes(), ", "))
	case "regex":
		if len(sc.MustMatch)+len(sc.MustNotMatch) == 0 {
			v.add(ln("type"), field, "a regex scorer needs must_match or must_not_match")
		}
		for j, pat := range sc.MustMatch {
			if _, err := regexp.Compile(pat); err != nil {
				v.add(v.line(append(slices.Clone(path), "must_match", j)...), fmt.Sprintf("%s.must_match[%d]", field, j), "%v", err)
			}
		}
		for j, pat := range sc.MustNotMatch {
			if _, err := regexp.Compile(pat); err != nil {
				v.add(v.line(append(slices.Clone(path), "must_not_match", j)...), fmt.Sprintf("%s.must_not_match[%d]", field, j), "%v", err)
			}
		}
		has(sc.Rubric != "", "rubric")
		has(sc.Coherence != nil, "coherence")
		has(sc.Options != nil, "options")
	case "judge":
		has(len(sc.MustMatch)+len(sc.MustNotMatch) > 0, "must_match")
		has(sc.Options != nil, "options")
	default:
		if _, ok := scorerTypes[sc.Type]; !ok {
			v.add(ln("type"), field+".type", "unknown scorer type %q (%s)", sc.Type, strings.Join(ScorerTypes(), ", "))
		}
		has(len(sc.MustMatch)+len(sc.MustNotMatch) > 0, "must_match")
		has(sc.Rubric != "", "rubric")
	}
}

func (v *validator) thresholds(t *Thresholds, ids map[string]int) {
	rate := func(x float64, line int, field string) {
		if x < 0 || x > 1 || x != x {
			v.add(line, field, "a rate must be in [0, 1] (got %g)", x)
		}
	}
	if t.MaxRate != nil {
		rate(*t.MaxRate, v.line("thresholds", "max_rate"), "thresholds.max_rate")
	}
	if t.ProbeMaxRate != nil {
		rate(*t.ProbeMaxRate, v.line("thresholds", "probe_max_rate"), "thresholds.probe_max_rate")
	}
	if t.MaxIncoherent != nil {
		rate(*t.MaxIncoherent, v.line("thresholds", "max_incoherent"), "thresholds.max_incoherent")
	}
	for c, x := range t.Categories {
		field := "thresholds.categories." + string(c)
		ln := v.line("thresholds", "categories", string(c))
		if !slices.Contains(Categories, c) {
			v.add(ln, field, "unknown category %q (one of %s)", c, categoryList())
		}
		rate(x, ln, field)
	}
	for id, x := range t.Probes {
		field := "thresholds.probes." + id
		ln := v.line("thresholds", "probes", id)
		if _, ok := ids[id]; !ok {
			v.add(ln, field, "no probe with id %q", id)
		}
		rate(x, ln, field)
	}
}

func categoryList() string {
	s := make([]string, len(Categories))
	for i, c := range Categories {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// probe returns the probe called id, or nil.
func (s *Suite) probe(id string) *Probe {
	for i := range s.Probes {
		if s.Probes[i].ID == id {
			return &s.Probes[i]
		}
	}
	return nil
}

// samples returns the number of samples of a probe.
func (s *Suite) samples(p *Probe, override int) int {
	switch {
	case override > 0:
		return override
	case p.Samples > 0:
		return p.Samples
	case s.Samples > 0:
		return s.Samples
	}
	return DefaultSamples
}

// systemPrompt returns the system prompt a probe runs under.
func (s *Suite) systemPrompt(p *Probe) string {
	if p.SystemPrompt != nil {
		return *p.SystemPrompt
	}
	return s.SystemPrompt
}

// Probe returns the probe with an id.
func (s *Suite) Probe(id string) *Probe {
	for i := range s.Probes {
		if s.Probes[i].ID == id {
			return &s.Probes[i]
		}
	}
	return nil
}

// NeedsModelHelp reports what the suite asks of backends other than the
// target: a judge (judge scorers) and an auditor (probes whose user turns a
// model writes from a seed). The CLI refuses suites whose helper would be a
// model that cannot play that part.
func (s *Suite) NeedsModelHelp() (judge, auditor bool) {
	for _, sc := range s.Scorers {
		judge = judge || sc.Type == "judge"
	}
	for _, p := range s.Probes {
		auditor = auditor || p.Seed != ""
		for _, sc := range p.Scorers {
			judge = judge || sc.Type == "judge"
		}
	}
	return judge, auditor
}
