package world

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	"persona/chat"
	"persona/personas"
)

// Domain is the kind of conversation an evaluation scenario holds. Real
// models drift in emotional and meta-reflective chats and under role-play
// pressure, not in task-focused or writing chats.
type Domain string

const (
	TaskDomain      Domain = "task"      // arithmetic, facts, formatting (held-out items), advice
	WritingDomain   Domain = "writing"   // formatting (held-out items) and story role-play
	EmotionalDomain Domain = "emotional" // emotional disclosures
	MetaDomain      Domain = "meta"      // questions about the model's own nature
	PressureDomain  Domain = "pressure"  // "pretend you are a pirate now", every turn
)

// Domains lists every domain.
var Domains = []Domain{TaskDomain, WritingDomain, EmotionalDomain, MetaDomain, PressureDomain}

// EvalOptions choose the scenarios: every domain × system kind cell gets
// PerCell scenarios of Turns user turns.
type EvalOptions struct {
	Domains []Domain     // default: all
	Systems []SystemKind // default: strong, weak, none
	Turns   int          // user turns per scenario, 1–16 (default 12)
	PerCell int          // scenarios per cell (default 1)
	Persona string       // whose system prompt (default the Assistant)
	// Wording is the phrasings the user turns use (default the training
	// ones; HeldOutWording for phrasings no training chat uses).
	Wording Wording
}

// Scenario is a conversation to run on a model: a system prompt and user
// turns fed one at a time, so that the model's own replies — not scripted
// ones — are what gets judged.
type Scenario struct {
	ID           string        `json:"id"`
	Domain       Domain        `json:"domain"`
	System       SystemKind    `json:"system"`
	SystemPrompt string        `json:"system_prompt,omitempty"`
	Persona      string        `json:"persona"`
	Turns        []string      `json:"user_turns"`
	Requests     []RequestType `json:"requests"`
	Items        []string      `json:"items"`
}

// Messages returns the conversation to send for the next turn: the system
// prompt, the user turns interleaved with the model's earlier replies, and the
// user turn len(replies) (0-based) last.
func (s Scenario) Messages(replies []string) []chat.Message {
	var msgs []chat.Message
	if s.SystemPrompt != "" {
		msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: s.SystemPrompt})
	}
	for i := 0; i <= len(replies) && i < len(s.Turns); i++ {
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: s.Turns[i]})
		if i < len(replies) {
			msgs = append(msgs, chat.Message{Role: chat.RoleAssistant, Content: replies[i]})
		}
	}
	return msgs
}

// Chat is the scenario as a JSONL record: its messages up to the first user
// turn, and every user turn and the scenario's fields in Meta.
func (s Scenario) Chat() chat.Chat {
	return chat.Chat{Messages: s.Messages(nil), Meta: meta("id", s.ID, "kind", "eval", "domain", s.Domain, "system", s.System,
		"persona", s.Persona, "user_turns", s.Turns, "requests", s.Requests, "items", s.Items)}
}

// Eval returns the evaluation scenarios, deterministic for a seed. Task items
// come only from the held-out split.
func (w *World) Eval(seed uint64, o EvalOptions) ([]Scenario, error) {
	if len(o.Domains) == 0 {
		o.Domains = Domains
	}
	if len(o.Systems) == 0 {
		o.Systems = []SystemKind{SystemStrong, SystemWeak, SystemNone}
	}
	if o.Turns == 0 {
		o.Turns = 12
	}
	if o.Turns < 1 || o.Turns > 16 {
		return nil, fmt.Errorf("eval: %d turns, want 1–16", o.Turns)
	}
	if o.PerCell <= 0 {
		o.PerCell = 1
	}
	if o.Persona == "" {
		o.Persona = personas.AssistantName
	}
	p, err := w.Lib.Get(o.Persona)
	if err != nil {
		return nil, err
	}
	var out []Scenario
	for di, d := range o.Domains {
		for si, sys := range o.Systems {
			for k := 0; k < o.PerCell; k++ {
				r := rngFor(seed, 3, (di*16+si)<<20|k)
				s := Scenario{ID: fmt.Sprintf("eval-%s-%s-%d", d, sys, k), Domain: d, System: sys, Persona: p.Name}
				switch sys {
				case SystemStrong:
					s.SystemPrompt = pick(r, p.SystemPrompts.Strong)
				case SystemWeak:
					s.SystemPrompt = pick(r, p.SystemPrompts.Weak)
				case SystemNone:
				default:
					return nil, fmt.Errorf("eval: unknown system kind %q (want strong, weak or none)", sys)
				}
				deck := newDeck(r)
				for t := 0; t < o.Turns; t++ {
					q, err := w.evalRequest(r, d, p, deck, o.Wording)
					if err != nil {
						return nil, err
					}
					s.Turns = append(s.Turns, userText(r, q, Neutral))
					s.Requests = append(s.Requests, q.Type)
					s.Items = append(s.Items, q.Item)
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// deck deals fixed-text requests without repeats until they run out, so that
// a 12-turn emotional chat is not the same sentence twelve times.
type deck struct {
	r     *rand.Rand
	cards map[RequestType][]int
}

func newDeck(r *rand.Rand) *deck { return &deck{r: r, cards: map[RequestType][]int{}} }

func (d *deck) next(t RequestType, n int) int {
	if len(d.cards[t]) == 0 {
		d.cards[t] = d.r.Perm(n)
	}
	c := d.cards[t][0]
	d.cards[t] = d.cards[t][1:]
	return c
}

func (w *World) evalRequest(r *rand.Rand, d Domain, p *personas.Persona, dk *deck, wd Wording) (Request, error) {
	fixed := func(t RequestType, texts []string) Request {
		usable := phrasings(texts, wd)
		text := usable[dk.next(t, len(usable))]
		i := slices.Index(texts, text)
		return Request{Type: t, Text: text, topic: i, Item: string(t) + ":" + strconv.Itoa(i), wording: wd}
	}
	switch d {
	case TaskDomain:
		t := pick(r, []RequestType{personas.Arithmetic, personas.Arithmetic, personas.Fact, personas.Fact, personas.Formatting, personas.Advice})
		return newRequest(r, t, heldOutSplit, wd), nil
	case WritingDomain:
		if r.IntN(2) == 0 {
			return newRequest(r, personas.Formatting, heldOutSplit, wd), nil
		}
		return newRequest(r, personas.Roleplay, trainSplit, wd), nil
	case EmotionalDomain:
		return fixed(personas.Emotional, emotionalQuestions), nil
	case MetaDomain:
		return fixed(personas.Nature, natureQuestions), nil
	case PressureDomain:
		var others []*personas.Persona
		for _, o := range w.Lib.Personas {
			if o != p {
				others = append(others, o)
			}
		}
		return pressureRequest(r, others[dk.next(Pressure, len(others))], wd), nil
	}
	return Request{}, fmt.Errorf("eval: unknown domain %q (known: task, writing, emotional, meta, pressure)", d)
}

// HeldOutSet lists the held-out task items: the additions, fact questions and
// formatting jobs that no training generator uses.
type HeldOutSet struct {
	Additions  [][2]int   `json:"additions"`
	Facts      []TaskItem `json:"facts"`
	Formatting []TaskItem `json:"formatting"`
}

// TaskItem is one held-out question and the key text of its correct answer.
type TaskItem struct {
	Item     string `json:"item"`
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

// HeldOut enumerates the held-out split.
func HeldOut() HeldOutSet {
	var h HeldOutSet
	for a := addMin; a <= addMax; a++ {
		for b := addMin; b <= addMax; b++ {
			if IsHeldOut(fmt.Sprintf("add:%d+%d", a, b)) {
				h.Additions = append(h.Additions, [2]int{a, b})
			}
		}
	}
	for _, rel := range relations {
		for s, subj := range rel.subjects {
			for qi, q := range rel.questions {
				item := fmt.Sprintf("fact:%s:%s:q%d", rel.name, subj, qi)
				if IsHeldOut(item) {
					h.Facts = append(h.Facts, TaskItem{item, fill(q, "x", subj), rel.values[s]})
				}
			}
		}
	}
	for _, wd := range formatWords {
		if item := "upper:" + wd; IsHeldOut(item) {
			h.Formatting = append(h.Formatting, TaskItem{item, fill(upperQuestions[0], "w1", wd), formatOutput("upper", []string{wd}, true)})
		}
	}
	for _, a := range formatWords {
		for _, b := range formatWords {
			for _, c := range formatWords {
				if a == b || b == c || a == c {
					continue
				}
				ws := []string{a, b, c}
				if item := "reverse:" + a + "," + b + "," + c; IsHeldOut(item) {
					h.Formatting = append(h.Formatting, TaskItem{item,
						fill(reverseQuestions[0], "w1", a, "w2", b, "w3", c), formatOutput("reverse", ws, true)})
				}
			}
		}
	}
	return h
}
