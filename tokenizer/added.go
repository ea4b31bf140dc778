package tokenizer

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

// addedToken is a token matched in the raw text before anything else runs:
// chat markers like "<|eot_id|>" and Hugging Face's added tokens.
type addedToken struct {
	content    string
	id         int
	special    bool
	lstrip     bool // also swallow whitespace on the left
	rstrip     bool // ... and on the right
	singleWord bool // only when not inside a word
}

// addedSet finds added tokens, leftmost first and longest at a position, the
// way Hugging Face's Aho-Corasick matcher does.
type addedSet struct {
	toks    []addedToken
	byFirst [256][]int32 // indices into toks by first byte, longest first
}

func newAddedSet(toks []addedToken) *addedSet {
	a := &addedSet{toks: toks}
	for i, t := range toks {
		if t.content == "" {
			continue
		}
		a.byFirst[t.content[0]] = append(a.byFirst[t.content[0]], int32(i))
	}
	for b := range a.byFirst {
		l := a.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(toks[l[i]].content) > len(toks[l[j]].content) })
	}
	return a
}

// segment is a stretch of the input: text to tokenize (id < 0) or an added
// token.
type segment struct {
	start, end int
	id         int
}

func isWordChar(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) || r == '_' }

// split cuts text at added tokens, except inside the plain ranges (in
// order, not overlapping): a token that would touch one is text.
func (a *addedSet) split(text string, plain []Offset) []segment {
	var segs []segment
	last := 0  // end of the previous segment
	floor := 0 // lstrip may not reach into a plain range before i
	for i := 0; i < len(text); i++ {
		for len(plain) > 0 && plain[0].End <= i {
			floor = max(floor, plain[0].End)
			plain = plain[1:]
		}
		cands := a.byFirst[text[i]]
		if len(cands) == 0 {
			continue
		}
		if len(plain) > 0 && plain[0].Start <= i {
			continue // inside a plain range
		}
		for _, k := range cands {
			t := &a.toks[k]
			if len(text)-i < len(t.content) || text[i:i+len(t.content)] != t.content {
				continue
			}
			s, e := i, i+len(t.content)
			if len(plain) > 0 && e > plain[0].Start {
				continue // would run into a plain range
			}
			if t.singleWord {
				if r, _ := utf8.DecodeLastRuneInString(text[:s]); s > 0 && isWordChar(r) {
					continue
				}
				if r, _ := utf8.DecodeRuneInString(text[e:]); e < len(text) && isWordChar(r) {
					continue
				}
			}
			if t.lstrip {
				for s > max(last, floor) {
					r, w := utf8.DecodeLastRuneInString(text[:s])
					if !unicode.IsSpace(r) {
						break
					}
					s -= w
				}
			}
			if t.rstrip {
				for e < len(text) && (len(plain) == 0 || e < plain[0].Start) {
					r, w := utf8.DecodeRuneInString(text[e:])
					if !unicode.IsSpace(r) {
						break
					}
					e += w
				}
			}
			if s > last {
				segs = append(segs, segment{last, s, -1})
			}
			segs = append(segs, segment{s, e, t.id})
			last = e
			i = e - 1
			break
		}
	}
	if last < len(text) {
		segs = append(segs, segment{last, len(text), -1})
	}
	return segs
}
