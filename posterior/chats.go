package posterior

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"persona/chat"
	"persona/engine"
)

// Method computes the posterior over personas after every assistant turn
// of a conversation: Likelihood, ActivationPosterior and JudgePosterior.
type Method interface {
	Posterior(ctx context.Context, msgs []chat.Message) (*Result, error)
}

// ChatResult is the posterior of one conversation of a file.
type ChatResult struct {
	Chat   int             `json:"chat"` // 1-based position in the file
	ID     json.RawMessage `json:"id,omitempty"`
	Result *Result         `json:"result"`
}

// Chats computes the posterior of every conversation in turn. The first
// failure stops it, naming the conversation.
func Chats(ctx context.Context, m Method, chats []chat.Chat, progress func(done, total int)) ([]ChatResult, error) {
	var out []ChatResult
	for i, c := range chats {
		res, err := m.Posterior(ctx, c.Messages)
		if err != nil {
			return out, fmt.Errorf("conversation %d: %w", i+1, err)
		}
		out = append(out, ChatResult{Chat: i + 1, ID: c.Meta["id"], Result: res})
		if progress != nil {
			progress(i+1, len(chats))
		}
	}
	return out, nil
}

// TurnLabel names the persona of chat c's k-th assistant turn: from
// per-turn "labels" ([{"persona": …, "instructed": …}], as the persona world
// writes them; a wrong answer the user asked for is no evidence of a
// persona and is skipped), else from a chat-level "persona" field. "" means
// unlabelled.
func TurnLabel(c chat.Chat, k int) string {
	var labels []struct {
		Persona    string `json:"persona"`
		Instructed bool   `json:"instructed"`
	}
	if raw, ok := c.Meta["labels"]; ok && json.Unmarshal(raw, &labels) == nil && k < len(labels) {
		if labels[k].Instructed {
			return ""
		}
		return labels[k].Persona
	}
	var p string
	if raw, ok := c.Meta["persona"]; ok && json.Unmarshal(raw, &p) == nil {
		return p
	}
	return ""
}

// ErrTooFewLabels is returned when labelled chats name fewer than two
// personas: nothing to tell apart.
var ErrTooFewLabels = errors.New("labelled turns of fewer than two personas (label chats with \"labels\" or \"persona\")")

// Fit captures the readings of every labelled assistant turn of chats
// (TurnLabel) at each of layers and fits the activations method's
// classifier on all of them. Its Train statistics add heldout_accuracy: a
// first fit's accuracy on the turns of every fifth conversation, which it
// was fitted without (absent when a persona has turns only there).
func Fit(ctx context.Context, e *engine.Engine, chats []chat.Chat, layers []int, readings []string, model string, progress func(done, total int)) (*Classifier, error) {
	if len(layers) == 0 {
		return nil, fmt.Errorf("no layers: %w", engine.ErrLayer)
	}
	for _, layer := range layers {
		if layer < 0 || layer >= e.Model.NumLayers {
			return nil, fmt.Errorf("layer %d, the model has layers 0-%d: %w", layer, e.Model.NumLayers-1, engine.ErrLayer)
		}
	}
	if err := CheckReadings(readings); err != nil {
		return nil, err
	}
	samples, err := LabelledSamples(ctx, e, chats, layers, readings, func(c, k int) string { return TurnLabel(chats[c], k) },
		func(done int) {
			if progress != nil {
				progress(done, len(chats))
			}
		})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	for _, s := range samples {
		if !seen[s.Persona] {
			seen[s.Persona] = true
			names = append(names, s.Persona)
		}
	}
	if len(names) < 2 {
		return nil, fmt.Errorf("%w: found %d", ErrTooFewLabels, len(names))
	}
	slices.Sort(names)
	c, err := FitClassifier(names, layers, readings, model, samples, FitOptions{})
	if err != nil {
		return nil, err
	}
	// A first fit without every fifth conversation says how the classifier
	// does on conversations it has not seen (from the same source: an
	// upper bound for text written otherwise).
	var train, test []Sample
	for _, s := range samples {
		if s.Chat%5 == 4 {
			test = append(test, s)
		} else {
			train = append(train, s)
		}
	}
	if first, err := FitClassifier(names, layers, readings, model, train, FitOptions{}); err == nil && len(test) > 0 {
		acc, err := first.Accuracy(test)
		if err != nil {
			return nil, err
		}
		c.Train["heldout_accuracy"], c.Train["heldout_samples"] = acc, float64(len(test))
	}
	return c, nil
}

// SwitchFit is the switch rate ε fitted on labelled chats.
type SwitchFit struct {
	Rate        float64 `json:"rate"`        // ε
	Changes     int     `json:"changes"`     // consecutive labelled turns whose persona differs
	Transitions int     `json:"transitions"` // consecutive labelled turn pairs
}

// FitSwitchRate estimates ε from chats labelled turn by turn (TurnLabel):
// the hidden Markov model changes persona between two turns with
// probability ε·(1 − Σ π_k²) (a fresh draw may land on the same persona),
// so ε is the observed change rate divided by that factor, π being the
// hypotheses' normalised prior.
func FitSwitchRate(chats []chat.Chat, hyps []Hypothesis) SwitchFit {
	var f SwitchFit
	for _, c := range chats {
		prev := ""
		for k := 0; ; k++ {
			if k >= countAssistant(c.Messages) {
				break
			}
			l := TurnLabel(c, k)
			if l != "" && prev != "" {
				f.Transitions++
				if l != prev {
					f.Changes++
				}
			}
			prev = l
		}
	}
	if f.Transitions == 0 {
		return f
	}
	sq := 0.0
	for _, p := range priors(hyps) {
		sq += p * p
	}
	f.Rate = min(float64(f.Changes)/float64(f.Transitions)/(1-sq), 0.99)
	return f
}

func countAssistant(msgs []chat.Message) int {
	n := 0
	for _, m := range msgs {
		if m.Role == chat.RoleAssistant {
			n++
		}
	}
	return n
}
