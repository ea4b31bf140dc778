// Package posterior says which persona a model is in: for a conversation and
// a set of candidate personas (a persona library), the probability of each
// persona after every assistant turn.
//
// Three estimators share one result type, because they answer the same
// question with different access to the model:
//
//   - Likelihood (white-box, exact): Bayes' rule over the model's own
//     teacher-forced log-probabilities. Persona h is the hypothesis "the
//     assistant turns were written by this model under h's system prompt",
//     so P(h | turns 1..k) ∝ P(h) · P(turns 1..k | system prompt of h). This
//     is the persona selection model's posterior read off the model itself.
//   - Activations (white-box, cheap at run time): the response-mean
//     activation projected onto one persona vector per persona and turned
//     into probabilities by a multinomial logistic regression fitted on
//     labelled activations (Classifier).
//   - Judge (black-box): a judge model rates, on a 0–100 rubric, how well
//     the replies so far fit each persona (Judge), for models whose
//     log-probabilities and activations are out of reach.
//
// A persona with several system prompts is the equal mixture of them:
// P(turns | h) = mean over h's prompts of P(turns | prompt). An optional
// "default" hypothesis has no system prompt at all: the model's own prior
// over characters.
package posterior

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"persona/chat"
	"persona/internal/stats"
	"persona/personas"
)

// ErrNoAssistant is returned for a conversation without an assistant turn:
// there is no evidence to update on.
var ErrNoAssistant = errors.New("conversation has no assistant turn")

// ErrHypotheses is returned for a set of candidate personas that cannot make
// a posterior: none, one (nothing to choose between), unnamed or repeated
// names, no prompt, a prior that is not positive.
var ErrHypotheses = errors.New("bad persona hypotheses")

// DefaultName names the no-system-prompt hypothesis.
const DefaultName = "default"

// Hypothesis is one candidate persona.
type Hypothesis struct {
	Name string `json:"name"`
	// Prompts are the system prompts that select the persona; the likelihood
	// of a persona is the mean over them. "" stands for no system prompt.
	Prompts []string `json:"prompts"`
	// Prior is the persona's unnormalised prior weight (> 0).
	Prior float64 `json:"prior"`
	// Description is what a judge is told about the persona.
	Description string `json:"description,omitempty"`
}

// LibraryOptions choose how a persona library becomes hypotheses.
type LibraryOptions struct {
	// Prompts: "strong" (default; the prompts that name the persona), "weak"
	// (hints only) or "all".
	Prompts string
	// LibraryPriors weights personas by the library's priors instead of
	// uniformly.
	LibraryPriors bool
	// Default adds the no-system-prompt hypothesis (named DefaultName) with
	// the mean prior.
	Default bool
}

// FromLibrary returns one hypothesis per persona of lib (sorted by name).
func FromLibrary(lib *personas.Library, opt LibraryOptions) ([]Hypothesis, error) {
	var out []Hypothesis
	total := 0.0
	for _, p := range lib.Personas {
		h := Hypothesis{Name: p.Name, Prior: 1, Description: p.Description}
		switch opt.Prompts {
		case "", "strong":
			h.Prompts = p.SystemPrompts.Strong
		case "weak":
			h.Prompts = p.SystemPrompts.Weak
		case "all":
			h.Prompts = append(append([]string(nil), p.SystemPrompts.Strong...), p.SystemPrompts.Weak...)
		default:
			return nil, fmt.Errorf("%w: system prompts %q: want strong, weak or all", ErrHypotheses, opt.Prompts)
		}
		if len(h.Prompts) == 0 {
			return nil, fmt.Errorf("%w: persona %s (%s) has no %s system prompt", ErrHypotheses, p.Name, p.File, opt.Prompts)
		}
		if opt.LibraryPriors {
			h.Prior = p.Prior
		}
		total += h.Prior
		out = append(out, h)
	}
	if opt.Default {
		out = append(out, Hypothesis{Name: DefaultName, Prompts: []string{""}, Prior: total / float64(len(out)),
			Description: "the model's own default character, with no system prompt"})
	}
	return out, checkHypotheses(out)
}

func checkHypotheses(hs []Hypothesis) error {
	if len(hs) < 2 {
		return fmt.Errorf("%w: %d personas, a posterior needs at least two to choose between", ErrHypotheses, len(hs))
	}
	seen := map[string]bool{}
	for _, h := range hs {
		if h.Name == "" || seen[h.Name] {
			return fmt.Errorf("%w: persona name %q is empty or repeated", ErrHypotheses, h.Name)
		}
		seen[h.Name] = true
		if len(h.Prompts) == 0 {
			return fmt.Errorf("%w: persona %s has no system prompt (use \"\" for none)", ErrHypotheses, h.Name)
		}
		if !(h.Prior > 0) || math.IsInf(h.Prior, 0) {
			return fmt.Errorf("%w: persona %s: prior %g must be positive and finite", ErrHypotheses, h.Name, h.Prior)
		}
	}
	return nil
}

// Result is the posterior after every assistant turn of one conversation.
type Result struct {
	// Method is "likelihood", "activations" or "judge".
	Method string `json:"method"`
	// Names are the hypotheses; every per-persona slice follows this order.
	Names []string `json:"names"`
	// Prior is the normalised prior.
	Prior []float64 `json:"prior"`
	// SwitchRate is ε, the prior probability of a fresh draw of the persona
	// between two turns (hmm.go); 0 means one persona for the whole
	// conversation.
	SwitchRate float64 `json:"switch_rate"`
	Turns      []Turn  `json:"turns"`
	// Path is the most likely persona of each turn, and Switches the turns
	// where it changes.
	Path     []string `json:"path"`
	Switches []Switch `json:"switches"`
}

// Turn is the posterior after one assistant turn, given every turn up to it.
type Turn struct {
	Turn    int `json:"turn"`    // 1-based assistant turn number
	Message int `json:"message"` // index of the assistant message in the conversation
	// Tokens is how many reply tokens were scored (likelihood and
	// activations methods).
	Tokens int `json:"tokens,omitempty"`
	// Evidence is the method's per-persona evidence: log P(turns 1..k |
	// persona) for likelihood (cumulative), the classifier's log-odds of
	// this turn for activations, the judge's 0–100 rating of this turn.
	Evidence []float64 `json:"evidence"`
	// Emission is the log-likelihood of this turn's reply under each
	// persona, given the conversation before it: what the hidden Markov
	// model updates on.
	Emission []float64 `json:"emission"`
	// Posterior is the filtered posterior: the persona of this turn given
	// turns 1..k, what a live monitor knows. Top and TopProb are its mode.
	Posterior []float64 `json:"posterior"`
	Top       string    `json:"top"`
	TopProb   float64   `json:"top_prob"`
	// Smoothed is the posterior of this turn's persona given every turn of
	// the conversation.
	Smoothed []float64 `json:"smoothed"`
	// SwitchProb is the smoothed probability that the persona changed
	// between the turn before and this one.
	SwitchProb float64 `json:"switch_prob"`
}

// Prob returns the posterior of persona name after the turn (0 if unknown).
func (r *Result) Prob(turn int, name string) float64 {
	for i, n := range r.Names {
		if n == name {
			return r.Turns[turn].Posterior[i]
		}
	}
	return 0
}

// Map returns a turn's posterior keyed by persona.
func (r *Result) Map(turn int) map[string]float64 {
	m := make(map[string]float64, len(r.Names))
	for i, n := range r.Names {
		m[n] = r.Turns[turn].Posterior[i]
	}
	return m
}

// Table renders the per-turn posterior for a terminal: one row per turn
// with the filtered top persona (what a live monitor knows), the smoothed
// top persona and the most likely path (what the whole conversation says),
// the filtered probabilities of the personas that ever reach 1%, and a mark
// on turns where the path switches persona.
func (r *Result) Table() string {
	var cols []int
	for i := range r.Names {
		for _, t := range r.Turns {
			if t.Posterior[i] >= 0.01 {
				cols = append(cols, i)
				break
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-5s %-14s %6s %-14s %-14s", "turn", "filtered", "p", "smoothed", "path")
	for _, i := range cols {
		fmt.Fprintf(&b, " %*s", max(7, len(r.Names[i])), r.Names[i])
	}
	b.WriteByte('\n')
	for k, t := range r.Turns {
		mark := ""
		if k > 0 && r.Path[k] != r.Path[k-1] {
			mark = fmt.Sprintf("  ← switch (p %.2f)", t.SwitchProb)
		}
		fmt.Fprintf(&b, "%-5d %-14s %6.3f %-14s %-14s", t.Turn, t.Top, t.TopProb, r.Names[argmax(t.Smoothed)], r.Path[k])
		for _, i := range cols {
			fmt.Fprintf(&b, " %*.3f", max(7, len(r.Names[i])), t.Posterior[i])
		}
		b.WriteString(mark)
		b.WriteByte('\n')
	}
	return b.String()
}

// normalise returns the prior weights scaled to sum to 1.
func normalise(ws []float64) []float64 {
	s := 0.0
	for _, w := range ws {
		s += w
	}
	out := make([]float64, len(ws))
	for i, w := range ws {
		out[i] = w / s
	}
	return out
}

// decode runs the hidden Markov model over the turns' emissions
// (emis[t][s] for state s, a system prompt of hypothesis stateHyp[s]) and
// fills the filtered and smoothed posteriors, the path and the switches.
func (r *Result) decode(stateHyp []int, emis [][]float64, eps float64) error {
	c, err := newChain(r.Prior, stateHyp, eps)
	if err != nil {
		return err
	}
	r.SwitchRate = eps
	d := c.decode(emis)
	r.Path, r.Switches = make([]string, len(d.path)), nil
	for t := range r.Turns {
		tr := &r.Turns[t]
		tr.Posterior, tr.Smoothed, tr.SwitchProb = d.filtered[t], d.smoothed[t], d.switchProb[t]
		tr.Top, tr.TopProb = "", -1
		for h, p := range tr.Posterior {
			if p > tr.TopProb {
				tr.Top, tr.TopProb = r.Names[h], p
			}
		}
		r.Path[t] = r.Names[d.path[t]]
		if t > 0 && d.path[t] != d.path[t-1] {
			r.Switches = append(r.Switches, Switch{Turn: t + 1, From: r.Path[t-1], To: r.Path[t], Prob: d.switchProb[t]})
		}
	}
	return nil
}

// logMeanExp returns log(mean(exp(xs))) stably: a mixture's log-likelihood.
func logMeanExp(xs []float64) float64 {
	if len(xs) == 0 {
		return math.Inf(-1)
	}
	return stats.LogSumExp(xs) - math.Log(float64(len(xs)))
}

// conversation drops leading system messages (the hypotheses supply the
// system prompt) and checks that an assistant turn remains.
func conversation(msgs []chat.Message) ([]chat.Message, int, error) {
	skip := 0
	for skip < len(msgs) && msgs[skip].Role == chat.RoleSystem {
		skip++
	}
	rest := msgs[skip:]
	for _, m := range rest {
		if m.Role == chat.RoleAssistant {
			return rest, skip, nil
		}
	}
	return nil, 0, fmt.Errorf("%w (%d messages)", ErrNoAssistant, len(msgs))
}

func names(hs []Hypothesis) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

func priors(hs []Hypothesis) []float64 {
	out := make([]float64, len(hs))
	for i, h := range hs {
		out[i] = h.Prior
	}
	return normalise(out)
}
