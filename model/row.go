package model

import "fmt"

// Row is one packed training sequence of T positions. Several documents may
// share a row: each token attends only to earlier tokens of its own document
// (from Start[t] to t) and its RoPE position, t − Start[t], restarts at each
// document, so packing changes nothing a document sees.
type Row struct {
	Tokens  []int     // input token at each position
	Targets []int     // token to predict at each position (the next one); ignored where Weights is 0
	Weights []float32 // loss weight of each position: 0 excludes it (prompt, padding, other roles)
	Start   []int     // row index of the first token of each token's document
}

// Len returns the number of positions.
func (r *Row) Len() int { return len(r.Tokens) }

// Validate checks lengths, ranges and the document structure.
func (r *Row) Validate(vocab, maxSeq int) error {
	T := len(r.Tokens)
	if T == 0 {
		return fmt.Errorf("empty row")
	}
	if len(r.Targets) != T || len(r.Weights) != T || len(r.Start) != T {
		return fmt.Errorf("row fields disagree in length: tokens %d, targets %d, weights %d, start %d",
			T, len(r.Targets), len(r.Weights), len(r.Start))
	}
	for t := 0; t < T; t++ {
		switch {
		case r.Tokens[t] < 0 || r.Tokens[t] >= vocab:
			return fmt.Errorf("position %d: token %d outside the vocabulary [0, %d)", t, r.Tokens[t], vocab)
		case r.Weights[t] != 0 && (r.Targets[t] < 0 || r.Targets[t] >= vocab):
			return fmt.Errorf("position %d: target %d outside the vocabulary [0, %d)", t, r.Targets[t], vocab)
		case r.Weights[t] < 0:
			return fmt.Errorf("position %d: negative loss weight %g", t, r.Weights[t])
		case r.Start[t] < 0 || r.Start[t] > t || (t > 0 && r.Start[t] != r.Start[t-1] && r.Start[t] != t):
			return fmt.Errorf("position %d: document start %d is not the current or a new document", t, r.Start[t])
		case t-r.Start[t] >= maxSeq:
			return fmt.Errorf("position %d: document longer than the model's context %d", t, maxSeq)
		}
	}
	return nil
}
