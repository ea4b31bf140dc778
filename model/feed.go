package model

import (
	"context"
	"errors"
	"fmt"

	"persona/resid"
)

// FeedChunk is how many positions one forward call processes when a longer
// sequence is fed: it bounds the scratch memory (activations of FeedChunk
// positions) while keeping the matrix products large enough to be fast.
const FeedChunk = 128

// ErrContext is wrapped by errors for input longer than the model's
// context: the input's fault, not the model's.
var ErrContext = errors.New("input too long for the model's context")

// CheckIDs returns an error naming the first id outside the vocabulary.
// Forward trusts its ids; everything that takes ids from outside checks them
// here first.
func (m *Model) CheckIDs(ids []int) error {
	for i, id := range ids {
		if id < 0 || id >= m.Vocab {
			return fmt.Errorf("token %d at position %d is outside the vocabulary [0, %d)", id, i, m.Vocab)
		}
	}
	return nil
}

// Feed runs ids through the model at positions s.Len onwards, FeedChunk
// positions per forward call, after checking that they are in the
// vocabulary and fit the context. It stops between chunks when ctx ends.
//
// want says which logits are computed: none, the last position of the whole
// sequence (LastLogits: only the final chunk computes any), or every
// position (AllLogits). Each chunk's logits go to use, with the index in ids
// of the chunk's first position; the slice is the caller's to keep. use may
// be nil when want is NoLogits.
func (m *Model) Feed(ctx context.Context, s *State, ids []int, iv *resid.Set, want Logits, use func(off int, logits []float32)) error {
	if n := s.Len + len(ids); n > m.MaxSeq {
		return fmt.Errorf("sequence of %d tokens exceeds the model's context of %d: %w", n, m.MaxSeq, ErrContext)
	}
	if err := m.CheckIDs(ids); err != nil {
		return err
	}
	for i := 0; i < len(ids); i += FeedChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		j := min(i+FeedChunk, len(ids))
		w := want
		if want == LastLogits && j < len(ids) {
			w = NoLogits
		}
		logits := m.Forward(s, ids[i:j], iv, w)
		if w != NoLogits && use != nil {
			use(i, logits)
		}
	}
	return nil
}
