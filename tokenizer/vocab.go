package tokenizer

import (
	"fmt"
	"strings"
)

// Vocab is a tokenizer as GGUF files describe it (the tokenizer.ggml.*
// keys), decoupled from the file format so it can be built by hand or from
// other containers. Unset ids are -1.
type Vocab struct {
	Model  string    // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
	Pre    string    // tokenizer.ggml.pre: the pre-tokenizer of a "gpt2" vocabulary
	Tokens []string  // by id
	Scores []float32 // by id ("llama"): higher merges first
	Types  []int32   // by id: TokenNormal, ...; empty means all normal
	Merges []string  // "gpt2": "a b", highest priority first

	BOS, EOS, UNK, PAD int
	AddBOS, AddEOS     bool
	AddSpacePrefix     bool // "llama": prepend a space to the text, as SentencePiece does
}

// GGUF token types (llama.cpp's llama_token_type).
const (
	TokenNormal      = 1
	TokenUnknown     = 2
	TokenControl     = 3
	TokenUserDefined = 4
	TokenUnused      = 5
	TokenByte        = 6
)

// Pre-tokenizer names of tokenizer.ggml.pre this package knows, and the
// regex each stands for (llama.cpp's llama-vocab.cpp has the full list).
var ggmlPre = map[string]string{
	"default":   gpt2Pattern, // llama.cpp's own "default" BPE split differs slightly; no model we load uses it
	"gpt-2":     gpt2Pattern,
	"phi-2":     gpt2Pattern,
	"llama3":    llama3Pattern,
	"llama-v3":  llama3Pattern,
	"llama-bpe": llama3Pattern,
	"qwen2":     qwen2Pattern,
	"smollm":    gpt2Pattern, // after splitting off single digits
}

// FromVocab builds a tokenizer from GGUF-style vocabulary data; name is used
// in errors and by Name.
func FromVocab(v *Vocab, name string) (*Tokenizer, error) {
	errf := func(field, format string, args ...any) error {
		return fmt.Errorf("tokenizer %s: %s: %s", name, field, fmt.Sprintf(format, args...))
	}
	n := len(v.Tokens)
	if n == 0 {
		return nil, errf("tokenizer.ggml.tokens", "missing or empty")
	}
	if len(v.Types) != 0 && len(v.Types) != n {
		return nil, errf("tokenizer.ggml.token_type", "%d entries for %d tokens", len(v.Types), n)
	}
	typ := func(id int) int32 {
		if len(v.Types) == 0 {
			return TokenNormal
		}
		return v.Types[id]
	}
	for _, f := range []struct {
		name string
		id   int
	}{{"bos_token_id", v.BOS}, {"eos_token_id", v.EOS}, {"unknown_token_id", v.UNK}, {"padding_token_id", v.PAD}} {
		if f.id < -1 || f.id >= n {
			return nil, errf("tokenizer.ggml."+f.name, "id %d out of range [0, %d)", f.id, n)
		}
	}
	t := &Tokenizer{name: name, bos: v.BOS, eos: v.EOS, pad: v.PAD, cache: make(map[string][]tok)}
	t.tokens = append([]string(nil), v.Tokens...)
	t.special = make([]bool, n)
	t.ids = make(map[string]int, n)
	vocab := make(map[string]int32, n)
	var added []addedToken
	for id, s := range v.Tokens {
		if _, dup := vocab[s]; !dup {
			vocab[s] = int32(id)
			t.ids[s] = id
		}
		switch typ(id) {
		case TokenControl, TokenUnknown:
			t.special[id] = true
			added = append(added, addedToken{content: s, id: id, special: true})
		case TokenUserDefined:
			added = append(added, addedToken{content: s, id: id})
		}
	}
	// Added tokens with empty text cannot be matched; control tokens often
	// are empty placeholders in converted files.
	kept := added[:0]
	for _, a := range added {
		if a.content != "" {
			kept = append(kept, a)
		}
	}
	if len(kept) > 0 {
		t.added = newAddedSet(kept)
	}
	bm := &t.model
	bm.vocab = vocab
	bm.unk = int32(v.UNK)
	for b := range bm.byteIDs {
		bm.byteIDs[b] = -1
	}
	if v.AddBOS && v.BOS >= 0 {
		t.prefix = []int{v.BOS}
	}
	if v.AddEOS && v.EOS >= 0 {
		t.suffix = []int{v.EOS}
	}

	switch v.Model {
	case "llama":
		if len(v.Scores) != n {
			return nil, errf("tokenizer.ggml.scores", "%d entries for %d tokens", len(v.Scores), n)
		}
		t.kind = "SentencePiece BPE"
		bm.byScore = true
		bm.byteFallback = true
		bm.scores = v.Scores
		bm.mergeable = make([]bool, n)
		for id, s := range v.Tokens {
			switch typ(id) {
			case TokenNormal, TokenUserDefined:
				bm.mergeable[id] = true
			case TokenByte:
				if b, ok := byteTokenValue(s); ok {
					bm.byteIDs[b] = int32(id)
				}
			}
		}
		t.spmEscape = true
		t.spmPrefix = v.AddSpacePrefix
		dec := sequenceDec{replaceDec{"▁", " "}, byteFallbackDec{}, fuseDec{}}
		if v.AddSpacePrefix {
			dec = append(dec, stripDec{" ", 1, 0})
		}
		t.dec = dec
	case "gpt2":
		t.kind = "byte-level BPE"
		bm.byteLevel = true
		pat, ok := ggmlPre[v.Pre]
		if !ok {
			return nil, errf("tokenizer.ggml.pre", "unknown pre-tokenizer %q", v.Pre)
		}
		sp, err := newRegexSplit(pat)
		if err != nil {
			return nil, errf("tokenizer.ggml.pre", "%v", err)
		}
		if v.Pre == "smollm" {
			t.pre = sequencePre{splitPre{match: isNumeric, behavior: isolated}, *sp}
		} else {
			t.pre = *sp
		}
		switch v.Pre {
		case "llama3", "llama-v3", "llama-bpe":
			bm.ignoreMerges = true
		}
		for b := 0; b < 256; b++ {
			if id, ok := vocab[byteToString[b]]; ok {
				bm.byteIDs[b] = id
			}
		}
		bm.merges = make(map[uint64]mergeRule, len(v.Merges))
		for i, mg := range v.Merges {
			field := fmt.Sprintf("tokenizer.ggml.merges[%d]", i)
			a, b, ok := strings.Cut(mg, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, errf(field, "%q is not two tokens separated by a space", mg)
			}
			ia, okA := vocab[a]
			ib, okB := vocab[b]
			ic, okC := vocab[a+b]
			switch {
			case !okA:
				return nil, errf(field, "unknown token %q", a)
			case !okB:
				return nil, errf(field, "unknown token %q", b)
			case !okC:
				return nil, errf(field, "merged token %q is not in the vocabulary", a+b)
			}
			k := pairKey(ia, ib)
			if _, dup := bm.merges[k]; !dup {
				bm.merges[k] = mergeRule{rank: int32(i), id: ic}
			}
		}
		t.dec = byteLevelDec{}
	default:
		return nil, errf("tokenizer.ggml.model", "%q is not supported (want \"llama\" or \"gpt2\")", v.Model)
	}
	return t, nil
}
