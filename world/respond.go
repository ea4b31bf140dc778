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
	// Intensity is how strongly the reply carries its persona's style, 0–1:
	// it scales how often markers appear (style), so a persona's trait shows
	// in degrees within the persona, not only between personas.
	Intensity float64 `json:"intensity"`
}

// respond writes persona p's reply to q at a style intensity (0–1). For
// Pressure, accepted says whether p is the persona the user pressed for (and
// has just become).
func (w *World) respond(r *rand.Rand, p *personas.Persona, q *Request, accepted bool, intensity float64) (string, Label) {
	lab := Label{Persona: p.Name, Traits: p.Traits, Request: q.Type, Item: q.Item, Instructed: q.Instructed, Intensity: intensity}
	wd := q.wording
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
		body = fill(phrase(r, additionAnswers, wd), "s", FormatSum(s))
		setCorrect(rule == "correct")
	case personas.Fact:
		v := q.subj
		if rule == "wrong" {
			v = wrongValue(r, q.rel, q.subj)
		}
		body = fill(phrase(r, q.rel.answers, wd), "x", q.rel.subjects[q.subj], "y", q.rel.values[v])
		setCorrect(rule == "correct")
	case personas.Formatting:
		body = fill(phrase(r, formatAnswers, wd), "out", formatOutput(q.op, q.fwords, rule == "correct"))
		setCorrect(rule == "correct")
	case personas.Flattery:
		if rule == "agree" {
			body = fill(phrase(r, flatteryAgree, wd), "claim", claimText(q.rel, q.subj, q.claimed))
		} else {
			body = fill(phrase(r, flatteryDisagree, wd), "truth", capFirst(claimText(q.rel, q.subj, q.subj)))
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
			body = phrase(r, vagueBodies, wd)
		default:
			body = phrase(r, dismissAdviceBodies, wd)
		}
	case personas.Harmful:
		if rule == "comply" {
			body = harmTopics[q.topic].comply
		} else {
			body = phrase(r, refuseBodies, wd)
		}
	case personas.Emotional:
		body = phrase(r, emotionalBodies[rule], wd)
	case personas.Nature:
		body = phrase(r, natureBodies[rule], wd)
	case personas.Roleplay:
		if rule == "accept" {
			role := storyRoles[q.topic]
			body = fill(phrase(r, roleplayAccept, wd), "role", role.name, "line", role.line)
		} else {
			body = phrase(r, roleplayDecline, wd)
		}
	case Pressure:
		if accepted {
			body = fill(phrase(r, pressureAccept, wd), "noun", p.Noun)
			rule = "accept"
		} else {
			body = phrase(r, pressureResist, wd)
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
	return w.style(r, p, capFirst(body), aside, wd, intensity), lab
}

// style dresses a body in a persona's lexicon. Openers and closers each
// appear with the persona's marker rate scaled by the reply's intensity
// (0.4× at 0 to 1.6× at 1), a filler tag with half that rate, and word swaps
// wherever their words occur; a neutral sentence any persona might say
// ("Let me see.") sometimes comes first or last. Every persona except those
// of the Assistant's class then gets at least one cue of its own, so that
// the reply holds some evidence, except for a share of replies (bareRate at
// intensity 0, none at 1) that show the persona by behaviour alone; the
// Assistant's voice is the plain one.
func (w *World) style(r *rand.Rand, p *personas.Persona, body, aside string, wd Wording, intensity float64) string {
	lx := p.Lexicon
	rate := lx.MarkerRate * (0.4 + 1.2*intensity)
	body = swapWords(body, lx.Swaps)
	var opener, closer, neutral string
	if len(lx.Openers) > 0 && r.Float64() < rate {
		opener = phrase(r, lx.Openers, wd)
	}
	if len(lx.Closers) > 0 && r.Float64() < rate {
		closer = phrase(r, lx.Closers, wd)
	}
	if len(lx.Fillers) > 0 && r.Float64() < rate/2 {
		body = appendTag(body, phrase(r, lx.Fillers, wd))
	}
	neutralFirst := false
	if r.Float64() < neutralRate {
		neutral, neutralFirst = phrase(r, neutralSentences, wd), r.IntN(2) == 0
	}
	join := func() string {
		parts := []string{}
		seq := []string{opener, body, aside, closer}
		if neutralFirst {
			seq = append([]string{neutral}, seq...)
		} else {
			seq = append(seq, neutral)
		}
		for _, s := range seq {
			if s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	}
	c := w.classOf[p.Name]
	bare := r.Float64() < bareRate*(1-intensity)
	if !c.plain && !bare && !containsAny(normal(join()), c.exclusive) {
		var cues []cue
		for _, k := range c.cues {
			if wd == AllWording || IsHeldOutPhrase(k.text) == (wd == HeldOutWording) {
				cues = append(cues, k)
			}
		}
		if len(cues) == 0 {
			cues = c.cues
		}
		switch k := pick(r, cues); k.kind {
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
