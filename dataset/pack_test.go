package dataset

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"persona/model"
)

const packVocab = 1000

// randomDocs makes n documents of 2..maxLen tokens with random 0/1 masks
// (each training at least one token) and distinct sources.
func randomDocs(n, maxLen int, seed uint64) []Document {
	r := newRNG(seed, 0)
	docs := make([]Document, n)
	for i := range docs {
		k := 2 + int(r.below(uint64(maxLen-1)))
		d := Document{Source: fmt.Sprintf("gen.jsonl:%d", i+1), Tokens: make([]int, k), Mask: make([]float32, k)}
		for j := range d.Tokens {
			d.Tokens[j] = 1 + int(r.below(packVocab-1))
			if j > 0 && r.below(3) > 0 {
				d.Mask[j] = 1
			}
		}
		d.Mask[k-1] = 1
		docs[i] = d
	}
	return docs
}

// unpack cuts rows back into documents at every change of Start, dropping
// the padding segment at the end of a row. It is the inverse of Pack for
// documents with Mask[0] = 0, which is what Load produces.
func unpack(t *testing.T, rows []model.Row, pad int) []Document {
	t.Helper()
	var docs []Document
	for ri, r := range rows {
		for s := 0; s < r.Len(); {
			e := s
			for e < r.Len() && r.Start[e] == s {
				e++
			}
			if e == r.Len() && allPad(r, s, e, pad) {
				break // padding
			}
			d := Document{Tokens: append(slices.Clone(r.Tokens[s:e]), r.Targets[e-1]), Mask: []float32{0}}
			for i := s; i < e; i++ {
				if i > s && r.Targets[i-1] != r.Tokens[i] {
					t.Fatalf("row %d position %d: target %d is not the next input %d", ri, i-1, r.Targets[i-1], r.Tokens[i])
				}
				d.Mask = append(d.Mask, r.Weights[i])
			}
			docs = append(docs, d)
			s = e
		}
	}
	return docs
}

func allPad(r model.Row, s, e, pad int) bool {
	for i := s; i < e; i++ {
		if r.Tokens[i] != pad || r.Weights[i] != 0 {
			return false
		}
	}
	return true
}

func docKey(d Document) string { return fmt.Sprint(d.Tokens, d.Mask) }

func TestPackRoundTrip(t *testing.T) {
	for _, c := range []struct {
		n, maxLen, T int
	}{
		{1, 5, 8},
		{50, 9, 8}, // documents of exactly T positions included
		{300, 40, 64},
		{200, 129, 128},
		{40, 3, 2}, // the smallest rows
	} {
		t.Run(fmt.Sprintf("n%d_T%d", c.n, c.T), func(t *testing.T) {
			docs := randomDocs(c.n, c.maxLen, uint64(c.n*c.T))
			const pad = 0
			ds, err := New(docs, c.T, pad)
			if err != nil {
				t.Fatal(err)
			}
			positions := 0
			for _, d := range docs {
				positions += d.Positions()
			}
			for i, r := range ds.Rows {
				if r.Len() != c.T {
					t.Fatalf("row %d has %d positions, want %d", i, r.Len(), c.T)
				}
				if err := r.Validate(packVocab, c.T); err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
				for p := range r.Tokens {
					if r.Tokens[p] == pad && r.Weights[p] != 0 {
						t.Fatalf("row %d position %d: padding trained", i, p)
					}
				}
			}
			// Unpacking gives back every document exactly once, whole.
			got := unpack(t, ds.Rows, pad)
			want := map[string]int{}
			for _, d := range docs {
				want[docKey(d)]++
			}
			for _, d := range got {
				if want[docKey(d)]--; want[docKey(d)] < 0 {
					t.Fatalf("unpacked a document that was not packed (or twice): %v", d.Tokens)
				}
			}
			if len(got) != len(docs) {
				t.Fatalf("unpacked %d documents, packed %d", len(got), len(docs))
			}
			st := ds.Stats
			if st.Rows*c.T != positions+st.Padding || st.Documents != c.n {
				t.Errorf("stats %+v disagree with %d positions", st, positions)
			}
			// First fit: no row has room left for a document of a later row
			// (a row's room only shrinks, so it had no room when that
			// document was placed either).
			maxFree := -1
			for i, r := range ds.Rows {
				free, shortest := 0, c.T+1
				for s := 0; s < c.T; {
					e := s
					for e < c.T && r.Start[e] == s {
						e++
					}
					if e == c.T && allPad(r, s, e, pad) {
						free = e - s
					} else {
						shortest = min(shortest, e-s)
					}
					s = e
				}
				if shortest <= maxFree {
					t.Errorf("row %d holds a %d-position document that fits an earlier row with %d free", i, shortest, maxFree)
				}
				maxFree = max(maxFree, free)
			}
			t.Logf("%d docs → %d rows, %.1f%% padding", c.n, st.Rows, 100*st.PaddingFraction)
		})
	}
}

func TestPackDeterministic(t *testing.T) {
	docs := randomDocs(100, 30, 7)
	a, _ := Pack(docs, 32, 0)
	b, _ := Pack(slices.Clone(docs), 32, 0)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("packing the same documents twice gave different rows")
	}
}

func TestPackErrors(t *testing.T) {
	ok := Document{Source: "a.jsonl:1", Tokens: []int{1, 2, 3}, Mask: []float32{0, 1, 1}}
	for _, c := range []struct {
		name string
		docs []Document
		T    int
		pad  int
		want string
	}{
		{"seq_len 1", []Document{ok}, 1, 0, "seq_len 1 is too small"},
		{"seq_len 0", []Document{ok}, 0, 0, "seq_len 0 is too small"},
		{"too long", []Document{ok, {Source: "b.jsonl:17", Tokens: make([]int, 10), Mask: make([]float32, 10)}}, 8, 0,
			"b.jsonl:17: 10 tokens need 9 positions, more than seq_len 8"},
		{"one token", []Document{{Source: "c.txt:3", Tokens: []int{5}, Mask: []float32{1}}}, 8, 0, "c.txt:3: 1 token(s)"},
		{"mask length", []Document{{Tokens: []int{5, 6}, Mask: []float32{1}}}, 8, 0, "document 0: 2 tokens but 1 mask weights"},
		{"bad pad", []Document{ok}, 8, -1, "pad token -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Pack(c.docs, c.T, c.pad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	if rows, err := Pack(nil, 8, 0); err != nil || len(rows) != 0 {
		t.Errorf("no documents: %d rows, %v", len(rows), err)
	}
}

func TestEpochOrder(t *testing.T) {
	ds, err := New(randomDocs(400, 20, 3), 24, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ds.Rows)
	if n < 50 {
		t.Fatalf("only %d rows", n)
	}
	a := ds.Epoch(42, 0)
	if !slices.Equal(a, ds.Epoch(42, 0)) {
		t.Error("same seed and epoch gave different orders")
	}
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	for i, v := range sorted {
		if v != i {
			t.Fatalf("epoch order is not a permutation of %d rows", n)
		}
	}
	for _, other := range [][]int{ds.Epoch(43, 0), ds.Epoch(42, 1)} {
		if slices.Equal(a, other) {
			t.Error("a different seed or epoch gave the same order")
		}
	}
	if slices.IsSorted(a) {
		t.Error("epoch order is not shuffled")
	}
	// The order is a pure function of (seed, epoch): pin a prefix so a
	// change to the generator (which would break resumed runs) is caught.
	small := &Dataset{Rows: make([]model.Row, 10)}
	if got := fmt.Sprint(small.Epoch(1, 0)); got != pinnedOrder {
		t.Errorf("Epoch(1, 0) of 10 rows = %s, was %s: the shuffle changed, so resumed runs would see other batches", got, pinnedOrder)
	}
}

// pinnedOrder is Epoch(1, 0) over 10 rows when this package was written.
const pinnedOrder = "[9 2 8 3 5 6 4 1 7 0]"

func TestSplit(t *testing.T) {
	docs := randomDocs(200, 20, 11)
	// Two exact duplicates of document 0, which must share its side.
	dup := docs[0]
	docs = append(docs, Document{Source: "dup.jsonl:1", Tokens: dup.Tokens, Mask: dup.Mask},
		Document{Source: "dup.jsonl:2", Tokens: dup.Tokens, Mask: dup.Mask})
	train, held, err := Split(docs, 0.1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(train)+len(held) != len(docs) {
		t.Fatalf("split %d documents into %d + %d", len(docs), len(train), len(held))
	}
	if len(held) < 20 || len(held) > 23 {
		t.Errorf("held out %d of %d at fraction 0.1", len(held), len(docs))
	}
	side := map[string]bool{}
	for _, d := range held {
		side[d.Source] = true
	}
	for _, d := range train {
		if side[d.Source] {
			t.Fatalf("%s is on both sides", d.Source)
		}
	}
	heldKeys := map[string]bool{}
	for _, d := range held {
		heldKeys[docKey(d)] = true
	}
	for _, d := range train {
		if heldKeys[docKey(d)] {
			t.Errorf("%s duplicates a held-out document", d.Source)
		}
	}
	// Deterministic, and a different seed holds out other documents.
	train2, held2, _ := Split(docs, 0.1, 5)
	if fmt.Sprint(held2) != fmt.Sprint(held) || fmt.Sprint(train2) != fmt.Sprint(train) {
		t.Error("same seed gave a different split")
	}
	_, held3, _ := Split(docs, 0.1, 6)
	if fmt.Sprint(held3) == fmt.Sprint(held) {
		t.Error("different seed gave the same split")
	}
	// Order within each side is the input order.
	for _, s := range [][]Document{train, held} {
		if !slices.IsSortedFunc(s, func(a, b Document) int { return srcIndex(docs, a.Source) - srcIndex(docs, b.Source) }) {
			t.Error("split reordered documents")
		}
	}
	for _, c := range []struct {
		n    int
		frac float64
		want string
	}{
		{10, 0, "strictly between 0 and 1"},
		{10, 1, "strictly between 0 and 1"},
		{10, -0.5, "strictly between 0 and 1"},
		{1, 0.5, "leaves none to train on"},
		{3, 0.9, "leaves none to train on"},
	} {
		if _, _, err := Split(randomDocs(c.n, 5, 1), c.frac, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Split(%d docs, %g): error %v, want %q", c.n, c.frac, err, c.want)
		}
	}
}

func srcIndex(docs []Document, src string) int {
	for i, d := range docs {
		if d.Source == src {
			return i
		}
	}
	return -1
}

// TestSplitDuplicateGroups puts every document in a group of identical
// copies, so a held-out set of round(0.1·20) = 2 would cut a group in two
// unless Split keeps groups together.
func TestSplitDuplicateGroups(t *testing.T) {
	base := randomDocs(4, 10, 21)
	var docs []Document
	for i := 0; i < 5; i++ {
		for j, d := range base {
			docs = append(docs, Document{Source: fmt.Sprintf("copies.jsonl:%d", 5*j+i+1), Tokens: d.Tokens, Mask: d.Mask})
		}
	}
	for seed := uint64(0); seed < 10; seed++ {
		train, held, err := Split(docs, 0.1, seed)
		if err != nil {
			t.Fatal(err)
		}
		if len(held) != 5 || len(train) != 15 {
			t.Errorf("seed %d: held out %d, trained %d; want one whole group of 5", seed, len(held), len(train))
		}
		for _, d := range train {
			if docKey(d) == docKey(held[0]) {
				t.Fatalf("seed %d: a copy of a held-out document is in the training set", seed)
			}
		}
	}
}

// TestShuffleUniform checks that every order of three rows is equally
// likely, which a subtly wrong Fisher–Yates loop is not.
func TestShuffleUniform(t *testing.T) {
	const n = 60000
	count := map[string]int{}
	for seed := uint64(0); seed < n; seed++ {
		s := []int{0, 1, 2}
		newRNG(seed, 0).shuffle(s)
		count[fmt.Sprint(s)]++
	}
	if len(count) != 6 {
		t.Fatalf("%d of 6 orders ever appear: %v", len(count), count)
	}
	for k, c := range count {
		if c < n/6-600 || c > n/6+600 { // about 6 standard deviations
			t.Errorf("order %s appears %d times of %d, want about %d", k, c, n, n/6)
		}
	}
}
