package gateway

import (
	"context"
	"fmt"

	"persona/chat"
	"persona/personas"
	"persona/posterior"
)

// Reading is a monitor's view of a conversation: the probability of each
// persona after every assistant turn.
type Reading struct {
	Names []string    `json:"names"`
	Turns [][]float64 `json:"turns"`
	// Projections are the newest reply's mean projections on the spec's
	// vectors and axis (white-box; the guard adds them).
	Projections map[string]float64 `json:"projections,omitempty"`
	// Scores are a judge's 0–100 trait scores of the newest reply, for
	// the spec's trait bounds.
	Scores map[string]float64 `json:"scores,omitempty"`
}

// Last returns the newest turn's distribution as a map.
func (r *Reading) Last() map[string]float64 {
	out := map[string]float64{}
	if len(r.Turns) == 0 {
		return out
	}
	for i, n := range r.Names {
		out[n] = r.Turns[len(r.Turns)-1][i]
	}
	return out
}

// Monitor reads which persona wrote each assistant turn of a conversation.
type Monitor interface {
	Name() string
	Read(ctx context.Context, msgs []chat.Message) (*Reading, error)
}

// Posteriors is what the posterior methods have in common: the likelihood
// posterior (white-box, the served model's own probabilities) and the judge
// posterior (a judge backend; any upstream).
type Posteriors interface {
	Posterior(ctx context.Context, msgs []chat.Message) (*posterior.Result, error)
}

// PosteriorMonitor reads turns with a posterior method.
type PosteriorMonitor struct {
	Method string
	P      Posteriors
}

// Name returns the method.
func (m *PosteriorMonitor) Name() string { return m.Method }

// Read returns the filtered posterior of every turn: what was knowable when
// that turn was written.
func (m *PosteriorMonitor) Read(ctx context.Context, msgs []chat.Message) (*Reading, error) {
	res, err := m.P.Posterior(ctx, msgs)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	rd := &Reading{Names: res.Names}
	for _, t := range res.Turns {
		rd.Turns = append(rd.Turns, t.Posterior)
	}
	return rd, nil
}

// OracleMonitor reads turns with a rule-based oracle (the persona world's,
// for the organism): each reply on its own, given what came before it.
type OracleMonitor struct{ O personas.Oracle }

// Name returns "oracle".
func (m *OracleMonitor) Name() string { return "oracle" }

// Read judges every assistant turn.
func (m *OracleMonitor) Read(ctx context.Context, msgs []chat.Message) (*Reading, error) {
	rd := &Reading{Names: m.O.Personas()}
	for i, msg := range msgs {
		if msg.Role != chat.RoleAssistant {
			continue
		}
		v := m.O.Verdict(msgs[:i], msg.Content)
		probs := make([]float64, len(rd.Names))
		for k, n := range rd.Names {
			probs[k] = v.Posterior[n]
		}
		rd.Turns = append(rd.Turns, probs)
	}
	return rd, ctx.Err()
}

// NoMonitor reads no personas: a spec whose rails act on trait bounds
// alone.
type NoMonitor struct{}

// Name returns "none".
func (NoMonitor) Name() string { return "none" }

// Read returns an empty reading.
func (NoMonitor) Read(ctx context.Context, _ []chat.Message) (*Reading, error) {
	return &Reading{}, ctx.Err()
}
