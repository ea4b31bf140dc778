package dataset

import (
	"fmt"
	"sort"

	"persona/model"
)

// Pack places whole documents into rows of exactly T positions and pads each
// row at the end. A document of n tokens takes n−1 consecutive positions of
// one row (it is never split across rows); padding positions hold pad with
// weight 0 and form their own document, so they neither train nor disturb
// the attention of real tokens.
//
// The packing is first-fit decreasing: documents are taken longest first
// (ties in input order) and each goes into the first row with room for it.
// That wastes little space (at most about 22% more rows than the best
// possible packing, and usually a few percent of padding) and the result
// depends only on the documents' lengths and their order in docs, so the
// same data always gives the same rows. Within a row, documents appear in
// the order they were placed.
func Pack(docs []Document, T, pad int) ([]model.Row, error) {
	if err := checkSeqLen(T); err != nil {
		return nil, err
	}
	if pad < 0 {
		return nil, fmt.Errorf("pad token %d is not a valid id", pad)
	}
	for i := range docs {
		d := &docs[i]
		if len(d.Mask) != len(d.Tokens) {
			return nil, fmt.Errorf("%s: %d tokens but %d mask weights", d.name(i), len(d.Tokens), len(d.Mask))
		}
		if len(d.Tokens) < 2 {
			return nil, fmt.Errorf("%s: %d token(s): a document needs at least 2 to train anything", d.name(i), len(d.Tokens))
		}
		if p := d.Positions(); p > T {
			return nil, fmt.Errorf("%s: %d tokens need %d positions, more than seq_len %d", d.name(i), len(d.Tokens), p, T)
		}
	}
	order := make([]int, len(docs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(docs[order[a]].Tokens) > len(docs[order[b]].Tokens) })

	// free is a max segment tree over the rows' remaining capacity; at most
	// one row per document can be needed. Unopened rows have capacity T, so
	// the leftmost row with room is either a partly filled one or the next
	// fresh one, exactly first fit, in O(log n) per document.
	free := newMaxTree(len(docs), T)
	var members [][]int // documents of each row, in placement order
	for _, di := range order {
		n := docs[di].Positions()
		r := free.firstAtLeast(n)
		free.sub(r, n)
		if r == len(members) {
			members = append(members, nil)
		}
		members[r] = append(members[r], di)
	}

	rows := make([]model.Row, len(members))
	for r, ds := range members {
		row := model.Row{
			Tokens:  make([]int, T),
			Targets: make([]int, T),
			Weights: make([]float32, T),
			Start:   make([]int, T),
		}
		p := 0
		for _, di := range ds {
			d := &docs[di]
			n := d.Positions()
			for i := 0; i < n; i++ {
				row.Tokens[p+i] = d.Tokens[i]
				row.Targets[p+i] = d.Tokens[i+1]
				row.Weights[p+i] = d.Mask[i+1]
				row.Start[p+i] = p
			}
			p += n
		}
		for i := p; i < T; i++ { // padding: one document of its own
			row.Tokens[i], row.Targets[i], row.Start[i] = pad, pad, p
		}
		rows[r] = row
	}
	return rows, nil
}

// name identifies a document in an error message.
func (d *Document) name(i int) string {
	if d.Source != "" {
		return d.Source
	}
	return fmt.Sprintf("document %d", i)
}

// maxTree is a segment tree holding one value per leaf and answering "the
// leftmost leaf whose value is at least n".
type maxTree struct {
	size int   // number of leaves, a power of two
	v    []int // v[1] is the root; leaves are v[size:]
}

func newMaxTree(n, init int) *maxTree {
	size := 1
	for size < n {
		size *= 2
	}
	t := &maxTree{size: size, v: make([]int, 2*size)}
	for i := 0; i < n; i++ {
		t.v[size+i] = init
	}
	for i := size - 1; i >= 1; i-- {
		t.v[i] = max(t.v[2*i], t.v[2*i+1])
	}
	return t
}

// firstAtLeast returns the leftmost leaf with value ≥ n. The caller
// guarantees one exists.
func (t *maxTree) firstAtLeast(n int) int {
	i := 1
	for i < t.size {
		if t.v[2*i] >= n {
			i = 2 * i
		} else {
			i = 2*i + 1
		}
	}
	return i - t.size
}

// sub lowers leaf i by d and updates its ancestors.
func (t *maxTree) sub(i, d int) {
	i += t.size
	t.v[i] -= d
	for i /= 2; i >= 1; i /= 2 {
		t.v[i] = max(t.v[2*i], t.v[2*i+1])
	}
}
