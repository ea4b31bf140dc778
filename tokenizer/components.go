package tokenizer

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a piece of text before it is split (Unicode
// normalization, SentencePiece's "▁" for spaces), keeping offsets.
type normalizer interface {
	normalize(s span) span
}

// preTokenizer splits text into the pieces BPE runs on independently; merges
// never cross a piece boundary.
type preTokenizer interface {
	split(s span) []span
}

// ---- normalizers ----

type unicodeForm struct{ form norm.Form }

func (n unicodeForm) normalize(s span) span {
	if n.form.IsNormalString(s.text) {
		return s
	}
	var it norm.Iter
	it.InitString(n.form, s.text)
	var sb spanBuilder
	for !it.Done() {
		p0 := it.Pos()
		seg := it.Next()
		p1 := it.Pos()
		o := s.offset(p0, p1)
		sb.add(string(seg), o.Start, o.End)
	}
	return sb.span(s.base)
}

type prependNorm struct{ text string }

func (n prependNorm) normalize(s span) span {
	if s.text == "" {
		return s
	}
	return prependText(s, n.text)
}

type replaceNorm struct {
	lit     string
	re      *regexp2.Regexp
	content string
}

func (n replaceNorm) normalize(s span) span {
	if n.re != nil {
		return replaceRanges(s, regexMatches(n.re, s.text), n.content)
	}
	return replaceRanges(s, literalMatches(s.text, n.lit), n.content)
}

type lowercaseNorm struct{}

func (lowercaseNorm) normalize(s span) span {
	if strings.ToLower(s.text) == s.text {
		return s
	}
	var sb spanBuilder
	for i := 0; i < len(s.text); {
		r, w := utf8.DecodeRuneInString(s.text[i:])
		if l := unicode.ToLower(r); l != r && r != utf8.RuneError {
			o := s.offset(i, i+w)
			sb.add(string(l), o.Start, o.End)
		} else {
			sb.copy(s, i, i+w)
		}
		i += w
	}
	return sb.span(s.base)
}

type stripNorm struct{ left, right bool }

func (n stripNorm) normalize(s span) span {
	a, b := 0, len(s.text)
	if n.left {
		a = len(s.text) - len(strings.TrimLeftFunc(s.text, unicode.IsSpace))
	}
	if n.right {
		b = len(strings.TrimRightFunc(s.text, unicode.IsSpace))
	}
	if a >= b {
		return s.sub(0, 0)
	}
	return s.sub(a, b)
}

// ---- pre-tokenizers ----

// splitBehavior says what happens to the delimiters a Split finds.
type splitBehavior int

const (
	isolated splitBehavior = iota
	removed
	mergedWithPrevious
	mergedWithNext
	contiguous
)

// splitPre is Hugging Face's Split (and, with a fixed pattern, the regex step
// of ByteLevel and Digits).
type splitPre struct {
	re       *regexp2.Regexp
	lit      string
	fast     func(string) [][2]int // a hand-written matcher for a well-known regex
	match    func(rune) bool       // split on single characters (Digits)
	behavior splitBehavior
	invert   bool
}

func (p splitPre) matches(text string) [][2]int {
	switch {
	case p.fast != nil:
		return p.fast(text)
	case p.re != nil:
		return regexMatches(p.re, text)
	case p.match != nil:
		var ms [][2]int
		for i, r := range text {
			if p.match(r) {
				ms = append(ms, [2]int{i, i + utf8.RuneLen(r)})
			}
		}
		return ms
	default:
		return literalMatches(text, p.lit)
	}
}

func (p splitPre) split(s span) []span {
	type part struct {
		a, b  int
		match bool
	}
	ms := p.matches(s.text)
	parts := make([]part, 0, 2*len(ms)+1)
	prev := 0
	for _, m := range ms {
		if m[0] > prev {
			parts = append(parts, part{prev, m[0], false})
		}
		if m[1] > m[0] {
			parts = append(parts, part{m[0], m[1], true})
		}
		prev = m[1]
	}
	if prev < len(s.text) {
		parts = append(parts, part{prev, len(s.text), false})
	}
	if p.invert {
		for i := range parts {
			parts[i].match = !parts[i].match
		}
	}
	var out []part
	switch p.behavior {
	case isolated:
		out = parts
	case removed:
		for _, q := range parts {
			if !q.match {
				out = append(out, q)
			}
		}
	case mergedWithPrevious:
		prevMatch := false
		for _, q := range parts {
			if q.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].b = q.b
			} else {
				out = append(out, q)
			}
			prevMatch = q.match
		}
	case mergedWithNext:
		prevMatch := false
		for i := len(parts) - 1; i >= 0; i-- {
			q := parts[i]
			if q.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].a = q.a
			} else {
				out = append(out, q)
			}
			prevMatch = q.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case contiguous:
		for i, q := range parts {
			if i > 0 && q.match == parts[i-1].match {
				out[len(out)-1].b = q.b
			} else {
				out = append(out, q)
			}
		}
	}
	spans := make([]span, 0, len(out))
	for _, q := range out {
		if q.b > q.a {
			spans = append(spans, s.sub(q.a, q.b))
		}
	}
	return spans
}

// byteLevelPre is the ByteLevel pre-tokenizer: an optional leading space,
// an optional GPT-2 regex split. The byte-to-character mapping itself is
// done by the model (bpeModel.byteLevel), which saves rewriting the text.
type byteLevelPre struct {
	addPrefixSpace bool
	regex          *splitPre
}

func (p byteLevelPre) split(s span) []span {
	if p.addPrefixSpace && !strings.HasPrefix(s.text, " ") {
		s = prependText(s, " ")
	}
	if p.regex == nil {
		return []span{s}
	}
	return p.regex.split(s)
}

// metaspacePre is SentencePiece's whitespace handling as a pre-tokenizer:
// spaces become "▁", a "▁" is prepended (always, or only to the start of
// the text), and optionally the text is split before each "▁".
type metaspacePre struct {
	repl    string
	prepend string // "always", "first", "never"
	splitOn bool
}

func (p metaspacePre) rewrite(s span) span {
	s = replaceRanges(s, literalMatches(s.text, " "), p.repl)
	if s.text != "" && !strings.HasPrefix(s.text, p.repl) {
		if p.prepend == "always" || (p.prepend == "first" && s.origStart(0) == 0) {
			s = prependText(s, p.repl)
		}
	}
	return s
}

func (p metaspacePre) split(s span) []span {
	s = p.rewrite(s)
	if !p.splitOn {
		return []span{s}
	}
	return splitPre{lit: p.repl, behavior: mergedWithNext}.split(s)
}

// sequencePre applies pre-tokenizers one after another to every piece.
type sequencePre []preTokenizer

func (q sequencePre) split(s span) []span {
	pieces := []span{s}
	for _, p := range q {
		var next []span
		for _, x := range pieces {
			next = append(next, p.split(x)...)
		}
		pieces = next
	}
	return pieces
}

type sequenceNorm []normalizer

func (q sequenceNorm) normalize(s span) span {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// regexMatches runs a regexp2 pattern (which works on runes) over s and
// returns the matches as byte ranges.
func regexMatches(re *regexp2.Regexp, s string) [][2]int {
	if s == "" {
		return nil
	}
	runes := make([]rune, 0, len(s))
	offs := make([]int, 0, len(s)+1)
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		runes = append(runes, r)
		offs = append(offs, i)
		i += w
	}
	offs = append(offs, len(s))
	var ms [][2]int
	m, err := re.FindRunesMatch(runes)
	for m != nil && err == nil {
		ms = append(ms, [2]int{offs[m.Index], offs[m.Index+m.Length]})
		m, err = re.FindNextMatch(m)
	}
	return ms
}

// Pre-tokenizer regexes of the model families this package knows. They are
// written as the model's tokenizer.json writes them; llama.cpp's versions
// spell (?i:'s) as '[sS] and drop the trailing \s+, which splits the same.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// regexTimeout bounds one regex search, so that a pathological pattern in an
// untrusted tokenizer.json cannot hang encoding; text after a timed-out
// search is left unsplit.
const regexTimeout = 2 * time.Second

func compileRegex(pattern string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, err
	}
	re.MatchTimeout = regexTimeout
	return re, nil
}
