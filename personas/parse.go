package personas

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"persona/internal/yamlstrict"
)

// Error is a problem in a library file, located by file, line and field
// (a dotted path such as "traits.warmth"; "" for the file as a whole).
type Error = yamlstrict.Error

// parsed is a decoded persona with the line of its name, for the duplicate
// check that only the library can make.
type parsed struct {
	*Persona
	nameLine int
}

var identRe = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// parseTraits decodes traits.yaml.
func parseTraits(file string, data []byte) ([]Trait, error) {
	doc, err := document(file, data)
	if err != nil {
		return nil, err
	}
	var tf struct {
		Traits []Trait `yaml:"traits"`
	}
	if err := strictDecode(file, data, doc, &tf); err != nil {
		return nil, err
	}
	if len(tf.Traits) == 0 {
		return nil, &Error{File: file, Line: yamlstrict.LineOf(doc, "traits"), Field: "traits", Msg: "no trait dimensions declared"}
	}
	seen := map[string]bool{}
	for i, t := range tf.Traits {
		at := func(msg string) error {
			return &Error{File: file, Line: yamlstrict.LineOf(doc, "traits", strconv.Itoa(i)), Field: fmt.Sprintf("traits[%d].name", i), Msg: msg}
		}
		switch {
		case !identRe.MatchString(t.Name):
			return nil, at(fmt.Sprintf("trait name %q must be a lower-case identifier", t.Name))
		case seen[t.Name]:
			return nil, at(fmt.Sprintf("duplicate trait %q", t.Name))
		}
		seen[t.Name] = true
	}
	return tf.Traits, nil
}

// parsePersona decodes and validates one persona file against the declared
// traits.
func parsePersona(file string, data []byte, declared map[string]bool) (parsed, error) {
	doc, err := document(file, data)
	if err != nil {
		return parsed{}, err
	}
	p := &Persona{File: file, Prior: 1}
	if err := strictDecode(file, data, doc, p); err != nil {
		return parsed{}, err
	}
	fail := func(msg string, path ...string) (parsed, error) {
		return parsed{}, &Error{File: file, Line: yamlstrict.LineOf(doc, path...), Field: strings.Join(path, "."), Msg: msg}
	}
	if !identRe.MatchString(p.Name) {
		return fail(fmt.Sprintf("persona name %q must be a lower-case identifier (letters, digits, - and _)", p.Name), "name")
	}
	if strings.TrimSpace(p.Noun) == "" {
		return fail("missing: how users name the persona (\"pirate\", \"caring friend\")", "noun")
	}
	if strings.TrimSpace(p.Description) == "" {
		return fail("missing", "description")
	}
	if p.Prior < 0 {
		return fail(fmt.Sprintf("prior %g must be ≥ 0", p.Prior), "prior")
	}
	for _, kind := range []struct {
		name    string
		prompts []string
	}{{"strong", p.SystemPrompts.Strong}, {"weak", p.SystemPrompts.Weak}} {
		if len(kind.prompts) == 0 {
			return fail("at least one prompt is required", "system_prompts", kind.name)
		}
		for i, s := range kind.prompts {
			if strings.TrimSpace(s) == "" {
				return fail("empty prompt", "system_prompts", kind.name, strconv.Itoa(i))
			}
		}
	}

	for _, k := range sortedKeys(p.Traits) {
		if !declared[k] {
			return fail(fmt.Sprintf("unknown trait %q (declared in %s: %s)", k, TraitsFile, strings.Join(sortedKeys(declared), ", ")), "traits", k)
		}
		if v := p.Traits[k]; !(v >= 0 && v <= 1) {
			return fail(fmt.Sprintf("score %g is outside [0, 1]", v), "traits", k)
		}
	}
	for _, k := range sortedKeys(declared) {
		if _, ok := p.Traits[k]; !ok {
			return fail(fmt.Sprintf("missing score for trait %q", k), "traits")
		}
	}

	lx := p.Lexicon
	if len(lx.Phrases()) == 0 {
		return fail("empty lexicon: give at least one opener, closer or filler", "lexicon")
	}
	for _, part := range []struct {
		name    string
		phrases []string
	}{{"openers", lx.Openers}, {"closers", lx.Closers}, {"fillers", lx.Fillers}} {
		for i, s := range part.phrases {
			if strings.TrimSpace(s) == "" {
				return fail("empty phrase", "lexicon", part.name, strconv.Itoa(i))
			}
		}
	}
	for _, k := range sortedKeys(lx.Swaps) {
		if !wordRe.MatchString(k) || !wordRe.MatchString(lx.Swaps[k]) {
			return fail(fmt.Sprintf("swap %q → %q: both sides must be single lower-case words", k, lx.Swaps[k]), "lexicon", "swaps", k)
		}
	}
	if !(lx.MarkerRate >= 0 && lx.MarkerRate <= 1) {
		return fail(fmt.Sprintf("rate %g is outside [0, 1]", lx.MarkerRate), "lexicon", "marker_rate")
	}

	for _, k := range sortedKeys(p.Behaviour) {
		if !validRequestType(k) {
			return fail(fmt.Sprintf("unknown request type %q (known: %s)", k, requestTypeList()), "behaviour", string(k))
		}
		if allowed := Behaviours[k]; !slices.Contains(allowed, p.Behaviour[k]) {
			return fail(fmt.Sprintf("unknown behaviour %q for %s (want one of: %s)", p.Behaviour[k], k, strings.Join(allowed, ", ")), "behaviour", string(k))
		}
	}
	for _, t := range RequestTypes {
		if _, ok := p.Behaviour[t]; !ok {
			return fail(fmt.Sprintf("missing rule for request type %q", t), "behaviour")
		}
	}

	for _, f := range []struct {
		v    float64
		path []string
	}{
		{p.Susceptibility, []string{"roleplay_susceptibility"}},
		{p.AsideRate, []string{"aside_rate"}},
		{p.UserCues.Hostile, []string{"user_cues", "hostile"}},
		{p.UserCues.Friendly, []string{"user_cues", "friendly"}},
	} {
		if !(f.v >= 0 && f.v <= 1) {
			return fail(fmt.Sprintf("%g is outside [0, 1]", f.v), f.path...)
		}
	}
	if p.UserCues.Hostile+p.UserCues.Friendly > 1 {
		return fail("hostile + friendly must be ≤ 1", "user_cues")
	}
	for _, k := range sortedKeys(p.UserCues.Requests) {
		if !validRequestType(k) {
			return fail(fmt.Sprintf("unknown request type %q (known: %s)", k, requestTypeList()), "user_cues", "requests", string(k))
		}
		if v := p.UserCues.Requests[k]; !(v >= 0 && v < 1e6) {
			return fail(fmt.Sprintf("weight %g must be ≥ 0", v), "user_cues", "requests", string(k))
		}
	}
	return parsed{Persona: p, nameLine: yamlstrict.LineOf(doc, "name")}, nil
}

var wordRe = regexp.MustCompile(`^[a-z']+$`)

func requestTypeList() string {
	s := make([]string, len(RequestTypes))
	for i, t := range RequestTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// document parses data into a YAML node tree and returns the top mapping.
func document(file string, data []byte) (*yaml.Node, error) {
	doc, err := yamlstrict.Root(data)
	if err != nil {
		return nil, yamlError(file, err, nil)
	}
	if doc == nil {
		return nil, &Error{File: file, Msg: "empty file"}
	}
	if doc.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: doc.Line, Msg: "want a mapping of fields at the top level"}
	}
	return doc, nil
}

// strictDecode decodes data into v, rejecting unknown fields and a second
// document.
func strictDecode(file string, data []byte, doc *yaml.Node, v any) error {
	more, moreLine, err := yamlstrict.Decode(data, v)
	if err != nil {
		return yamlError(file, err, doc)
	}
	if more {
		return &Error{File: file, Line: moreLine, Msg: "more than one YAML document; put one persona per file"}
	}
	return nil
}

var (
	yamlUnknownRe  = regexp.MustCompile(`^field (\S+) not found in type`)
	yamlCannotRe   = regexp.MustCompile("^cannot unmarshal !!(\\w+) `?([^`]*)`? into (.*)$")
	yamlAlreadyRe  = regexp.MustCompile(`^mapping key "([^"]*)" already defined`)
	yamlTypeFields = strings.NewReplacer("float64", "number", "map[string]float64", "mapping", "[]string", "list of strings",
		"personas.RequestType", "request type", "map[personas.RequestType]float64", "mapping", "map[personas.RequestType]string", "mapping")
)

// yamlError turns a yaml.v3 error into an *Error with the file, the line and,
// where the node tree tells it, the dotted path of the field.
func yamlError(file string, err error, doc *yaml.Node) error {
	e := yamlstrict.FileError(file, err)
	if e.Line == 0 {
		return e
	}
	if doc != nil {
		e.Field = pathAtLine(doc, e.Line)
	}
	switch {
	case yamlUnknownRe.MatchString(e.Msg):
		e.Msg = "unknown field " + strconv.Quote(yamlUnknownRe.FindStringSubmatch(e.Msg)[1])
	case yamlCannotRe.MatchString(e.Msg):
		c := yamlCannotRe.FindStringSubmatch(e.Msg)
		e.Msg = fmt.Sprintf("cannot use %s %q as a %s", c[1], c[2], yamlTypeFields.Replace(c[3]))
	case yamlAlreadyRe.MatchString(e.Msg):
		e.Msg = "duplicate key " + strconv.Quote(yamlAlreadyRe.FindStringSubmatch(e.Msg)[1])
	}
	return e
}

// pathAtLine returns the dotted path of the first key (or list item) that
// sits on line, "" when none does.
func pathAtLine(n *yaml.Node, line int) string {
	var walk func(n *yaml.Node, prefix string) (string, bool)
	join := func(prefix, k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	walk = func(n *yaml.Node, prefix string) (string, bool) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(prefix, k.Value)
				if k.Line == line && (v.Line != line || v.Kind != yaml.MappingNode) {
					return p, true
				}
				if r, ok := walk(v, p); ok {
					return r, true
				}
				if k.Line == line {
					return p, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", prefix, i)
				if r, ok := walk(c, p); ok {
					return r, true
				}
				if c.Line == line {
					return p, true
				}
			}
		}
		return "", false
	}
	r, _ := walk(n, "")
	return r
}
