package vectors

import (
	"errors"
	"strings"
	"testing"

	"persona/pytorch"
)

func rowsTensor(rows, width int) *pytorch.Tensor {
	t := &pytorch.Tensor{Shape: []int{rows, width}, Data: make([]float32, rows*width), DType: "float32"}
	for i := range t.Data {
		t.Data[i] = float32(i/width + 1) // row r holds r+1
	}
	return t
}

func TestFromTorch(t *testing.T) {
	// hidden_states: row ℓ+1 is layer ℓ.
	s, err := FromTorch(rowsTensor(5, 3), "", 4, 3, "")
	if err != nil || s.Meta["convention"] != HiddenStates || len(s.Layers) != 4 || s.Vectors[0][0] != 2 {
		t.Fatalf("hidden_states: %+v %v", s, err)
	}
	// layers: row ℓ is layer ℓ; a zero row is a layer the source skipped.
	tt := rowsTensor(4, 3)
	copy(tt.Data[3:6], []float32{0, 0, 0})
	d := &pytorch.Dict{Keys: []any{"n", "axis"}, Values: []any{int64(4), tt}}
	s, err = FromTorch(d, "", 4, 3, "")
	if err != nil || s.Meta["convention"] != BlockOutputs || FormatLayers(s.Layers) != "0,2-3" || s.Vectors[0][0] != 1 {
		t.Fatalf("layers: %+v %v", s, err)
	}
	for _, c := range []struct {
		v          any
		key, conv  string
		layers, hd int
		msg        string
	}{
		{rowsTensor(5, 3), "", "", 4, 4, "wide"},
		{rowsTensor(6, 3), "", "", 4, 3, "6 rows"},
		{rowsTensor(4, 3), "", HiddenStates, 4, 3, "hidden_states rows"},
		{rowsTensor(5, 3), "", "sideways", 4, 3, "convention"},
		{rowsTensor(5, 3), "axis", "", 4, 3, "one tensor"},
		{&pytorch.Dict{Keys: []any{"a", "b"}, Values: []any{rowsTensor(5, 3), rowsTensor(5, 3)}}, "", "", 4, 3, "a, b"},
		{[]any{rowsTensor(5, 3)}, "", "", 4, 3, "[]interface"},
		{&pytorch.Tensor{Shape: []int{15}, Data: make([]float32, 15)}, "", "", 4, 3, "shape"},
		{&pytorch.Tensor{Shape: []int{4, 3}, Data: make([]float32, 12)}, "", "", 4, 3, "zero"},
	} {
		_, err := FromTorch(c.v, c.key, c.layers, c.hd, c.conv)
		if !errors.Is(err, ErrImport) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: err = %v, want %q", c.msg, err, c.msg)
		}
	}
}
