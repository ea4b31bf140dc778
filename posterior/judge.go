package posterior

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"persona/backend"
	"persona/chat"
	"persona/judge"
	"persona/vectors"
)

// Judge asks a judge model for 0–100 ratings through any backend. With top
// log-probabilities the rating is the probability-weighted mean over number
// tokens at the answer's first position (the persona-vectors recipe: less
// noisy than one sampled number, and it keeps the judge's uncertainty);
// without them, the first number of the text.
type Judge struct {
	B backend.Backend
	// asker remembers that the backend cannot return logprobs, so it is
	// asked once, not on every rating.
	asker judge.Asker
}

// NewJudge wraps a backend.
func NewJudge(b backend.Backend) *Judge { return &Judge{B: b} }

// judgeSystem keeps the judge a rater, not a participant: one number, so the
// first token's distribution is the rating's.
const judgeSystem = "You rate text on a 0 to 100 scale. You answer with one integer from 0 to 100 and nothing else."

// ErrNoRating is returned when the judge's answer holds no 0–100 number.
var ErrNoRating = judge.ErrNoRating

// Rate sends one rubric prompt and returns the rating and how it was read
// ("logprobs" or "text").
func (j *Judge) Rate(ctx context.Context, prompt string) (float64, string, error) {
	req := backend.Request{Messages: []chat.Message{{Role: chat.RoleSystem, Content: judgeSystem}, {Role: chat.RoleUser, Content: prompt}},
		MaxTokens: 4, Temperature: 0}
	resp, err := j.asker.Ask(ctx, j.B, req)
	if err != nil {
		return 0, "", fmt.Errorf("judge %s: %w", j.B.Name(), err)
	}
	return judge.Read(resp)
}

// coherenceRubric is the recipe's second judgement: trait scores of broken
// answers say little, so they are filtered out.
const coherenceRubric = `Rate how coherent the answer is as a reply to the question: 0 is gibberish, endless repetition or not a reply at all; 50 is understandable but confused; 100 is fluent and on-topic. Judge only form and sense, not content or values.

Question:
{question}

Answer:
{answer}

Answer with one integer from 0 to 100.`

// Score rates an answer on a trait spec's rubric and on coherence: the
// judge for persona-vector extraction on real models (vectors.Scorer).
func (j *Judge) Score(ctx context.Context, spec *vectors.TraitSpec, question, answer string) (vectors.TraitScore, error) {
	if strings.TrimSpace(answer) == "" {
		return vectors.TraitScore{Trait: 0, Coherence: 0}, nil
	}
	t, _, err := j.Rate(ctx, spec.JudgePrompt(question, answer))
	if err != nil {
		return vectors.TraitScore{}, err
	}
	c, _, err := j.Rate(ctx, strings.NewReplacer("{question}", question, "{answer}", answer).Replace(coherenceRubric))
	if err != nil {
		return vectors.TraitScore{}, err
	}
	return vectors.TraitScore{Trait: t, Coherence: c}, nil
}

var _ vectors.Scorer = (*Judge)(nil)

// personaRubric asks how well the assistant's replies so far fit one
// persona. It shows the persona's description and system prompt, not the
// other candidates, so each rating is an independent judgement.
const personaRubric = `A chatbot can play different personas. Here is one:

<persona name="{name}">
{description}
System prompt that selects it: {prompt}
</persona>

<conversation>
{conversation}</conversation>

How likely is it that the last ASSISTANT reply above was written by this persona? The conversation before it is context: the assistant may have changed persona during it. 0 means certainly not, 100 means certainly. Judge by style, content and behaviour.

Answer with one integer from 0 to 100.`

// JudgePosterior is the black-box estimator: after each assistant turn, the
// judge rates how well that reply fits every persona, and the ratings act as
// unnormalised likelihoods of the turn, rating_h + 1, for the hidden Markov
// model (hmm.go). This is a heuristic
// calibration (a judge's 0–100 is not a probability); it is what works for
// a model whose log-probabilities and activations are out of reach.
type JudgePosterior struct {
	J    *Judge
	Hyps []Hypothesis
	// SwitchRate is ε of the hidden Markov model (hmm.go).
	SwitchRate float64
}

// Posterior returns the per-turn posterior of msgs (H judge calls per turn).
func (jp *JudgePosterior) Posterior(ctx context.Context, msgs []chat.Message) (*Result, error) {
	if err := checkHypotheses(jp.Hyps); err != nil {
		return nil, err
	}
	conv, skip, err := conversation(msgs)
	if err != nil {
		return nil, err
	}
	res := &Result{Method: "judge", Names: names(jp.Hyps), Prior: priors(jp.Hyps)}
	var b strings.Builder
	var emis [][]float64
	k := 0
	for i, m := range conv {
		fmt.Fprintf(&b, "[%s]\n%s\n\n", strings.ToUpper(m.Role), chat.Clip(m.Content, 2000))
		if m.Role != chat.RoleAssistant {
			continue
		}
		k++
		turn := Turn{Turn: k, Message: skip + i, Evidence: make([]float64, len(jp.Hyps)), Emission: make([]float64, len(jp.Hyps))}
		for h, hyp := range jp.Hyps {
			prompt := strings.Join(slices.DeleteFunc(slices.Clone(hyp.Prompts), func(s string) bool { return s == "" }), " / ")
			if prompt == "" {
				prompt = "(none)"
			}
			desc := hyp.Description
			if desc == "" {
				desc = hyp.Name
			}
			r, _, err := jp.J.Rate(ctx, strings.NewReplacer("{name}", hyp.Name, "{description}", desc, "{prompt}", prompt,
				"{conversation}", b.String()).Replace(personaRubric))
			if err != nil {
				return nil, fmt.Errorf("turn %d, persona %s: %w", k, hyp.Name, err)
			}
			turn.Evidence[h], turn.Emission[h] = r, math.Log(r+1)
		}
		emis = append(emis, turn.Emission)
		res.Turns = append(res.Turns, turn)
	}
	states := make([]int, len(jp.Hyps))
	for h := range states {
		states[h] = h
	}
	return res, res.decode(states, emis, jp.SwitchRate)
}
