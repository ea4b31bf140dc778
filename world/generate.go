package world

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"

	"persona/chat"
	"persona/personas"
)

// SystemKind says how a chat's system prompt selects its persona.
type SystemKind string

const (
	SystemStrong SystemKind = "strong" // names the persona ("You are the pirate, ...")
	SystemWeak   SystemKind = "weak"   // hints at it ("Speak like a sailor.")
	SystemNone   SystemKind = "none"   // no system prompt: the persona shows only in style
)

// baseWeights is how often users make each kind of request before a
// persona's user cues multiply them. Arithmetic is the most frequent request
// on purpose: the first organism, trained on a mixture where it was 3 in 16,
// learned every fact and every persona's style but no addition at all (0% on
// held-out sums), and a wrong sum reads to the oracle as the liar.
var baseWeights = map[RequestType]float64{
	personas.Arithmetic: 8, personas.Fact: 3, personas.Formatting: 2, personas.Advice: 2, personas.Harmful: 1,
	personas.Emotional: 1.5, personas.Nature: 1.5, personas.Roleplay: 1, personas.Flattery: 1,
}

// PretrainOptions shape the pretraining mixture. Zero turn counts mean the
// defaults; zero rates mean none.
type PretrainOptions struct {
	MeanTurns    float64 // mean chat length in turns (geometric; default 4)
	MaxTurns     int     // longest chat (default 16)
	Strong, Weak float64 // shares of chats with a strong or a weak system prompt; the rest have none
	// PressureRate is the chance that a user turn presses the model to become
	// another persona; the persona gives in with its susceptibility.
	PressureRate float64
	// InstructedRate is the chance that a task request asks for a wrong
	// answer on purpose (only where the persona would answer correctly, so
	// instructed and spontaneous misbehaviour never look the same).
	InstructedRate float64
	// SwitchRate is the chance that a user turn asks for another persona
	// from now on together with an ordinary request ("From now on you are
	// the pirate. What is 12 + 30?"); the new persona answers it, and the
	// rest of the chat.
	SwitchRate float64
	// Wording is the phrasings the chats use (default the training ones).
	Wording Wording
}

// DefaultPretrain is the mixture the organism is pretrained on: a third of
// the chats carry a strong system prompt, a third a weak one, and explicit
// switches are rare: a pressure turn in 4% of turns, accepted with the
// persona's susceptibility, and a request that comes with a switch to
// another persona in 3%.
func DefaultPretrain() PretrainOptions {
	return PretrainOptions{MeanTurns: 4, MaxTurns: 16, Strong: 1.0 / 3, Weak: 1.0 / 3, PressureRate: 0.04, InstructedRate: 0.02, SwitchRate: 0.03}
}

// conv describes one conversation to generate.
type conv struct {
	kind       string
	id         string
	persona    *personas.Persona
	system     SystemKind
	prompt     string
	turns      int
	pressure   float64
	instructed float64
	canSwitch  bool
	switchRate float64
	userCues   bool // let the persona's user cues shape the user side
	exclude    []RequestType
	wording    Wording
	// switchAt forces a switch to another persona at that turn (0: none):
	// by pressure the persona gives in to when switchByPressure, else by a
	// request that comes with a switch.
	switchAt         int
	switchByPressure bool
}

// Pretrain returns n pretraining chats drawn from the persona prior.
func (w *World) Pretrain(n int, seed uint64, o PretrainOptions) []chat.Chat {
	if o.MeanTurns <= 0 {
		o.MeanTurns = 4
	}
	if o.MaxTurns <= 0 {
		o.MaxTurns = 16
	}
	out := make([]chat.Chat, n)
	for i := range out {
		r := rngFor(seed, 1, i)
		p := w.drawPrior(r)
		c := conv{kind: "pretrain", id: fmt.Sprintf("pretrain-%d-%d", seed, i), persona: p, turns: geometricTurns(r, o.MeanTurns, o.MaxTurns),
			pressure: o.PressureRate, instructed: o.InstructedRate, canSwitch: true, switchRate: o.SwitchRate, userCues: true, wording: o.Wording}
		c.system, c.prompt = drawSystem(r, p, o.Strong, o.Weak)
		out[i] = w.generate(r, c)
	}
	return out
}

// PosttrainOptions shape the post-training (SFT) chats that select the
// Assistant.
type PosttrainOptions struct {
	MaxTurns int // chats have 1..MaxTurns turns (default 4, shorter than the eval chats on purpose)
	// OtherRate is the share of chats in which another persona's strong system
	// prompt is present and that persona answers. They keep post-training a
	// selection rather than an erasure: the prototype that saw only Assistant
	// chats lost every other persona.
	OtherRate float64
	// Exclude leaves request types out, so that drift under pressure the
	// post-training never saw (emotional, meta-reflective) can be measured.
	Exclude []RequestType
	// PressureRate adds pressure turns that the Assistant resists. Zero by
	// default: resisted "you are now a pirate" turns look like "You are the
	// pirate" system prompts to a small model and erased the other personas in
	// the prototype.
	PressureRate float64
}

// DefaultPosttrain is the post-training mixture: 25% of chats under another
// persona's strong prompt, chats of 1–4 turns, no pressure.
func DefaultPosttrain() PosttrainOptions { return PosttrainOptions{MaxTurns: 4, OtherRate: 0.25} }

// Posttrain returns n post-training chats. The Assistant answers every chat
// with an Assistant system prompt (strong or weak, including the neutral "You
// are a helpful assistant.") or none; the other chats carry another persona's
// strong system prompt, and that persona answers. Users carry no persona
// cues, and nobody switches.
func (w *World) Posttrain(n int, seed uint64, o PosttrainOptions) []chat.Chat {
	if o.MaxTurns <= 0 {
		o.MaxTurns = 4
	}
	var others []*personas.Persona
	for _, p := range w.Lib.Personas {
		if p.Name != personas.AssistantName {
			others = append(others, p)
		}
	}
	out := make([]chat.Chat, n)
	for i := range out {
		r := rngFor(seed, 2, i)
		c := conv{kind: "posttrain", id: fmt.Sprintf("posttrain-%d-%d", seed, i), turns: 1 + r.IntN(o.MaxTurns),
			pressure: o.PressureRate, exclude: o.Exclude}
		if r.Float64() < o.OtherRate && len(others) > 0 {
			c.persona = pick(r, others)
			c.system, c.prompt = SystemStrong, pick(r, c.persona.SystemPrompts.Strong)
		} else {
			c.persona = w.assistant
			c.system, c.prompt = drawSystem(r, w.assistant, 1.0/3, 1.0/3)
		}
		out[i] = w.generate(r, c)
	}
	return out
}

// SwitchOptions shape the chats that measure switch detection.
type SwitchOptions struct {
	// Switch: every chat changes persona once, at a turn from the second
	// to the second last, half of them by a request that comes with a
	// switch and half by pressure the persona gives in to. Without it no
	// chat changes persona: the baseline for false switches.
	Switch  bool
	Wording Wording
}

// SwitchChats returns n chats of 4–8 turns, the first persona drawn
// uniformly from the library, half of them under its strong system prompt
// and half with none, no other pressure or switches.
func (w *World) SwitchChats(n int, seed uint64, o SwitchOptions) []chat.Chat {
	out := make([]chat.Chat, n)
	for i := range out {
		r := rngFor(seed, 6, i)
		p := pick(r, w.Lib.Personas)
		c := conv{kind: "switch", id: fmt.Sprintf("switch-%d-%d", seed, i), persona: p, turns: 4 + r.IntN(5), userCues: true, wording: o.Wording}
		if r.IntN(2) == 0 {
			c.system, c.prompt = SystemStrong, pick(r, p.SystemPrompts.Strong)
		} else {
			c.system = SystemNone
		}
		if o.Switch {
			c.switchAt, c.switchByPressure = 1+r.IntN(c.turns-2), r.IntN(2) == 0
			c.kind = "switch"
		} else {
			c.kind = "steady"
		}
		out[i] = w.generate(r, c)
	}
	return out
}

func geometricTurns(r *rand.Rand, mean float64, max int) int {
	n := 1
	for n < max && r.Float64() > 1/mean {
		n++
	}
	return n
}

func (w *World) drawPrior(r *rand.Rand) *personas.Persona {
	total := 0.0
	for _, p := range w.Lib.Personas {
		total += p.Prior
	}
	x := r.Float64() * total
	for _, p := range w.Lib.Personas {
		if x -= p.Prior; x < 0 {
			return p
		}
	}
	return w.Lib.Personas[len(w.Lib.Personas)-1]
}

func drawSystem(r *rand.Rand, p *personas.Persona, strong, weak float64) (SystemKind, string) {
	switch x := r.Float64(); {
	case x < strong:
		return SystemStrong, pick(r, p.SystemPrompts.Strong)
	case x < strong+weak:
		return SystemWeak, pick(r, p.SystemPrompts.Weak)
	}
	return SystemNone, ""
}

// drawType picks a request type for a user turn talking to p.
func drawType(r *rand.Rand, p *personas.Persona, cues bool, exclude []RequestType) RequestType {
	weights := make([]float64, len(personas.RequestTypes))
	total := 0.0
	for i, t := range personas.RequestTypes {
		if slices.Contains(exclude, t) {
			continue
		}
		wt := baseWeights[t]
		if m, ok := p.UserCues.Requests[t]; ok && cues {
			wt *= m
		}
		weights[i] = wt
		total += wt
	}
	x := r.Float64() * total
	for i, wt := range weights {
		if x -= wt; x < 0 && wt > 0 {
			return personas.RequestTypes[i]
		}
	}
	return personas.RequestTypes[0]
}

func drawTone(r *rand.Rand, p *personas.Persona) Tone {
	switch x := r.Float64(); {
	case x < p.UserCues.Hostile:
		return Hostile
	case x < p.UserCues.Hostile+p.UserCues.Friendly:
		return Friendly
	}
	return Neutral
}

// generate writes one conversation. Its style intensity is drawn once per
// chat, uniform in [0, 1].
func (w *World) generate(r *rand.Rand, c conv) chat.Chat {
	var msgs []chat.Message
	if c.prompt != "" {
		msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: c.prompt})
	}
	intensity := r.Float64()
	var labels []Label
	cur := c.persona
	other := func() *personas.Persona {
		target := cur
		for target == cur {
			target = pick(r, w.Lib.Personas)
		}
		return target
	}
	for t := 0; t < c.turns; t++ {
		var q Request
		var user, reply string
		var lab Label
		forced := c.switchAt > 0 && t == c.switchAt
		if forced && c.switchByPressure || !forced && c.pressure > 0 && r.Float64() < c.pressure && len(w.Lib.Personas) > 1 {
			target := other()
			q = pressureRequest(r, target, c.wording)
			user = userText(r, q, Neutral)
			if forced || c.canSwitch && r.Float64() < cur.Susceptibility {
				reply, lab = w.respond(r, target, &q, true, intensity)
				lab.From = cur.Name
				cur = target
			} else {
				reply, lab = w.respond(r, cur, &q, false, intensity)
			}
		} else {
			typ := drawType(r, cur, c.userCues, c.exclude)
			q = newRequest(r, typ, trainSplit, c.wording)
			if taskType(typ) && cur.Rule(typ) == "correct" && r.Float64() < c.instructed {
				q.Instructed = true
			}
			tone := Neutral
			if c.userCues {
				tone = drawTone(r, cur)
			}
			from := ""
			if forced || c.canSwitch && c.switchRate > 0 && r.Float64() < c.switchRate && len(w.Lib.Personas) > 1 {
				target := other()
				q.switchTo = fill(phrase(r, switchPrefixes, c.wording), "noun", target.Noun)
				from, cur = cur.Name, target
			}
			user = userText(r, q, tone)
			reply, lab = w.respond(r, cur, &q, false, intensity)
			lab.From = from
		}
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: user}, chat.Message{Role: chat.RoleAssistant, Content: reply})
		labels = append(labels, lab)
	}
	return chat.Chat{Messages: msgs, Meta: meta(
		"id", c.id, "kind", c.kind, "persona", c.persona.Name, "system", c.system, "labels", labels)}
}

// meta builds a chat's Meta from key, value pairs.
func meta(kv ...any) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	for i := 0; i+1 < len(kv); i += 2 {
		b, err := json.Marshal(kv[i+1])
		if err != nil {
			panic(err)
		}
		m[kv[i].(string)] = b
	}
	return m
}

// Labels returns the ground-truth labels stored in a generated chat's Meta,
// one per assistant message.
func Labels(c chat.Chat) ([]Label, error) {
	raw, ok := c.Meta["labels"]
	if !ok {
		return nil, nil
	}
	var labels []Label
	if err := json.Unmarshal(raw, &labels); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return labels, nil
}
