package tokenizer

import (
	"unicode"

	"github.com/dlclark/regexp2"
)

type regexpT = regexp2.Regexp

func isNumeric(r rune) bool { return unicode.IsNumber(r) }
func isSpace(r rune) bool   { return unicode.IsSpace(r) }

// fastMatcher returns a hand-written matcher for a well-known pre-tokenizer
// regex, or nil to use regexp2.
func fastMatcher(pattern string) func(string) [][2]int { return nil }
