// Package safetensors reads and writes the Hugging Face safetensors format:
// an 8-byte little-endian header length, a JSON header describing each
// tensor's dtype, shape and byte range, then the raw little-endian data.
//
// Files are memory-mapped and tensors handed out as slices of the mapping.
// The header is untrusted: it is size-limited, must be a well-formed JSON
// object without duplicate names, and every tensor's byte range must lie in
// the data, match its shape and dtype, and not overlap another. Sharded
// checkpoints (model.safetensors.index.json) are opened as one Set.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"unicode/utf8"

	"persona/internal/fileio"
	"persona/tensor"
)

// MaxHeaderBytes bounds the JSON header, as the reference implementation
// does, so that a corrupt length cannot make us parse gigabytes of JSON.
const MaxHeaderBytes = 100_000_000

// ErrUnsupportedDType is wrapped by Tensor for dtypes that parse but have no
// tensor.DType (F64, I64, U8, BOOL, ...), so callers can skip such tensors
// (e.g. integer buffers) deliberately.
var ErrUnsupportedDType = errors.New("unsupported dtype")

// dtypeSizes lists the dtypes whose byte sizes we can check.
var dtypeSizes = map[string]uint64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
	"U16": 2, "I16": 2, "F16": 2, "BF16": 2,
	"U32": 4, "I32": 4, "F32": 4,
	"U64": 8, "I64": 8, "F64": 8, "C64": 8,
}

// entry is one tensor's header record.
type entry struct {
	dtype      string
	shape      []int
	begin, end uint64 // relative to the data section
}

// File is one parsed safetensors file, read-only after parsing (safe for
// concurrent use except Close). Metadata is the optional
// "__metadata__" object (string to string). Tensor data are slices of the
// memory mapping and become invalid after Close.
type File struct {
	Path     string
	Metadata map[string]string

	entries map[string]entry
	names   []string
	data    []byte // the data section
	closer  func() error
	closed  bool
}

// Open memory-maps a safetensors file read-only and parses its header.
func Open(path string) (*File, error) {
	data, unmap, err := fileio.Map(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	f, err := Parse(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	f.closer = unmap
	return f, nil
}

// Parse parses safetensors bytes already in memory; name is used in error
// messages. The File refers to data rather than copying it.
func Parse(data []byte, name string) (*File, error) {
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", name, err)
	}
	f.Path = name
	return f, nil
}

func parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("file of %d bytes is too short for the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderBytes {
		return nil, fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeaderBytes)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("header length %d exceeds the %d bytes after it (truncated file?)", n, len(data)-8)
	}
	hdr := data[8 : 8+n]
	f := &File{entries: map[string]entry{}, data: data[8+n:]}
	if err := f.parseHeader(hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := f.checkExtents(); err != nil {
		return nil, err
	}
	f.names = make([]string, 0, len(f.entries))
	for name := range f.entries {
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	return f, nil
}

// record is a tensor entry as JSON; pointers tell missing fields apart.
type record struct {
	DType       *string   `json:"dtype"`
	Shape       *[]uint64 `json:"shape"`
	DataOffsets *[]uint64 `json:"data_offsets"`
}

func (f *File) parseHeader(hdr []byte) error {
	if !utf8.Valid(hdr) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object (starts with %q)", hdr[:min(len(hdr), 16)])
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name := tok.(string) // object keys are always strings
		if seen[name] {
			return fmt.Errorf("%q appears twice", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := dec.Decode(&f.Metadata); err != nil {
				return fmt.Errorf("__metadata__: must map strings to strings: %w", err)
			}
			continue
		}
		var r record
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("tensor %q: want {\"dtype\": name, \"shape\": [non-negative integers], \"data_offsets\": [begin, end]}: %w", name, err)
		}
		e, err := r.entry()
		if err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
		f.entries[name] = e
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func (r record) entry() (entry, error) {
	switch {
	case r.DType == nil:
		return entry{}, errors.New("missing dtype")
	case r.Shape == nil:
		return entry{}, errors.New("missing shape")
	case r.DataOffsets == nil:
		return entry{}, errors.New("missing data_offsets")
	}
	size, ok := dtypeSizes[*r.DType]
	if !ok {
		return entry{}, fmt.Errorf("unknown dtype %q", *r.DType)
	}
	offs := *r.DataOffsets
	if len(offs) != 2 {
		return entry{}, fmt.Errorf("data_offsets has %d numbers, want 2", len(offs))
	}
	e := entry{dtype: *r.DType, begin: offs[0], end: offs[1], shape: make([]int, len(*r.Shape))}
	if e.end < e.begin {
		return entry{}, fmt.Errorf("data_offsets [%d, %d] run backwards", e.begin, e.end)
	}
	// Bound the element count (ignoring zero dimensions, so that no
	// product overflows) to 2^60, ample for any model.
	elems, bounded := uint64(1), uint64(1)
	for i, d := range *r.Shape {
		hi, lo := bits.Mul64(bounded, max(d, 1))
		if hi != 0 || lo > 1<<60 {
			return entry{}, fmt.Errorf("shape %v is too large", *r.Shape)
		}
		bounded = lo
		elems *= d
		e.shape[i] = int(d)
	}
	if want := elems * size; want != e.end-e.begin {
		return entry{}, fmt.Errorf("%s %v needs %d bytes but data_offsets [%d, %d] hold %d", e.dtype, e.shape, want, e.begin, e.end, e.end-e.begin)
	}
	return e, nil
}

// checkExtents verifies that every tensor lies within the data section and
// that no two share bytes. Gaps are tolerated.
func (f *File) checkExtents() error {
	type ext struct {
		name string
		e    entry
	}
	var exts []ext
	for name, e := range f.entries {
		if e.end > uint64(len(f.data)) {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] run past the %d-byte data section", name, e.begin, e.end, len(f.data))
		}
		if e.end > e.begin {
			exts = append(exts, ext{name, e})
		}
	}
	sort.Slice(exts, func(i, j int) bool {
		if exts[i].e.begin != exts[j].e.begin {
			return exts[i].e.begin < exts[j].e.begin
		}
		return exts[i].name < exts[j].name
	})
	for i := 1; i < len(exts); i++ {
		p, c := exts[i-1], exts[i]
		if c.e.begin < p.e.end {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q at [%d, %d]", c.name, c.e.begin, c.e.end, p.name, p.e.begin, p.e.end)
		}
	}
	return nil
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Has reports whether the file holds the named tensor.
func (f *File) Has(name string) bool {
	_, ok := f.entries[name]
	return ok
}

// Info returns a tensor's stored dtype (safetensors spelling, e.g. "I64")
// and shape, for tensors Tensor cannot return or callers that only inspect.
func (f *File) Info(name string) (dtype string, shape []int, ok bool) {
	e, ok := f.entries[name]
	if !ok {
		return "", nil, false
	}
	return e.dtype, append([]int(nil), e.shape...), true
}

// Tensor returns the named tensor as a view of the mapped file. F32, F16
// and BF16 are supported; other dtypes give an error wrapping
// ErrUnsupportedDType.
func (f *File) Tensor(name string) (tensor.Tensor, error) {
	e, ok := f.entries[name]
	if !ok {
		return tensor.Tensor{}, fmt.Errorf("safetensors %s: no tensor %q", f.Path, name)
	}
	if f.closed {
		return tensor.Tensor{}, fmt.Errorf("safetensors %s: tensor %q: file is closed", f.Path, name)
	}
	var dt tensor.DType
	switch e.dtype {
	case "F32":
		dt = tensor.F32
	case "F16":
		dt = tensor.F16
	case "BF16":
		dt = tensor.BF16
	default:
		return tensor.Tensor{}, fmt.Errorf("safetensors %s: tensor %q: %w %s (supported: F32, F16, BF16)", f.Path, name, ErrUnsupportedDType, e.dtype)
	}
	t := tensor.Tensor{Name: name, DType: dt, Shape: append([]int(nil), e.shape...), Data: f.data[e.begin:e.end:e.end]}
	if err := t.Validate(); err != nil {
		return tensor.Tensor{}, fmt.Errorf("safetensors %s: %w", f.Path, err)
	}
	return t, nil
}

// Close releases the memory mapping; it is safe to call more than once.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if c := f.closer; c != nil {
		f.closer = nil
		if err := c(); err != nil {
			return fmt.Errorf("safetensors %s: unmap: %w", f.Path, err)
		}
	}
	return nil
}
