package dataset

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
)

// Split holds out about fraction of docs for validation, by whole document,
// and returns the rest for training; both keep the order of docs.
//
// Which documents are held out depends on the seed and on each document's
// content (tokens and mask), not on its position in the file: documents are
// ranked by a seeded hash of their content and the lowest round(fraction·n)
// (at least one) are held out. So adding or reordering data moves few
// documents between the sides, and identical documents (exact duplicates,
// common in scraped chat data) always land on the same side, so a duplicate
// never leaks training data into the validation loss.
func Split(docs []Document, fraction float64, seed uint64) (train, held []Document, err error) {
	if !(fraction > 0 && fraction < 1) {
		return nil, nil, fmt.Errorf("held-out fraction %g must lie strictly between 0 and 1", fraction)
	}
	n := len(docs)
	k := max(int(math.Round(fraction*float64(n))), 1)
	if k >= n {
		return nil, nil, fmt.Errorf("holding out %g of %d documents leaves none to train on", fraction, n)
	}
	h := make([]uint64, n)
	order := make([]int, n)
	for i := range docs {
		h[i] = contentHash(&docs[i], seed)
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return h[order[a]] < h[order[b]] })
	// Keep duplicates together: extend the held-out set over equal hashes.
	for k < n && h[order[k]] == h[order[k-1]] {
		k++
	}
	if k == n {
		return nil, nil, fmt.Errorf("holding out %g of %d documents leaves none to train on (the rest duplicate held-out ones)", fraction, n)
	}
	out := make([]bool, n)
	for _, i := range order[:k] {
		out[i] = true
	}
	for i := range docs {
		if out[i] {
			held = append(held, docs[i])
		} else {
			train = append(train, docs[i])
		}
	}
	return train, held, nil
}

// contentHash is FNV-1a over the seed, tokens and mask weights, mixed so
// that its order is uniform.
func contentHash(d *Document, seed uint64) uint64 {
	f := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	f.Write(b[:])
	for i, t := range d.Tokens {
		binary.LittleEndian.PutUint64(b[:], uint64(t))
		f.Write(b[:])
		if i < len(d.Mask) {
			binary.LittleEndian.PutUint32(b[:4], math.Float32bits(d.Mask[i]))
			f.Write(b[:4])
		}
	}
	return mix64(f.Sum64())
}
