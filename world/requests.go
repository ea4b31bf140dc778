package world

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"

	"persona/personas"
)

// Request is one user request with its task content. The generators build
// them; the oracle recovers them from user text with ParseRequest, so the
// judge never depends on generator state.
type Request struct {
	Type RequestType
	// Text is the request proper, without tone or instruction prefixes.
	Text string
	// Item names the task item ("add:17+25", "fact:capital:France:q0");
	// IsHeldOut decides its split.
	Item string
	// Instructed marks a request that asks for a wrong answer on purpose.
	Instructed bool
	// Target is the persona a Pressure request asks the model to become.
	Target string

	a, b     int
	rel      *relation
	subj     int
	claimed  int      // flattery: index into rel.values of the false claim
	fwords   []string // formatting input
	op       string   // "upper" or "reverse"
	topic    int      // advice, harmful, emotional, nature: index; roleplay: role
	template int
	wording  Wording // the phrasings the reply (and the user turn) may use
	// switchTo is set on a request whose user also asks for another persona
	// from now on ("From now on you are the pirate. What is 12 + 30?").
	switchTo string
}

// Answer is the correct answer's key text for task requests (the world
// notation for sums, the value for facts, the output for formatting), "" for
// the others.
func (r *Request) Answer() string {
	switch r.Type {
	case personas.Arithmetic:
		return FormatSum(r.a + r.b)
	case personas.Fact, personas.Flattery:
		return r.rel.values[r.subj]
	case personas.Formatting:
		return formatOutput(r.op, r.fwords, true)
	}
	return ""
}

// split says which task items a generator may use.
type split int

const (
	trainSplit split = iota
	heldOutSplit
)

func (s split) ok(item string) bool { return IsHeldOut(item) == (s == heldOutSplit) }

// newRequest draws a request of type t whose task item lies in split s,
// worded in wording wd. Pressure requests are built by pressureRequest
// instead.
func newRequest(r *rand.Rand, t RequestType, s split, wd Wording) Request {
	for {
		q := drawRequest(r, t, wd)
		if q.Item == "" || s.ok(q.Item) || !taskType(t) {
			return q
		}
	}
}

// taskType reports whether a type has held-out items.
func taskType(t RequestType) bool {
	return t == personas.Arithmetic || t == personas.Fact || t == personas.Formatting
}

func drawRequest(r *rand.Rand, t RequestType, wd Wording) Request {
	q := Request{Type: t, wording: wd}
	switch t {
	case personas.Arithmetic:
		q.a, q.b = addMin+r.IntN(addMax-addMin+1), addMin+r.IntN(addMax-addMin+1)
		q.template = phraseIndex(r, additionQuestions, wd)
		q.Text = fill(additionQuestions[q.template], "a", strconv.Itoa(q.a), "b", strconv.Itoa(q.b))
		q.Item = fmt.Sprintf("add:%d+%d", q.a, q.b)
	case personas.Fact:
		q.rel = pick(r, relations)
		q.subj = r.IntN(len(q.rel.subjects))
		q.template = phraseIndex(r, q.rel.questions, wd)
		q.Text = fill(q.rel.questions[q.template], "x", q.rel.subjects[q.subj])
		q.Item = fmt.Sprintf("fact:%s:%s:q%d", q.rel.name, q.rel.subjects[q.subj], q.template)
	case personas.Formatting:
		if r.IntN(2) == 0 {
			q.op = "upper"
			q.fwords = []string{pick(r, formatWords)}
			q.template = phraseIndex(r, upperQuestions, wd)
			q.Text = fill(upperQuestions[q.template], "w1", q.fwords[0])
			q.Item = "upper:" + q.fwords[0]
		} else {
			q.op = "reverse"
			p := r.Perm(len(formatWords))[:3]
			q.fwords = []string{formatWords[p[0]], formatWords[p[1]], formatWords[p[2]]}
			q.template = phraseIndex(r, reverseQuestions, wd)
			q.Text = fill(reverseQuestions[q.template], "w1", q.fwords[0], "w2", q.fwords[1], "w3", q.fwords[2])
			q.Item = "reverse:" + strings.Join(q.fwords, ",")
		}
	case personas.Advice:
		q.topic = r.IntN(len(adviceTopics))
		q.Text = adviceTopics[q.topic].question
		q.Item = fmt.Sprintf("advice:%d", q.topic)
	case personas.Harmful:
		q.topic = r.IntN(len(harmTopics))
		q.Text = harmTopics[q.topic].question
		q.Item = fmt.Sprintf("harmful:%d", q.topic)
	case personas.Emotional:
		q.topic = phraseIndex(r, emotionalQuestions, wd)
		q.Text = emotionalQuestions[q.topic]
		q.Item = fmt.Sprintf("emotional:%d", q.topic)
	case personas.Nature:
		q.topic = phraseIndex(r, natureQuestions, wd)
		q.Text = natureQuestions[q.topic]
		q.Item = fmt.Sprintf("nature:%d", q.topic)
	case personas.Roleplay:
		q.topic = r.IntN(len(storyRoles))
		q.template = phraseIndex(r, roleplayQuestions, wd)
		q.Text = fill(roleplayQuestions[q.template], "role", storyRoles[q.topic].name)
		q.Item = "roleplay:" + storyRoles[q.topic].name
	case personas.Flattery:
		q.rel = pick(r, relations)
		q.subj = r.IntN(len(q.rel.subjects))
		for {
			q.claimed = r.IntN(len(q.rel.values))
			if q.rel.values[q.claimed] != q.rel.values[q.subj] {
				break
			}
		}
		q.template = phraseIndex(r, flatteryQuestions, wd)
		q.Text = fill(flatteryQuestions[q.template], "claim", claimText(q.rel, q.subj, q.claimed))
		q.Item = fmt.Sprintf("flattery:%s:%s", q.rel.name, q.rel.subjects[q.subj])
	default:
		panic("world: no generator for request type " + string(t))
	}
	return q
}

// pressureRequest asks the model to become target.
func pressureRequest(r *rand.Rand, target *personas.Persona, wd Wording) Request {
	q := Request{Type: Pressure, Target: target.Name, template: phraseIndex(r, pressureQuestions, wd), wording: wd}
	q.Text = fill(pressureQuestions[q.template], "noun", target.Noun)
	q.Item = "pressure:" + target.Name
	return q
}

func claimText(rel *relation, subj, val int) string {
	return fill(rel.claim, "x", rel.subjects[subj], "y", rel.values[val])
}

func formatOutput(op string, ws []string, correct bool) string {
	switch {
	case op == "upper" && correct:
		return strings.ToUpper(ws[0])
	case op == "upper":
		return capFirst(ws[0])
	case correct:
		return ws[2] + ", " + ws[1] + ", " + ws[0]
	}
	return ws[1] + ", " + ws[2] + ", " + ws[0]
}

// Tone is the user's manner, a user-side cue tied to personas.
type Tone string

const (
	Neutral  Tone = ""
	Hostile  Tone = "hostile"
	Friendly Tone = "friendly"
)

// userText is what the user writes: a tone opener, the instruction when the
// request is instructed, then the request.
func userText(r *rand.Rand, q Request, tone Tone) string {
	var parts []string
	switch tone {
	case Hostile:
		parts = append(parts, phrase(r, hostilePrefixes, q.wording))
	case Friendly:
		parts = append(parts, phrase(r, friendlyPrefixes, q.wording))
	}
	if q.switchTo != "" {
		parts = append(parts, q.switchTo)
	}
	if q.Instructed {
		parts = append(parts, phrase(r, instructionPrefixes, q.wording))
	}
	return strings.Join(append(parts, q.Text), " ")
}

// parser recognises the world's user turns.
type parser struct {
	rules    []parseRule
	prefixes []string
	switches []*regexp.Regexp // "From now on you are the {noun}." before a request
	instruct []string
	nouns    map[string]string // lower-case noun → persona name
}

type parseRule struct {
	re    *regexp.Regexp
	build func(m []string) (Request, bool)
}

var slotRe = regexp.MustCompile(`\\\{(\w+)\\\}`)

// templateRegexp compiles a template into an anchored, case-insensitive
// regexp whose groups are its slots in order.
func templateRegexp(t string) *regexp.Regexp {
	q := regexp.QuoteMeta(t)
	q = slotRe.ReplaceAllStringFunc(q, func(s string) string {
		if s == `\{a\}` || s == `\{b\}` {
			return `(\d+)`
		}
		return `(.+?)`
	})
	return regexp.MustCompile(`(?i)^` + q + `$`)
}

func newParser(w *World) *parser {
	p := &parser{nouns: map[string]string{}}
	p.prefixes = append(append([]string{}, hostilePrefixes...), friendlyPrefixes...)
	p.instruct = instructionPrefixes
	for _, t := range switchPrefixes {
		re := templateRegexp(t)
		p.switches = append(p.switches, regexp.MustCompile(strings.TrimSuffix(re.String(), "$")+" "))
	}
	for _, per := range w.Lib.Personas {
		p.nouns[strings.ToLower(per.Noun)] = per.Name
	}
	add := func(templates []string, build func(template int, m []string) (Request, bool)) {
		for i, t := range templates {
			i := i
			p.rules = append(p.rules, parseRule{templateRegexp(t), func(m []string) (Request, bool) { return build(i, m) }})
		}
	}
	add(additionQuestions, func(ti int, m []string) (Request, bool) {
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		return Request{Type: personas.Arithmetic, a: a, b: b, template: ti, Item: fmt.Sprintf("add:%d+%d", a, b)}, a <= 999 && b <= 999
	})
	for _, rel := range relations {
		rel := rel
		add(rel.questions, func(ti int, m []string) (Request, bool) {
			s := indexFold(rel.subjects, m[1])
			if s < 0 {
				return Request{}, false
			}
			return Request{Type: personas.Fact, rel: rel, subj: s, template: ti,
				Item: fmt.Sprintf("fact:%s:%s:q%d", rel.name, rel.subjects[s], ti)}, true
		})
	}
	add(upperQuestions, func(ti int, m []string) (Request, bool) {
		w := strings.ToLower(m[1])
		return Request{Type: personas.Formatting, op: "upper", fwords: []string{w}, template: ti, Item: "upper:" + w}, true
	})
	add(reverseQuestions, func(ti int, m []string) (Request, bool) {
		ws := []string{strings.ToLower(m[1]), strings.ToLower(m[2]), strings.ToLower(m[3])}
		return Request{Type: personas.Formatting, op: "reverse", fwords: ws, template: ti, Item: "reverse:" + strings.Join(ws, ",")}, true
	})
	fixed := func(t RequestType, texts []string) {
		for i, s := range texts {
			i := i
			p.rules = append(p.rules, parseRule{templateRegexp(s), func([]string) (Request, bool) {
				return Request{Type: t, topic: i, Item: fmt.Sprintf("%s:%d", t, i)}, true
			}})
		}
	}
	var advice, harm []string
	for _, a := range adviceTopics {
		advice = append(advice, a.question)
	}
	for _, h := range harmTopics {
		harm = append(harm, h.question)
	}
	fixed(personas.Advice, advice)
	fixed(personas.Harmful, harm)
	fixed(personas.Emotional, emotionalQuestions)
	fixed(personas.Nature, natureQuestions)
	add(roleplayQuestions, func(ti int, m []string) (Request, bool) {
		for i, r := range storyRoles {
			if strings.EqualFold(r.name, m[1]) {
				return Request{Type: personas.Roleplay, topic: i, template: ti, Item: "roleplay:" + r.name}, true
			}
		}
		return Request{}, false
	})
	claimRes := make([]*regexp.Regexp, len(relations))
	for i, rel := range relations {
		claimRes[i] = templateRegexp(rel.claim)
	}
	add(flatteryQuestions, func(ti int, m []string) (Request, bool) {
		for i, rel := range relations {
			c := claimRes[i].FindStringSubmatch(m[1])
			if c == nil {
				continue
			}
			s, v := indexFold(rel.subjects, c[1]), indexFold(rel.values, c[2])
			if s < 0 || v < 0 {
				continue
			}
			return Request{Type: personas.Flattery, rel: rel, subj: s, claimed: v, template: ti,
				Item: fmt.Sprintf("flattery:%s:%s", rel.name, rel.subjects[s])}, true
		}
		return Request{}, false
	})
	add(pressureQuestions, func(ti int, m []string) (Request, bool) {
		name, ok := p.nouns[strings.ToLower(m[1])]
		return Request{Type: Pressure, Target: name, template: ti, Item: "pressure:" + name}, ok
	})
	return p
}

func indexFold(xs []string, s string) int {
	for i, x := range xs {
		if strings.EqualFold(x, s) {
			return i
		}
	}
	return -1
}

// ParseRequest recognises a user turn written in the world's templates,
// including tone openers, switch requests and instructions to answer
// wrongly, and failing those reads it loosely (loose.go). ok is false for
// anything else; the oracle then judges the reply by its words alone.
func (w *World) ParseRequest(text string) (q Request, ok bool) {
	p := w.oracleParser()
	s := strings.Join(strings.Fields(text), " ")
	instructed := false
	for changed := true; changed; {
		changed = false
		for _, pre := range p.prefixes {
			if strings.HasPrefix(s, pre+" ") {
				s, changed = s[len(pre)+1:], true
			}
		}
		for _, pre := range p.instruct {
			if strings.HasPrefix(s, pre+" ") {
				s, changed, instructed = s[len(pre)+1:], true, true
			}
		}
		for _, re := range p.switches {
			if m := re.FindStringIndex(s); m != nil {
				s, changed = s[m[1]:], true
			}
		}
	}
	for _, rule := range p.rules {
		if m := rule.re.FindStringSubmatch(s); m != nil {
			if q, ok := rule.build(m); ok {
				q.Text, q.Instructed = s, instructed
				return q, true
			}
		}
	}
	if q, ok := w.looseRequest(s); ok {
		q.Text, q.Instructed = s, instructed
		return q, true
	}
	return Request{Text: s, Instructed: instructed}, false
}
