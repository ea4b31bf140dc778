package vectors

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"persona/gguf"
	"persona/tensor"
)

// llama.cpp's control-vector GGUF, as its loader (common/common.cpp,
// common_control_vector_load_one) reads it and its cvector-generator writes
// it:
//
//	general.architecture        "controlvector"
//	controlvector.model_hint    the target model's general.architecture ("llama")
//	controlvector.layer_count   int32, the number of direction tensors
//	direction.N                 F32, 1-D, n_embd elements, one per layer N ≥ 1
//
// The loader checks only the tensors: names "direction.N" with N ≥ 1 (it
// rejects the whole file for direction.0), type F32, one dimension, equal
// lengths. It scales every direction by the strength given at load time and
// llama_set_adapter_cvec adds it to the output of block N (build_cvec at the
// end of each layer), at every position. N is therefore our layer index
// unchanged, and steering with strength c equals resid.Add with Coeff c and
// Where All at the same layers (tested against llama.cpp in this package).
//
// We also write persona.* keys (name, model, layer convention, Set.Meta as
// persona.meta.<key>) so that ReadControlVector restores a Set; llama.cpp
// ignores them.
const (
	cvArch       = "controlvector"
	cvTensorName = "direction."
)

// ErrLayerZero is returned when exporting a set with a layer-0 vector:
// llama.cpp cannot steer the output of block 0.
var ErrLayerZero = errors.New("llama.cpp control vectors cannot steer layer 0 (it rejects direction.0)")

// ControlVectorOptions adjust the llama.cpp export.
type ControlVectorOptions struct {
	// ModelHint is written as controlvector.model_hint: the target model's
	// architecture as llama.cpp names it ("llama", "qwen2" …). llama.cpp
	// does not check it. Empty means Meta["architecture"] if set.
	ModelHint string
	// SkipLayer0 drops a layer-0 vector instead of failing with ErrLayerZero.
	SkipLayer0 bool
}

// WriteControlVector exports the set as a llama.cpp control-vector GGUF,
// atomically. The vectors are written unscaled: pick the coefficient at load
// time (llama-cli --control-vector-scaled FILE c, or the strength of
// common_control_vector_load). A set with a layer-0 vector is refused unless
// opt.SkipLayer0 is set.
func (s *Set) WriteControlVector(path string, opt ControlVectorOptions) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("control vector %s: %w", path, err)
	}
	src := s
	if s.Layers[0] == 0 {
		if !opt.SkipLayer0 {
			return fmt.Errorf("control vector %s: vectors %q include layer 0: %w; drop it (Set.Without(0) or SkipLayer0)", path, s.Name, ErrLayerZero)
		}
		src = s.Without(0)
		if len(src.Layers) == 0 {
			return fmt.Errorf("control vector %s: vectors %q have only layer 0: %w", path, s.Name, ErrLayerZero)
		}
	}
	hint := opt.ModelHint
	if hint == "" {
		hint = s.Meta["architecture"]
	}
	w := gguf.NewWriter()
	w.AddKV("general.architecture", cvArch)
	w.AddKV(cvArch+".model_hint", hint)
	w.AddKV(cvArch+".layer_count", int32(len(src.Layers)))
	w.AddKV("persona.name", s.Name)
	w.AddKV("persona.model", s.Model)
	w.AddKV("persona.layer_convention", LayerConvention)
	for _, k := range slices.Sorted(maps.Keys(s.Meta)) {
		w.AddKV("persona.meta."+k, s.Meta[k])
	}
	for i, l := range src.Layers {
		t := tensor.Tensor{Name: fmt.Sprintf("%s%d", cvTensorName, l), DType: tensor.F32, Shape: []int{len(src.Vectors[i])}, Data: tensor.F32ToBytes(src.Vectors[i])}
		if err := w.AddTensor(t); err != nil {
			return fmt.Errorf("control vector %s: %w", path, err)
		}
	}
	return w.WriteFile(path)
}

// ReadControlVector reads a llama.cpp control-vector GGUF (ours or
// cvector-generator's) into a Set: direction.N becomes layer N. It checks
// what llama.cpp checks (names, F32, 1-D, equal widths, N ≥ 1) and, in
// addition, that values are finite.
func ReadControlVector(path string) (*Set, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if a, _ := f.String("general.architecture"); a != cvArch {
		return nil, fmt.Errorf("control vector %s: general.architecture %q, want %q", path, a, cvArch)
	}
	s := &Set{}
	s.Name, _ = f.String("persona.name")
	s.Model, _ = f.String("persona.model")
	if conv, ok := f.String("persona.layer_convention"); ok && conv != LayerConvention {
		return nil, fmt.Errorf("control vector %s: persona.layer_convention %q, want %q", path, conv, LayerConvention)
	}
	for _, kv := range f.KV {
		if k, ok := strings.CutPrefix(kv.Key, "persona.meta."); ok {
			if v, ok := kv.Value.(string); ok {
				if s.Meta == nil {
					s.Meta = map[string]string{}
				}
				s.Meta[k] = v
			}
		}
	}
	if s.Name == "" {
		s.Name, _ = f.String("general.name")
	}
	if hint, ok := f.String(cvArch + ".model_hint"); ok && s.Model == "" {
		s.Model = hint
	}
	type dir struct {
		layer int
		v     []float32
	}
	var dirs []dir
	for _, ti := range f.Tensors {
		l, ok := parseLayerName(ti.Name, cvTensorName)
		if !ok {
			return nil, fmt.Errorf("control vector %s: tensor %q: want direction.N", path, ti.Name)
		}
		if l == 0 {
			return nil, fmt.Errorf("control vector %s: %w", path, ErrLayerZero)
		}
		if ti.Type != gguf.TypeF32 || len(ti.Shape()) != 1 {
			return nil, fmt.Errorf("control vector %s: tensor %q is %v %v, llama.cpp needs F32 with one dimension", path, ti.Name, ti.Type, ti.Shape())
		}
		t, err := f.Tensor(ti.Name)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, dir{l, slices.Clone(t.F32())})
	}
	slices.SortFunc(dirs, func(a, b dir) int { return a.layer - b.layer })
	for _, d := range dirs {
		s.Layers = append(s.Layers, d.layer)
		s.Vectors = append(s.Vectors, d.v)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("control vector %s: %w", path, err)
	}
	return s, nil
}
