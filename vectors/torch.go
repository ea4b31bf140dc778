package vectors

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"persona/pytorch"
)

// Layer conventions of published per-layer vectors.
const (
	// HiddenStates rows follow Hugging Face's hidden_states: row 0 is the
	// embeddings, row ℓ the output of decoder block ℓ−1, so a model of L
	// layers has L+1 rows (the persona-vectors code saves these).
	HiddenStates = "hidden-states"
	// BlockOutputs rows are the decoder blocks' outputs, row ℓ our layer ℓ
	// (L rows; the assistant-axis releases).
	BlockOutputs = "layers"
)

// ErrImport is a .pt file whose contents are not per-layer vectors for the
// model.
var ErrImport = errors.New("cannot import vectors")

// FromTorch converts per-layer vectors read from a PyTorch file (package
// pytorch) to a set for a model of numLayers layers of width hidden. The
// value is a [rows, hidden] tensor, or a dict holding one under key (when
// key is empty, the dict's only tensor or one under "axis" or "vector").
// convention says how rows map to layers; empty picks it from the row
// count: numLayers+1 rows are hidden_states, numLayers rows are layers.
func FromTorch(v any, key string, numLayers, hidden int, convention string) (*Set, error) {
	t, err := pickTensor(v, key)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != 2 {
		return nil, fmt.Errorf("%w: a tensor of shape %v, want [rows, %d]", ErrImport, t.Shape, hidden)
	}
	rows, width := t.Shape[0], t.Shape[1]
	if width != hidden {
		return nil, fmt.Errorf("%w: vectors %d wide for a model %d wide: %w", ErrImport, width, hidden, ErrWidth)
	}
	if convention == "" {
		switch rows {
		case numLayers + 1:
			convention = HiddenStates
		case numLayers:
			convention = BlockOutputs
		default:
			return nil, fmt.Errorf("%w: %d rows for a model of %d layers (want %d hidden_states rows or %d layer rows)", ErrImport, rows, numLayers, numLayers+1, numLayers)
		}
	}
	first := 0
	switch convention {
	case HiddenStates:
		first = 1 // row 0 is the embeddings, before any layer
		if rows != numLayers+1 {
			return nil, fmt.Errorf("%w: %d hidden_states rows for a model of %d layers (want %d)", ErrImport, rows, numLayers, numLayers+1)
		}
	case BlockOutputs:
		if rows != numLayers {
			return nil, fmt.Errorf("%w: %d layer rows for a model of %d layers", ErrImport, rows, numLayers)
		}
	default:
		return nil, fmt.Errorf("%w: convention %q (want %s or %s)", ErrImport, convention, HiddenStates, BlockOutputs)
	}
	s := &Set{Meta: map[string]string{"method": "imported", "convention": convention, "source_dtype": t.DType}}
	for r := first; r < rows; r++ {
		row := t.Data[r*width : (r+1)*width]
		zero := true
		for _, x := range row {
			zero = zero && x == 0
		}
		if zero { // layers the source did not compute are saved as zeros
			continue
		}
		s.Layers = append(s.Layers, r-first)
		s.Vectors = append(s.Vectors, append([]float32(nil), row...))
	}
	if len(s.Layers) == 0 {
		return nil, fmt.Errorf("%w: every row is zero", ErrImport)
	}
	return s, nil
}

func pickTensor(v any, key string) (*pytorch.Tensor, error) {
	switch x := v.(type) {
	case *pytorch.Tensor:
		if key != "" {
			return nil, fmt.Errorf("%w: the file holds one tensor, not a dict with %q", ErrImport, key)
		}
		return x, nil
	case *pytorch.Dict:
		var names []string
		var only *pytorch.Tensor
		for i, k := range x.Keys {
			name, _ := k.(string)
			t, ok := x.Values[i].(*pytorch.Tensor)
			if !ok {
				continue
			}
			names = append(names, name)
			if key != "" && name == key || key == "" && (name == "axis" || name == "vector") {
				return t, nil
			}
			only = t
		}
		if key == "" && len(names) == 1 {
			return only, nil
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w: pick a tensor with --key (the file has: %s)", ErrImport, strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("%w: the file holds a %T, not a tensor or a dict of tensors", ErrImport, v)
}
