package tokenizer

// Writing a byte-level BPE tokenizer in the standard formats: Hugging Face's
// tokenizer.json and tokenizer_config.json, and GGUF's tokenizer.ggml.*
// metadata. The organism's tokenizer is trained here (train.go), and the
// model it tokenizes for must be usable by every tool: our own loader,
// Hugging Face tokenizers/transformers, and llama.cpp. The writers work from
// a Tokenizer's state, not from training records, so a tokenizer loaded back
// from its tokenizer.json (the usual case when a trained model is later
// exported to GGUF) writes the same files again.
//
// Only byte-level BPE with no normalizer and a single regex split is
// written: that is what Train makes, and what llama.cpp's "gpt2" vocabulary
// type can reproduce exactly. Anything else is refused with an error rather
// than written approximately.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"persona/gguf"
	"persona/internal/fileio"
)

// hfSpec is everything the writers need, in plain form.
type hfSpec struct {
	pattern      string
	tokens       []string // by id
	modelIDs     []int    // ids in model.vocab, ascending; nil: [0, modelVocab)
	modelVocab   int
	merges       [][2]string // by rank
	ignoreMerges bool
	added        []addedToken // by id
	prefix       []string     // what the post-processor adds around a text
	suffix       []string
	bos, eos     string // "" when none
	pad          string
	chatTemplate string
}

// specOf extracts the spec of t, or says why t cannot be written.
func specOf(t *Tokenizer) (*hfSpec, error) {
	m := &t.model
	switch {
	case !m.byteLevel || m.byScore:
		return nil, fmt.Errorf("tokenizer %s: only byte-level BPE can be written (this is %s)", t.name, t.kind)
	case m.byteFallback || m.unk >= 0:
		return nil, fmt.Errorf("tokenizer %s: byte fallback and unknown tokens cannot be written", t.name)
	case t.norm != nil:
		return nil, fmt.Errorf("tokenizer %s: a normalizer cannot be written (llama.cpp would not apply it)", t.name)
	}
	if _, ok := t.dec.(byteLevelDec); !ok {
		return nil, fmt.Errorf("tokenizer %s: only the ByteLevel decoder can be written", t.name)
	}
	pattern, ok := splitPattern(t.pre)
	if !ok {
		return nil, fmt.Errorf("tokenizer %s: only a single regex split before ByteLevel can be written", t.name)
	}
	s := &hfSpec{pattern: pattern, tokens: t.tokens, ignoreMerges: m.ignoreMerges, chatTemplate: t.chatTemplate}
	for _, id := range m.vocab {
		s.modelIDs = append(s.modelIDs, int(id))
	}
	slices.Sort(s.modelIDs)
	type ranked struct {
		rank int32
		a, b string
	}
	rs := make([]ranked, 0, len(m.merges))
	for k, r := range m.merges {
		rs = append(rs, ranked{r.rank, t.tokens[int32(k>>32)], t.tokens[int32(uint32(k))]})
	}
	slices.SortFunc(rs, func(x, y ranked) int { return int(x.rank) - int(y.rank) })
	for _, r := range rs {
		s.merges = append(s.merges, [2]string{r.a, r.b})
	}
	if t.added != nil {
		s.added = slices.Clone(t.added.toks)
		slices.SortFunc(s.added, func(x, y addedToken) int { return x.id - y.id })
	}
	for _, id := range t.prefix {
		s.prefix = append(s.prefix, t.tokens[id])
	}
	for _, id := range t.suffix {
		s.suffix = append(s.suffix, t.tokens[id])
	}
	s.bos, s.eos, s.pad = t.Token(t.bos), t.Token(t.eos), t.Token(t.pad)
	return s, nil
}

// splitPattern recognises the pre-tokenizers that are one regex split:
// Split(Regex, Isolated) then ByteLevel without its own regex (Llama 3,
// Qwen2, and what Train writes), ByteLevel with its GPT-2 regex, or a bare
// regex split (GGUF "gpt2" vocabularies).
func splitPattern(p preTokenizer) (string, bool) {
	isPlainSplit := func(p preTokenizer) (string, bool) {
		sp, ok := p.(splitPre)
		if !ok || sp.re == nil || sp.behavior != isolated || sp.invert {
			return "", false
		}
		return sp.re.String(), true
	}
	switch p := p.(type) {
	case sequencePre:
		if len(p) != 2 {
			return "", false
		}
		bl, ok := p[1].(byteLevelPre)
		if !ok || bl.addPrefixSpace || bl.regex != nil {
			return "", false
		}
		return isPlainSplit(p[0])
	case byteLevelPre:
		if p.addPrefixSpace || p.regex == nil {
			return "", false
		}
		return p.regex.re.String(), true
	}
	return isPlainSplit(p)
}

// applyNames sets what tokenizer.json does not record: the PAD token, which
// special tokens are BOS and EOS, and the chat template.
func (s *hfSpec) applyNames(t *Tokenizer) {
	t.bos, t.eos, t.pad = -1, -1, -1
	if id, ok := t.ids[s.bos]; ok && s.bos != "" {
		t.bos = id
	}
	if id, ok := t.ids[s.eos]; ok && s.eos != "" {
		t.eos = id
	}
	if id, ok := t.ids[s.pad]; ok && s.pad != "" {
		t.pad = id
	}
	t.chatTemplate = s.chatTemplate
}

// ---- tokenizer.json ----

// jsonObject is a JSON object whose keys keep their order, so that written
// files read like Hugging Face's own (vocab by id, fields in the usual order)
// and are byte-identical from run to run.
type jsonObject []jsonField

type jsonField struct {
	key   string
	value any
}

func (o jsonObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalNoEscape(f.key)
		if err != nil {
			return nil, err
		}
		v, err := marshalNoEscape(f.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalNoEscape is json.Marshal without HTML escaping ("<|im_end|>" stays
// readable instead of "\u003c|im_end|\u003e").
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// marshalIndent renders v as the indented JSON of a written file.
func marshalIndent(v any) ([]byte, error) {
	raw, err := marshalNoEscape(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func (s *hfSpec) preTokenizerJSON() json.RawMessage {
	raw, _ := marshalNoEscape(s.preTokenizer())
	return raw
}

func (s *hfSpec) preTokenizer() jsonObject {
	return jsonObject{
		{"type", "Sequence"},
		{"pretokenizers", []any{
			jsonObject{
				{"type", "Split"},
				{"pattern", jsonObject{{"Regex", s.pattern}}},
				{"behavior", "Isolated"},
				{"invert", false},
			},
			byteLevelJSON(),
		}},
	}
}

// byteLevelJSON is the ByteLevel component with no prefix space and no regex
// of its own (the Split before it has already cut the text).
func byteLevelJSON() jsonObject {
	return jsonObject{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}
}

// postProcessor adds the prefix and suffix tokens (BOS) when a text is
// encoded with special tokens, as Llama 3.1's TemplateProcessing does.
func (s *hfSpec) postProcessor() any {
	if len(s.prefix) == 0 && len(s.suffix) == 0 {
		return nil
	}
	item := func(tok string, typeID int) jsonObject {
		return jsonObject{{"SpecialToken", jsonObject{{"id", tok}, {"type_id", typeID}}}}
	}
	seq := func(id string, typeID int) jsonObject {
		return jsonObject{{"Sequence", jsonObject{{"id", id}, {"type_id", typeID}}}}
	}
	var single, pair []any
	for typeID, name := range []string{"A", "B"} {
		var one []any
		for _, tok := range s.prefix {
			one = append(one, item(tok, typeID))
		}
		one = append(one, seq(name, typeID))
		for _, tok := range s.suffix {
			one = append(one, item(tok, typeID))
		}
		if typeID == 0 {
			single = one
		}
		pair = append(pair, one...)
	}
	var specials jsonObject
	seen := map[string]bool{}
	for _, tok := range append(slices.Clone(s.prefix), s.suffix...) {
		if seen[tok] {
			continue
		}
		seen[tok] = true
		id := slices.Index(s.tokens, tok)
		specials = append(specials, jsonField{tok, jsonObject{{"id", tok}, {"ids", []int{id}}, {"tokens", []string{tok}}}})
	}
	return jsonObject{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}}
}

func (s *hfSpec) addedTokensJSON() []any {
	out := make([]any, 0, len(s.added))
	for _, a := range s.added {
		out = append(out, jsonObject{
			{"id", a.id}, {"content", a.content}, {"single_word", a.singleWord}, {"lstrip", a.lstrip},
			{"rstrip", a.rstrip}, {"normalized", false}, {"special", a.special},
		})
	}
	return out
}

// marshal writes the tokenizer.json.
func (s *hfSpec) marshal() ([]byte, error) {
	ids := s.modelIDs
	if ids == nil {
		for id := 0; id < s.modelVocab; id++ {
			ids = append(ids, id)
		}
	}
	vocab := make(jsonObject, len(ids))
	for i, id := range ids {
		vocab[i] = jsonField{s.tokens[id], id}
	}
	merges := s.merges
	if merges == nil {
		merges = [][2]string{}
	}
	f := jsonObject{
		{"version", "1.0"},
		{"truncation", nil},
		{"padding", nil},
		{"added_tokens", s.addedTokensJSON()},
		{"normalizer", nil},
		{"pre_tokenizer", s.preTokenizer()},
		{"post_processor", s.postProcessor()},
		{"decoder", byteLevelJSON()},
		{"model", jsonObject{
			{"type", "BPE"},
			{"dropout", nil},
			{"unk_token", nil},
			{"continuing_subword_prefix", nil},
			{"end_of_word_suffix", nil},
			{"fuse_unk", false},
			{"byte_fallback", false},
			{"ignore_merges", s.ignoreMerges},
			{"vocab", vocab},
			{"merges", merges},
		}},
	}
	return marshalIndent(f)
}

// MarshalJSON returns t as a Hugging Face tokenizer.json; see WriteJSON.
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	s, err := specOf(t)
	if err != nil {
		return nil, err
	}
	return s.marshal()
}

// WriteJSON writes t as a Hugging Face tokenizer.json: a BPE model with its
// vocabulary and merges (as [left, right] pairs, the newer spelling that
// allows any token), the special tokens as added tokens, the regex Split and
// ByteLevel pre-tokenizer, the ByteLevel decoder, and a TemplateProcessing
// post-processor that adds BOS when the text is encoded with special tokens.
// Our Load and Hugging Face's tokenizers read it back to the same encoding.
// Only byte-level BPE tokenizers without a normalizer can be written (those
// Train makes, Llama 3's, GPT-2's); others give an error.
func (t *Tokenizer) WriteJSON(path string) error {
	data, err := t.MarshalJSON()
	if err != nil {
		return err
	}
	if err := fileio.WriteFileAtomic(path, data); err != nil {
		return fmt.Errorf("tokenizer: write %s: %w", path, err)
	}
	return nil
}

// WriteConfig writes the tokenizer_config.json that goes beside
// tokenizer.json: bos_token, eos_token and pad_token, add_bos_token, the
// added tokens, and the chat template (ChatTemplate). Hugging Face
// transformers and our chat.LoadConfig read it; it is also where Load learns
// which token is EOS.
func (t *Tokenizer) WriteConfig(path string) error {
	s, err := specOf(t)
	if err != nil {
		return err
	}
	orNull := func(tok string) any {
		if tok == "" {
			return nil
		}
		return tok
	}
	decoderObj := make(jsonObject, 0, len(s.added))
	for _, a := range s.added {
		decoderObj = append(decoderObj, jsonField{strconv.Itoa(a.id), jsonObject{
			{"content", a.content}, {"lstrip", a.lstrip}, {"normalized", false},
			{"rstrip", a.rstrip}, {"single_word", a.singleWord}, {"special", a.special},
		}})
	}
	addBOS := len(s.prefix) == 1 && s.prefix[0] == s.bos && s.bos != ""
	addEOS := len(s.suffix) == 1 && s.suffix[0] == s.eos && s.eos != ""
	cfg := jsonObject{
		{"add_bos_token", addBOS},
		{"add_eos_token", addEOS},
		{"added_tokens_decoder", decoderObj},
		{"bos_token", orNull(s.bos)},
		{"chat_template", orNull(s.chatTemplate)},
		{"clean_up_tokenization_spaces", false},
		{"eos_token", orNull(s.eos)},
		{"model_max_length", 1 << 20},
		{"pad_token", orNull(s.pad)},
		{"tokenizer_class", "PreTrainedTokenizerFast"},
		{"unk_token", nil},
	}
	data, err := marshalIndent(cfg)
	if err != nil {
		return err
	}
	if err := fileio.WriteFileAtomic(path, data); err != nil {
		return fmt.Errorf("tokenizer: write %s: %w", path, err)
	}
	return nil
}

// Save writes tokenizer.json and tokenizer_config.json into dir (created if
// needed): the tokenizer files of a Hugging Face model directory.
func (t *Tokenizer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	if err := t.WriteJSON(filepath.Join(dir, "tokenizer.json")); err != nil {
		return err
	}
	return t.WriteConfig(filepath.Join(dir, "tokenizer_config.json"))
}

// ---- GGUF ----

// ggufPreNames maps the regexes llama.cpp knows to its tokenizer.ggml.pre
// names, with whether llama.cpp then takes a piece that is itself a token
// whole (ignore_merges, which it does for Llama 3 only).
var ggufPreNames = map[string]struct {
	name         string
	ignoreMerges bool
}{
	qwen2Pattern:  {"qwen2", false},
	gpt2Pattern:   {"gpt-2", false},
	llama3Pattern: {"llama-bpe", true},
}

// GGUFMetadata returns the tokenizer.ggml.* keys (and tokenizer.chat_template)
// that describe t in a GGUF file, for model.WriteGGUF or gguf.Writer:
// model "gpt2" (llama.cpp's name for byte-level BPE), the tokens with their
// types (special tokens are control tokens), the merges, BOS/EOS/padding ids,
// add_bos_token, and the pre-tokenizer name whose regex equals t's (qwen2
// for DefaultPattern). FromGGUF on the written file encodes exactly as t.
// It fails for tokenizers that WriteJSON refuses, for pre-tokenizer regexes
// llama.cpp has no name for, and for added tokens with strip or single-word
// rules (GGUF cannot record them).
func (t *Tokenizer) GGUFMetadata() ([]gguf.KV, error) {
	s, err := specOf(t)
	if err != nil {
		return nil, err
	}
	pre, ok := ggufPreNames[s.pattern]
	if !ok {
		return nil, fmt.Errorf("tokenizer %s: GGUF: llama.cpp has no pre-tokenizer with the regex %q", t.name, s.pattern)
	}
	if pre.ignoreMerges != s.ignoreMerges {
		return nil, fmt.Errorf("tokenizer %s: GGUF: ignore_merges=%v, but llama.cpp's %q pre-tokenizer implies %v",
			t.name, s.ignoreMerges, pre.name, pre.ignoreMerges)
	}
	types := make([]int32, len(s.tokens))
	for i := range types {
		types[i] = TokenNormal
	}
	for _, a := range s.added {
		if a.lstrip || a.rstrip || a.singleWord {
			return nil, fmt.Errorf("tokenizer %s: GGUF: added token %q has strip or single-word rules", t.name, a.content)
		}
		types[a.id] = TokenUserDefined
		if a.special {
			types[a.id] = TokenControl
		}
	}
	merges := make([]string, len(s.merges))
	for i, m := range s.merges {
		if strings.Contains(m[0], " ") || strings.Contains(m[1], " ") {
			return nil, fmt.Errorf("tokenizer %s: GGUF: merge %q contains a space", t.name, m)
		}
		merges[i] = m[0] + " " + m[1]
	}
	if len(t.suffix) > 1 || len(t.prefix) > 1 || (len(t.prefix) == 1 && t.prefix[0] != t.bos) ||
		(len(t.suffix) == 1 && t.suffix[0] != t.eos) {
		return nil, errors.New("tokenizer " + t.name + ": GGUF: the post-processor adds tokens other than BOS and EOS")
	}
	kv := []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "gpt2"},
		{Key: "tokenizer.ggml.pre", Value: pre.name},
		{Key: "tokenizer.ggml.tokens", Value: slices.Clone(s.tokens)},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.merges", Value: merges},
	}
	for _, f := range []struct {
		key string
		id  int
	}{{"bos_token_id", t.bos}, {"eos_token_id", t.eos}, {"padding_token_id", t.pad}} {
		if f.id >= 0 {
			kv = append(kv, gguf.KV{Key: "tokenizer.ggml." + f.key, Value: uint32(f.id)})
		}
	}
	kv = append(kv,
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: len(t.prefix) == 1},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: len(t.suffix) == 1},
	)
	if t.chatTemplate != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: t.chatTemplate})
	}
	return kv, nil
}
