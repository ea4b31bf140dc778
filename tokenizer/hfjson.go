package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// The parts of a Hugging Face tokenizer.json this package reads.
type hfFile struct {
	AddedTokens   []hfAdded       `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *hfModel        `json:"model"`
}

type hfAdded struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type hfModel struct {
	Type                    string          `json:"type"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	Dropout                 *float64        `json:"dropout"`
}

// hfComponent is any normalizer, pre-tokenizer, post-processor or decoder:
// one struct with the union of the fields the supported types use.
type hfComponent struct {
	Type             string            `json:"type"`
	Normalizers      []json.RawMessage `json:"normalizers"`
	PreTokenizers    []json.RawMessage `json:"pretokenizers"`
	Processors       []json.RawMessage `json:"processors"`
	Decoders         []json.RawMessage `json:"decoders"`
	Pattern          *hfPattern        `json:"pattern"`
	Content          *string           `json:"content"`
	Prepend          *string           `json:"prepend"`
	Behavior         string            `json:"behavior"`
	Invert           bool              `json:"invert"`
	AddPrefixSpace   *bool             `json:"add_prefix_space"`
	UseRegex         *bool             `json:"use_regex"`
	IndividualDigits bool              `json:"individual_digits"`
	Replacement      *string           `json:"replacement"`
	PrependScheme    *string           `json:"prepend_scheme"`
	Split            *bool             `json:"split"`
	Start            int               `json:"start"`
	Stop             int               `json:"stop"`
	StripLeft        bool              `json:"strip_left"`
	StripRight       bool              `json:"strip_right"`
	Single           []hfTemplateItem  `json:"single"`
	SpecialTokens    map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
	Sep []json.RawMessage `json:"sep"`
	Cls []json.RawMessage `json:"cls"`
}

type hfPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type hfTemplateItem struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// Load reads a Hugging Face tokenizer.json. When a tokenizer_config.json
// lies beside it, its bos_token and eos_token name BOS and EOS (the
// tokenizer.json itself does not say which token ends a turn).
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromJSON(data, path)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	if cfg, err := os.ReadFile(cfgPath); err == nil {
		if err := t.applyConfig(cfg); err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", cfgPath, err)
		}
	}
	return t, nil
}

// applyConfig takes bos_token, eos_token, pad_token and a chat_template
// string from a tokenizer_config.json.
func (t *Tokenizer) applyConfig(data []byte) error {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("parse JSON: %w", err)
	}
	pick := func(key string, dst *int) error {
		raw, ok := cfg[key]
		if !ok {
			return nil
		}
		var name string
		var obj struct {
			Content string `json:"content"`
		}
		switch {
		case bytes.Equal(bytes.TrimSpace(raw), []byte("null")):
			*dst = -1
			return nil
		case json.Unmarshal(raw, &name) == nil:
		case json.Unmarshal(raw, &obj) == nil:
			name = obj.Content
		default:
			return fmt.Errorf("%s: not a token", key)
		}
		id, ok := t.ids[name]
		if !ok {
			return fmt.Errorf("%s: %q is not in the vocabulary", key, name)
		}
		*dst = id
		return nil
	}
	if err := pick("bos_token", &t.bos); err != nil {
		return err
	}
	// A pad_token outside the vocabulary (some configs name one the model
	// never had) only means there is no usable PAD: not an error.
	_ = pick("pad_token", &t.pad)
	var tmpl string
	if raw, ok := cfg["chat_template"]; ok && json.Unmarshal(raw, &tmpl) == nil {
		t.chatTemplate = tmpl
	}
	return pick("eos_token", &t.eos)
}

// FromJSON builds a tokenizer from the bytes of a tokenizer.json; name (the
// file's path) is used in errors. Only BPE models are supported.
func FromJSON(data []byte, name string) (*Tokenizer, error) {
	errf := func(field, format string, args ...any) error {
		return fmt.Errorf("tokenizer %s: %s: %s", name, field, fmt.Sprintf(format, args...))
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer %s: parse JSON: %w", name, err)
	}
	m := f.Model
	if m == nil {
		return nil, errf("model", "missing")
	}
	if m.Type == "" && m.Merges == nil {
		return nil, errf("model.type", "missing")
	}
	if m.Type != "" && m.Type != "BPE" {
		return nil, errf("model.type", "%q is not supported (only BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, errf("model.dropout", "BPE dropout is not supported")
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, errf("model.continuing_subword_prefix", "not supported")
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, errf("model.end_of_word_suffix", "not supported")
	}

	// Vocabulary: model entries, then added tokens; ids must be distinct
	// per spelling and dense.
	total := len(m.Vocab)
	for _, a := range f.AddedTokens {
		if a.ID != nil && *a.ID >= 0 {
			if tokText, ok := m.Vocab[a.Content]; !ok || tokText != *a.ID {
				total++
			}
		}
	}
	byID := make([]string, total)
	set := make([]bool, total)
	vocab := make(map[string]int32, len(m.Vocab))
	for s, id := range m.Vocab {
		if id < 0 || id >= total {
			return nil, errf("model.vocab", "id %d of %q out of range [0, %d)", id, s, total)
		}
		if set[id] {
			return nil, errf("model.vocab", "duplicate id %d (%q and %q)", id, byID[id], s)
		}
		byID[id], set[id] = s, true
		vocab[s] = int32(id)
	}
	t := &Tokenizer{name: name, bos: -1, eos: -1, pad: -1, cache: make(map[string][]tok)}
	var added []addedToken
	special := make([]bool, total)
	for i, a := range f.AddedTokens {
		field := fmt.Sprintf("added_tokens[%d]", i)
		if a.ID == nil {
			return nil, errf(field, "no id")
		}
		id := *a.ID
		if id < 0 || id >= total {
			return nil, errf(field, "id %d of %q out of range [0, %d)", id, a.Content, total)
		}
		if a.Content == "" {
			return nil, errf(field, "empty content")
		}
		if set[id] && byID[id] != a.Content {
			return nil, errf(field, "duplicate id %d (%q and %q)", id, byID[id], a.Content)
		}
		byID[id], set[id] = a.Content, true
		special[id] = a.Special
		added = append(added, addedToken{content: a.Content, id: id, special: a.Special,
			lstrip: a.LStrip, rstrip: a.RStrip, singleWord: a.SingleWord})
	}
	for id, ok := range set {
		if !ok {
			return nil, errf("model.vocab", "no token has id %d (ids must be dense, %d entries)", id, total)
		}
	}
	t.tokens, t.special = byID, special
	t.ids = make(map[string]int, total)
	for id, s := range byID {
		t.ids[s] = id
	}
	for _, a := range added {
		t.ids[a.content] = a.id
	}
	if len(added) > 0 {
		t.added = newAddedSet(added)
	}

	bm := &t.model
	bm.vocab = vocab
	bm.unk = -1
	bm.ignoreMerges = m.IgnoreMerges
	bm.byteFallback = m.ByteFallback
	bm.fuseUnk = m.FuseUnk
	if m.UnkToken != nil {
		id, ok := vocab[*m.UnkToken]
		if !ok {
			return nil, errf("model.unk_token", "%q is not in the vocabulary", *m.UnkToken)
		}
		bm.unk = id
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, errf("model.merges", "%v", err)
	}
	bm.merges = make(map[uint64]mergeRule, len(merges))
	for i, mg := range merges {
		a, okA := vocab[mg[0]]
		b, okB := vocab[mg[1]]
		c, okC := vocab[mg[0]+mg[1]]
		switch {
		case !okA:
			return nil, errf(fmt.Sprintf("model.merges[%d]", i), "unknown token %q", mg[0])
		case !okB:
			return nil, errf(fmt.Sprintf("model.merges[%d]", i), "unknown token %q", mg[1])
		case !okC:
			return nil, errf(fmt.Sprintf("model.merges[%d]", i), "merged token %q is not in the vocabulary", mg[0]+mg[1])
		}
		k := pairKey(a, b)
		if _, dup := bm.merges[k]; !dup {
			bm.merges[k] = mergeRule{rank: int32(i), id: c}
		}
	}

	if t.norm, err = parseNormalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", name, err)
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer, "pre_tokenizer", &bm.byteLevel); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", name, err)
	}
	if t.dec, err = parseDecoder(f.Decoder, "decoder"); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", name, err)
	}
	if err = t.parsePostProcessor(f.PostProcessor, "post_processor"); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", name, err)
	}
	for b := 0; b < 256; b++ {
		bm.byteIDs[b] = -1
		key := fmt.Sprintf("<0x%02X>", b)
		if bm.byteLevel {
			key = byteToString[b]
		}
		if id, ok := vocab[key]; ok && (bm.byteLevel || bm.byteFallback) {
			bm.byteIDs[b] = id
		}
	}
	if bm.byteLevel {
		t.kind = "byte-level BPE"
	} else {
		t.kind = "SentencePiece BPE"
	}
	t.guessBOSEOS()
	return t, nil
}

// guessBOSEOS names BOS and EOS when nothing says which they are: the
// post-processor's first added token, else the usual spellings.
func (t *Tokenizer) guessBOSEOS() {
	find := func(names ...string) int {
		for _, n := range names {
			if id, ok := t.ids[n]; ok {
				return id
			}
		}
		return -1
	}
	if len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	} else {
		t.bos = find("<|begin_of_text|>", "<s>", "<bos>")
	}
	if len(t.suffix) > 0 {
		t.eos = t.suffix[len(t.suffix)-1]
	} else {
		t.eos = find("<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>")
	}
}

// parseMerges accepts both spellings of the merge list: "a b" strings (a
// token never contains a space there) and ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("not a list: %w", err)
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("[%d]: %q is not two tokens separated by a space", i, s)
			}
			out[i] = [2]string{a, b}
			continue
		}
		var p []string
		if err := json.Unmarshal(it, &p); err != nil || len(p) != 2 {
			return nil, fmt.Errorf("[%d]: neither \"a b\" nor [a, b]", i)
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func parseComponent(raw json.RawMessage, field string) (*hfComponent, error) {
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return &c, nil
}

// pattern compiles a {"String": ...} or {"Regex": ...} pattern.
func (c *hfComponent) pattern(field string) (lit string, re *regexpT, err error) {
	if c.Pattern == nil {
		return "", nil, fmt.Errorf("%s.pattern: missing", field)
	}
	switch {
	case c.Pattern.String != nil:
		if *c.Pattern.String == "" {
			return "", nil, fmt.Errorf("%s.pattern: empty string", field)
		}
		return *c.Pattern.String, nil, nil
	case c.Pattern.Regex != nil:
		re, err := compileRegex(*c.Pattern.Regex)
		if err != nil {
			return "", nil, fmt.Errorf("%s.pattern: %w", field, err)
		}
		return "", re, nil
	}
	return "", nil, fmt.Errorf("%s.pattern: neither String nor Regex", field)
}

func parseNormalizer(raw json.RawMessage, field string) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, field)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq sequenceNorm
		for i, r := range c.Normalizers {
			n, err := parseNormalizer(r, fmt.Sprintf("%s.normalizers[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	case "NFC":
		return unicodeForm{norm.NFC}, nil
	case "NFD":
		return unicodeForm{norm.NFD}, nil
	case "NFKC":
		return unicodeForm{norm.NFKC}, nil
	case "NFKD":
		return unicodeForm{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNorm{}, nil
	case "Strip":
		return stripNorm{c.StripLeft, c.StripRight}, nil
	case "Prepend":
		if c.Prepend == nil {
			return nil, fmt.Errorf("%s.prepend: missing", field)
		}
		return prependNorm{*c.Prepend}, nil
	case "Replace":
		lit, re, err := c.pattern(field)
		if err != nil {
			return nil, err
		}
		if c.Content == nil {
			return nil, fmt.Errorf("%s.content: missing", field)
		}
		return replaceNorm{lit: lit, re: re, content: *c.Content}, nil
	}
	return nil, fmt.Errorf("%s.type: %q is not supported", field, c.Type)
}

func parseBehavior(s, field string) (splitBehavior, error) {
	switch strings.ToLower(s) {
	case "isolated":
		return isolated, nil
	case "removed":
		return removed, nil
	case "mergedwithprevious":
		return mergedWithPrevious, nil
	case "mergedwithnext":
		return mergedWithNext, nil
	case "contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("%s.behavior: %q is not supported", field, s)
}

func parsePreTokenizer(raw json.RawMessage, field string, byteLevel *bool) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, field)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq sequencePre
		for i, r := range c.PreTokenizers {
			p, err := parsePreTokenizer(r, fmt.Sprintf("%s.pretokenizers[%d]", field, i), byteLevel)
			if err != nil {
				return nil, err
			}
			if p != nil {
				seq = append(seq, p)
			}
		}
		return seq, nil
	case "Split":
		lit, re, err := c.pattern(field)
		if err != nil {
			return nil, err
		}
		b, err := parseBehavior(c.Behavior, field)
		if err != nil {
			return nil, err
		}
		p := splitPre{lit: lit, re: re, behavior: b, invert: c.Invert}
		if c.Pattern.Regex != nil {
			p.fast = fastMatcher(*c.Pattern.Regex)
		}
		return p, nil
	case "ByteLevel":
		*byteLevel = true
		p := byteLevelPre{addPrefixSpace: c.AddPrefixSpace != nil && *c.AddPrefixSpace}
		if c.UseRegex == nil || *c.UseRegex {
			sp, err := newRegexSplit(gpt2Pattern)
			if err != nil {
				return nil, err
			}
			p.regex = sp
		}
		return p, nil
	case "Digits":
		if c.IndividualDigits {
			return splitPre{match: isNumeric, behavior: isolated}, nil
		}
		return splitPre{match: isNumeric, behavior: contiguous}, nil
	case "Metaspace":
		p := metaspacePre{repl: "▁", prepend: "always", splitOn: true}
		if c.Replacement != nil {
			p.repl = *c.Replacement
		}
		if c.PrependScheme != nil {
			p.prepend = *c.PrependScheme
		} else if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			p.prepend = "never"
		}
		if c.Split != nil {
			p.splitOn = *c.Split
		}
		switch p.prepend {
		case "always", "first", "never":
		default:
			return nil, fmt.Errorf("%s.prepend_scheme: %q is not supported", field, p.prepend)
		}
		if p.repl == "" {
			return nil, fmt.Errorf("%s.replacement: empty", field)
		}
		return p, nil
	case "WhitespaceSplit":
		return splitPre{match: isSpace, behavior: removed}, nil
	}
	return nil, fmt.Errorf("%s.type: %q is not supported", field, c.Type)
}

func newRegexSplit(pattern string) (*splitPre, error) {
	re, err := compileRegex(pattern)
	if err != nil {
		return nil, err
	}
	return &splitPre{re: re, fast: fastMatcher(pattern), behavior: isolated}, nil
}

func parseDecoder(raw json.RawMessage, field string) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, field)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq sequenceDec
		for i, r := range c.Decoders {
			d, err := parseDecoder(r, fmt.Sprintf("%s.decoders[%d]", field, i))
			if err != nil {
				return nil, err
			}
			if d != nil {
				seq = append(seq, d)
			}
		}
		return seq, nil
	case "ByteLevel":
		return byteLevelDec{}, nil
	case "ByteFallback":
		return byteFallbackDec{}, nil
	case "Fuse":
		return fuseDec{}, nil
	case "Replace":
		lit, re, err := c.pattern(field)
		if err != nil {
			return nil, err
		}
		if re != nil {
			return nil, fmt.Errorf("%s.pattern: a Regex in a Replace decoder is not supported", field)
		}
		if c.Content == nil {
			return nil, fmt.Errorf("%s.content: missing", field)
		}
		return replaceDec{lit, *c.Content}, nil
	case "Strip":
		if c.Content == nil || *c.Content == "" {
			return nil, fmt.Errorf("%s.content: missing", field)
		}
		if c.Start < 0 || c.Stop < 0 {
			return nil, fmt.Errorf("%s: negative start/stop", field)
		}
		return stripDec{*c.Content, c.Start, c.Stop}, nil
	case "Metaspace":
		d := metaspaceDec{repl: "▁", stripHead: true}
		if c.Replacement != nil {
			d.repl = *c.Replacement
		}
		if c.PrependScheme != nil {
			d.stripHead = *c.PrependScheme != "never"
		} else if c.AddPrefixSpace != nil {
			d.stripHead = *c.AddPrefixSpace
		}
		return d, nil
	}
	return nil, fmt.Errorf("%s.type: %q is not supported", field, c.Type)
}

// parsePostProcessor records the ids the post-processor adds around a single
// sequence. ByteLevel only trims offsets and adds nothing.
func (t *Tokenizer) parsePostProcessor(raw json.RawMessage, field string) error {
	if isNull(raw) {
		return nil
	}
	c, err := parseComponent(raw, field)
	if err != nil {
		return err
	}
	checkID := func(id int, f string) error {
		if id < 0 || id >= len(t.tokens) {
			return fmt.Errorf("%s: id %d out of range [0, %d)", f, id, len(t.tokens))
		}
		return nil
	}
	switch c.Type {
	case "Sequence":
		for i, r := range c.Processors {
			if err := t.parsePostProcessor(r, fmt.Sprintf("%s.processors[%d]", field, i)); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		return nil
	case "TemplateProcessing":
		seen := false
		for i, it := range c.Single {
			f := fmt.Sprintf("%s.single[%d]", field, i)
			switch {
			case it.Sequence != nil:
				if seen {
					return fmt.Errorf("%s: the sequence appears twice", f)
				}
				seen = true
			case it.SpecialToken != nil:
				st, ok := c.SpecialTokens[it.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("%s: special token %q not in special_tokens", f, it.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if err := checkID(id, fmt.Sprintf("%s.special_tokens[%q]", field, it.SpecialToken.ID)); err != nil {
						return err
					}
					if seen {
						t.suffix = append(t.suffix, id)
					} else {
						t.prefix = append(t.prefix, id)
					}
				}
			default:
				return fmt.Errorf("%s: neither SpecialToken nor Sequence", f)
			}
		}
		return nil
	case "RobertaProcessing", "BertProcessing":
		get := func(pair []json.RawMessage, f string) (int, error) {
			var id int
			if len(pair) != 2 || json.Unmarshal(pair[1], &id) != nil {
				return 0, fmt.Errorf("%s.%s: not a [token, id] pair", field, f)
			}
			return id, checkID(id, field+"."+f)
		}
		cls, err := get(c.Cls, "cls")
		if err != nil {
			return err
		}
		sep, err := get(c.Sep, "sep")
		if err != nil {
			return err
		}
		t.prefix = append(t.prefix, cls)
		t.suffix = append(t.suffix, sep)
		return nil
	}
	return fmt.Errorf("%s.type: %q is not supported", field, c.Type)
}
