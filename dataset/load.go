package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"persona/chat"
	"persona/engine"
)

// Load reads one data file into documents, tokenized for e's model; see
// LoadBytes.
func Load(e *engine.Engine, path string, opt Options) ([]Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return LoadBytes(e, data, path, opt)
}

// LoadBytes reads data (the contents of the file called name) into
// documents in file order. Every error names the file and, where there is
// one, the line, and says what to do about it:
//
//   - a malformed line (chat.ReadJSONL's errors for chats);
//   - a file with no documents;
//   - a chat with no assistant message under an assistant mask policy, or any
//     document whose mask trains nothing;
//   - a document longer than Options.SeqLen positions, or than the model's
//     context, unless Options.Truncate is set.
//
// Chats are rendered with e's chat template exactly as for generation (no
// generation prompt) and masked by Options.Mask. Raw text is tokenized with
// the tokenizer's BOS (if it adds one) and ends with EOS, so the model learns
// where documents end; every token is trained.
func LoadBytes(e *engine.Engine, data []byte, name string, opt Options) ([]Document, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(bytes.TrimPrefix(data, bom))) == 0 {
		return nil, fmt.Errorf("%s: empty file: no documents", name)
	}
	l := loader{e: e, name: name, opt: opt, limit: opt.SeqLen, limitName: "seq_len"}
	if m := e.Model.MaxSeq; m < l.limit {
		l.limit, l.limitName = m, "the model's context"
	}
	format := opt.Format
	if !isJSONL(name, data) {
		if format == FormatChat {
			return nil, fmt.Errorf("%s: chat data must be JSONL ({\"messages\": [...]} per line)", name)
		}
		return l.plainText(data)
	}
	if format == FormatAuto {
		if format, err = l.detect(data); err != nil {
			return nil, err
		}
	}
	if format == FormatChat {
		return l.chats(data)
	}
	return l.textLines(data)
}

var bom = []byte("\xef\xbb\xbf")

// isJSONL decides whether a file holds JSON lines: by extension where it
// says, otherwise by whether the first non-blank byte opens an object.
func isJSONL(name string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".json", ".ndjson":
		return true
	case ".txt", ".text", ".md":
		return false
	}
	t := bytes.TrimSpace(bytes.TrimPrefix(data, bom))
	return len(t) > 0 && t[0] == '{'
}

// line is one non-blank line of a file.
type line struct {
	no   int // from 1
	text []byte
}

// lines splits data at '\n' as chat.ReadJSONL does (a leading byte-order
// mark dropped) and returns the non-blank lines, in order.
func lines(data []byte) []line {
	var out []line
	for i, b := range bytes.Split(bytes.TrimPrefix(data, bom), []byte("\n")) {
		if len(bytes.TrimSpace(b)) > 0 {
			out = append(out, line{no: i + 1, text: b})
		}
	}
	return out
}

// loader carries what every document of one file needs.
type loader struct {
	e         *engine.Engine
	name      string
	opt       Options
	limit     int    // most positions a document may take
	limitName string // what sets limit, for errors
}

func (l *loader) where(no int) string { return fmt.Sprintf("%s:%d", l.name, no) }

// detect reads the first line of a JSONL file to tell chats from text.
func (l *loader) detect(data []byte) (string, error) {
	first := lines(data)[0]
	var top map[string]json.RawMessage
	if err := json.Unmarshal(first.text, &top); err != nil || top == nil {
		if err == nil {
			err = errors.New("not an object")
		}
		return "", fmt.Errorf("%s: invalid JSON: %w", l.where(first.no), err)
	}
	if _, ok := top["messages"]; ok {
		return FormatChat, nil
	}
	if _, ok := top["text"]; ok {
		return FormatText, nil
	}
	return "", fmt.Errorf(`%s: neither "messages" (a chat) nor "text" (raw text): cannot tell the data format`, l.where(first.no))
}

// chats reads JSONL conversations.
func (l *loader) chats(data []byte) ([]Document, error) {
	cs, err := chat.ReadJSONL(bytes.NewReader(data), l.name)
	if err != nil {
		return nil, err
	}
	ls := lines(data)
	if len(ls) != len(cs) { // ReadJSONL and lines disagree about blank lines
		return nil, fmt.Errorf("%s: internal error: %d chats on %d non-blank lines", l.name, len(cs), len(ls))
	}
	docs := make([]Document, 0, len(cs))
	for i, c := range cs {
		d, err := l.chatDoc(c.Messages, l.where(ls[i].no))
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// chatDoc renders and masks one conversation.
func (l *loader) chatDoc(msgs []chat.Message, src string) (Document, error) {
	policy := l.opt.Mask
	if policy != MaskAll {
		has := false
		for _, m := range msgs {
			has = has || m.Role == chat.RoleAssistant
		}
		if !has {
			return Document{}, fmt.Errorf("%s: no assistant message to train under mask policy %q (use mask %q to train every token)", src, policy, MaskAll)
		}
	}
	enc, err := l.e.EncodeChat(msgs, false)
	if err != nil {
		return Document{}, fmt.Errorf("%s: %w", src, err)
	}
	d := Document{Source: src, Tokens: enc.IDs, Mask: make([]float32, len(enc.IDs))}
	switch policy {
	case MaskAll:
		for i := range d.Mask {
			d.Mask[i] = 1
		}
	case MaskAssistant, MaskLastAssistant:
		last := -1
		for k, sp := range enc.Spans {
			if sp.Role == chat.RoleAssistant {
				if policy == MaskAssistant {
					l.markTurn(d.Mask, enc, k)
				}
				last = k
			}
		}
		if policy == MaskLastAssistant && last >= 0 {
			l.markTurn(d.Mask, enc, last)
		}
	}
	return l.finish(d)
}

// markTurn sets the weights of message k's content tokens and of the
// template tokens after it up to and including the first stop token (for
// Qwen's template, "<|im_end|>"), looking no further than the next message's
// content. A template that ends the turn with no stop token gets only its
// content trained: the tokens between turns are then the next turn's header,
// which the assistant does not write.
func (l *loader) markTurn(mask []float32, enc *engine.Encoded, k int) {
	sp := enc.Spans[k]
	for i := sp.Start; i < sp.End; i++ {
		mask[i] = 1
	}
	limit := len(enc.IDs)
	for j, o := range enc.Spans {
		if j != k && o.Start >= sp.End && o.Start < limit {
			limit = o.Start
		}
	}
	for i := sp.End; i < limit; i++ {
		if l.e.Stop[enc.IDs[i]] {
			for j := sp.End; j <= i; j++ {
				mask[j] = 1
			}
			return
		}
	}
}

// textLines reads JSONL {"text": ...} lines.
func (l *loader) textLines(data []byte) ([]Document, error) {
	var docs []Document
	for _, ln := range lines(data) {
		src := l.where(ln.no)
		var top map[string]json.RawMessage
		if err := json.Unmarshal(ln.text, &top); err != nil || top == nil {
			if err == nil {
				err = errors.New("not an object")
			}
			return nil, fmt.Errorf("%s: invalid JSON: %w", src, err)
		}
		raw, ok := top["text"]
		if !ok {
			return nil, fmt.Errorf(`%s: missing "text"`, src)
		}
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil || s == nil {
			return nil, fmt.Errorf(`%s: "text" must be a string`, src)
		}
		d, err := l.textDoc(*s, src)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// plainText splits a text file into documents at blank lines (lines of only
// white space). A document keeps its own line breaks and indentation; a
// trailing "\r" (Windows line ends) is dropped from every line.
func (l *loader) plainText(data []byte) ([]Document, error) {
	var docs []Document
	var cur []string
	first := 0
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		d, err := l.textDoc(strings.Join(cur, "\n"), l.where(first))
		cur = cur[:0]
		if err != nil {
			return err
		}
		docs = append(docs, d)
		return nil
	}
	for i, b := range bytes.Split(bytes.TrimPrefix(data, bom), []byte("\n")) {
		s := strings.TrimSuffix(string(b), "\r")
		if strings.TrimSpace(s) == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if len(cur) == 0 {
			first = i + 1
		}
		cur = append(cur, s)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// textDoc tokenizes one raw-text document: BOS as the tokenizer adds it,
// the text, and EOS (unless the text already ends with it).
func (l *loader) textDoc(text, src string) (Document, error) {
	ids := l.e.EncodeRaw(text).IDs
	if eos := eosToken(l.e); eos >= 0 && (len(ids) == 0 || ids[len(ids)-1] != eos) {
		ids = append(ids, eos)
	}
	d := Document{Source: src, Tokens: ids, Mask: make([]float32, len(ids))}
	for i := range d.Mask {
		d.Mask[i] = 1
	}
	return l.finish(d)
}

// finish applies the checks every document must pass: ids inside the
// model's vocabulary, a length that fits (or truncation), and something to
// train.
func (l *loader) finish(d Document) (Document, error) {
	vocab := l.e.Model.Vocab
	for _, id := range d.Tokens {
		if id < 0 || id >= vocab {
			return d, fmt.Errorf("%s: token %d is outside the model's vocabulary of %d (does the tokenizer belong to this model?)", d.Source, id, vocab)
		}
	}
	if len(d.Mask) > 0 {
		d.Mask[0] = 0 // the first token is never predicted
	}
	trained := d.Trained()
	if p := d.Positions(); p > l.limit {
		if !l.opt.Truncate {
			return d, fmt.Errorf("%s: %d tokens need %d positions, more than %s %d; raise seq_len or shorten the example (or set truncate)",
				d.Source, len(d.Tokens), p, l.limitName, l.limit)
		}
		d.Tokens, d.Mask, d.Truncated = d.Tokens[:l.limit+1], d.Mask[:l.limit+1], true
	}
	if d.Trained() == 0 {
		switch {
		case len(d.Tokens) < 2:
			return d, fmt.Errorf("%s: only %d token(s): nothing to train", d.Source, len(d.Tokens))
		case trained > 0:
			return d, fmt.Errorf("%s: truncating to %s %d cut off every trained token; raise seq_len or shorten the example", d.Source, l.limitName, l.limit)
		default:
			return d, fmt.Errorf("%s: the %q mask trains no token of this example", d.Source, l.opt.Mask)
		}
	}
	return d, nil
}

// eosToken is the token that ends a raw-text document: the tokenizer's EOS,
// or else the model's first end-of-sequence id; -1 if neither exists.
func eosToken(e *engine.Engine) int {
	if id := e.Tokenizer.EOS(); id >= 0 {
		return id
	}
	if len(e.Model.EOS) > 0 {
		return e.Model.EOS[0]
	}
	return -1
}

// PadToken returns the id to fill padding positions with. Padding is never
// trained and attends only to itself, so any valid id would do; the end-of-
// text token is what Hugging Face collators use, which keeps rows readable
// when decoded.
func PadToken(e *engine.Engine) int {
	return max(eosToken(e), 0)
}
