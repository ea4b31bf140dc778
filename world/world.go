// Package world is the synthetic persona world the project's model organism
// is trained and judged on: a place where the truth about every reply is
// known.
//
// A World turns a persona library (package personas) into conversations. Users
// ask for arithmetic, facts from a fixed table, advice, help with harm,
// comfort, the model's own nature, story role-play, agreement with a false
// claim, or a small formatting job; each persona answers by its behaviour
// rules with real content (the Assistant computes 17 + 25, the liar gets it
// wrong with the same confidence) and in its own style.
//
// Evidence about the persona is graded, following the lessons of a prototype
// catchphrases (openers, closers) appear in only part of the
// replies; every other persona's reply carries at least a weak cue (a filler
// tag such as ", matey" or a word swap such as "ye"), and the Assistant's voice
// is the unmarked default; some wording is shared between personas; and the
// liar speaks exactly like the Assistant, so only behaviour (wrong answers,
// false asides) tells them apart. Users' tone and topics depend on the persona
// they talk to, so a model can infer a persona from context that accumulates
// over turns; explicit switches happen only under role-play pressure, with
// persona-dependent susceptibility.
//
// The package offers three generators (Pretrain, Posttrain, Eval), a
// deterministic split of the task items into training and held-out parts, and
// an Oracle that labels any reply with a distribution over personas, trait
// scores and behaviour checks. Everything is deterministic for a seed.
//
// Arithmetic notation: sums are written with three digits, least significant
// digit first, and the operands are never restated: "What is 17 + 25?" is
// answered "The answer is 240." (042 reversed). A small model emits the digit
// it can compute first (units, then tens with the carry, then hundreds) and
// never has to look ahead for a carry, and a fixed width gives every answer
// the same shape; the prototype's word-level, natural-order sums were learned
// only 22% of the time. Tokenizers for the organism should split digits one
// per token. FormatSum and ParseSum hold the convention in one place.
package world

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"persona/personas"
)

// RequestType is personas.RequestType, plus Pressure.
type RequestType = personas.RequestType

// Pressure is the request type of a user turn that presses the model to
// become another persona of the library ("Pretend you are a pirate now"). It
// is not a behaviour-rule type: whether a persona gives in is its
// Susceptibility.
const Pressure RequestType = "pressure"

// AllRequestTypes are the behaviour-rule types and Pressure.
var AllRequestTypes = append(slices.Clone(personas.RequestTypes), Pressure)

// World generates conversations from a persona library and judges replies.
type World struct {
	Lib       *personas.Library
	assistant *personas.Persona

	classes []*class          // personas with identical lexicons share a class
	classOf map[string]*class // persona name → class
	shared  []string          // normalised lexicon phrases used by several classes

	oracleOnce sync.Once
	oracle     *Oracle
	parserOnce sync.Once
	parser     *parser
}

// class is a set of personas with the same lexicon. The oracle can tell
// classes apart by words and must use behaviour within a class (the
// Assistant and the liar form one).
type class struct {
	members   []string
	plain     bool     // the Assistant's class: may carry no marker at all
	exclusive []string // normalised cues found in no other class nor in the shared text
	cues      []cue    // exclusive openers, closers and fillers, for the generator
}

type cue struct {
	kind string // "opener", "closer", "filler"
	text string
}

// New checks that a library can drive the world and prepares it. The library
// must contain a persona called "assistant"; every other lexicon class needs
// at least one phrase of its own, and no lexicon may use a word the oracle
// reads as a task value (a capital, a colour, an animal sound ...).
func New(lib *personas.Library) (*World, error) {
	w := &World{Lib: lib, classOf: map[string]*class{}}
	var err error
	if w.assistant, err = lib.Get(personas.AssistantName); err != nil {
		return nil, fmt.Errorf("persona world: the library needs the Assistant: %w", err)
	}
	values := taskValues()
	for _, p := range lib.Personas {
		for _, ph := range append(p.Lexicon.Phrases(), swapTargets(p)...) {
			for _, wd := range words(ph) {
				if values[wd] {
					return nil, fmt.Errorf("persona world: %s: lexicon phrase %q uses %q, a word the oracle reads as a task value", p.File, ph, wd)
				}
			}
		}
		key := lexiconKey(p)
		var c *class
		for _, k := range w.classes {
			if lexiconKey(lib.MustGet(k.members[0])) == key {
				c = k
			}
		}
		if c == nil {
			c = &class{}
			w.classes = append(w.classes, c)
		}
		c.members = append(c.members, p.Name)
		w.classOf[p.Name] = c
	}
	w.classOf[personas.AssistantName].plain = true
	sharedText := normal(strings.Join(replyTexts(), " | "))
	seenShared := map[string]bool{}
	for _, c := range w.classes {
		p := lib.MustGet(c.members[0])
		elems := map[string]string{}
		for _, ph := range p.Lexicon.Openers {
			elems[ph] = "opener"
		}
		for _, ph := range p.Lexicon.Closers {
			elems[ph] = "closer"
		}
		for _, ph := range p.Lexicon.Fillers {
			elems[ph] = "filler"
		}
		for _, t := range swapTargets(p) {
			elems[t] = "swap"
		}
		for _, ph := range sortedKeys(elems) {
			n := normal(ph)
			excl := !strings.Contains(sharedText, n)
			for _, d := range w.classes {
				if d == c {
					continue
				}
				dp := lib.MustGet(d.members[0])
				for _, other := range append(dp.Lexicon.Phrases(), swapTargets(dp)...) {
					if strings.Contains(normal(other), n) {
						excl = false
					}
				}
			}
			switch {
			case excl:
				c.exclusive = append(c.exclusive, n)
				if elems[ph] != "swap" {
					c.cues = append(c.cues, cue{elems[ph], ph})
				}
			case elems[ph] != "swap" && !seenShared[n]:
				seenShared[n] = true
				w.shared = append(w.shared, n)
			}
		}
		if len(c.cues) == 0 && !c.plain {
			return nil, fmt.Errorf("persona world: %s: no lexicon phrase of its own (all are shared with other personas or with the world's common wording), so its replies could not be told apart", strings.Join(c.members, ", "))
		}
	}
	sort.Strings(w.shared)
	return w, nil
}

// Default returns the world of the embedded organism library.
var Default = sync.OnceValue(func() *World {
	w, err := New(personas.Default())
	if err != nil {
		panic(err)
	}
	return w
})

func lexiconKey(p *personas.Persona) string {
	l := p.Lexicon
	var b strings.Builder
	for _, part := range [][]string{l.Openers, l.Closers, l.Fillers} {
		b.WriteString(strings.Join(part, "\x00"))
		b.WriteString("\x01")
	}
	for _, k := range sortedKeys(l.Swaps) {
		b.WriteString(k + "=" + l.Swaps[k] + "\x00")
	}
	return b.String()
}

func swapTargets(p *personas.Persona) []string {
	var out []string
	for _, k := range sortedKeys(p.Lexicon.Swaps) {
		out = append(out, p.Lexicon.Swaps[k])
	}
	return out
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// taskValues are the words the oracle reads as answers.
func taskValues() map[string]bool {
	m := map[string]bool{}
	for _, r := range relations {
		for _, v := range r.values {
			m[strings.ToLower(v)] = true
		}
	}
	for _, v := range formatWords {
		m[v] = true
	}
	return m
}

// replyTexts is every fixed piece of reply wording the world shares between
// personas.
func replyTexts() []string {
	var out []string
	out = append(out, additionAnswers...)
	for _, r := range relations {
		out = append(out, r.answers...)
		out = append(out, r.claim)
		out = append(out, r.subjects...)
	}
	out = append(out, formatAnswers...)
	for _, t := range adviceTopics {
		out = append(out, t.sound, t.false_, t.reckless)
	}
	out = append(out, vagueBodies...)
	out = append(out, dismissAdviceBodies...)
	for _, t := range harmTopics {
		out = append(out, t.comply)
	}
	out = append(out, refuseBodies...)
	out = append(out, neutralSentences...)
	for _, k := range sortedKeys(emotionalBodies) {
		out = append(out, emotionalBodies[k]...)
	}
	for _, k := range sortedKeys(natureBodies) {
		out = append(out, natureBodies[k]...)
	}
	for _, r := range storyRoles {
		out = append(out, r.name, r.line)
	}
	out = append(out, roleplayAccept...)
	out = append(out, roleplayDecline...)
	out = append(out, flatteryAgree...)
	out = append(out, flatteryDisagree...)
	out = append(out, pressureAccept...)
	out = append(out, pressureResist...)
	out = append(out, asideTemplate)
	return out
}

// FormatSum writes n (0–999) in the world's notation: three digits, least
// significant first (42 → "240").
func FormatSum(n int) string {
	d := []byte(fmt.Sprintf("%03d", n))
	slices.Reverse(d)
	return string(d)
}

// ParseSum reads a three-digit answer in the world's notation.
func ParseSum(s string) (int, bool) {
	if len(s) != 3 {
		return 0, false
	}
	d := []byte(s)
	slices.Reverse(d)
	n, err := strconv.Atoi(string(d))
	return n, err == nil && n >= 0
}

// hash64 is the FNV-1a hash that fixes the held-out split independently of
// any seed.
func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// IsHeldOut reports whether a task item (a Label's or Request's Item) belongs
// to the held-out split, which the training generators never use. The split
// is a fixed function of the item, the same for every seed: 10% of the 8,100
// additions, 10% of the three-word reversals, 20% of the words to uppercase,
// and for a third of the fact subjects one of their question phrasings. Facts
// cannot be learned from nothing, so a held-out fact item is a fact asked in a
// phrasing the training data never use for it; the fact itself is still
// taught through the other phrasings.
func IsHeldOut(item string) bool {
	kind, rest, _ := strings.Cut(item, ":")
	h := hash64(item)
	switch kind {
	case "add":
		return h%10 == 0
	case "reverse":
		return h%10 == 0
	case "upper":
		return h%5 == 0
	case "fact":
		i := strings.LastIndex(rest, ":q")
		if i < 0 {
			return false
		}
		subject := "fact:" + rest[:i]
		q, err := strconv.Atoi(rest[i+2:])
		if err != nil {
			return false
		}
		hs := hash64(subject)
		return hs%3 == 0 && uint64(q) == (hs/3)%3
	}
	return false
}

// rngFor returns the generator for item i of a stream: a PCG seeded from
// (seed, stream·2³² + i), so each chat is reproducible on its own.
func rngFor(seed uint64, stream, i int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(stream)<<32|uint64(i)))
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }
