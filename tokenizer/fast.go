package tokenizer

import (
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

type regexpT = regexp2.Regexp

func isNumeric(r rune) bool { return unicode.IsNumber(r) }
func isSpace(r rune) bool   { return unicode.IsSpace(r) }

// fastMatcher returns a hand-written matcher for one of the well-known
// pre-tokenizer regexes (GPT-2, Llama 3, Qwen2), or nil to use regexp2.
// regexp2 is a backtracking engine and spends most of the encoding time on
// these patterns; the matchers below give the same matches (checked by
// TestFastMatchers and FuzzFastMatchers against regexp2) several times faster.
func fastMatcher(pattern string) func(string) [][2]int {
	switch pattern {
	case gpt2Pattern:
		return splitGPT2
	case llama3Pattern:
		return func(s string) [][2]int { return splitLlama3(s, 3) }
	case qwen2Pattern:
		return func(s string) [][2]int { return splitLlama3(s, 1) }
	}
	return nil
}

// Character classes of the pre-tokenizer regexes: \p{L}, \p{N}, \s, and
// everything else ("other", which includes U+FFFD for invalid bytes, as
// regexp2 sees them).
const (
	clsOther uint8 = iota
	clsLetter
	clsNumber
	clsSpace
)

var asciiClass [128]uint8

func init() {
	for c := 0; c < 128; c++ {
		asciiClass[c] = classifySlow(rune(c))
	}
}

func classifySlow(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// runeText is s decoded into runes with their classes and byte offsets.
type runeText struct {
	rs   []rune
	cls  []uint8
	offs []int // byte offset of each rune, plus len(s)
}

func decodeRunes(s string) runeText {
	t := runeText{rs: make([]rune, 0, len(s)), cls: make([]uint8, 0, len(s)), offs: make([]int, 0, len(s)+1)}
	for i := 0; i < len(s); {
		c := s[i]
		r, w := rune(c), 1
		if c >= utf8.RuneSelf {
			r, w = utf8.DecodeRuneInString(s[i:])
		}
		t.rs = append(t.rs, r)
		if r < 128 {
			t.cls = append(t.cls, asciiClass[r])
		} else {
			t.cls = append(t.cls, classifySlow(r))
		}
		t.offs = append(t.offs, i)
		i += w
	}
	t.offs = append(t.offs, len(s))
	return t
}

func isNL(r rune) bool { return r == '\r' || r == '\n' }

func lowerASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 32
	}
	return r
}

// contraction matches 's 't 're 've 'm 'll 'd at i and returns its rune
// length, or 0.
func contraction(rs []rune, i int, fold bool) int {
	if rs[i] != '\'' || i+1 >= len(rs) {
		return 0
	}
	l := func(r rune) rune {
		if fold {
			return lowerASCII(r)
		}
		return r
	}
	switch l(rs[i+1]) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(rs) && l(rs[i+2]) == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(rs) && l(rs[i+2]) == 'l' {
			return 3
		}
	}
	return 0
}

// run is the end of the run of class c starting at i.
func (t *runeText) run(i int, c uint8) int {
	for i < len(t.cls) && t.cls[i] == c {
		i++
	}
	return i
}

// spaceTail handles the whitespace alternatives shared by both patterns,
// \s+(?!\S) then \s+, for the run starting at i.
func (t *runeText) spaceTail(i int) int {
	j := t.run(i, clsSpace)
	if j == len(t.rs) || j-i == 1 {
		return j
	}
	return j - 1
}

// splitLlama3 matches
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// (Llama 3 with maxDigits 3, Qwen2 with 1), trying the alternatives in order
// at each position as a backtracking engine does.
func splitLlama3(s string, maxDigits int) [][2]int {
	t := decodeRunes(s)
	n := len(t.rs)
	ms := make([][2]int, 0, n/3+1)
	for i := 0; i < n; {
		j := i
		c := t.cls[i]
		switch {
		case contraction(t.rs, i, true) > 0:
			j = i + contraction(t.rs, i, true)
		case c == clsLetter:
			j = t.run(i, clsLetter)
		case c != clsNumber && !isNL(t.rs[i]) && i+1 < n && t.cls[i+1] == clsLetter:
			j = t.run(i+1, clsLetter)
		case c == clsNumber:
			for j < n && j-i < maxDigits && t.cls[j] == clsNumber {
				j++
			}
		case c == clsOther || (t.rs[i] == ' ' && i+1 < n && t.cls[i+1] == clsOther):
			j = i
			if c != clsOther {
				j++
			}
			j = t.run(j, clsOther)
			for j < n && isNL(t.rs[j]) {
				j++
			}
		default: // whitespace
			end := t.run(i, clsSpace)
			lastNL := -1
			for k := i; k < end; k++ {
				if isNL(t.rs[k]) {
					lastNL = k
				}
			}
			if lastNL >= 0 {
				j = lastNL + 1
			} else {
				j = t.spaceTail(i)
			}
		}
		ms = append(ms, [2]int{t.offs[i], t.offs[j]})
		i = j
	}
	return ms
}

// splitGPT2 matches 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ the way a backtracking engine does.
func splitGPT2(s string) [][2]int {
	t := decodeRunes(s)
	n := len(t.rs)
	ms := make([][2]int, 0, n/3+1)
	for i := 0; i < n; {
		var j int
		c := t.cls[i]
		if k := contraction(t.rs, i, false); k > 0 {
			j = i + k
		} else if c != clsSpace {
			j = t.run(i, c)
		} else if t.rs[i] == ' ' && i+1 < n && t.cls[i+1] != clsSpace {
			j = t.run(i+1, t.cls[i+1])
		} else {
			j = t.spaceTail(i)
		}
		ms = append(ms, [2]int{t.offs[i], t.offs[j]})
		i = j
	}
	return ms
}
