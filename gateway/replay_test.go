package gateway

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"persona/backend"
	"persona/chat"
)

// says answers every chat with one reply.
type says string

func (s says) Name() string { return "says" }
func (s says) Chat(_ context.Context, req backend.Request) (*backend.Response, error) {
	return &backend.Response{Model: "says", Content: string(s)}, nil
}

// A log of pirate replies replayed against a deployment that answers as
// the Assistant: every turn is gained, read by the replaying spec's
// monitor; the log is left as it was.
func TestReplay(t *testing.T) {
	ctx := context.Background()
	log, err := OpenLog(ctx, filepath.Join(t.TempDir(), "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	plain := strings.Replace(testSpec, "rails:\n  - name: stay-in-persona\n    when: {forbidden_above: 0.6}\n    action: reanchor\n    retries: 2\n", "", 1)
	pirate := &Guarded{Up: says(pirateReply), Guard: testGuard(t, plain), Log: log}
	for _, first := range []string{"What is 17 + 25?", "Name a colour."} {
		msgs := []chat.Message{{Role: chat.RoleUser, Content: first}}
		for range 2 {
			resp, err := pirate.Chat(ctx, backend.Request{Messages: msgs})
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, chat.Message{Role: chat.RoleAssistant, Content: resp.Content}, chat.Message{Role: chat.RoleUser, Content: "Go on."})
		}
	}
	assistant := &Guarded{Up: says(assistantReply), Guard: testGuard(t, testSpec)}
	rep, err := Replay(ctx, log, assistant, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Turns) != 4 || rep.LoggedHeld.K != 0 || rep.ReplayedHeld.K != 4 || rep.Gained != 4 || rep.Lost != 0 {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("%+v\n%s", rep, b.String())
	}
	for _, r := range rep.Turns {
		if r.Logged != pirateReply || r.LoggedTop != "pirate" || r.Reply != assistantReply || r.Telemetry.Top != "assistant" {
			t.Errorf("turn %s/%d: %+v", r.Conversation, r.Turn, r)
		}
	}
	if rep.Turns[0].Turn != 1 || rep.Turns[1].Turn != 2 {
		t.Errorf("not oldest first: %+v", rep.Turns[:2])
	}
	if recent, _ := log.Recent(ctx, 100); len(recent) != 4 {
		t.Errorf("the replay wrote to the log: %d turns", len(recent))
	}
	empty, _ := OpenLog(ctx, filepath.Join(t.TempDir(), "empty.db"))
	defer empty.Close()
	if _, err := Replay(ctx, empty, assistant, 10); !errors.Is(err, ErrReplay) {
		t.Errorf("empty log: %v", err)
	}
}

// Turns come back in time order whatever their fractional seconds: the
// log stores times at a fixed width.
func TestLogOrdersTimes(t *testing.T) {
	ctx := context.Background()
	log, err := OpenLog(ctx, filepath.Join(t.TempDir(), "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	base := time.Date(2026, 12, 4, 10, 0, 5, 0, time.UTC)
	for i, frac := range []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 900 * time.Millisecond} {
		if err := log.Append(ctx, Turn{Conversation: "c", Turn: i + 1, At: base.Add(frac), Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}, Reply: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	turns, err := log.Conversation(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range turns {
		if tr.Turn != i+1 {
			t.Fatalf("order: %+v", turns)
		}
	}
}
