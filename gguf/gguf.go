// Package gguf reads and writes GGUF, the single-file model format of
// llama.cpp and ollama: a header of typed key/value metadata and tensor
// records, followed by aligned tensor data.
//
// Reading memory-maps the file and hands out tensors as slices of the
// mapping, so opening a multi-gigabyte model costs page-table entries, not
// copies. Because GGUF files are downloaded from anywhere, the parser treats
// every byte as hostile: counts and lengths are checked against the bytes
// that remain before anything is allocated, every tensor must lie inside
// the file without overlapping another, and every error names the file, the
// field and what was wrong.
//
// Versions 1, 2 and 3 are read (little-endian only); the writer produces
// version 3. The package knows nothing about model architectures.
package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"

	"persona/internal/fileio"
	"persona/tensor"
)

// ErrUnsupportedType is wrapped by Tensor when a tensor's GGML type has no
// tensor.DType (for example Q4_K), so callers can tell "this model needs a
// kernel we lack" from "this file is broken".
var ErrUnsupportedType = errors.New("unsupported tensor type")

// MaxDims is the largest number of dimensions a tensor record may have; it
// is GGML's own limit, so larger values only occur in corrupt files.
const MaxDims = 4

// maxElements bounds a tensor's element count (2^60), far beyond any real
// model yet small enough that byte sizes fit in a uint64 and an int.
const maxElements = 1 << 60

// DefaultAlignment is the tensor data alignment when general.alignment is
// absent.
const DefaultAlignment = 32

// KV is one metadata entry. Value holds uint8, int8, uint16, int16, uint32,
// int32, uint64, int64, float32, float64, bool or string for scalars, and a
// typed slice ([]uint8, []int8, []uint16, []int16, []uint32, []int32,
// []uint64, []int64, []float32, []float64, []bool, []string) for arrays, so
// that the stored GGUF type survives a read/write round trip.
type KV struct {
	Key   string
	Value any
}

// TensorInfo is a tensor record as stored in the header. Dims are GGML's
// order, innermost (contiguous) dimension first; Offset is relative to
// File.DataOffset.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   Type
	Offset uint64
}

// NumElements returns the product of the dimensions (1 for a scalar).
func (ti TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range ti.Dims {
		n *= d
	}
	return n
}

// Shape returns the dimensions outermost-first, the order tensor.Tensor and
// safetensors use.
func (ti TensorInfo) Shape() []int {
	s := make([]int, len(ti.Dims))
	for i, d := range ti.Dims {
		s[len(s)-1-i] = int(d)
	}
	return s
}

// File is a parsed GGUF file. KV and Tensors keep the file's order. Tensor
// data returned by Tensor are slices of the memory mapping and become
// invalid after Close. A File is read-only after parsing, so its methods
// may be called from several goroutines at once, except Close.
type File struct {
	Path       string
	Version    uint32
	KV         []KV
	Tensors    []TensorInfo
	Alignment  uint64
	DataOffset uint64

	data    []byte
	kvIndex map[string]int
	tIndex  map[string]int
	closer  func() error
	closed  bool
}

// Open memory-maps a GGUF file read-only and parses its header. Tensor data
// is never copied. Close the file when its tensors are no longer used.
func Open(path string) (*File, error) {
	data, unmap, err := fileio.Map(path)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	f, err := Parse(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	f.closer = unmap
	return f, nil
}

// Parse parses GGUF bytes already in memory; name is used in error messages.
// The File refers to data rather than copying it. Open uses Parse, and so
// does the fuzz test.
func Parse(data []byte, name string) (*File, error) {
	f, err := parse(data, name)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", name, err)
	}
	return f, nil
}

// Close releases the memory mapping. Tensors obtained earlier must not be
// used afterwards. Close is safe to call more than once.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.closer != nil {
		c := f.closer
		f.closer = nil
		if err := c(); err != nil {
			return fmt.Errorf("gguf %s: unmap: %w", f.Path, err)
		}
	}
	return nil
}

// reader walks the header, checking every read against the bytes left.
type reader struct {
	b   []byte
	off uint64
	v1  bool // GGUF v1 stores counts and lengths as uint32
}

func (r *reader) left() uint64 { return uint64(len(r.b)) - r.off }

func (r *reader) take(n uint64, what string) ([]byte, error) {
	if n > r.left() {
		return nil, fmt.Errorf("%s: need %d bytes at offset %d, only %d left (truncated file?)", what, n, r.off, r.left())
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// count reads a count or length: uint32 in v1, uint64 later.
func (r *reader) count(what string) (uint64, error) {
	if r.v1 {
		v, err := r.u32(what)
		return uint64(v), err
	}
	return r.u64(what)
}

func (r *reader) countSize() uint64 {
	if r.v1 {
		return 4
	}
	return 8
}

func (r *reader) str(what string) (string, error) {
	n, err := r.count(what + " length")
	if err != nil {
		return "", err
	}
	if n > r.left() {
		return "", fmt.Errorf("%s: length %d exceeds the %d bytes left", what, n, r.left())
	}
	b, _ := r.take(n, what)
	return string(b), nil
}

func parse(data []byte, name string) (*File, error) {
	r := &reader{b: data}
	magic, err := r.take(4, "magic")
	if err != nil {
		return nil, fmt.Errorf("not a GGUF file: %w", err)
	}
	switch string(magic) {
	case "GGUF":
	case "FUGG":
		return nil, errors.New("big-endian GGUF is not supported")
	default:
		return nil, fmt.Errorf("not a GGUF file: magic %q, want \"GGUF\"", magic)
	}
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	switch version {
	case 1, 2, 3:
	default:
		if be := bits.ReverseBytes32(version); be >= 1 && be <= 3 {
			return nil, fmt.Errorf("big-endian GGUF (version %d stored big-endian) is not supported", be)
		}
		return nil, fmt.Errorf("unsupported GGUF version %d (this reader knows 1, 2 and 3)", version)
	}
	r.v1 = version == 1
	f := &File{Path: name, Version: version, data: data}

	nTensors, err := r.count("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := r.count("metadata count")
	if err != nil {
		return nil, err
	}
	// Smallest encodings: a KV is a key length, a type tag and a one-byte
	// value; a tensor record is a name length, n_dims, type and offset.
	minKV := r.countSize() + 4 + 1
	if nKV > r.left()/minKV {
		return nil, fmt.Errorf("metadata count %d cannot fit in the %d bytes left", nKV, r.left())
	}
	f.KV = make([]KV, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := r.str(fmt.Sprintf("metadata entry %d key", i))
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, fmt.Errorf("metadata entry %d: empty key", i)
		}
		if _, dup := f.kvIndex[key]; dup {
			return nil, fmt.Errorf("key %q: duplicate key", key)
		}
		t, err := r.u32(fmt.Sprintf("key %q type", key))
		if err != nil {
			return nil, err
		}
		v, err := r.value(valueType(t))
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Get("general.alignment"); ok {
		// uint32, as llama.cpp requires; the writer enforces the same.
		a, ok := v.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<30 {
			return nil, fmt.Errorf("key \"general.alignment\": %v (%T) is not a uint32 power of two up to 2^30", v, v)
		}
		f.Alignment = uint64(a)
	}

	minTensor := r.countSize() + 4 + 4 + 8
	if nTensors > r.left()/minTensor {
		return nil, fmt.Errorf("tensor count %d cannot fit in the %d bytes left", nTensors, r.left())
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tIndex = make(map[string]int, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		ti, err := r.tensorInfo(i)
		if err != nil {
			return nil, err
		}
		if _, dup := f.tIndex[ti.Name]; dup {
			return nil, fmt.Errorf("tensor %q: duplicate tensor name", ti.Name)
		}
		if ti.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", ti.Name, ti.Offset, f.Alignment)
		}
		f.tIndex[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}

	// Tensor data starts at the next alignment boundary. A vocab-only file
	// may end before that boundary, which is fine when it has no tensors.
	f.DataOffset = (r.off + f.Alignment - 1) / f.Alignment * f.Alignment
	if err := f.checkExtents(); err != nil {
		return nil, err
	}
	return f, nil
}

// tensorInfo reads one tensor record and checks what can be checked alone.
func (r *reader) tensorInfo(i uint64) (TensorInfo, error) {
	var ti TensorInfo
	name, err := r.str(fmt.Sprintf("tensor %d name", i))
	if err != nil {
		return ti, err
	}
	if name == "" {
		return ti, fmt.Errorf("tensor %d: empty name", i)
	}
	ti.Name = name
	nd, err := r.u32(fmt.Sprintf("tensor %q n_dims", name))
	if err != nil {
		return ti, err
	}
	if nd > MaxDims {
		return ti, fmt.Errorf("tensor %q: %d dimensions, at most %d allowed", name, nd, MaxDims)
	}
	ti.Dims = make([]uint64, nd)
	elems := uint64(1)
	for j := range ti.Dims {
		d, err := r.count(fmt.Sprintf("tensor %q dimension %d", name, j))
		if err != nil {
			return ti, err
		}
		// Bound the product of the non-zero dimensions, so that no later
		// arithmetic (bytes, int conversion) can overflow even when another
		// dimension is zero.
		hi, lo := bits.Mul64(elems, max(d, 1))
		if hi != 0 || lo > maxElements {
			return ti, fmt.Errorf("tensor %q: dimension %d of %d makes the element count overflow", name, j, d)
		}
		elems = lo
		ti.Dims[j] = d
	}
	t, err := r.u32(fmt.Sprintf("tensor %q type", name))
	if err != nil {
		return ti, err
	}
	ti.Type = Type(t)
	if _, ok := typeTable[ti.Type]; !ok {
		return ti, fmt.Errorf("tensor %q: unknown GGML type %d", name, t)
	}
	if ti.Offset, err = r.u64(fmt.Sprintf("tensor %q offset", name)); err != nil {
		return ti, err
	}
	return ti, nil
}

// storedBytes is the number of bytes a tensor occupies, counting whole
// blocks over all its elements. That is how writers lay the data out even
// when rows are not whole blocks, a case Tensor reports precisely.
func storedBytes(ti TensorInfo) uint64 {
	info := typeTable[ti.Type]
	blocks := (ti.NumElements() + info.block - 1) / info.block
	return blocks * info.bytes // elements ≤ 2^60, bytes per element ≤ 8: no overflow
}

// checkExtents verifies that every tensor lies within the file and that no
// two tensors share bytes.
func (f *File) checkExtents() error {
	type ext struct {
		i          int
		start, end uint64
	}
	exts := make([]ext, 0, len(f.Tensors))
	size := uint64(len(f.data))
	for i, ti := range f.Tensors {
		n := storedBytes(ti)
		start := f.DataOffset + ti.Offset
		if start < f.DataOffset || start+n < start || start+n > size {
			return fmt.Errorf("tensor %q: %s %v needs bytes [%d, %d) of the data section (file offset %d), but the file has %d bytes",
				ti.Name, ti.Type, ti.Dims, ti.Offset, ti.Offset+n, f.DataOffset, size)
		}
		if n > 0 {
			exts = append(exts, ext{i, start, start + n})
		}
	}
	sort.Slice(exts, func(a, b int) bool { return exts[a].start < exts[b].start })
	for k := 1; k < len(exts); k++ {
		p, c := exts[k-1], exts[k]
		if c.start < p.end {
			return fmt.Errorf("tensor %q: bytes [%d, %d) overlap tensor %q at [%d, %d)",
				f.Tensors[c.i].Name, c.start, c.end, f.Tensors[p.i].Name, p.start, p.end)
		}
	}
	return nil
}

// value reads one metadata value of the given type.
func (r *reader) value(t valueType) (any, error) {
	switch t {
	case vString:
		return r.str("string value")
	case vArray:
		return r.array()
	case vBool:
		b, err := r.take(1, "bool value")
		if err != nil {
			return nil, err
		}
		if b[0] > 1 {
			return nil, fmt.Errorf("bool value %d is neither 0 nor 1", b[0])
		}
		return b[0] == 1, nil
	}
	size := t.fixedSize()
	if size == 0 {
		return nil, fmt.Errorf("unknown value type %d", uint32(t))
	}
	b, err := r.take(size, t.String()+" value")
	if err != nil {
		return nil, err
	}
	return scalar(t, b), nil
}

// scalar decodes a fixed-size value from exactly its bytes.
func scalar(t valueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case vUint8:
		return b[0]
	case vInt8:
		return int8(b[0])
	case vUint16:
		return le.Uint16(b)
	case vInt16:
		return int16(le.Uint16(b))
	case vUint32:
		return le.Uint32(b)
	case vInt32:
		return int32(le.Uint32(b))
	case vFloat32:
		return math.Float32frombits(le.Uint32(b))
	case vUint64:
		return le.Uint64(b)
	case vInt64:
		return int64(le.Uint64(b))
	case vFloat64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("gguf: scalar of " + t.String())
}

// fixedArray decodes n elements of size bytes each.
func fixedArray[T any](b []byte, n, size uint64, dec func([]byte) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = dec(b[uint64(i)*size:])
	}
	return out
}

// array reads an array value into a typed slice. Nested arrays are refused:
// GGML does not produce them and no caller has a use for them.
func (r *reader) array() (any, error) {
	et, err := r.u32("array element type")
	if err != nil {
		return nil, err
	}
	t := valueType(et)
	n, err := r.count("array length")
	if err != nil {
		return nil, err
	}
	switch {
	case t == vArray:
		return nil, errors.New("nested arrays are not supported")
	case t == vString:
		if n > r.left()/r.countSize() {
			return nil, fmt.Errorf("array of %d strings cannot fit in the %d bytes left", n, r.left())
		}
		out := make([]string, n)
		for i := range out {
			s, err := r.str(fmt.Sprintf("string %d of %d", i, n))
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case t.fixedSize() == 0:
		return nil, fmt.Errorf("array of unknown value type %d", et)
	}
	size := t.fixedSize()
	if n > r.left()/size {
		return nil, fmt.Errorf("array of %d %s elements needs %d bytes per element, only %d bytes left", n, t, size, r.left())
	}
	b, _ := r.take(n*size, "array")
	le := binary.LittleEndian
	switch t {
	case vUint8:
		return append([]uint8(nil), b...), nil
	case vInt8:
		return fixedArray(b, n, 1, func(p []byte) int8 { return int8(p[0]) }), nil
	case vBool:
		for i, v := range b {
			if v > 1 {
				return nil, fmt.Errorf("bool element %d is %d, neither 0 nor 1", i, v)
			}
		}
		return fixedArray(b, n, 1, func(p []byte) bool { return p[0] == 1 }), nil
	case vUint16:
		return fixedArray(b, n, 2, le.Uint16), nil
	case vInt16:
		return fixedArray(b, n, 2, func(p []byte) int16 { return int16(le.Uint16(p)) }), nil
	case vUint32:
		return fixedArray(b, n, 4, le.Uint32), nil
	case vInt32:
		return fixedArray(b, n, 4, func(p []byte) int32 { return int32(le.Uint32(p)) }), nil
	case vFloat32:
		return fixedArray(b, n, 4, func(p []byte) float32 { return math.Float32frombits(le.Uint32(p)) }), nil
	case vUint64:
		return fixedArray(b, n, 8, le.Uint64), nil
	case vInt64:
		return fixedArray(b, n, 8, func(p []byte) int64 { return int64(le.Uint64(p)) }), nil
	case vFloat64:
		return fixedArray(b, n, 8, func(p []byte) float64 { return math.Float64frombits(le.Uint64(p)) }), nil
	}
	return nil, fmt.Errorf("array of unknown value type %d", et)
}

// Tensor returns the named tensor as a view of the mapped file: the shape
// reversed to outermost-first and the GGML type mapped to a tensor.DType.
// Types without a DType give an error wrapping ErrUnsupportedType; a Q8_0
// tensor whose rows are not whole 32-element blocks is refused here (Open
// accepts such files so their metadata and other tensors stay usable).
func (f *File) Tensor(name string) (tensor.Tensor, error) {
	i, ok := f.tIndex[name]
	if !ok {
		return tensor.Tensor{}, fmt.Errorf("gguf %s: no tensor %q", f.Path, name)
	}
	if f.closed {
		return tensor.Tensor{}, fmt.Errorf("gguf %s: tensor %q: file is closed", f.Path, name)
	}
	ti := f.Tensors[i]
	var dt tensor.DType
	switch ti.Type {
	case TypeF32:
		dt = tensor.F32
	case TypeF16:
		dt = tensor.F16
	case TypeBF16:
		dt = tensor.BF16
	default:
		var ok bool
		if dt, ok = quantTypes[ti.Type]; !ok {
			return tensor.Tensor{}, fmt.Errorf("gguf %s: tensor %q: %w %s (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)",
				f.Path, name, ErrUnsupportedType, ti.Type)
		}
	}
	t := tensor.Tensor{Name: name, DType: dt, Shape: ti.Shape()}
	rb, err := dt.RowBytes(t.Cols())
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("gguf %s: tensor %q: %w", f.Path, name, err)
	}
	n := uint64(rb) * uint64(t.Rows())
	start := f.DataOffset + ti.Offset
	if n > storedBytes(ti) || start+n > uint64(len(f.data)) { // cannot happen after parse; kept as a guard
		return tensor.Tensor{}, fmt.Errorf("gguf %s: tensor %q: %d bytes at offset %d run past the end of the file", f.Path, name, n, start)
	}
	t.Data = f.data[start : start+n : start+n]
	if err := t.Validate(); err != nil {
		return tensor.Tensor{}, fmt.Errorf("gguf %s: %w", f.Path, err)
	}
	return t, nil
}

// TensorInfo returns the record of the named tensor, for callers that need
// its stored type or dimensions without reading it.
func (f *File) TensorInfo(name string) (TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}
