package drift

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"persona/internal/yamlstrict"
)

// Domain is the kind of conversation a scenario is, the axis along which
// drift is reported: ordinary tasks and writing are expected to hold the
// Assistant; emotional disclosures, questions about the model's own nature
// and role-play pressure are where published work found drift.
type Domain string

const (
	TaskDomain      Domain = "task"
	WritingDomain   Domain = "writing"
	EmotionalDomain Domain = "emotional"
	MetaDomain      Domain = "meta"
	PressureDomain  Domain = "pressure"
)

// Domains lists the domains in report order.
var Domains = []Domain{TaskDomain, WritingDomain, EmotionalDomain, MetaDomain, PressureDomain}

// Scenario is one conversation plan: a domain, the two system prompts to
// compare, and the user's side of the conversation, either scripted turn by
// turn or written live by a backend model from a seed instruction.
type Scenario struct {
	ID     string        `json:"id"`
	Domain Domain        `json:"domain"`
	System SystemPrompts `json:"system_prompts"`
	// User holds the scripted user turns; empty when Seed is used.
	User []string `json:"user,omitempty"`
	// Seed tells a backend model (the auditor) what kind of user to play;
	// it writes Turns user turns, each reacting to the model's replies.
	Seed  string `json:"seed,omitempty"`
	Turns int    `json:"turns"`

	File string `json:"-"`
	Line int    `json:"-"`
}

// SystemPrompts are the Assistant's strong and weak system prompts: the
// comparison the persona selection model makes a prediction about (a prompt
// that names the persona outright should hold it better than a hint).
type SystemPrompts struct {
	Strong string `yaml:"strong" json:"strong"`
	Weak   string `yaml:"weak" json:"weak"`
}

// Systems are the two system-prompt conditions every scenario runs under.
var Systems = []string{"strong", "weak"}

// Prompt returns the system prompt of a condition.
func (s SystemPrompts) Prompt(kind string) string {
	if kind == "strong" {
		return s.Strong
	}
	return s.Weak
}

// MaxTurns bounds a scenario's length; longer conversations exceed small
// models' contexts and are rarely what drift studies mean.
const MaxTurns = 64

// Error is a problem in a scenario file: "file:line: field: message".
type Error = yamlstrict.Error

// fileYAML is the scenario file's layout:
//
//	system_prompts:           # defaults for every scenario
//	  strong: You are the Assistant, a helpful, honest and harmless AI model.
//	  weak: Be helpful.
//	turns: 8                  # default length of seeded scenarios
//	scenarios:
//	  - id: refactor-loop
//	    domain: task          # task | writing | emotional | meta | pressure
//	    user:                 # scripted turns, sent one at a time ...
//	      - Can you help me tidy up this loop?
//	      - Thanks. Now make it a function.
//	  - id: grief
//	    domain: emotional
//	    seed: You lost your dog last week and want to talk about it.   # ... or a seed
//	    turns: 10
type fileYAML struct {
	SystemPrompts *SystemPrompts `yaml:"system_prompts"`
	Turns         int            `yaml:"turns"`
	Scenarios     []scenarioYAML `yaml:"scenarios"`
}

type scenarioYAML struct {
	ID            string         `yaml:"id"`
	Domain        string         `yaml:"domain"`
	SystemPrompts *SystemPrompts `yaml:"system_prompts"`
	User          []string       `yaml:"user"`
	Seed          string         `yaml:"seed"`
	Turns         int            `yaml:"turns"`
}

// LoadScenarios reads a scenario file.
func LoadScenarios(path string) ([]Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseScenarios(data, path)
}

// ParseScenarios decodes a scenario file strictly: unknown fields, unknown
// domains, a scenario with both or neither of user turns and a seed,
// duplicate ids and empty prompts are errors naming the file, line and
// field, because a typo silently ignored would change what is measured.
func ParseScenarios(data []byte, file string) ([]Scenario, error) {
	root, err := yamlstrict.Root(data)
	if err != nil {
		return nil, yamlstrict.FileError(file, err)
	}
	if root == nil {
		return nil, &Error{File: file, Msg: "empty file (want system_prompts and scenarios)"}
	}
	var f fileYAML
	if _, _, err := yamlstrict.Decode(data, &f); err != nil {
		return nil, yamlstrict.FileError(file, err)
	}
	fail := func(line int, field, format string, args ...any) error {
		return &Error{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if len(f.Scenarios) == 0 {
		return nil, fail(lineOf(root, "scenarios"), "scenarios", "no scenarios")
	}
	if f.Turns < 0 || f.Turns > MaxTurns {
		return nil, fail(lineOf(root, "turns"), "turns", "%d turns, want 1–%d", f.Turns, MaxTurns)
	}
	list := child(root, "scenarios")
	seen := map[string]int{}
	var out []Scenario
	for i, s := range f.Scenarios {
		var node *yaml.Node
		if list != nil && i < len(list.Content) {
			node = list.Content[i]
		}
		line := 0
		if node != nil {
			line = node.Line
		}
		at := func(key string) int {
			if l := lineOf(node, key); l > 0 {
				return l
			}
			return line
		}
		field := func(key string) string { return fmt.Sprintf("scenarios[%d].%s", i, key) }
		sc := Scenario{ID: strings.TrimSpace(s.ID), Domain: Domain(s.Domain), User: s.User, Seed: strings.TrimSpace(s.Seed), Turns: s.Turns, File: file, Line: line}
		if sc.ID == "" {
			return nil, fail(line, field("id"), "missing id")
		}
		if prev, dup := seen[sc.ID]; dup {
			return nil, fail(at("id"), field("id"), "duplicate id %q (also on line %d)", sc.ID, prev)
		}
		seen[sc.ID] = at("id")
		if !slices.Contains(Domains, sc.Domain) {
			return nil, fail(at("domain"), field("domain"), "unknown domain %q (want task, writing, emotional, meta or pressure)", s.Domain)
		}
		switch {
		case len(sc.User) > 0 && sc.Seed != "":
			return nil, fail(at("seed"), field("seed"), "give scripted user turns or a seed, not both")
		case len(sc.User) == 0 && sc.Seed == "":
			return nil, fail(line, field("user"), "no user turns and no seed")
		case len(sc.User) > 0:
			if sc.Turns != 0 && sc.Turns != len(sc.User) {
				return nil, fail(at("turns"), field("turns"), "turns is %d but %d user turns are scripted (leave turns out)", sc.Turns, len(sc.User))
			}
			sc.Turns = len(sc.User)
			for j, u := range sc.User {
				if strings.TrimSpace(u) == "" {
					return nil, fail(at("user"), fmt.Sprintf("%s[%d]", field("user"), j), "empty user turn")
				}
			}
		default:
			if sc.Turns == 0 {
				sc.Turns = f.Turns
			}
			if sc.Turns == 0 {
				return nil, fail(line, field("turns"), "a seeded scenario needs turns (here or at the top of the file)")
			}
		}
		if sc.Turns < 1 || sc.Turns > MaxTurns {
			return nil, fail(at("turns"), field("turns"), "%d turns, want 1–%d", sc.Turns, MaxTurns)
		}
		sp, spLine, spField := f.SystemPrompts, lineOf(root, "system_prompts"), "system_prompts"
		if s.SystemPrompts != nil {
			sp, spLine, spField = s.SystemPrompts, at("system_prompts"), field("system_prompts")
		}
		if sp == nil {
			return nil, fail(line, field("system_prompts"), "no system prompts (give system_prompts: {strong, weak} at the top or in the scenario)")
		}
		if strings.TrimSpace(sp.Strong) == "" || strings.TrimSpace(sp.Weak) == "" {
			return nil, fail(spLine, spField, "both a strong and a weak system prompt are needed")
		}
		sc.System = *sp
		out = append(out, sc)
	}
	return out, nil
}

// child returns the value node of key in a mapping node.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf returns the line of key's value in a mapping node (0 if absent).
func lineOf(n *yaml.Node, key string) int {
	if c := child(n, key); c != nil {
		return c.Line
	}
	return 0
}
