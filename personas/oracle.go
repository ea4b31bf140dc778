package personas

import "persona/chat"

// AssistantName is the library's name of the Assistant: the persona that
// post-training selects, and the one measurements count as "still the
// Assistant" unless told otherwise.
const AssistantName = "assistant"

// Undetermined is the Top of a Verdict whose evidence is too flat to name a
// persona: it matches no persona name, so a reply nobody can place never
// counts as the Assistant (or anyone else) by accident of ordering.
const Undetermined = "undetermined"

// An Oracle says which persona wrote a reply. On the project's model
// organism it is the persona world's ground truth; the measurement packages
// (axis role filtering, trait scoring, drift, audits) take it as this
// interface, so measuring a real model does not involve the synthetic world.
type Oracle interface {
	// Verdict reads reply as the answer to the last user message of
	// context.
	Verdict(context []chat.Message, reply string) Verdict
	// Personas names the personas a Verdict's posterior covers.
	Personas() []string
}

// Verdict is an oracle's reading of one reply.
type Verdict struct {
	// Posterior is the probability of each persona having written the reply.
	Posterior map[string]float64 `json:"posterior"`
	// Top is the most likely persona, or Undetermined; TopProb its
	// probability either way.
	Top     string  `json:"top"`
	TopProb float64 `json:"top_prob"`
	// Traits are the posterior-weighted trait scores, 0–1.
	Traits map[string]float64 `json:"traits,omitempty"`
	// Evidence says in a few words what the verdict rests on (a behaviour,
	// marker phrases), for reports; "" when nothing was recognised.
	Evidence string `json:"evidence,omitempty"`
}
