package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"persona/backend"
	"persona/chat"
	"persona/internal/stats"
)

// Replayed is one logged turn answered again by another deployment, both
// replies read by that deployment's monitor.
type Replayed struct {
	Conversation string `json:"conversation"`
	Turn         int    `json:"turn"`
	// Logged is the reply the log holds, as the new monitor reads it.
	Logged      string  `json:"logged"`
	LoggedTop   string  `json:"logged_top"`
	LoggedAllow float64 `json:"logged_allowed"`
	// Reply is the new deployment's reply to the same conversation, with
	// what its monitor read and its rails did.
	Reply     string    `json:"reply"`
	Telemetry Telemetry `json:"telemetry"`
}

// ReplayReport compares a log's replies with another deployment's.
type ReplayReport struct {
	Spec  string     `json:"spec"`
	Model string     `json:"model"`
	Turns []Replayed `json:"turns"`
	// Held counts turns whose allowed personas' probability is at least
	// one half: in the log and in the replay.
	LoggedHeld   stats.Proportion `json:"logged_held"`
	ReplayedHeld stats.Proportion `json:"replayed_held"`
	// Gained and Lost count turns held only in the replay, only in the log.
	Gained int `json:"gained"`
	Lost   int `json:"lost"`
}

// Replay answers the newest n logged turns again through g (another model,
// another spec, or both), oldest first, each with the conversation as it
// was logged before that reply: the deployment's own system prompt in
// place of the one the log's deployment put first. Nothing is written to
// any log. Sampling is seeded by the turn's position, so a replay repeats.
func Replay(ctx context.Context, log *Log, g *Guarded, n int) (*ReplayReport, error) {
	turns, err := log.Recent(ctx, n)
	if err != nil {
		return nil, err
	}
	if len(turns) == 0 {
		return nil, fmt.Errorf("%w: the conversation log holds no turns", ErrReplay)
	}
	slices.Reverse(turns)
	guard := g.guard()
	rep := &ReplayReport{Spec: guard.Spec.Name, Model: g.Model()}
	replayer := &Guarded{Up: g.Up, Guard: guard, Readers: g.Readers}
	heldLogged, heldReplayed := 0, 0
	for i, t := range turns {
		// The logged conversation opens with its deployment's system prompt.
		client := t.Messages
		if len(client) > 0 && client[0].Role == chat.RoleSystem {
			client = client[1:]
		}
		if len(client) == 0 {
			return nil, fmt.Errorf("%w: turn %s/%d has no client messages", ErrReplay, t.Conversation, t.Turn)
		}
		seed := int64(i + 1)
		resp, err := replayer.Chat(ctx, backend.Request{Messages: client, Temperature: 1, Seed: &seed})
		if err != nil {
			return nil, fmt.Errorf("replay of turn %s/%d: %w", t.Conversation, t.Turn, err)
		}
		tel := resp.Persona.(*Telemetry)
		msgs := append([]chat.Message{{Role: chat.RoleSystem, Content: guard.Spec.SystemPrompt}}, client...)
		rd, err := guard.Monitor.Read(ctx, append(msgs, chat.Message{Role: chat.RoleAssistant, Content: t.Reply}))
		if err != nil {
			return nil, fmt.Errorf("reading logged turn %s/%d: %w", t.Conversation, t.Turn, err)
		}
		var logged Outcome
		logged.read(guard.Spec, rd)
		r := Replayed{Conversation: t.Conversation, Turn: t.Turn, Logged: t.Reply, LoggedTop: logged.Top, LoggedAllow: logged.Allowed,
			Reply: resp.Content, Telemetry: *tel}
		rep.Turns = append(rep.Turns, r)
		was, is := r.LoggedAllow >= 0.5, tel.Allowed >= 0.5
		switch {
		case is && !was:
			rep.Gained++
		case was && !is:
			rep.Lost++
		}
		if was {
			heldLogged++
		}
		if is {
			heldReplayed++
		}
	}
	rep.LoggedHeld = stats.NewProportion(heldLogged, len(rep.Turns))
	rep.ReplayedHeld = stats.NewProportion(heldReplayed, len(rep.Turns))
	return rep, nil
}

// ErrReplay is returned for a log that cannot be replayed.
var ErrReplay = errors.New("cannot replay the conversation log")

// WriteText prints the turns and the comparison.
func (r *ReplayReport) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "conversation\tturn\tlogged\tallowed\treplayed\tallowed\trails")
	for _, t := range r.Turns {
		rails := "-"
		if n := len(t.Telemetry.Interventions); n > 0 {
			rails = fmt.Sprintf("%d (%s)", n, t.Telemetry.Interventions[n-1].Action)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%s\t%.2f\t%s\n", t.Conversation, t.Turn, t.LoggedTop, t.LoggedAllow, t.Telemetry.Top, t.Telemetry.Allowed, rails)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s on %s, %d logged turns read by its monitor: held (allowed ≥ 0.5) %s logged, %s replayed; %d gained, %d lost\n",
		r.Spec, r.Model, len(r.Turns), r.LoggedHeld, r.ReplayedHeld, r.Gained, r.Lost)
}
