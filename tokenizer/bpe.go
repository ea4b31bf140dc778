package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// tok is one token of a pre-token: its id and how many bytes of the
// (normalized) pre-token it covers, which is what offsets are built from.
type tok struct {
	id int32
	n  int32
}

// mergeRule is what a pair of adjacent symbols becomes, and how early in the
// merge list the pair stands (lower ranks merge first).
type mergeRule struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpeModel holds the vocabulary-side state of a BPE model. Two merge rules
// exist in the wild: Hugging Face and llama.cpp's "gpt2" vocabularies merge by
// the rank of the pair in an explicit merge list; SentencePiece (and
// llama.cpp's "llama" vocabularies) merge the adjacent pair whose concatenation
// is the vocabulary entry with the highest score. Both are driven by the same
// heap over a linked list of symbols, so a pre-token of n symbols costs
// O(n log n) rather than the O(n²) of rescanning after every merge.
type bpeModel struct {
	byteLevel    bool       // symbols start as bytes spelled in GPT-2's alphabet
	byteIDs      [256]int32 // byte-level: id of each byte's token; otherwise <0xNN> (byte fallback), -1 if absent
	merges       map[uint64]mergeRule
	ignoreMerges bool // a pre-token that is itself in the vocabulary is taken whole (Llama 3)
	byteFallback bool
	unk          int32 // -1 when none
	fuseUnk      bool
	vocab        map[string]int32 // model vocabulary only

	byScore   bool      // SentencePiece rule: merge by score of the concatenation
	scores    []float32 // by id
	mergeable []bool    // by id: tokens a merge may produce (normal pieces)
}

// symbol is one node of the linked list a pre-token is merged in.
type symbol struct {
	id         int32
	start, n   int32 // byte range in the pre-token
	prev, next int32 // -1 at the ends
}

// candidate is a possible merge of symbol pos with its right neighbour.
// For rank merges key is the rank; for score merges it is -score, so that the
// same min-heap serves both. Equal keys resolve to the leftmost pair, as both
// Hugging Face and SentencePiece do.
type candidate struct {
	key         float32
	rank        int32
	pos, right  int32
	left, rgtID int32 // ids at push time, to discard stale entries
	size        int32 // byte length of the merged symbol (score merges)
	newID       int32
}

func less(a, b *candidate) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.pos < b.pos
}

type candHeap []candidate

func (h *candHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(&s[i], &s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() candidate {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && less(&s[r], &s[l]) {
			m = r
		}
		if !less(&s[m], &s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// encodeWord turns one pre-token into tokens, appending them to out.
func (m *bpeModel) encodeWord(word string, out []tok) []tok {
	if word == "" {
		return out
	}
	if m.ignoreMerges {
		key := word
		if m.byteLevel {
			key = byteLevelString(word)
		}
		if id, ok := m.vocab[key]; ok {
			return append(out, tok{id, int32(len(word))})
		}
	}
	syms := m.initialSymbols(word, make([]symbol, 0, len(word)))
	if len(syms) == 0 {
		return out
	}
	h := make(candHeap, 0, len(syms))
	for i := 0; i+1 < len(syms); i++ {
		m.addCandidate(&h, syms, word, int32(i))
	}
	for len(h) > 0 {
		c := h.pop()
		l := &syms[c.pos]
		if l.n == 0 || l.next != c.right || l.id != c.left {
			continue
		}
		r := &syms[c.right]
		if r.id != c.rgtID || (m.byScore && l.n+r.n != c.size) {
			continue
		}
		l.id = c.newID
		l.n += r.n
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = c.pos
		}
		r.n = 0
		if l.prev >= 0 {
			m.addCandidate(&h, syms, word, l.prev)
		}
		if l.next >= 0 {
			m.addCandidate(&h, syms, word, c.pos)
		}
	}
	for i := int32(0); i >= 0 && int(i) < len(syms); i = syms[i].next {
		s := syms[i]
		if s.id >= 0 {
			out = append(out, tok{s.id, s.n})
			continue
		}
		if m.byteLevel {
			continue // a byte the vocabulary cannot spell and no unknown token
		}
		// Score merges leave symbols that are plain characters missing from
		// the vocabulary: SentencePiece spells those in bytes.
		out = m.fallback(word[s.start:s.start+s.n], out)
	}
	return out
}

// addCandidate pushes the merge of symbol i with its right neighbour, if the
// model has one.
func (m *bpeModel) addCandidate(h *candHeap, syms []symbol, word string, i int32) {
	l := &syms[i]
	if l.next < 0 {
		return
	}
	r := &syms[l.next]
	if m.byScore {
		text := word[l.start : r.start+r.n]
		id, ok := m.vocab[text]
		if !ok || !m.mergeable[id] {
			return
		}
		h.push(candidate{key: -m.scores[id], pos: i, right: l.next, left: l.id, rgtID: r.id, size: l.n + r.n, newID: id})
		return
	}
	if l.id < 0 || r.id < 0 {
		return
	}
	rule, ok := m.merges[pairKey(l.id, r.id)]
	if !ok {
		return
	}
	h.push(candidate{rank: rule.rank, pos: i, right: l.next, left: l.id, rgtID: r.id, newID: rule.id})
}

// initialSymbols splits a pre-token into the symbols merging starts from:
// bytes for byte-level models, characters otherwise. A character missing
// from the vocabulary becomes its bytes' <0xNN> tokens under byte fallback,
// or the unknown token (consecutive unknowns fused when fuse_unk is set).
func (m *bpeModel) initialSymbols(word string, syms []symbol) []symbol {
	add := func(id int32, start, n int) {
		k := int32(len(syms))
		syms = append(syms, symbol{id: id, start: int32(start), n: int32(n), prev: k - 1, next: k + 1})
	}
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			id := m.byteIDs[word[i]]
			if id < 0 {
				id = m.unk
			}
			add(id, i, 1)
		}
	} else {
		for i := 0; i < len(word); {
			_, w := utf8.DecodeRuneInString(word[i:])
			ch := word[i : i+w]
			if m.byScore {
				// SentencePiece keeps unknown characters as one symbol (they
				// may still merge with nothing) and spells them in bytes at
				// the end; id -1 marks "look it up at the end".
				id, ok := m.vocab[ch]
				if !ok || !m.mergeable[id] {
					id = -1
				}
				add(id, i, w)
			} else if id, ok := m.vocab[ch]; ok {
				add(id, i, w)
			} else if m.byteFallback && m.hasBytes(ch) {
				for j := 0; j < w; j++ {
					add(m.byteIDs[ch[j]], i+j, 1)
				}
			} else if k := len(syms); m.fuseUnk && k > 0 && syms[k-1].id == m.unk && m.unk >= 0 {
				syms[k-1].n += int32(w)
			} else {
				add(m.unk, i, w)
			}
			i += w
		}
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

func (m *bpeModel) hasBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if m.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}

// fallback spells a character the vocabulary lacks (score merges only).
func (m *bpeModel) fallback(s string, out []tok) []tok {
	if id, ok := m.vocab[s]; ok {
		return append(out, tok{id, int32(len(s))})
	}
	if m.hasBytes(s) {
		for i := 0; i < len(s); i++ {
			out = append(out, tok{m.byteIDs[s[i]], 1})
		}
		return out
	}
	if m.unk >= 0 {
		out = append(out, tok{m.unk, int32(len(s))})
	}
	return out
}

// byteTokenValue reports whether tok is a SentencePiece byte token "<0xNN>".
func byteTokenValue(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range tok[3:5] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | byte(c-'0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | byte(c-'A'+10)
		case c >= 'a' && c <= 'f':
			v = v<<4 | byte(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}
