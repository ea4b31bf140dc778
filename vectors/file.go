package vectors

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"persona/safetensors"
	"persona/tensor"
)

// The safetensors layout of a Set: one 1-D tensor "layer.N" per layer (N in
// our convention, see LayerConvention), F32 on write (F16/BF16 accepted on
// read), and string metadata in "__metadata__":
//
//	format            "persona.vectors"
//	format_version    "1"
//	name, model       Set.Name, Set.Model
//	layer_convention  LayerConvention (required on read)
//	layers            "3,4,5" (checked against the tensors when present)
//	hidden            "576"   (checked against the tensors when present)
//
// plus every Set.Meta entry verbatim (method, trait, counts, scores …).
const (
	FormatName    = "persona.vectors"
	FormatVersion = "1"
	tensorPrefix  = "layer."
)

// reservedKeys are the metadata keys the format owns; Set.Meta may not use them.
var reservedKeys = []string{"format", "format_version", "name", "model", "layer_convention", "layers", "hidden"}

// maxLayer bounds layer indices read from files (a sanity limit far above
// any real model), so a hostile name cannot make us allocate for it.
const maxLayer = 1 << 16

// Save writes the set as a safetensors file, atomically (a temporary file
// renamed into place, so an interrupted run never leaves half a file).
func (s *Set) Save(path string) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("vectors %s: %w", path, err)
	}
	meta := map[string]string{}
	for k, v := range s.Meta {
		if slices.Contains(reservedKeys, k) {
			return fmt.Errorf("vectors %s: metadata key %q is reserved by the file format (use Set.Name/Set.Model)", path, k)
		}
		meta[k] = v
	}
	meta["format"] = FormatName
	meta["format_version"] = FormatVersion
	meta["name"] = s.Name
	meta["model"] = s.Model
	meta["layer_convention"] = LayerConvention
	meta["layers"] = joinInts(s.Layers)
	meta["hidden"] = strconv.Itoa(s.Hidden())
	ts := make([]tensor.Tensor, len(s.Layers))
	for i, l := range s.Layers {
		ts[i] = tensor.Tensor{Name: tensorPrefix + strconv.Itoa(l), DType: tensor.F32, Shape: []int{len(s.Vectors[i])}, Data: tensor.F32ToBytes(s.Vectors[i])}
	}
	return safetensors.Write(path, ts, meta)
}

// Load reads a vector file written by Save (or by any tool that follows the
// layout above) and validates it completely: names, shapes, widths, values
// and the declared layer convention.
func Load(path string) (*Set, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := fromFile(f)
	if err != nil {
		return nil, fmt.Errorf("vectors %s: %w", path, err)
	}
	return s, nil
}

// Open reads a vector file: safetensors as Save writes them, or a
// llama.cpp control vector (a .gguf file).
func Open(path string) (*Set, error) {
	if strings.HasSuffix(strings.ToLower(path), ".gguf") {
		return ReadControlVector(path)
	}
	return Load(path)
}

// Parse is Load on bytes already in memory; name is used in errors.
func Parse(data []byte, name string) (*Set, error) {
	f, err := safetensors.Parse(data, name)
	if err != nil {
		return nil, err
	}
	s, err := fromFile(f)
	if err != nil {
		return nil, fmt.Errorf("vectors %s: %w", name, err)
	}
	return s, nil
}

func fromFile(f *safetensors.File) (*Set, error) {
	md := f.Metadata
	if got, ok := md["format"]; ok && got != FormatName {
		return nil, fmt.Errorf("metadata format %q, want %q", got, FormatName)
	}
	if v, ok := md["format_version"]; ok && v != FormatVersion {
		return nil, fmt.Errorf("format version %q; this build reads version %s", v, FormatVersion)
	}
	switch conv, ok := md["layer_convention"]; {
	case !ok:
		return nil, fmt.Errorf("metadata has no layer_convention; persona needs %q (convert the layer indices and add it)", LayerConvention)
	case conv != LayerConvention:
		return nil, fmt.Errorf("layer_convention %q, persona uses %q (shift the layer indices and rewrite it)", conv, LayerConvention)
	}

	s := &Set{Name: md["name"], Model: md["model"], Meta: map[string]string{}}
	for k, v := range md {
		if !slices.Contains(reservedKeys, k) {
			s.Meta[k] = v
		}
	}
	type row struct {
		layer int
		name  string
	}
	var rows []row
	for _, name := range f.Names() {
		l, ok := parseLayerName(name, tensorPrefix)
		if !ok {
			return nil, fmt.Errorf("tensor %q: want names %sN with N a layer index in 0..%d", name, tensorPrefix, maxLayer)
		}
		rows = append(rows, row{l, name})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no %sN tensors", tensorPrefix)
	}
	slices.SortFunc(rows, func(a, b row) int { return a.layer - b.layer })
	for i, r := range rows {
		if i > 0 && r.layer == rows[i-1].layer {
			return nil, fmt.Errorf("tensors %q and %q both name layer %d", rows[i-1].name, r.name, r.layer)
		}
		t, err := f.Tensor(r.name)
		if err != nil {
			return nil, err
		}
		if len(t.Shape) != 1 || t.Shape[0] == 0 {
			return nil, fmt.Errorf("tensor %q has shape %v, want one non-empty dimension", r.name, t.Shape)
		}
		s.Layers = append(s.Layers, r.layer)
		s.Vectors = append(s.Vectors, slices.Clone(t.ToF32())) // the mapping goes away on Close
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if v, ok := md["layers"]; ok && v != joinInts(s.Layers) {
		return nil, fmt.Errorf("metadata says layers %q, tensors have %q", v, joinInts(s.Layers))
	}
	if v, ok := md["hidden"]; ok && v != strconv.Itoa(s.Hidden()) {
		return nil, fmt.Errorf("metadata says hidden %q, tensors have width %d", v, s.Hidden())
	}
	if len(s.Meta) == 0 {
		s.Meta = nil
	}
	return s, nil
}

// parseLayerName reads N from prefix+N, accepting only canonical decimals
// (no sign, no leading zeros) so that one layer has exactly one name.
func parseLayerName(name, prefix string) (int, bool) {
	digits, ok := strings.CutPrefix(name, prefix)
	if !ok || digits == "" || len(digits) > 6 || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil && n <= maxLayer
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}
