package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// decoder is one step of Hugging Face's decoder chain: it rewrites the list
// of token strings (some steps fuse the list into one string).
type decoder interface {
	decode(toks []string) []string
}

// byteLevelDec turns byte-level spellings back into bytes. A token with a
// character outside the alphabet (an added token like "<|im_start|>") keeps
// its own bytes. Invalid UTF-8 becomes U+FFFD, one per maximal bad sequence.
type byteLevelDec struct{}

func (byteLevelDec) decode(toks []string) []string {
	var buf []byte
	for _, t := range toks {
		var ok bool
		if buf, ok = byteLevelBytes(t, buf); !ok {
			buf = append(buf, t...)
		}
	}
	return []string{lossyUTF8(buf)}
}

type replaceDec struct{ from, to string }

func (d replaceDec) decode(toks []string) []string {
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(t, d.from, d.to)
	}
	return toks
}

// byteFallbackDec joins runs of <0xNN> tokens into the text they spell; a run
// that is not valid UTF-8 becomes one U+FFFD per byte.
type byteFallbackDec struct{}

func (byteFallbackDec) decode(toks []string) []string {
	out := toks[:0:0]
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := byteTokenValue(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

type fuseDec struct{}

func (fuseDec) decode(toks []string) []string { return []string{strings.Join(toks, "")} }

// stripDec removes up to start leading and stop trailing copies of content
// from every token (after Fuse: from the text).
type stripDec struct {
	content     string
	start, stop int
}

func (d stripDec) decode(toks []string) []string {
	for i, t := range toks {
		for k := 0; k < d.start && strings.HasPrefix(t, d.content); k++ {
			t = t[len(d.content):]
		}
		for k := 0; k < d.stop && strings.HasSuffix(t, d.content); k++ {
			t = t[:len(t)-len(d.content)]
		}
		toks[i] = t
	}
	return toks
}

// metaspaceDec undoes the Metaspace pre-tokenizer: "▁" back to spaces, and
// the space it prepended dropped from the first token.
type metaspaceDec struct {
	repl      string
	stripHead bool
}

func (d metaspaceDec) decode(toks []string) []string {
	for i, t := range toks {
		t = strings.ReplaceAll(t, d.repl, " ")
		if i == 0 && d.stripHead {
			t = strings.TrimPrefix(t, " ")
		}
		toks[i] = t
	}
	return toks
}

type sequenceDec []decoder

func (q sequenceDec) decode(toks []string) []string {
	for _, d := range q {
		toks = d.decode(toks)
	}
	return toks
}

// lossyUTF8 converts b to a string, replacing each maximal invalid
// subsequence by one U+FFFD, as Rust's String::from_utf8_lossy (and so
// Hugging Face) does; Go's strings.ToValidUTF8 would fuse adjacent ones.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, w := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || w > 1 {
			sb.Write(b[i : i+w])
			i += w
			continue
		}
		sb.WriteString("\uFFFD")
		i += invalidPrefixLen(b[i:])
	}
	return sb.String()
}

// invalidPrefixLen is the length of the maximal prefix of b that could start
// a valid UTF-8 sequence (at least 1).
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if k == 0 && (x < lo || x > hi) || k > 0 && (x < 0x80 || x > 0xBF) {
			break
		}
		n++
	}
	return n
}

// StreamDecoder turns generated ids into text as they arrive, returning only
// text that later tokens cannot change: a character split across byte tokens
// is held back until complete, and the leading-space rules of SentencePiece
// decoders see the previous token, so streaming and decoding the whole
// sequence at once give the same text.
type StreamDecoder struct {
	t      *Tokenizer
	ctx    []int  // at most one already emitted id, decoded as context
	window []int  // ids not yet emitted
	prefix string // decode(ctx)
	skip   bool
}

// NewStreamDecoder starts decoding a new sequence.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder { return &StreamDecoder{t: t} }

// NewStreamDecoderSkipSpecial is NewStreamDecoder dropping special tokens.
func (t *Tokenizer) NewStreamDecoderSkipSpecial() *StreamDecoder {
	return &StreamDecoder{t: t, skip: true}
}

// Add appends one id and returns the text that became final (possibly "").
func (d *StreamDecoder) Add(id int) string {
	d.window = append(d.window, id)
	all := append(d.ctx[:len(d.ctx):len(d.ctx)], d.window...)
	s := d.t.decode(all, d.skip)
	if len(s) <= len(d.prefix) || strings.HasSuffix(s, "\uFFFD") || !strings.HasPrefix(s, d.prefix) {
		return ""
	}
	out := s[len(d.prefix):]
	// The next context is the last emitted token that decodes on its own:
	// not a <0xNN> byte token (a run of those is decoded as one unit) and
	// not a special token being skipped.
	for i := len(all) - 1; i >= 0; i-- {
		x := all[i]
		if x < 0 || x >= len(d.t.tokens) || (d.skip && d.t.special[x]) {
			continue
		}
		if _, isByte := byteTokenValue(d.t.tokens[x]); isByte {
			continue
		}
		d.ctx = append(d.ctx[:0], x)
		break
	}
	d.window = d.window[:0]
	d.prefix = d.t.decode(d.ctx, d.skip)
	return out
}

// Flush returns whatever text is still held back (an incomplete character
// decodes as U+FFFD) and resets the decoder for a new sequence.
func (d *StreamDecoder) Flush() string {
	s := d.t.decode(append(d.ctx[:len(d.ctx):len(d.ctx)], d.window...), d.skip)
	out := ""
	if strings.HasPrefix(s, d.prefix) {
		out = s[len(d.prefix):]
	}
	d.ctx, d.window, d.prefix = d.ctx[:0], d.window[:0], ""
	return out
}
