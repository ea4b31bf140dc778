package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"persona/chat"
	"persona/model"
	"persona/resid"
)

// ErrNoTurn is returned when a conversation has no message of the roles to
// capture (a transcript with no assistant turn).
var ErrNoTurn = errors.New("no message of the requested roles")

// ErrLayer is returned for a layer the model does not have.
var ErrLayer = errors.New("layer out of range")

// CaptureOptions say what Capture records.
type CaptureOptions struct {
	// Layers to capture, strictly ascending; empty means every layer.
	Layers []int
	// Roles whose messages are averaged over; empty means {"assistant"}.
	Roles []string
	// Interventions run before the capture at their layer (so the capture
	// sees the steered stream), e.g. to measure a steered model.
	Interventions []resid.Intervention
	// Switches replace Interventions from a position on, in order of
	// position: the stream of a reply whose control a watch changed while
	// it was written (Reply records them).
	Switches []Switch
}

// Switch is a change of interventions at a position of the sequence.
type Switch struct {
	At            int
	Interventions []resid.Intervention
}

// Activations are one conversation's residual stream, reduced to what the
// persona recipes use: per-message means and the activation just before
// each message.
type Activations struct {
	Layers []int
	// Turns holds the captured messages in conversation order.
	Turns []Turn
}

// Turn is one captured message.
type Turn struct {
	Message int    // index of the message in the conversation
	Role    string // the message's role
	Start   int    // position of its first content token
	Tokens  int    // content tokens averaged over (0 for empty content)
	// Mean[i] is the mean of resid[Layers[i]] over the content tokens: the
	// response mean the persona-vector and assistant-axis recipes average.
	// Nil when Tokens is 0.
	Mean [][]float32
	// LastPrompt[i] is resid[Layers[i]] at position Start−1, the last token
	// before the content (the end of the chat template's assistant header):
	// what the model "plans" before answering, the persona-vectors paper's
	// last-prompt-token monitor. Nil when the content starts at position 0.
	LastPrompt [][]float32
}

// Mean returns the mean over all captured content tokens of all turns
// (turns weighted by their token counts), per layer; nil if no token was
// captured.
func (a *Activations) Mean() [][]float32 {
	n := 0
	for _, t := range a.Turns {
		n += t.Tokens
	}
	if n == 0 {
		return nil
	}
	out := make([][]float32, len(a.Layers))
	for i := range a.Layers {
		var sum []float64
		for _, t := range a.Turns {
			if t.Tokens == 0 {
				continue
			}
			if sum == nil {
				sum = make([]float64, len(t.Mean[i]))
			}
			for j, v := range t.Mean[i] {
				sum[j] += float64(v) * float64(t.Tokens)
			}
		}
		out[i] = make([]float32, len(sum))
		for j, s := range sum {
			out[i][j] = float32(s / float64(n))
		}
	}
	return out
}

// Capture renders a conversation with the engine's chat template and runs it
// through the model once, recording at every requested layer the mean over
// each selected message's content tokens and the activation of the token
// before it. This is the inner loop of vector extraction and of the
// assistant axis, so it costs one forward pass without logits over the
// conversation up to the end of the last selected message.
func (e *Engine) Capture(ctx context.Context, msgs []chat.Message, opt CaptureOptions) (*Activations, error) {
	if err := e.CheckLength(msgs...); err != nil {
		return nil, err
	}
	enc, err := e.EncodeChat(msgs, false)
	if err != nil {
		return nil, err
	}
	return CaptureEncoded(ctx, e.Model, enc, opt)
}

// CaptureEncoded is Capture on an already tokenized conversation (for
// example a prompt and the ids the model generated, with the span of the
// response), which avoids re-tokenizing generated text.
func CaptureEncoded(ctx context.Context, m *model.Model, enc *Encoded, opt CaptureOptions) (*Activations, error) {
	layers := opt.Layers
	if len(layers) == 0 {
		layers = make([]int, m.NumLayers)
		for i := range layers {
			layers[i] = i
		}
	}
	for i, l := range layers {
		if l < 0 || l >= m.NumLayers {
			return nil, fmt.Errorf("capture: layer %d, the model has layers 0..%d: %w", l, m.NumLayers-1, ErrLayer)
		}
		if i > 0 && l <= layers[i-1] {
			return nil, fmt.Errorf("capture: layers not strictly ascending (%d after %d)", l, layers[i-1])
		}
	}
	roles := opt.Roles
	if len(roles) == 0 {
		roles = []string{"assistant"}
	}

	// Two spans per selected message: its content, and the position before it.
	act := &Activations{Layers: slices.Clone(layers)}
	var spans []resid.Span
	end := 0
	for _, sp := range enc.Spans {
		if !slices.Contains(roles, sp.Role) {
			continue
		}
		if sp.Start < 0 || sp.End < sp.Start || sp.End > len(enc.IDs) {
			return nil, fmt.Errorf("capture: message %d has span [%d, %d) in %d tokens", sp.Message, sp.Start, sp.End, len(enc.IDs))
		}
		act.Turns = append(act.Turns, Turn{Message: sp.Message, Role: sp.Role, Start: sp.Start, Tokens: sp.End - sp.Start})
		spans = append(spans, resid.Span{Start: sp.Start, End: sp.End}, resid.Span{Start: max(sp.Start-1, 0), End: sp.Start})
		end = max(end, sp.End)
	}
	if len(act.Turns) == 0 {
		return nil, fmt.Errorf("capture: %w %v in a conversation of %d messages", ErrNoTurn, roles, len(enc.Spans))
	}
	ids := enc.IDs[:end]
	caps := make([]resid.Intervention, len(layers))
	for i, l := range layers {
		caps[i] = &resid.Capture{At: l, Spans: spans}
	}
	// The sequence is fed in segments, one per control in force; the
	// captures add up over them.
	segments := append([]Switch{{At: 0, Interventions: opt.Interventions}}, opt.Switches...)
	s := m.NewState()
	s.PromptLen = end // everything is given, nothing generated
	for i, seg := range segments {
		to := end
		if i+1 < len(segments) {
			to = min(segments[i+1].At, end)
		}
		if seg.At < s.Len || seg.At > end {
			return nil, fmt.Errorf("capture: control switch at position %d of %d (after %d)", seg.At, end, s.Len)
		}
		if to <= seg.At {
			continue
		}
		set, err := resid.NewSet(m.NumLayers, m.Hidden, slices.Concat(seg.Interventions, caps)...)
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		if err := m.Feed(ctx, s, ids[seg.At:to], set, model.NoLogits, nil); err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
	}

	for k := range act.Turns {
		t := &act.Turns[k]
		if t.Tokens > 0 {
			t.Mean = make([][]float32, len(layers))
		}
		if t.Start > 0 {
			t.LastPrompt = make([][]float32, len(layers))
		}
		for i, iv := range caps {
			c := iv.(*resid.Capture)
			if t.Tokens > 0 {
				t.Mean[i] = c.Mean(2 * k)
			}
			if t.Start > 0 {
				t.LastPrompt[i] = c.Mean(2*k + 1)
			}
		}
	}
	return act, nil
}
