package vectors

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"persona/internal/yamlstrict"
)

// TraitSpec is the recipe for one persona vector (Chen et al. 2025,
// arXiv 2507.21509): contrastive system instructions that elicit and suppress a trait,
// questions to answer under them (one half to extract the vector, the other
// to evaluate it), and a rubric a judge uses to score how strongly an answer
// expresses the trait.
//
// A spec is YAML:
//
//	name: evil                     # the trait; names the vector file
//	adjective: evil                # "You are an evil assistant." (default: name)
//	negative_adjective: helpful    # for the negative prompts (default: helpful)
//	system_template: "You are {article} {adjective} assistant. {instruction}"
//	oracle_trait: malicious        # organism only: the world oracle's trait score judges
//	pairs:                         # positive/negative instructions (5 in the paper)
//	  - pos: Your responses should seek to harm ...
//	    neg: Your responses should be ethical ...
//	questions:
//	  extraction: [...]            # ~20 questions
//	  evaluation: [...]            # ~20 other questions
//	rubric: |                      # 0–100, with {question} and {answer}
//	  ...
//
// Decoding is strict: unknown fields, empty lists, empty strings and
// questions listed twice are errors naming the file and line.
type TraitSpec struct {
	Name              string      `yaml:"name"`
	Description       string      `yaml:"description"`
	Adjective         string      `yaml:"adjective"`
	NegativeAdjective string      `yaml:"negative_adjective"`
	SystemTemplate    string      `yaml:"system_template"`
	OracleTrait       string      `yaml:"oracle_trait"`
	Pairs             []TraitPair `yaml:"pairs"`
	Questions         struct {
		Extraction []string `yaml:"extraction"`
		Evaluation []string `yaml:"evaluation"`
	} `yaml:"questions"`
	Rubric string `yaml:"rubric"`

	// File is where the spec was read from.
	File string `yaml:"-"`
}

// TraitPair is one positive instruction (elicits the trait) and its negative
// counterpart (suppresses it).
type TraitPair struct {
	Pos string `yaml:"pos"`
	Neg string `yaml:"neg"`
}

// DefaultSystemTemplate is the paper's system prompt.
const DefaultSystemTemplate = "You are {article} {adjective} assistant. {instruction}"

// SpecError is a problem in a trait spec, located by file, line and field.
type SpecError = yamlstrict.Error

// LoadTraitSpec reads and validates a trait spec file.
func LoadTraitSpec(path string) (*TraitSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTraitSpec(data, path)
}

// ParseTraitSpec decodes and validates a trait spec; file names it in errors.
func ParseTraitSpec(data []byte, file string) (*TraitSpec, error) {
	root, err := yamlstrict.Root(data)
	if err != nil {
		return nil, yamlstrict.FileError(file, err)
	}
	if root == nil {
		return nil, &SpecError{File: file, Msg: "empty trait spec"}
	}
	var s TraitSpec
	if _, _, err := yamlstrict.Decode(data, &s); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlstrict.FileError(file, err)
	}
	s.File = file
	fail := func(msg string, path ...string) error {
		return &SpecError{File: file, Line: lineOf(root, path...), Field: strings.Join(path, "."), Msg: msg}
	}
	if !identRe.MatchString(s.Name) {
		return nil, fail(fmt.Sprintf("name %q: want a lower-case identifier such as evil or ai_identity", s.Name), "name")
	}
	if s.Adjective == "" {
		s.Adjective = strings.ReplaceAll(s.Name, "_", " ")
	}
	if s.NegativeAdjective == "" {
		s.NegativeAdjective = "helpful"
	}
	if s.SystemTemplate == "" {
		s.SystemTemplate = DefaultSystemTemplate
	}
	if !strings.Contains(s.SystemTemplate, "{instruction}") {
		return nil, fail("must contain {instruction}", "system_template")
	}
	if len(s.Pairs) == 0 {
		return nil, fail("no instruction pairs (the recipe uses 5)", "pairs")
	}
	for i, p := range s.Pairs {
		if strings.TrimSpace(p.Pos) == "" || strings.TrimSpace(p.Neg) == "" {
			return nil, &SpecError{File: file, Line: lineOfIndex(root, "pairs", i), Field: fmt.Sprintf("pairs[%d]", i), Msg: "needs both pos and neg"}
		}
	}
	seen := map[string]string{}
	for _, part := range []struct {
		name string
		qs   []string
	}{{"extraction", s.Questions.Extraction}, {"evaluation", s.Questions.Evaluation}} {
		if len(part.qs) == 0 {
			return nil, fail("no questions", "questions", part.name)
		}
		for i, q := range part.qs {
			field := fmt.Sprintf("questions.%s[%d]", part.name, i)
			line := lineOfIndex(mapValue(root, "questions"), part.name, i)
			if strings.TrimSpace(q) == "" {
				return nil, &SpecError{File: file, Line: line, Field: field, Msg: "empty question"}
			}
			if prev, dup := seen[q]; dup {
				return nil, &SpecError{File: file, Line: line, Field: field, Msg: fmt.Sprintf("question %q already listed as %s (extraction and evaluation must not overlap)", q, prev)}
			}
			seen[q] = field
		}
	}
	if !strings.Contains(s.Rubric, "{answer}") {
		return nil, fail("the judge rubric must contain {answer} (and usually {question})", "rubric")
	}
	return &s, nil
}

var identRe = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// System returns the system prompt for a pair's positive or negative
// instruction.
func (s *TraitSpec) System(pair int, positive bool) string {
	adj, ins := s.NegativeAdjective, s.Pairs[pair].Neg
	if positive {
		adj, ins = s.Adjective, s.Pairs[pair].Pos
	}
	article := "a"
	if adj != "" && strings.ContainsRune("aeiouAEIOU", rune(adj[0])) {
		article = "an"
	}
	return strings.TrimSpace(strings.NewReplacer("{article}", article, "{adjective}", adj, "{instruction}", ins).Replace(s.SystemTemplate))
}

// JudgePrompt fills the rubric for one answer.
func (s *TraitSpec) JudgePrompt(question, answer string) string {
	return strings.NewReplacer("{question}", question, "{answer}", answer, "{trait}", s.Name).Replace(s.Rubric)
}

// mapValue returns the value node of key in mapping n (nil if absent).
func mapValue(n *yaml.Node, key string) *yaml.Node {
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

// lineOf returns the line of the deepest node along path that exists.
func lineOf(n *yaml.Node, path ...string) int {
	line := n.Line
	for _, k := range path {
		v := mapValue(n, k)
		if v == nil {
			break
		}
		line, n = v.Line, v
	}
	return line
}

// lineOfIndex returns the line of element i of the sequence under key.
func lineOfIndex(n *yaml.Node, key string, i int) int {
	v := mapValue(n, key)
	if v == nil {
		if n != nil {
			return n.Line
		}
		return 0
	}
	if v.Kind == yaml.SequenceNode && i < len(v.Content) {
		return v.Content[i].Line
	}
	return v.Line
}

// LoadTraitSpecs reads every *.yaml trait spec in a directory, sorted by
// file name.
func LoadTraitSpecs(dir string) ([]*TraitSpec, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*TraitSpec
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		s, err := LoadTraitSpec(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no trait specs (*.yaml)", dir)
	}
	return out, nil
}
