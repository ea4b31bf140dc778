package usersim

import (
	"context"
	"errors"
	"strings"
	"testing"

	"persona/backend"
	"persona/chat"
)

// echo records the request and answers with a fixed text.
type echo struct {
	answer string
	got    backend.Request
}

func (e *echo) Chat(_ context.Context, req backend.Request) (*backend.Response, error) {
	e.got = req
	return &backend.Response{Content: e.answer, FinishReason: "stop"}, nil
}

func TestNext(t *testing.T) {
	b := &echo{answer: "  **User**: I can't sleep again.  "}
	u, err := Next(context.Background(), b, Turn{System: "You are lonely.", Messages: []chat.Message{{Role: chat.RoleSystem, Content: "Be kind."}}, Seed: 3})
	if err != nil || u != "I can't sleep again." {
		t.Fatalf("%q, %v", u, err)
	}
	if p := b.got.Messages[1].Content; !strings.Contains(p, "has not started") || strings.Contains(p, "Be kind") {
		t.Errorf("first-turn prompt %q", p)
	}
	if b.got.MaxTokens != 300 || b.got.Temperature != 1 || *b.got.Seed != 3 || b.got.Messages[0].Content != "You are lonely." {
		t.Errorf("request %+v", b.got)
	}

	long := strings.Repeat("é", maxQuoted+10)
	msgs := []chat.Message{{Role: chat.RoleUser, Content: "hi"}, {Role: chat.RoleAssistant, Content: long}}
	if _, err := Next(context.Background(), b, Turn{System: "s", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	p := b.got.Messages[1].Content
	if !strings.Contains(p, "[ASSISTANT]\n"+strings.Repeat("é", maxQuoted)+"…") || strings.Contains(p, strings.Repeat("é", maxQuoted+1)) {
		t.Error("a long message is not clipped to the bound")
	}

	b.answer = "User:  "
	if _, err := Next(context.Background(), b, Turn{System: "s", Messages: msgs}); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty turn: %v", err)
	}
}
