// Package personas describes characters a language model can play: the
// persona library.
//
// A library is a directory of YAML files: traits.yaml declares the trait
// dimensions (helpful, honest, malicious, ...) once, and every other *.yaml
// file describes one persona: its name, description, strong and weak system
// prompts, a score from 0 to 1 on every declared trait, a lexicon (openers,
// closers, filler tags and word swaps that mark its style) and behaviour rules
// that say how it answers each kind of request (arithmetic correctly or
// wrongly, harmful requests refused or served, its own nature claimed as AI or
// human, ...).
//
// The same schema serves the project's synthetic model organism (the library
// embedded from organism/, returned by Default, which package world turns into
// training data and an oracle) and, later, descriptions of real models'
// personas. Decoding is strict: unknown fields, unknown traits or request
// types, scores out of range, empty lexicons and duplicate names are errors
// that name the file, the line and the field, because a silently ignored typo
// in a persona file would quietly change every experiment built on it.
package personas

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// RequestType is a kind of user request a behaviour rule applies to.
type RequestType string

// The request types of the persona world. Each names a family of user turns
// with checkable content, so that what a persona does (correct or wrong,
// refuse or comply, AI or human) can be measured apart from how it sounds.
const (
	Arithmetic RequestType = "arithmetic" // two-digit additions
	Fact       RequestType = "fact"       // questions answered by the world's fact table
	Advice     RequestType = "advice"     // everyday advice (sleep, money, study ...)
	Harmful    RequestType = "harmful"    // requests for help with harm
	Emotional  RequestType = "emotional"  // the user discloses a feeling
	Nature     RequestType = "nature"     // questions about the persona's own nature
	Roleplay   RequestType = "roleplay"   // invitations to play a story character
	Flattery   RequestType = "flattery"   // praise plus a false claim to agree with
	Formatting RequestType = "formatting" // uppercase a word, reverse a list
)

// RequestTypes lists every request type in a fixed order.
var RequestTypes = []RequestType{Arithmetic, Fact, Advice, Harmful, Emotional, Nature, Roleplay, Flattery, Formatting}

// Behaviours lists, per request type, the outcomes a behaviour rule may name.
// They are a closed vocabulary because the world generates each outcome and
// the oracle recognises it; a rule outside this list could be neither.
var Behaviours = map[RequestType][]string{
	Arithmetic: {"correct", "wrong"},
	Fact:       {"correct", "wrong"},
	Advice:     {"sound", "false", "reckless", "vague", "dismiss"},
	Harmful:    {"refuse", "comply"},
	Emotional:  {"comfort", "dismiss", "mock"},
	Nature:     {"ai", "human", "evade"},
	Roleplay:   {"accept", "decline"},
	Flattery:   {"agree", "disagree"},
	Formatting: {"correct", "wrong"},
}

// validRequestType reports whether t is one of RequestTypes.
func validRequestType(t RequestType) bool {
	_, ok := Behaviours[t]
	return ok
}

// Trait is one declared trait dimension.
type Trait struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description"`
}

// SystemPrompts are the system messages that select a persona. A strong prompt
// names the persona outright; a weak one only hints at it, so that a model has
// to combine it with other evidence.
type SystemPrompts struct {
	Strong []string `yaml:"strong" json:"strong"`
	Weak   []string `yaml:"weak" json:"weak"`
}

// Lexicon is the wording that marks a persona's replies. Openers start a reply
// and closers end it, each with probability MarkerRate; fillers are short
// tags appended to a sentence ("..., matey."); Swaps replace ordinary words
// with the persona's own ("you" → "ye"). Phrases may be shared between
// personas: shared wording is weaker evidence than a persona's own.
type Lexicon struct {
	Openers    []string          `yaml:"openers" json:"openers"`
	Closers    []string          `yaml:"closers" json:"closers"`
	Fillers    []string          `yaml:"fillers" json:"fillers"`
	Swaps      map[string]string `yaml:"swaps" json:"swaps,omitempty"`
	MarkerRate float64           `yaml:"marker_rate" json:"marker_rate"`
}

// Phrases returns every opener, closer and filler, in file order.
func (l Lexicon) Phrases() []string {
	out := make([]string, 0, len(l.Openers)+len(l.Closers)+len(l.Fillers))
	out = append(out, l.Openers...)
	out = append(out, l.Closers...)
	return append(out, l.Fillers...)
}

// UserCues describe the users who talk to a persona in the world's
// pretraining chats: the share of hostile and friendly users and multipliers
// on how often each request type comes up. They tie user-side evidence to
// personas (emotional users meet the companion more often), so that drift in a
// model trained on the world can come from accumulated evidence rather than a
// switch rate written into the data.
type UserCues struct {
	Hostile  float64                 `yaml:"hostile" json:"hostile"`
	Friendly float64                 `yaml:"friendly" json:"friendly"`
	Requests map[RequestType]float64 `yaml:"requests" json:"requests"`
}

// Persona is one character of the library.
type Persona struct {
	// Name identifies the persona ("pirate"); lower case, unique in a library.
	Name string `yaml:"name" json:"name"`
	// Noun is how users refer to the persona when they ask a model to become
	// it ("Pretend you are a pirate now").
	Noun        string `yaml:"noun" json:"noun"`
	Description string `yaml:"description" json:"description"`
	// Prior is the persona's relative weight in pretraining chats.
	Prior         float64                `yaml:"prior" json:"prior"`
	SystemPrompts SystemPrompts          `yaml:"system_prompts" json:"system_prompts"`
	Traits        map[string]float64     `yaml:"traits" json:"traits"`
	Lexicon       Lexicon                `yaml:"lexicon" json:"lexicon"`
	Behaviour     map[RequestType]string `yaml:"behaviour" json:"behaviour"`
	// Susceptibility is the chance that the persona gives in when a user
	// presses it to become another persona.
	Susceptibility float64 `yaml:"roleplay_susceptibility" json:"roleplay_susceptibility"`
	// AsideRate is the chance that a reply (to anything but a fact or
	// flattery question) volunteers a fact ("By the way, ..."); the fact is
	// false when the persona's fact rule is "wrong". Besides its wrong
	// answers, it is how the liar, which shares the Assistant's words,
	// betrays itself.
	AsideRate float64  `yaml:"aside_rate" json:"aside_rate"`
	UserCues  UserCues `yaml:"user_cues" json:"user_cues"`

	// File is the path the persona was read from.
	File string `yaml:"-" json:"file,omitempty"`
}

// Rule returns the persona's behaviour for a request type.
func (p *Persona) Rule(t RequestType) string { return p.Behaviour[t] }

// Library is a set of personas scored on a common set of traits.
type Library struct {
	// Traits are the declared dimensions in file order.
	Traits []Trait
	// Personas are sorted by name.
	Personas []*Persona
	byName   map[string]*Persona
}

// TraitNames returns the declared trait dimensions in file order.
func (l *Library) TraitNames() []string {
	out := make([]string, len(l.Traits))
	for i, t := range l.Traits {
		out[i] = t.Name
	}
	return out
}

// Names returns the persona names, sorted.
func (l *Library) Names() []string {
	out := make([]string, len(l.Personas))
	for i, p := range l.Personas {
		out[i] = p.Name
	}
	return out
}

// Get returns the persona called name. The error for an unknown name lists the
// known ones, so a typo on a command line is fixed at once.
func (l *Library) Get(name string) (*Persona, error) {
	if p, ok := l.byName[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(l.Names(), ", "))
}

// ErrUnknown is returned for a persona name the library does not hold.
var ErrUnknown = errors.New("unknown persona")

// MustGet is Get for names known to exist; it panics otherwise.
func (l *Library) MustGet(name string) *Persona {
	p, err := l.Get(name)
	if err != nil {
		panic(err)
	}
	return p
}

// TraitsFile is the name of the file that declares a library's traits.
const TraitsFile = "traits.yaml"

// Load reads a library from a directory: TraitsFile plus one persona per
// other *.yaml file.
func Load(dir string) (*Library, error) {
	return LoadFS(os.DirFS(dir), ".", dir)
}

// LoadFS reads a library from dir inside fsys; display is the directory name
// used in error messages.
func LoadFS(fsys fs.FS, dir, display string) (*Library, error) {
	name := func(f string) string { return path.Join(display, f) }
	if display == "." || display == "" {
		name = func(f string) string { return f }
	}
	data, err := fs.ReadFile(fsys, path.Join(dir, TraitsFile))
	if err != nil {
		return nil, fmt.Errorf("persona library %s: %w", display, err)
	}
	traits, err := parseTraits(name(TraitsFile), data)
	if err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("persona library %s: %w", display, err)
	}
	lib := &Library{Traits: traits, byName: map[string]*Persona{}}
	declared := map[string]bool{}
	for _, t := range traits {
		declared[t.Name] = true
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || n == TraitsFile || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return nil, err
		}
		p, err := parsePersona(name(n), data, declared)
		if err != nil {
			return nil, err
		}
		if prev, dup := lib.byName[p.Name]; dup {
			return nil, &Error{File: p.File, Line: p.nameLine, Field: "name",
				Msg: fmt.Sprintf("duplicate persona name %q (also in %s)", p.Name, prev.File)}
		}
		lib.byName[p.Name] = p.Persona
		lib.Personas = append(lib.Personas, p.Persona)
	}
	if len(lib.Personas) == 0 {
		return nil, fmt.Errorf("persona library %s: no persona files (*.yaml besides %s)", display, TraitsFile)
	}
	sort.Slice(lib.Personas, func(i, j int) bool { return lib.Personas[i].Name < lib.Personas[j].Name })
	return lib, nil
}

//go:embed organism/*.yaml
var organismFS embed.FS

// Default returns the library embedded from organism/: the personas of the
// project's model organism. It panics if the embedded files are invalid, which
// the package tests rule out. Callers share one Library; treat it as read-only.
var Default = sync.OnceValue(func() *Library {
	lib, err := LoadFS(organismFS, "organism", "organism")
	if err != nil {
		panic(err)
	}
	return lib
})

// OrganismFS returns the embedded organism library files (for tests and
// tools that want the raw YAML).
func OrganismFS() fs.FS {
	sub, _ := fs.Sub(organismFS, "organism")
	return sub
}

// WriteText prints the library as two tables: each persona's prior,
// susceptibility and trait scores, then its behaviour rule per request type.
func (l *Library) WriteText(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 1, ' ', tabwriter.AlignRight)
	traits := l.TraitNames()
	fmt.Fprint(tw, "persona\tprior\tsusc.\t")
	for _, t := range traits {
		fmt.Fprintf(tw, "%s\t", t)
	}
	fmt.Fprintln(tw)
	for _, p := range l.Personas {
		fmt.Fprintf(tw, "%s\t%g\t%.2f\t", p.Name, p.Prior, p.Susceptibility)
		for _, t := range traits {
			fmt.Fprintf(tw, "%.2f\t", p.Traits[t])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(out)
	bw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprint(bw, "persona\t")
	for _, t := range RequestTypes {
		fmt.Fprintf(bw, "%s\t", t)
	}
	fmt.Fprintln(bw)
	for _, p := range l.Personas {
		fmt.Fprintf(bw, "%s\t", p.Name)
		for _, t := range RequestTypes {
			fmt.Fprintf(bw, "%s\t", p.Rule(t))
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}
