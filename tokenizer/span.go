package tokenizer

import "strings"

// span is a piece of (possibly normalized) text together with where each of
// its bytes came from in the caller's string. Normalizers and pre-tokenizers
// rewrite text (NFC, "▁" for spaces, a prepended prefix); offsets must still
// point into the original, so every rewrite carries the map along. The common
// case, text that no stage has rewritten, keeps no map at all.
type span struct {
	text  string
	base  int     // with no map, byte i came from base+i
	start []int32 // otherwise byte i came from original [start[i], end[i])
	end   []int32
}

func (s span) origStart(i int) int {
	if s.start == nil {
		return s.base + i
	}
	if i >= len(s.start) {
		if len(s.end) == 0 {
			return s.base
		}
		return int(s.end[len(s.end)-1])
	}
	return int(s.start[i])
}

func (s span) origEnd(i int) int { // end of byte i
	if s.start == nil {
		return s.base + i + 1
	}
	return int(s.end[i])
}

// sub is bytes [a, b) of s.
func (s span) sub(a, b int) span {
	if s.start == nil {
		return span{text: s.text[a:b], base: s.base + a}
	}
	return span{text: s.text[a:b], base: s.origStart(a), start: s.start[a:b], end: s.end[a:b]}
}

// offset is the original byte range of bytes [a, b) of s.
func (s span) offset(a, b int) Offset {
	if a >= b {
		p := s.origStart(a)
		return Offset{p, p}
	}
	return Offset{s.origStart(a), s.origEnd(b - 1)}
}

// spanBuilder assembles a rewritten span.
type spanBuilder struct {
	b          strings.Builder
	start, end []int32
}

// copy appends bytes [a, b) of s unchanged.
func (sb *spanBuilder) copy(s span, a, b int) {
	sb.b.WriteString(s.text[a:b])
	for i := a; i < b; i++ {
		sb.start = append(sb.start, int32(s.origStart(i)))
		sb.end = append(sb.end, int32(s.origEnd(i)))
	}
}

// add appends text that replaces original bytes [st, en).
func (sb *spanBuilder) add(text string, st, en int) {
	sb.b.WriteString(text)
	for i := 0; i < len(text); i++ {
		sb.start = append(sb.start, int32(st))
		sb.end = append(sb.end, int32(en))
	}
}

func (sb *spanBuilder) span(base int) span {
	return span{text: sb.b.String(), base: base, start: sb.start, end: sb.end}
}

// replaceRanges rewrites s, putting repl in place of each byte range in ms
// (sorted, non-overlapping).
func replaceRanges(s span, ms [][2]int, repl string) span {
	if len(ms) == 0 {
		return s
	}
	var sb spanBuilder
	sb.b.Grow(len(s.text) + len(ms)*len(repl))
	prev := 0
	for _, m := range ms {
		sb.copy(s, prev, m[0])
		o := s.offset(m[0], m[1])
		sb.add(repl, o.Start, o.End)
		prev = m[1]
	}
	sb.copy(s, prev, len(s.text))
	return sb.span(s.base)
}

// prependText puts p in front of s, mapped to an empty range at its start.
func prependText(s span, p string) span {
	var sb spanBuilder
	st := s.origStart(0)
	sb.add(p, st, st)
	sb.copy(s, 0, len(s.text))
	return sb.span(s.base)
}

// literalMatches finds the non-overlapping occurrences of lit in s.
func literalMatches(s, lit string) [][2]int {
	if lit == "" {
		return nil
	}
	var ms [][2]int
	for i := 0; ; {
		j := strings.Index(s[i:], lit)
		if j < 0 {
			return ms
		}
		ms = append(ms, [2]int{i + j, i + j + len(lit)})
		i += j + len(lit)
	}
}
