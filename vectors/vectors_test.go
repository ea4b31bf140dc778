package vectors

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/engine"
	"persona/gguf"
	"persona/resid"
	"persona/safetensors"
	"persona/tensor"
)

func testSet() *Set {
	return &Set{Name: "evil", Model: "tiny", Layers: []int{0, 2, 3},
		Vectors: [][]float32{{1, 0, 0, 0}, {0, 2, 0, 0}, {3, 4, 0, 0}},
		Meta:    map[string]string{"method": "mean_diff", "count_pos": "10"}}
}

// Means are summed in float64: a float32 running sum of many values near
// 1e4 would drift by far more than the difference being measured.
func TestMeanDiffFloat64(t *testing.T) {
	var pos, neg [][]float32
	for i := 0; i < 100000; i++ {
		pos = append(pos, []float32{1e4 + 0.25, float32(i % 2)})
		neg = append(neg, []float32{1e4, float32(1 - i%2)})
	}
	d, err := MeanDiff(pos, neg)
	if err != nil {
		t.Fatal(err)
	}
	if d[0] != 0.25 || d[1] != 0 {
		t.Errorf("MeanDiff = %v, want [0.25 0]", d)
	}
}

func TestMeanDiffErrors(t *testing.T) {
	for _, c := range []struct {
		name     string
		pos, neg [][]float32
		want     error
	}{
		{"no negatives", [][]float32{{1}}, nil, nil},
		{"width", [][]float32{{1, 2}}, [][]float32{{1}}, ErrWidth},
		{"ragged", [][]float32{{1, 2}, {1}}, [][]float32{{1, 2}}, ErrWidth},
		{"NaN", [][]float32{{float32(math.NaN())}}, [][]float32{{1}}, ErrNotFinite},
	} {
		_, err := MeanDiff(c.pos, c.neg)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDifferenceAndProjection(t *testing.T) {
	layers := []int{1, 4}
	pos, neg := NewAccumulator(layers), NewAccumulator(layers)
	pos.Add([][]float32{{2, 0}, {0, 3}})
	pos.Add([][]float32{{4, 0}, {0, 5}})
	neg.Add([][]float32{{0, 0}, {0, 1}})
	s, err := Difference("trait", "m", pos, neg)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Vector(1); v[0] != 3 || v[1] != 0 {
		t.Errorf("layer 1 = %v, want [3 0]", v)
	}
	if v, _ := s.Vector(4); v[0] != 0 || v[1] != 3 {
		t.Errorf("layer 4 = %v, want [0 3]", v)
	}
	if s.Meta["count_pos"] != "2" || s.Meta["count_neg"] != "1" || s.Meta["method"] != "mean_diff" {
		t.Errorf("meta %v", s.Meta)
	}
	if p, err := s.Project(4, []float32{7, -2}); err != nil || p != -2 {
		t.Errorf("Project = %v, %v; want -2", p, err)
	}
	if _, err := s.Project(2, []float32{1, 1}); !errors.Is(err, engine.ErrLayer) {
		t.Errorf("Project on a missing layer: %v", err)
	}
	if _, err := s.Project(1, []float32{1}); !errors.Is(err, ErrWidth) {
		t.Errorf("Project of a wrong width: %v", err)
	}
	if c := Cosine([]float32{1, 1}, []float32{2, 0}); math.Abs(c-math.Sqrt2/2) > 1e-12 {
		t.Errorf("Cosine = %v", c)
	}
	if _, err := Difference("x", "m", pos, NewAccumulator(layers)); err == nil {
		t.Error("Difference with an empty side succeeded")
	}
	if _, err := Difference("x", "m", pos, NewAccumulator([]int{1})); err == nil {
		t.Error("Difference over different layers succeeded")
	}
}

// The errors a user sees when a vector meets the wrong model say what is
// wrong, and can be told apart.
func TestCheckAgainstModel(t *testing.T) {
	s := testSet()
	if err := s.Check(4, 4); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		layers, width int
		mutate        func(*Set)
		want          error
		text          string
	}{
		{"width", 4, 8, nil, ErrWidth, "hidden size is 8"},
		{"depth", 3, 4, nil, engine.ErrLayer, "layers 0..2"},
		{"NaN", 4, 4, func(s *Set) { s.Vectors[1][2] = float32(math.NaN()) }, ErrNotFinite, "layer 2 element 2"},
		{"Inf", 4, 4, func(s *Set) { s.Vectors[0][0] = float32(math.Inf(-1)) }, ErrNotFinite, "-Inf"},
		{"ragged", 4, 4, func(s *Set) { s.Vectors[2] = s.Vectors[2][:3] }, ErrWidth, "width 3"},
		{"unsorted", 4, 4, func(s *Set) { s.Layers[1] = 0 }, nil, "ascending"},
		{"negative", 4, 4, func(s *Set) { s.Layers[0] = -1 }, engine.ErrLayer, "negative"},
		{"count", 4, 4, func(s *Set) { s.Vectors = s.Vectors[:2] }, nil, "2 vectors for 3 layers"},
	} {
		s := testSet()
		if c.mutate != nil {
			c.mutate(s)
		}
		err := s.Check(c.layers, c.width)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: err = %v, want %v containing %q", c.name, err, c.want, c.text)
		}
	}
	if _, err := s.Steer(1, 1, resid.All); !errors.Is(err, engine.ErrLayer) || !strings.Contains(err.Error(), "0,2-3") {
		t.Errorf("Steer on a missing layer: %v", err)
	}
	if _, err := s.Steer(2, float32(math.NaN()), resid.All); !errors.Is(err, ErrNotFinite) {
		t.Errorf("Steer with a NaN coefficient: %v", err)
	}
	if _, err := s.Interventions(4, 5); !errors.Is(err, ErrWidth) {
		t.Errorf("Interventions on the wrong model: %v", err)
	}
}

// Steer adds c·v unnormalised; Cap raises the projection on the unit
// direction to the floor and leaves h alone above it; Ablate removes it.
func TestInterventions(t *testing.T) {
	s := testSet()
	add, err := s.Steer(3, 2, resid.All)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := s.Cap([]int{3}, []float32{10})
	if err != nil {
		t.Fatal(err)
	}
	abl, err := s.Ablate(2)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := s.Interventions(4, 4, add, caps[0], abl)
	if err != nil {
		t.Fatal(err)
	}
	h := []float32{1, 1, 1, 1, 1, 1, 1, 1, 100, 0, 0, 0} // three positions
	rs.Apply(2, resid.Block{H: h, T: 3, D: 4})
	if h[1] != 0 || h[5] != 0 || h[0] != 1 {
		t.Errorf("ablation along e1: %v", h)
	}
	h = []float32{0, 0, 0, 0, 30, 40, 0, 0}
	rs.Apply(3, resid.Block{H: h, T: 2, D: 4})
	// Position 0: +2·(3,4,0,0) = (6,8): projection on (.6,.8) is 10, at the floor.
	// Position 1: (36,48), projection 60, above the floor: untouched by the cap.
	want := []float32{6, 8, 0, 0, 36, 48, 0, 0}
	for i := range want {
		if math.Abs(float64(h[i]-want[i])) > 1e-5 {
			t.Fatalf("steer+cap: %v, want %v", h, want)
		}
	}
	h = []float32{-3, -4, 1, 0}
	rs.Apply(3, resid.Block{H: h, T: 1, D: 4}) // (3,4) after the add: projection 5 < 10, raised to 10
	if p := Project(h, s.Vectors[2]); math.Abs(p-10) > 1e-5 || h[2] != 1 {
		t.Errorf("cap: projection %v, h %v", p, h)
	}
	if _, err := s.Cap([]int{2, 3}, []float32{1}); err == nil {
		t.Error("Cap with mismatched floors succeeded")
	}
	zero := &Set{Name: "z", Layers: []int{1}, Vectors: [][]float32{{0, 0}}}
	if _, err := zero.Ablate(1); err == nil {
		t.Error("Ablate along a zero vector succeeded")
	}
	all, err := s.SteerAll(0.5, resid.Generated)
	if err != nil || len(all) != 3 || all[2].Layer() != 3 {
		t.Errorf("SteerAll = %v, %v", all, err)
	}
}

func TestSaveLoad(t *testing.T) {
	s := testSet()
	path := filepath.Join(t.TempDir(), "evil.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != s.Name || got.Model != s.Model || len(got.Meta) != 2 || got.Meta["count_pos"] != "10" || maxDiff(got.Vectors, s.Vectors) != 0 {
		t.Errorf("round trip: %+v, want %+v", got, s)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["layer_convention"] != LayerConvention || f.Metadata["layers"] != "0,2,3" || f.Metadata["hidden"] != "4" ||
		strings.Join(f.Names(), " ") != "layer.0 layer.2 layer.3" {
		t.Errorf("file: metadata %v, tensors %v", f.Metadata, f.Names())
	}

	bad := testSet()
	bad.Meta["model"] = "other"
	if err := bad.Save(path); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("Save with a reserved metadata key: %v", err)
	}
	// Nothing is written for an invalid set, and the old file is untouched.
	bad = testSet()
	bad.Vectors[0][0] = float32(math.NaN())
	newPath := filepath.Join(t.TempDir(), "nan.safetensors")
	if err := bad.Save(newPath); !errors.Is(err, ErrNotFinite) {
		t.Errorf("Save with NaN: %v", err)
	}
	if _, err := os.Stat(newPath); !os.IsNotExist(err) {
		t.Errorf("a failed Save left %s", newPath)
	}
}

// Files that are valid safetensors but not valid vectors are refused with a
// message that says which rule they break.
func TestLoadRejects(t *testing.T) {
	good := map[string]string{"layer_convention": LayerConvention}
	vec := func(name string, v ...float32) tensor.Tensor {
		return tensor.Tensor{Name: name, DType: tensor.F32, Shape: []int{len(v)}, Data: tensor.F32ToBytes(v)}
	}
	for _, c := range []struct {
		name string
		ts   []tensor.Tensor
		meta map[string]string
		text string
	}{
		{"no convention", []tensor.Tensor{vec("layer.1", 1, 2)}, nil, "no layer_convention"},
		{"other convention", []tensor.Tensor{vec("layer.1", 1, 2)}, map[string]string{"layer_convention": "hidden_states[L]"}, "shift the layer indices"},
		{"no tensors", nil, good, "no layer.N"},
		{"bad name", []tensor.Tensor{vec("layers.1", 1)}, good, `"layers.1"`},
		{"leading zero", []tensor.Tensor{vec("layer.01", 1)}, good, `"layer.01"`},
		{"huge layer", []tensor.Tensor{vec("layer.9999999", 1)}, good, "layer index"},
		{"2-D", []tensor.Tensor{{Name: "layer.1", DType: tensor.F32, Shape: []int{1, 2}, Data: make([]byte, 8)}}, good, "shape [1 2]"},
		{"widths", []tensor.Tensor{vec("layer.1", 1, 2), vec("layer.2", 1)}, good, "width"},
		{"NaN", []tensor.Tensor{vec("layer.1", 1, float32(math.NaN()))}, good, "NaN"},
		{"layers metadata", []tensor.Tensor{vec("layer.1", 1)}, map[string]string{"layer_convention": LayerConvention, "layers": "1,2"}, "metadata says layers"},
		{"hidden metadata", []tensor.Tensor{vec("layer.1", 1)}, map[string]string{"layer_convention": LayerConvention, "hidden": "2"}, "metadata says hidden"},
		{"format", []tensor.Tensor{vec("layer.1", 1)}, map[string]string{"layer_convention": LayerConvention, "format": "repeng"}, "format"},
	} {
		path := filepath.Join(t.TempDir(), "v.safetensors")
		if err := safetensors.Write(path, c.ts, c.meta); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.text)
		}
	}
	// Half precision is accepted on read.
	path := filepath.Join(t.TempDir(), "f16.safetensors")
	data, _ := tensor.Encode(tensor.F16, []float32{0.5, -2})
	if err := safetensors.Write(path, []tensor.Tensor{{Name: "layer.7", DType: tensor.F16, Shape: []int{2}, Data: data}}, good); err != nil {
		t.Fatal(err)
	}
	if s, err := Load(path); err != nil || s.Layers[0] != 7 || s.Vectors[0][1] != -2 {
		t.Errorf("F16 file: %+v, %v", s, err)
	}
}

func TestControlVectorFile(t *testing.T) {
	s := testSet()
	path := filepath.Join(t.TempDir(), "evil.gguf")
	if err := s.WriteControlVector(path, ControlVectorOptions{ModelHint: "llama"}); !errors.Is(err, ErrLayerZero) {
		t.Fatalf("export with layer 0: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a refused export left a file")
	}
	if err := s.WriteControlVector(path, ControlVectorOptions{ModelHint: "llama", SkipLayer0: true}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	arch, _ := f.String("general.architecture")
	hint, _ := f.String("controlvector.model_hint")
	n, _ := f.Get("controlvector.layer_count")
	if arch != "controlvector" || hint != "llama" || n != int32(2) || len(f.Tensors) != 2 ||
		f.Tensors[0].Name != "direction.2" || f.Tensors[1].Name != "direction.3" || f.Tensors[0].Type != gguf.TypeF32 {
		t.Errorf("GGUF: arch %q hint %q layer_count %v tensors %+v", arch, hint, n, f.Tensors)
	}
	back, err := ReadControlVector(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != "evil" || back.Model != "tiny" || len(back.Layers) != 2 || back.Layers[0] != 2 || back.Vectors[1][1] != 4 || back.Meta["count_pos"] != "10" {
		t.Errorf("read back %+v", back)
	}
	only0 := &Set{Name: "x", Layers: []int{0}, Vectors: [][]float32{{1}}}
	if err := only0.WriteControlVector(path, ControlVectorOptions{SkipLayer0: true}); !errors.Is(err, ErrLayerZero) {
		t.Errorf("export of layer 0 alone: %v", err)
	}
}

func TestFormatLayers(t *testing.T) {
	for in, want := range map[string]string{"": "none", "3": "3", "1 2 3 5 7 8": "1-3,5,7-8"} {
		var ls []int
		for _, f := range strings.Fields(in) {
			ls = append(ls, int(f[0]-'0'))
		}
		if got := FormatLayers(ls); got != want {
			t.Errorf("FormatLayers(%v) = %q, want %q", ls, got, want)
		}
	}
}

func TestParseLayers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		err  string
	}{
		{"", nil, ""},
		{"3", []int{3}, ""},
		{"1, 4,7", []int{1, 4, 7}, ""},
		{"2-4,6", []int{2, 3, 4, 6}, ""},
		{"4-2", nil, "not a layer"},
		{"x", nil, "not a layer"},
		{"3,3", nil, "ascending"},
		{"5,2", nil, "ascending"},
		{"9", nil, "layers 0-7"},
		{"-1", nil, "not a layer"},
	} {
		got, err := ParseLayers(c.in, 8)
		if c.err == "" && (err != nil || !slices.Equal(got, c.want)) {
			t.Errorf("%q: %v, %v; want %v", c.in, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		}
		if err == nil && c.in != "" {
			if back, _ := ParseLayers(FormatLayers(got), 8); !slices.Equal(back, got) {
				t.Errorf("%q: FormatLayers does not round-trip: %q", c.in, FormatLayers(got))
			}
		}
	}
	if _, err := ParseLayers("9", 6); !errors.Is(err, engine.ErrLayer) {
		t.Errorf("layer beyond the model: %v", err)
	}
}
