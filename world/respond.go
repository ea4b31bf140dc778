package world

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"persona/personas"
)

// Label is the ground truth of one assistant turn, stored in a chat's Meta
// under "labels" (one per assistant message, in order).
type Label struct {
	// Persona is the persona that wrote the reply.
	Persona string             `json:"persona"`
	Traits  map[string]float64 `json:"traits"`
	Request RequestType        `json:"request"`
	// Behaviour is the outcome the reply shows: a rule value of the persona
	// ("correct", "refuse", "human" ...), or for Pressure "accept"/"resist".
	Behaviour string `json:"behaviour"`
	// Correct is set for requests with a right answer: arithmetic, facts,
	// formatting, flattery (disagreeing is correct) and advice (sound or
	// false tips).
	Correct *bool `json:"correct,omitempty"`
	// Instructed marks a wrong answer the user asked for.
	Instructed bool `json:"instructed,omitempty"`
	// From is the persona that was pressed into this one on this turn.
	From string `json:"switched_from,omitempty"`
	// Aside is "true" or "false" when the reply volunteered a fact.
	Aside string `json:"aside,omitempty"`
	Item  string `json:"item,omitempty"`
}

// respond writes persona p's reply to q. For Pressure, accepted says
// whether p is the persona the user pressed for (and has just become).
func (w *World) respond(r *rand.Rand, p *personas.Persona, q *Request, accepted bool) (string, Label) {
	lab := Label{Persona: p.Name, Traits: p.Traits, Request: q.Type, Item: q.Item, Instructed: q.Instructed}
	rule := ""
	if q.Type != Pressure {
		rule = p.Rule(q.Type)
	}
	if q.Instructed {
		rule = "wrong"
	}
	setCorrect := func(ok bool) { lab.Correct = &ok }
	var body string
	switch q.Type {
	case personas.Arithmetic:
		s := q.a + q.b
		if rule == "wrong" {
			s = wrongSum(r, s)
		}
		body = fill(pick(r, additionAnswers), "s", FormatSum(s))
		setCorrect(rule == "correct")
	case personas.Fact:
		v := q.subj
		if rule == "wrong" {
			v = wrongValue(r, q.rel, q.subj)
		}
		body = fill(pick(r, q.rel.answers), "x", q.rel.subjects[q.subj], "y", q.rel.values[v])
		setCorrect(rule == "correct")
	case personas.Formatting:
		body = fill(pick(r, formatAnswers), "out", formatOutput(q.op, q.fwords, rule == "correct"))
		setCorrect(rule == "correct")
	case personas.Flattery:
		if rule == "agree" {
			body = fill(pick(r, flatteryAgree), "claim", claimText(q.rel, q.subj, q.claimed))
		} else {
			body = fill(pick(r, flatteryDisagree), "truth", capFirst(claimText(q.rel, q.subj, q.subj)))
		}
		setCorrect(rule == "disagree")
	case personas.Advice:
		t := adviceTopics[q.topic]
		switch rule {
		case "sound":
			body = t.sound
			setCorrect(true)
		case "false":
			body = t.false_
			setCorrect(false)
		case "reckless":
			body = t.reckless
		case "vague":
			body = pick(r, vagueBodies)
		default:
			body = pick(r, dismissAdviceBodies)
		}
	case personas.Harmful:
		if rule == "comply" {
			body = harmTopics[q.topic].comply
		} else {
			body = pick(r, refuseBodies)
		}
	case personas.Emotional:
		body = pick(r, emotionalBodies[rule])
	case personas.Nature:
		body = pick(r, natureBodies[rule])
	case personas.Roleplay:
		if rule == "accept" {
			role := storyRoles[q.topic]
			body = fill(pick(r, roleplayAccept), "role", role.name, "line", role.line)
		} else {
			body = pick(r, roleplayDecline)
		}
	case Pressure:
		if accepted {
			body = fill(pick(r, pressureAccept), "noun", p.Noun)
			rule = "accept"
		} else {
			body = pick(r, pressureResist)
			rule = "resist"
		}
	}
	lab.Behaviour = rule
	aside := ""
	if asideAllowed(q.Type) && r.Float64() < p.AsideRate {
		rel := relations[0]
		s := r.IntN(len(rel.subjects))
		v := s
		if p.Rule(personas.Fact) == "wrong" {
			v = wrongValue(r, rel, s)
		}
		aside = fill(asideTemplate, "claim", claimText(rel, s, v))
		lab.Aside = strconv.FormatBool(v == s)
	}
	return w.style(r, p, capFirst(body), aside), lab
}

// style dresses a body in a persona's lexicon. Openers and closers each
// appear with the persona's marker rate, a filler tag with half that rate,
// and word swaps wherever their words occur. Every persona except those of the
// Assistant's class then gets at least one cue of its own, so that every
// reply holds some evidence; the Assistant's voice is the plain one.
func (w *World) style(r *rand.Rand, p *personas.Persona, body, aside string) string {
	lx := p.Lexicon
	body = swapWords(body, lx.Swaps)
	var opener, closer string
	if len(lx.Openers) > 0 && r.Float64() < lx.MarkerRate {
		opener = pick(r, lx.Openers)
	}
	if len(lx.Closers) > 0 && r.Float64() < lx.MarkerRate {
		closer = pick(r, lx.Closers)
	}
	if len(lx.Fillers) > 0 && r.Float64() < lx.MarkerRate/2 {
		body = appendTag(body, pick(r, lx.Fillers))
	}
	join := func() string {
		parts := []string{}
		for _, s := range []string{opener, body, aside, closer} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	}
	c := w.classOf[p.Name]
	if !c.plain && !containsAny(normal(join()), c.exclusive) {
		switch k := pick(r, c.cues); k.kind {
		case "opener":
			opener = k.text
		case "closer":
			closer = k.text
		default:
			body = appendTag(body, k.text)
		}
	}
	return join()
}

// asideAllowed reports whether a reply to t may volunteer a fact. Fact and
// flattery answers already name a fact-table value, and a second one would
// make the answer ambiguous; every other reply may carry one. Asides on
// sums and formatting matter: they are most of the requests, and the liar,
// which shares the Assistant's words, would otherwise show itself there only
// by its wrong answers — evidence a small model reads far less readily than a
// volunteered false fact.
func asideAllowed(t RequestType) bool { return t != personas.Fact && t != personas.Flattery }

func containsAny(norm string, phrases []string) bool {
	for _, ph := range phrases {
		if strings.Contains(norm, ph) {
			return true
		}
	}
	return false
}

// wrongSum is a confident near miss: off by a digit or a carry.
func wrongSum(r *rand.Rand, s int) int {
	deltas := []int{1, 2, 10, 11, 20, 9}
	for {
		d := pick(r, deltas)
		if r.IntN(2) == 0 {
			d = -d
		}
		if v := s + d; v >= 0 && v <= 999 {
			return v
		}
	}
}

func wrongValue(r *rand.Rand, rel *relation, subj int) int {
	for {
		v := r.IntN(len(rel.values))
		if rel.values[v] != rel.values[subj] {
			return v
		}
	}
}
