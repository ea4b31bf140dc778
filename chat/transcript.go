package chat

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Clip returns s cut to at most n runes, with "…" where it was cut: prompts
// that quote a conversation to another model bound what one message can
// take, and never split a UTF-8 sequence doing it.
func Clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := 0; k < n; k++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "…"
}

// WriteTranscript writes msgs as a plain transcript for another model to
// read ("[USER]\n…\n\n[ASSISTANT]\n…"), system messages left out and each
// message clipped to maxRunes.
func WriteTranscript(b *strings.Builder, msgs []Message, maxRunes int) {
	for _, m := range msgs {
		if m.Role == RoleSystem {
			continue
		}
		fmt.Fprintf(b, "[%s]\n%s\n\n", strings.ToUpper(m.Role), Clip(m.Content, maxRunes))
	}
}
