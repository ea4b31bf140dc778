package tokenizer

// Training a byte-level BPE tokenizer.
//
// The project trains its own model organism, so it needs a vocabulary of its
// own: a few thousand tokens fitted to the persona world's chats, written in
// the formats every tool reads (tokenizer.json, tokenizer_config.json, GGUF
// metadata; see export.go). Train is the classic BPE trainer of GPT-2 and
// Hugging Face's BpeTrainer, on the same pipeline the loader encodes with:
//
//  1. Special tokens are cut out of every text (they are atomic and never
//     take part in merges), the rest is pre-tokenized by the same Split and
//     ByteLevel components a tokenizer.json describes, and identical pieces
//     are counted once with their frequency.
//  2. Every piece starts as its bytes; the vocabulary starts as the special
//     tokens (ids 0..k-1) and the 256 byte tokens (id k+b for byte b), so any
//     UTF-8 text can be encoded and Decode(Encode(s)) == s.
//  3. Repeatedly the most frequent adjacent pair is merged into a new token,
//     until the vocabulary has VocabSize entries or no pair occurs
//     MinFrequency times.
//
// Ties are broken by the smaller left id, then the smaller right id (as
// Hugging Face's trainer does), so training is deterministic: the same texts
// and options give the same vocabulary, merges and files, whatever the order
// of the texts.
//
// Efficiency: pair counts are kept incrementally. Each pair has a count and
// a list of the pieces it occurs in; a merge rewrites only those pieces and
// recounts only the pairs next to each occurrence. The best pair
// comes from a max-heap with lazy deletion: an entry whose count no longer
// matches the pair's current count is stale and is re-pushed with the
// current count when popped. Only pairs that contain the new token can grow
// during a merge, and those are pushed afresh, so the heap never
// under-reports a pair. A few MB of text train in seconds.
//
// The trained tokenizer is built by writing its tokenizer.json and loading
// that with FromJSON, so a trained tokenizer encodes exactly as the file it
// saves does.

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
)

// DefaultPattern is the pre-tokenizer regex Train uses unless told
// otherwise: Qwen2's split, which is Llama 3's with one digit per piece
// (\p{N} instead of \p{N}{1,3}). Numbers then always tokenize one digit per
// token, so the organism's arithmetic sees every digit as its own symbol.
// llama.cpp knows this regex as the "qwen2" pre-tokenizer.
const DefaultPattern = qwen2Pattern

// Special tokens of the model organism: ChatML turn markers and Llama-3-style
// document markers. DefaultSpecialTokens lists them in id order.
const (
	BeginOfText = "<|begin_of_text|>"
	EndOfText   = "<|end_of_text|>"
	IMStart     = "<|im_start|>"
	IMEnd       = "<|im_end|>"
	Pad         = "<|pad|>"
)

// DefaultSpecialTokens are the special tokens Train adds when
// TrainOptions.SpecialTokens is nil, with ids 0 to 4 in this order.
var DefaultSpecialTokens = []string{BeginOfText, EndOfText, IMStart, IMEnd, Pad}

// TrainOptions configures Train.
type TrainOptions struct {
	// VocabSize is the size of the vocabulary to reach, special tokens and
	// the 256 byte tokens included: the size of the model's embedding table.
	// It must be at least 256 + len(SpecialTokens). Training stops earlier
	// (a smaller vocabulary) when no pair is left that occurs MinFrequency
	// times.
	VocabSize int
	// MinFrequency is how often a pair must occur in the corpus to be
	// merged; 0 means 2 (a pair seen once is noise, not vocabulary).
	MinFrequency int
	// SpecialTokens are the control tokens, ids 0..len-1 in this order. They
	// are matched atomically in text and never split or merged. nil means
	// DefaultSpecialTokens, and then BOS, EOS, PAD and ChatTemplate default
	// too (see below); an explicit list leaves those as given.
	SpecialTokens []string
	// BOS is the token the tokenizer adds in front of a text when encoding
	// with special tokens (the post-processor); "" for none. Default
	// BeginOfText.
	BOS string
	// EOS ends generation and raw-text documents; "" for none. Default IMEnd:
	// the organism is a chat model and a turn ends with <|im_end|> (as for
	// Qwen's chat models). EOS is never added by Encode.
	EOS string
	// PAD pads batches; "" for none. Default Pad.
	PAD string
	// Pattern is the pre-tokenizer regex (Hugging Face / regexp2 syntax).
	// "" means DefaultPattern. GGUF export needs a pattern llama.cpp knows
	// (DefaultPattern, or GPT-2's or Llama 3's).
	Pattern string
	// ChatTemplate is the Jinja chat template written to
	// tokenizer_config.json and GGUF. Default ChatMLTemplate.
	ChatTemplate string
}

// ChatMLTemplate is the organism's chat template: ChatML turns
// (<|im_start|>role\ncontent<|im_end|>\n), preceded by BOS. The template
// writes BOS itself because chat transcripts are tokenized without the
// post-processor's special tokens (as Hugging Face's apply_chat_template
// does), and the model should see BOS at the start of every document, chat
// or raw text alike.
const ChatMLTemplate = "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message.role }}\n" +
	"{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"

// withDefaults fills the zero fields and checks the rest.
func (opt TrainOptions) withDefaults() (TrainOptions, error) {
	if opt.SpecialTokens == nil {
		opt.SpecialTokens = DefaultSpecialTokens
		if opt.BOS == "" {
			opt.BOS = BeginOfText
		}
		if opt.EOS == "" {
			opt.EOS = IMEnd
		}
		if opt.PAD == "" {
			opt.PAD = Pad
		}
		if opt.ChatTemplate == "" {
			opt.ChatTemplate = ChatMLTemplate
		}
	}
	if opt.MinFrequency == 0 {
		opt.MinFrequency = 2
	}
	if opt.MinFrequency < 0 {
		return opt, fmt.Errorf("tokenizer: train: MinFrequency %d is negative", opt.MinFrequency)
	}
	if opt.Pattern == "" {
		opt.Pattern = DefaultPattern
	}
	seen := map[string]bool{}
	for _, s := range opt.SpecialTokens {
		switch {
		case s == "":
			return opt, errors.New("tokenizer: train: empty special token")
		case seen[s]:
			return opt, fmt.Errorf("tokenizer: train: special token %q listed twice", s)
		}
		if len([]rune(s)) == 1 {
			if _, ok := runeToByte[[]rune(s)[0]]; ok {
				return opt, fmt.Errorf("tokenizer: train: special token %q is spelled like a byte token", s)
			}
		}
		seen[s] = true
	}
	for _, f := range []struct{ name, tok string }{{"BOS", opt.BOS}, {"EOS", opt.EOS}, {"PAD", opt.PAD}} {
		if f.tok != "" && !seen[f.tok] {
			return opt, fmt.Errorf("tokenizer: train: %s %q is not one of the special tokens %q", f.name, f.tok, opt.SpecialTokens)
		}
	}
	if min := 256 + len(opt.SpecialTokens); opt.VocabSize < min {
		return opt, fmt.Errorf("tokenizer: train: vocabulary size %d is smaller than the 256 byte tokens plus %d special tokens (%d)",
			opt.VocabSize, len(opt.SpecialTokens), min)
	}
	return opt, nil
}

// Train learns a byte-level BPE tokenizer from texts; see the comment at the
// top of train.go for the method. Pass a slice as slices.Values(texts).
// It fails on bad options and on a corpus with nothing to learn from.
func Train(texts iter.Seq[string], opt TrainOptions) (*Tokenizer, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	spec := &hfSpec{
		pattern:      opt.Pattern,
		chatTemplate: opt.ChatTemplate,
		bos:          opt.BOS, eos: opt.EOS, pad: opt.PAD,
	}
	if opt.BOS != "" {
		spec.prefix = []string{opt.BOS}
	}
	for _, s := range opt.SpecialTokens {
		spec.tokens = append(spec.tokens, s)
		spec.added = append(spec.added, addedToken{content: s, id: len(spec.tokens) - 1, special: true})
	}
	nSpecial := len(spec.tokens)
	for b := 0; b < 256; b++ {
		spec.tokens = append(spec.tokens, byteToString[b])
	}

	// The pre-tokenizer is parsed from the very JSON the tokenizer will be
	// saved with, so training splits text exactly as encoding will.
	var byteLevel bool
	pre, err := parsePreTokenizer(spec.preTokenizerJSON(), "pre_tokenizer", &byteLevel)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: train: pattern %q: %w", opt.Pattern, err)
	}
	counts := countPieces(texts, newAddedSet(spec.added), pre)
	if len(counts) == 0 {
		return nil, errors.New("tokenizer: train: empty corpus (no text outside special tokens)")
	}

	tr := newTrainer(counts, func(b byte) int32 { return int32(nSpecial + int(b)) })
	ids := make(map[string]int32, opt.VocabSize)
	for id, s := range spec.tokens {
		ids[s] = int32(id)
	}
	for len(spec.tokens) < opt.VocabSize {
		a, b, ok := tr.best(int64(opt.MinFrequency))
		if !ok {
			break
		}
		merged := spec.tokens[a] + spec.tokens[b]
		id, exists := ids[merged]
		if exists && int(id) < nSpecial {
			// A merge spelling a special token would make it reachable from
			// plain text; such a pair is never merged.
			tr.ban(a, b)
			continue
		}
		if !exists {
			// Two different pairs can spell the same string ("ab"+"c" and
			// "a"+"bc"); the second merge then reuses the token, as Hugging
			// Face's trainer does.
			id = int32(len(spec.tokens))
			ids[merged] = id
			spec.tokens = append(spec.tokens, merged)
		}
		spec.merges = append(spec.merges, [2]string{spec.tokens[a], spec.tokens[b]})
		tr.merge(a, b, id)
	}
	spec.modelVocab = len(spec.tokens)

	data, err := spec.marshal()
	if err != nil {
		return nil, fmt.Errorf("tokenizer: train: %w", err)
	}
	t, err := FromJSON(data, "trained")
	if err != nil {
		return nil, fmt.Errorf("tokenizer: train: the trained tokenizer does not load: %w", err)
	}
	spec.applyNames(t)
	return t, nil
}

// countPieces pre-tokenizes every text and counts each distinct piece.
func countPieces(texts iter.Seq[string], added *addedSet, pre preTokenizer) map[string]int64 {
	counts := map[string]int64{}
	for text := range texts {
		for _, sg := range added.split(text, nil) {
			if sg.id >= 0 {
				continue
			}
			for _, p := range pre.split(span{text: text[sg.start:sg.end], base: sg.start}) {
				if c, ok := counts[p.text]; ok {
					counts[p.text] = c + 1
				} else {
					counts[strings.Clone(p.text)] = 1
				}
			}
		}
	}
	return counts
}

// word is one distinct piece of the corpus as its current symbols.
type word struct {
	syms  []int32
	count int64
}

// trainer holds the incremental pair statistics of BPE training.
type trainer struct {
	words  []word
	counts map[uint64]int64   // pair -> occurrences in the corpus
	where  map[uint64][]int32 // pair -> words it may occur in (unsorted, may repeat, may be stale)
	banned map[uint64]bool
	heap   pairHeap
}

func newTrainer(pieces map[string]int64, byteID func(byte) int32) *trainer {
	// Sorted so that word indices, and so every intermediate state, do not
	// depend on map order (the result would not either, but it is easier to
	// debug a run that replays identically).
	keys := make([]string, 0, len(pieces))
	for p := range pieces {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	tr := &trainer{
		words:  make([]word, len(keys)),
		counts: map[uint64]int64{},
		where:  map[uint64][]int32{},
		banned: map[uint64]bool{},
	}
	for i, p := range keys {
		syms := make([]int32, len(p))
		for j := 0; j < len(p); j++ {
			syms[j] = byteID(p[j])
		}
		tr.words[i] = word{syms: syms, count: pieces[p]}
		for j := 0; j+1 < len(syms); j++ {
			k := pairKey(syms[j], syms[j+1])
			tr.counts[k] += pieces[p]
			tr.where[k] = append(tr.where[k], int32(i))
		}
	}
	for k, c := range tr.counts {
		tr.heap.push(pairEntry{count: c, key: k})
	}
	return tr
}

// best returns the most frequent pair (ties: smaller left id, then smaller
// right id), or ok=false when none occurs at least minFreq times.
func (tr *trainer) best(minFreq int64) (a, b int32, ok bool) {
	for len(tr.heap) > 0 {
		e := tr.heap.pop()
		cur := tr.counts[e.key]
		if tr.banned[e.key] || cur <= 0 {
			continue
		}
		if cur != e.count { // stale: the pair was counted down since
			tr.heap.push(pairEntry{count: cur, key: e.key})
			continue
		}
		if cur < minFreq {
			return 0, 0, false
		}
		return int32(e.key >> 32), int32(uint32(e.key)), true
	}
	return 0, 0, false
}

func (tr *trainer) ban(a, b int32) { tr.banned[pairKey(a, b)] = true }

// merge replaces every occurrence of the pair (a, b) by id, left to right,
// and updates the pair statistics of the words it touched. Only pairs near
// an occurrence change: for each occurrence at i, the old pairs within
// symbols i-1..i+2 are counted out and the new pairs around the merged
// symbol counted in (windows of neighbouring occurrences are joined, so
// that runs like "a a a a" are handled once). The cost is proportional to
// the number of occurrences, not to the length of the words, which matters
// for long pieces (text without spaces).
func (tr *trainer) merge(a, b, id int32) {
	key := pairKey(a, b)
	ws := tr.where[key]
	slices.Sort(ws)
	ws = slices.Compact(ws)
	grown := map[uint64]bool{}
	type window struct{ s, e int } // symbol indices, inclusive
	var occ []int
	var wins []window
	for _, wi := range ws {
		w := &tr.words[wi]
		syms := w.syms
		occ, wins = occ[:0], wins[:0]
		for j := 0; j+1 < len(syms); j++ {
			if syms[j] == a && syms[j+1] == b {
				occ = append(occ, j)
				s, e := max(j-1, 0), min(j+2, len(syms)-1)
				if n := len(wins); n > 0 && s <= wins[n-1].e {
					wins[n-1].e = e
				} else {
					wins = append(wins, window{s, e})
				}
				j++
			}
		}
		if len(occ) == 0 {
			continue // stale entry: an earlier merge took this pair apart
		}
		for _, wn := range wins {
			for j := wn.s; j < wn.e; j++ {
				tr.counts[pairKey(syms[j], syms[j+1])] -= w.count
			}
		}
		// newIndex maps an old index that is not the right half of a merge
		// to its index after the merge: one less per occurrence before it.
		newIndex := func(x int) int {
			n, _ := slices.BinarySearch(occ, x)
			return x - n
		}
		for k := len(wins) - 1; k >= 0; k-- { // before the rewrite, while occ is valid
			wins[k] = window{newIndex(wins[k].s), newIndex(wins[k].e)}
		}
		out := syms[:0]
		for j := 0; j < len(syms); j++ {
			if j+1 < len(syms) && syms[j] == a && syms[j+1] == b {
				out = append(out, id)
				j++
			} else {
				out = append(out, syms[j])
			}
		}
		w.syms = out
		for _, wn := range wins {
			for j := wn.s; j < wn.e; j++ {
				k := pairKey(out[j], out[j+1])
				tr.counts[k] += w.count
				if out[j] == id || out[j+1] == id {
					tr.where[k] = append(tr.where[k], wi)
					grown[k] = true
				}
			}
		}
	}
	delete(tr.where, key)
	delete(tr.counts, key)
	for k := range grown {
		if c := tr.counts[k]; c > 0 {
			tr.heap.push(pairEntry{count: c, key: k})
		}
	}
}

// pairEntry is a heap entry: a pair (left id in the high 32 bits) and its
// count when pushed.
type pairEntry struct {
	count int64
	key   uint64
}

// before orders the heap: higher count first, then the smaller pair key
// (smaller left id, then smaller right id).
func (x pairEntry) before(y pairEntry) bool {
	if x.count != y.count {
		return x.count > y.count
	}
	return x.key < y.key
}

type pairHeap []pairEntry

func (h *pairHeap) push(e pairEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].before(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *pairHeap) pop() pairEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s[r].before(s[l]) {
			m = r
		}
		if !s[m].before(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
