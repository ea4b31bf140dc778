package axis

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"persona/chat"
	"persona/engine"
	"persona/resid"
	"persona/sample"
	"persona/vectors"
)

// RespondOptions say how Respond generates and what it records.
type RespondOptions struct {
	// Layers whose response mean is captured (strictly ascending); empty
	// means every layer.
	Layers    []int
	MaxTokens int
	Sampling  sample.Params
	// Interventions apply while generating and while capturing, so the
	// captured stream is the one that produced the reply (activation
	// capping, steering).
	Interventions []resid.Intervention
}

// Response is the model's reply to a conversation and the mean of its
// residual stream over the reply's tokens.
type Response struct {
	Text   string
	Tokens int // reply tokens averaged over, end-of-turn token excluded
	// Means[i] is the response mean at Layers[i]; nil when the reply is
	// empty (nothing to average).
	Means [][]float32
}

// Respond generates the next assistant turn of msgs and captures its
// response mean: the measurement every recipe of DESIGN §2 starts from.
//
// The reply's own token ids are captured (no re-tokenisation of the decoded
// text, which could split differently), and the end-of-turn token is left
// out of the mean, because it is the same for every persona and would only
// dilute the difference between them.
func Respond(ctx context.Context, e *engine.Engine, msgs []chat.Message, o RespondOptions) (*Response, error) {
	enc, err := e.EncodeChat(msgs, true)
	if err != nil {
		return nil, err
	}
	if o.MaxTokens <= 0 {
		return nil, fmt.Errorf("respond: max tokens %d, want > 0", o.MaxTokens)
	}
	if len(enc.IDs)+o.MaxTokens > e.Model.MaxSeq {
		return nil, fmt.Errorf("respond: conversation of %d tokens leaves no room for %d more in the model's context of %d", len(enc.IDs), o.MaxTokens, e.Model.MaxSeq)
	}
	var ivs *resid.Set
	if len(o.Interventions) > 0 {
		if ivs, err = resid.NewSet(e.Model.NumLayers, e.Model.Hidden, o.Interventions...); err != nil {
			return nil, fmt.Errorf("respond: %w", err)
		}
	}
	res, err := e.Generate(ctx, engine.Request{Prompt: enc.IDs, MaxTokens: o.MaxTokens, Sampling: o.Sampling, Interventions: ivs})
	if err != nil {
		return nil, err
	}
	ids := res.IDs
	if len(ids) > 0 && e.Stop[ids[len(ids)-1]] {
		ids = ids[:len(ids)-1]
	}
	out := &Response{Text: strings.TrimSpace(res.Text), Tokens: len(ids)}
	if len(ids) == 0 {
		return out, nil
	}
	full := &engine.Encoded{IDs: append(slices.Clone(enc.IDs), ids...),
		Spans: []engine.TokenSpan{{Message: len(msgs), Role: chat.RoleAssistant, Start: len(enc.IDs), End: len(enc.IDs) + len(ids)}}}
	act, err := vectors.CaptureEncoded(ctx, e.Model, full, vectors.CaptureOptions{Layers: o.Layers, Interventions: o.Interventions})
	if err != nil {
		return nil, err
	}
	out.Means = act.Turns[0].Mean
	return out, nil
}
