// Package tokenizer implements the BPE tokenizers of Llama-family models,
// exactly as Hugging Face tokenizers and llama.cpp tokenize: byte-level BPE
// (Llama 3, Qwen2/3, GPT-2, SmolLM) and SentencePiece-style BPE with byte
// fallback (Llama 2, Mistral, the tinyllamas).
//
// A Tokenizer comes from a Hugging Face tokenizer.json (Load, FromJSON) or from
// the vocabulary inside a GGUF file (FromGGUF, FromVocab). Encoding follows the
// Hugging Face pipeline: added tokens are cut out of the raw text, the rest is
// normalized, pre-tokenized into pieces, each piece is BPE-merged, and the
// post-processor adds BOS/EOS. Every token keeps the byte range of the input
// it came from (EncodeWithOffsets), so that spans of a chat transcript can be
// mapped to token positions.
//
// Train learns a new byte-level BPE vocabulary from text (the project's
// model organism has its own), and WriteJSON, WriteConfig, Save and
// GGUFMetadata write a byte-level tokenizer in the formats Hugging Face and
// llama.cpp read (export.go).
//
// It is not a general Hugging Face port: WordPiece, Unigram and WordLevel
// models, and the rarer normalizers and pre-tokenizers, are refused with an
// error rather than approximated. A Tokenizer is safe for concurrent use.
package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Offset is the byte range [Start, End) of the encoded text a token came
// from. Tokens the post-processor adds (BOS, EOS) have an empty range at the
// start or end of the text; a token that stands for inserted text (the "▁"
// SentencePiece prepends) has an empty range where it was inserted.
type Offset struct{ Start, End int }

// Tokenizer encodes text to token ids and back. Build it with Load,
// FromJSON, FromGGUF or FromVocab.
type Tokenizer struct {
	name string
	kind string

	tokens []string // by id: model vocabulary and added tokens
	// maxTok caches MaxTokenBytes.
	maxTok     int
	maxTokOnce sync.Once
	ids        map[string]int
	special    []bool // by id

	model bpeModel
	norm  normalizer   // nil: none
	pre   preTokenizer // nil: the whole segment is one piece
	dec   decoder      // nil: join with spaces (Hugging Face's default)
	added *addedSet

	// spmPrefix is llama.cpp's SentencePiece rule: a space is prepended to
	// text at the start and after every special token, then spaces become
	// "▁" (it stands in for norm, which is nil then).
	spmPrefix bool
	spmEscape bool

	prefix, suffix []int // what the post-processor adds around a sequence
	bos, eos, pad  int

	// chatTemplate travels with the tokenizer (from tokenizer_config.json,
	// GGUF or Train) so that the writers can put it into the files they
	// write; "" when unknown.
	chatTemplate string

	cacheMu sync.RWMutex
	cache   map[string][]tok
}

const (
	maxCachedPiece = 64
	maxCacheSize   = 1 << 16
)

// Encode returns the ids of text. With addSpecial, the BOS/EOS tokens the
// model expects are added (the tokenizer.json post-processor, or the GGUF
// add_bos/add_eos flags). Added tokens in the text (such as "<|eot_id|>")
// are always recognised, as Hugging Face does.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids, _, _ := t.EncodeWith(text, EncodeOptions{AddSpecial: addSpecial})
	return ids
}

// EncodeWithOffsets is Encode that also returns, for every token, the byte
// range of text it came from. Ranges are in order and do not overlap except
// where one character is split over several byte-level tokens (each then
// covers the whole character when a normalizer rewrote it).
func (t *Tokenizer) EncodeWithOffsets(text string, addSpecial bool) ([]int, []Offset) {
	ids, offs, _ := t.EncodeWith(text, EncodeOptions{AddSpecial: addSpecial, Offsets: true})
	return ids, offs
}

// EncodeOptions tune EncodeWith.
type EncodeOptions struct {
	// AddSpecial adds the BOS/EOS tokens the model expects.
	AddSpecial bool
	// Offsets asks for each token's byte range.
	Offsets bool
	// Plain are byte ranges (in order, not overlapping) where added tokens
	// are not recognised and their text is tokenized like any other: the
	// content of chat messages, so that a user who types "<|im_end|>"
	// writes those characters and not a turn boundary.
	Plain []Offset
	// MaxTokens, if positive, stops encoding with ErrTooLong as soon as
	// the text has more tokens: the work and memory then depend on the
	// bound, not on the length of a hostile input.
	MaxTokens int
}

// ErrTooLong is returned by EncodeWith when the text has more tokens than
// EncodeOptions.MaxTokens.
var ErrTooLong = errors.New("text has more tokens than allowed")

// EncodeWith encodes text as the options say.
func (t *Tokenizer) EncodeWith(text string, o EncodeOptions) ([]int, []Offset, error) {
	capacity := len(text)/3 + 4
	if o.MaxTokens > 0 {
		capacity = min(capacity, o.MaxTokens+1)
	}
	ids := make([]int, 0, capacity)
	var offs []Offset
	if o.Offsets {
		offs = make([]Offset, 0, cap(ids))
	}
	emit := func(id int, off Offset) bool {
		ids = append(ids, id)
		if o.Offsets {
			offs = append(offs, off)
		}
		return o.MaxTokens <= 0 || len(ids) <= o.MaxTokens
	}
	tooLong := func() ([]int, []Offset, error) {
		return nil, nil, fmt.Errorf("%w: more than %d", ErrTooLong, o.MaxTokens)
	}
	if o.AddSpecial {
		for _, id := range t.prefix {
			if !emit(id, Offset{0, 0}) {
				return tooLong()
			}
		}
	}
	var segs []segment
	if t.added != nil {
		segs = t.added.split(text, o.Plain)
	} else if text != "" {
		segs = []segment{{0, len(text), -1}}
	}
	var scratch []tok
	prevSpecial := true
	for _, sg := range segs {
		if sg.id >= 0 {
			if !emit(sg.id, Offset{sg.start, sg.end}) {
				return tooLong()
			}
			prevSpecial = true
			continue
		}
		s := span{text: text[sg.start:sg.end], base: sg.start}
		if t.spmEscape {
			if t.spmPrefix && prevSpecial {
				s = prependText(s, " ")
			}
			s = replaceRanges(s, literalMatches(s.text, " "), "▁")
		}
		prevSpecial = false
		if t.norm != nil {
			s = t.norm.normalize(s)
		}
		var pieces []span
		if t.pre != nil {
			pieces = t.pre.split(s)
		} else if s.text != "" {
			pieces = []span{s}
		}
		for _, p := range pieces {
			scratch = t.encodePiece(p.text, scratch[:0])
			pos := 0
			for _, tk := range scratch {
				if !emit(int(tk.id), p.offset(pos, pos+int(tk.n))) {
					return tooLong()
				}
				pos += int(tk.n)
			}
		}
	}
	if o.AddSpecial {
		for _, id := range t.suffix {
			if !emit(id, Offset{len(text), len(text)}) {
				return tooLong()
			}
		}
	}
	return ids, offs, nil
}

// encodePiece BPE-encodes one pre-token, through the cache for short ones.
func (t *Tokenizer) encodePiece(p string, out []tok) []tok {
	if len(p) > maxCachedPiece {
		return t.model.encodeWord(p, out)
	}
	t.cacheMu.RLock()
	c, ok := t.cache[p]
	t.cacheMu.RUnlock()
	if ok {
		return append(out, c...)
	}
	n := len(out)
	out = t.model.encodeWord(p, out)
	c = append([]tok(nil), out[n:]...)
	t.cacheMu.Lock()
	if len(t.cache) >= maxCacheSize {
		t.cache = make(map[string][]tok)
	}
	t.cache[strings.Clone(p)] = c
	t.cacheMu.Unlock()
	return out
}

// Decode returns the text of ids, special tokens included, as the model's
// decoder spells it (Hugging Face's decode with skip_special_tokens=false).
// Ids outside the vocabulary are skipped.
func (t *Tokenizer) Decode(ids []int) string { return t.decode(ids, false) }

// DecodeSkipSpecial is Decode without special tokens (BOS, EOS, chat
// markers): the text a user should see.
func (t *Tokenizer) DecodeSkipSpecial(ids []int) string { return t.decode(ids, true) }

func (t *Tokenizer) decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) || (skipSpecial && t.special[id]) {
			continue
		}
		toks = append(toks, t.tokens[id])
	}
	if t.dec == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.dec.decode(toks), "")
}

// VocabSize is the number of ids, added tokens included: the size of the
// embedding table the tokenizer needs.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// MaxTokenBytes is the length in bytes of the longest token as the
// vocabulary spells it. A token never stands for more input bytes than its
// spelling (byte-level alphabets and "▁" only make spellings longer), so a
// text of n bytes has at least n/MaxTokenBytes tokens: how callers refuse an
// input too long for a context without tokenizing all of it.
func (t *Tokenizer) MaxTokenBytes() int {
	t.maxTokOnce.Do(func() {
		for _, s := range t.tokens {
			t.maxTok = max(t.maxTok, len(s))
		}
		t.maxTok = max(t.maxTok, 1)
	})
	return t.maxTok
}

// Token is the vocabulary entry of id as stored (byte-level spelling, "▁"
// for spaces), or "" when id is out of range.
func (t *Tokenizer) Token(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// ID looks a vocabulary entry up by its stored spelling.
func (t *Tokenizer) ID(token string) (int, bool) {
	id, ok := t.ids[token]
	return id, ok
}

// BOS is the beginning-of-sequence id, or -1 when the model has none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS is the end-of-sequence id, or -1 when the model has none.
func (t *Tokenizer) EOS() int { return t.eos }

// PAD is the padding id (tokenizer_config.json's pad_token, GGUF's
// padding_token_id), or -1 when none is named.
func (t *Tokenizer) PAD() int { return t.pad }

// ChatTemplate is the Jinja chat template that came with the tokenizer (the
// string form of tokenizer_config.json's chat_template, GGUF's
// tokenizer.chat_template, or TrainOptions.ChatTemplate), or "". It is kept
// so that WriteConfig and GGUFMetadata pass it on; package chat renders it.
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// IsSpecial reports whether id is a control token (BOS, EOS, chat markers,
// special added tokens), which DecodeSkipSpecial leaves out.
func (t *Tokenizer) IsSpecial(id int) bool { return id >= 0 && id < len(t.special) && t.special[id] }

// Kind names the algorithm, "byte-level BPE" or "SentencePiece BPE", for
// display.
func (t *Tokenizer) Kind() string { return t.kind }

// Name is the file or model name the tokenizer was loaded from.
func (t *Tokenizer) Name() string { return t.name }

// AddedPrefix and AddedSuffix are the ids Encode adds around the text when
// addSpecial is true.
func (t *Tokenizer) AddedPrefix() []int { return append([]int(nil), t.prefix...) }

// AddedSuffix: see AddedPrefix.
func (t *Tokenizer) AddedSuffix() []int { return append([]int(nil), t.suffix...) }
