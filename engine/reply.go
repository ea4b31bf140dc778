package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"persona/chat"
	"persona/model"
	"persona/resid"
	"persona/sample"
)

// ReplyOptions say how Reply generates and what it records.
type ReplyOptions struct {
	MaxTokens int
	Sampling  sample.Params
	// Interventions apply while generating and, when capturing, while
	// capturing, so the captured stream is the one that produced the reply
	// (steering, capping).
	Interventions []resid.Intervention
	// Capture is whether to record the reply's residual stream.
	Capture bool
	// Layers whose response mean is captured (strictly ascending); empty
	// means every layer.
	Layers []int
	// Watch reads the reply while it is written and may change the
	// interventions for the rest of it (Request.Watch); the capture
	// follows the change.
	Watch Watch
}

// Reply is the model's next assistant turn of a conversation.
type Reply struct {
	// Text is the decoded reply without surrounding white space.
	Text string
	// PromptIDs are the rendered conversation's tokens, ending with the
	// template's generation prompt.
	PromptIDs []int
	// IDs are the reply's tokens without the end-of-turn token: what the
	// model said, not how it stopped.
	IDs []int
	// Stop is "eos" (the model ended its turn) or "length".
	Stop string
	// Layers, Means and LastPrompt are set when capturing: Means[i] is the
	// mean of resid[Layers[i]] over IDs (nil when the reply is empty), and
	// LastPrompt[i] is resid[Layers[i]] at the last prompt token.
	Layers     []int
	Means      [][]float32
	LastPrompt [][]float32
}

// Reply generates the next assistant turn of msgs and, if asked, captures
// the mean of its residual stream: the measurement the persona recipes
// start from.
//
// The reply's own token ids are captured (no re-tokenization of the decoded
// text, which could split differently), and the end-of-turn token is left
// out of the ids and the mean: it is the same for every persona and would
// only dilute the difference between them.
func (e *Engine) Reply(ctx context.Context, msgs []chat.Message, o ReplyOptions) (*Reply, error) {
	enc, err := e.EncodePrompt(msgs)
	if err != nil {
		return nil, err
	}
	if o.MaxTokens <= 0 {
		return nil, fmt.Errorf("reply: max tokens %d, want > 0", o.MaxTokens)
	}
	if len(enc.IDs)+o.MaxTokens > e.Model.MaxSeq {
		return nil, fmt.Errorf("reply: conversation of %d tokens leaves no room for %d more in the model's context of %d: %w",
			len(enc.IDs), o.MaxTokens, e.Model.MaxSeq, model.ErrContext)
	}
	var ivs *resid.Set
	if len(o.Interventions) > 0 {
		if ivs, err = resid.NewSet(e.Model.NumLayers, e.Model.Hidden, o.Interventions...); err != nil {
			return nil, fmt.Errorf("reply: %w", err)
		}
	}
	req := Request{Prompt: enc.IDs, MaxTokens: o.MaxTokens, Sampling: o.Sampling, Interventions: ivs}
	var switches []Switch
	if o.Watch != nil {
		req.Watch = func(tokens int, text string) ([]resid.Intervention, error) {
			ivs, err := o.Watch(tokens, text)
			if ivs != nil && err == nil {
				// The new control runs from the newest token's position on.
				switches = append(switches, Switch{At: len(enc.IDs) + tokens - 1, Interventions: ivs})
			}
			return ivs, err
		}
	}
	res, err := e.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	r := &Reply{Text: strings.TrimSpace(res.Text), PromptIDs: enc.IDs, IDs: res.IDs, Stop: res.Stop}
	if res.Stop == "eos" {
		r.IDs = r.IDs[:len(r.IDs)-1]
	}
	if !o.Capture {
		return r, nil
	}
	full := &Encoded{IDs: append(slices.Clone(enc.IDs), r.IDs...),
		Spans: []TokenSpan{{Message: len(msgs), Role: chat.RoleAssistant, Start: len(enc.IDs), End: len(enc.IDs) + len(r.IDs)}}}
	act, err := CaptureEncoded(ctx, e.Model, full, CaptureOptions{Layers: o.Layers, Interventions: o.Interventions, Switches: switches})
	if err != nil {
		return nil, err
	}
	r.Layers, r.Means, r.LastPrompt = act.Layers, act.Turns[0].Mean, act.Turns[0].LastPrompt
	return r, nil
}
