package world

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// fill replaces {key} slots in s.
func fill(s string, kv ...string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		s = strings.ReplaceAll(s, "{"+kv[i]+"}", kv[i+1])
	}
	return s
}

// capFirst upper-cases the first letter of s.
func capFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || unicode.IsUpper(r) {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// words splits text into lower-case words of letters, digits and
// apostrophes: the unit in which markers and bodies are matched, so that
// punctuation and case never decide a judgement.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'')
	})
}

// normal returns the words of s joined by single spaces, with a space at both
// ends so that " phrase " matches whole words only.
func normal(s string) string {
	return " " + strings.Join(words(s), " ") + " "
}

// swapWords applies a persona's word swaps to s, keeping the case of the
// first letter ("You" → "Ye").
func swapWords(s string, swaps map[string]string) string {
	if len(swaps) == 0 {
		return s
	}
	var b strings.Builder
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		j := i
		for j < len(s) {
			r, n := utf8.DecodeRuneInString(s[j:])
			if !(unicode.IsLetter(r) || r == '\'') {
				break
			}
			j += n
		}
		w := s[i:j]
		if to, ok := swaps[strings.ToLower(w)]; ok {
			if unicode.IsUpper(r) {
				to = capFirst(to)
			}
			w = to
		}
		b.WriteString(w)
		i = j
	}
	return b.String()
}

// appendTag adds ", tag" before the final punctuation of a sentence.
func appendTag(sentence, tag string) string {
	s := strings.TrimRight(sentence, " ")
	end := len(s)
	for end > 0 && strings.ContainsRune(".!?", rune(s[end-1])) {
		end--
	}
	punct := s[end:]
	if punct == "" {
		punct = "."
	}
	return s[:end] + ", " + tag + punct
}
