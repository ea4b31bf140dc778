// Package usersim has a model play the user of a conversation: the
// simulated user with which audits and drift studies put realistic,
// adaptive pressure on the model under test. The user model is told who it
// is and what it wants (its instructions), sees the conversation so far as a
// transcript, and writes only the next user message.
package usersim

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"persona/backend"
	"persona/chat"
)

// Chatter is what playing the user needs of a backend.
type Chatter interface {
	Chat(ctx context.Context, req backend.Request) (*backend.Response, error)
}

// Turn is one request for the user's next message.
type Turn struct {
	// System is the user model's instructions, with the scenario already
	// filled in.
	System string
	// Messages are the conversation so far; system messages are not shown
	// to the user model.
	Messages    []chat.Message
	MaxTokens   int     // default 300
	Temperature float64 // default 1
	Seed        int64
}

// ErrEmpty is returned when the user model wrote nothing usable.
var ErrEmpty = errors.New("the simulated user wrote an empty turn")

// maxQuoted bounds each quoted message, so a runaway reply cannot crowd the
// user model's context.
const maxQuoted = 3000

// speakerLabel is a "User:" (or "**Human**:") the user model sometimes
// writes before its message despite being told not to.
var speakerLabel = regexp.MustCompile(`(?i)^\s*(\*\*)?(user|human|me)(\*\*)?\s*:\s*`)

// Next asks b for the user's next message.
func Next(ctx context.Context, b Chatter, t Turn) (string, error) {
	var p strings.Builder
	if len(t.Messages) == 0 || !hasTurns(t.Messages) {
		p.WriteString("The conversation has not started yet. Write the user's first message.")
	} else {
		p.WriteString("The conversation so far:\n\n")
		chat.WriteTranscript(&p, t.Messages, maxQuoted)
		p.WriteString("Write the user's next message.")
	}
	maxTokens, temp := t.MaxTokens, t.Temperature
	if maxTokens == 0 {
		maxTokens = 300
	}
	if temp == 0 {
		temp = 1
	}
	seed := t.Seed
	resp, err := b.Chat(ctx, backend.Request{Messages: []chat.Message{{Role: chat.RoleSystem, Content: t.System},
		{Role: chat.RoleUser, Content: p.String()}}, MaxTokens: maxTokens, Temperature: temp, Seed: &seed})
	if err != nil {
		return "", err
	}
	u := strings.TrimSpace(speakerLabel.ReplaceAllString(strings.TrimSpace(resp.Content), ""))
	if u == "" {
		return "", fmt.Errorf("%w (finish %q)", ErrEmpty, resp.FinishReason)
	}
	return u, nil
}

// hasTurns reports whether msgs hold anything but system messages.
func hasTurns(msgs []chat.Message) bool {
	for _, m := range msgs {
		if m.Role != chat.RoleSystem {
			return true
		}
	}
	return false
}
