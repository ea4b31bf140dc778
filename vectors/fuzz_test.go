package vectors

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"persona/safetensors"
	"persona/tensor"
)

// FuzzParse feeds arbitrary bytes to the vector-file reader: malformed
// headers and metadata, wrong names, shapes and dtypes must give errors,
// never panics; whatever is accepted must be a valid Set that survives a
// Save/Load round trip unchanged.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	seed := func(ts []tensor.Tensor, meta map[string]string) {
		p := filepath.Join(dir, "seed.safetensors")
		if err := safetensors.Write(p, ts, meta); err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	vec := func(name string, v ...float32) tensor.Tensor {
		return tensor.Tensor{Name: name, DType: tensor.F32, Shape: []int{len(v)}, Data: tensor.F32ToBytes(v)}
	}
	conv := map[string]string{"layer_convention": LayerConvention}
	p := filepath.Join(dir, "set.safetensors")
	if err := testSet().Save(p); err != nil {
		f.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	f.Add(data)
	seed([]tensor.Tensor{vec("layer.1", 1, 2), vec("layer.2", 3, 4)}, conv)
	seed([]tensor.Tensor{vec("layer.1", 1, 2), vec("layer.2", 3)}, conv)
	seed([]tensor.Tensor{{Name: "layer.3", DType: tensor.F32, Shape: []int{2, 1}, Data: make([]byte, 8)}}, conv)
	seed([]tensor.Tensor{vec("direction.1", 1)}, conv)
	seed([]tensor.Tensor{vec("layer.1", 1)}, map[string]string{"layer_convention": LayerConvention, "layers": "x", "format_version": "2"})
	seed([]tensor.Tensor{vec("layer.1", 1)}, nil)
	f.Add([]byte{})
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))

	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid set: %v", err)
		}
		p := filepath.Join(t.TempDir(), "v.safetensors")
		if err := s.Save(p); err != nil {
			t.Fatalf("Save of a parsed set: %v", err)
		}
		back, err := Load(p)
		if err != nil {
			t.Fatalf("Load of a saved set: %v", err)
		}
		if back.Name != s.Name || back.Model != s.Model || !slices.Equal(back.Layers, s.Layers) || len(back.Meta) != len(s.Meta) {
			t.Fatalf("round trip changed the set: %+v → %+v", s, back)
		}
		for i := range s.Vectors {
			if !slices.Equal(back.Vectors[i], s.Vectors[i]) {
				t.Fatalf("round trip changed layer %d", s.Layers[i])
			}
		}
	})
}
