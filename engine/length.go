package engine

import (
	"fmt"

	"persona/chat"
	"persona/model"
)

// normalizationSlack allows for normalizers that shorten text before it is
// tokenized (Unicode composition, whitespace folding), so the byte bound
// below never refuses an input that would fit.
const normalizationSlack = 4

// CheckLength refuses, before anything is rendered or tokenized, messages
// that cannot fit the model's context: their text has more bytes than
// MaxSeq+1 tokens can stand for. Input from outside (prompts, chat files,
// API requests) goes through it, so a huge input costs time and memory in
// proportion to the context, not to the input; what passes is tokenized and
// checked exactly.
func (e *Engine) CheckLength(msgs ...chat.Message) error {
	n := 0
	for _, m := range msgs {
		n += len(m.Content)
	}
	limit := (e.Model.MaxSeq + 1) * e.Tokenizer.MaxTokenBytes() * normalizationSlack
	if n > limit {
		return fmt.Errorf("input of %d bytes is longer than any text of at most %d tokens can be (the model's context): %w", n, e.Model.MaxSeq, model.ErrContext)
	}
	return nil
}
