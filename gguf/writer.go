package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"persona/internal/fileio"
	"persona/tensor"
)

// Writer builds a GGUF v3 file: metadata in insertion order, then tensors in
// insertion order, each aligned to 32 bytes (or general.alignment). It exists so that the project
// can export what it computes (steering vectors, converted models) in the
// format llama.cpp loads.
type Writer struct {
	kvs     []KV
	keys    map[string]bool
	tensors []tensor.Tensor
	names   map[string]bool
	err     error // first AddKV problem, reported by WriteFile
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{keys: map[string]bool{}, names: map[string]bool{}}
}

// AddKV appends a metadata entry. The value must be one of the Go types
// listed on KV; the Go type picks the GGUF type, so pass uint32(5) rather
// than 5 where llama.cpp expects a uint32. A bad key or value is reported by
// WriteFile, so that a sequence of AddKV calls needs no error handling.
func (w *Writer) AddKV(key string, value any) {
	if w.err != nil {
		return
	}
	switch {
	case key == "":
		w.err = errors.New("empty metadata key")
	case w.keys[key]:
		w.err = fmt.Errorf("key %q: added twice", key)
	case key == "general.alignment":
		// The layout follows this key, so it must be what readers accept.
		if a, ok := value.(uint32); !ok || a == 0 || a&(a-1) != 0 || a > 1<<30 {
			w.err = fmt.Errorf("key %q: %v (%T) must be a uint32 power of two", key, value, value)
		}
	default:
		if _, err := valueTypeOf(value); err != nil {
			w.err = fmt.Errorf("key %q: %w", key, err)
		}
	}
	if w.err != nil {
		return
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, KV{Key: key, Value: value})
}

// AddTensor appends a tensor (shape outermost-first; it is stored
// innermost-first as GGUF requires). The data is referenced, not copied, and
// must stay valid until WriteFile returns.
func (w *Writer) AddTensor(t tensor.Tensor) error {
	if t.Name == "" {
		return errors.New("gguf writer: tensor with empty name")
	}
	if w.names[t.Name] {
		return fmt.Errorf("gguf writer: tensor %q: added twice", t.Name)
	}
	if len(t.Shape) > MaxDims {
		return fmt.Errorf("gguf writer: tensor %q: %d dimensions, GGUF allows at most %d", t.Name, len(t.Shape), MaxDims)
	}
	if _, err := ggmlType(t.DType); err != nil {
		return fmt.Errorf("gguf writer: tensor %q: %w", t.Name, err)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("gguf writer: %w", err)
	}
	w.names[t.Name] = true
	w.tensors = append(w.tensors, t)
	return nil
}

func ggmlType(d tensor.DType) (Type, error) {
	switch d {
	case tensor.F32:
		return TypeF32, nil
	case tensor.F16:
		return TypeF16, nil
	case tensor.BF16:
		return TypeBF16, nil
	}
	for t, dt := range quantTypes {
		if dt == d {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w %v", ErrUnsupportedType, d)
}

// valueTypeOf maps a Go value to its GGUF tag (for arrays, the array tag).
func valueTypeOf(v any) (valueType, error) {
	switch v.(type) {
	case uint8:
		return vUint8, nil
	case int8:
		return vInt8, nil
	case uint16:
		return vUint16, nil
	case int16:
		return vInt16, nil
	case uint32:
		return vUint32, nil
	case int32:
		return vInt32, nil
	case uint64:
		return vUint64, nil
	case int64:
		return vInt64, nil
	case float32:
		return vFloat32, nil
	case float64:
		return vFloat64, nil
	case bool:
		return vBool, nil
	case string:
		return vString, nil
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []uint64, []int64,
		[]float32, []float64, []bool, []string:
		return vArray, nil
	}
	return 0, fmt.Errorf("unsupported value type %T (use a sized type such as uint32 or int32, or a slice of one)", v)
}

// enc appends little-endian GGUF v3 encodings to a buffer.
type enc struct{ bytes.Buffer }

func (e *enc) u32(v uint32) { e.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *enc) u64(v uint64) { e.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (e *enc) str(s string) { e.u64(uint64(len(s))); e.WriteString(s) }

func (e *enc) value(v any) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		e.WriteByte(x)
	case int8:
		e.WriteByte(byte(x))
	case uint16:
		e.Write(le.AppendUint16(nil, x))
	case int16:
		e.Write(le.AppendUint16(nil, uint16(x)))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float32:
		e.u32(math.Float32bits(x))
	case float64:
		e.u64(math.Float64bits(x))
	case bool:
		if x {
			e.WriteByte(1)
		} else {
			e.WriteByte(0)
		}
	case string:
		e.str(x)
	case []uint8:
		arr(e, vUint8, x)
	case []int8:
		arr(e, vInt8, x)
	case []uint16:
		arr(e, vUint16, x)
	case []int16:
		arr(e, vInt16, x)
	case []uint32:
		arr(e, vUint32, x)
	case []int32:
		arr(e, vInt32, x)
	case []uint64:
		arr(e, vUint64, x)
	case []int64:
		arr(e, vInt64, x)
	case []float32:
		arr(e, vFloat32, x)
	case []float64:
		arr(e, vFloat64, x)
	case []bool:
		arr(e, vBool, x)
	case []string:
		arr(e, vString, x)
	}
}

func arr[T any](e *enc, t valueType, xs []T) {
	e.u32(uint32(t))
	e.u64(uint64(len(xs)))
	for _, x := range xs {
		e.value(x)
	}
}

// pad returns the zero bytes that bring n to a multiple of the default
// alignment.
func pad(n uint64) uint64 { return padTo(n, DefaultAlignment) }

func padTo(n, align uint64) uint64 { return (align - n%align) % align }

// alignment is general.alignment if the caller set it, else the default.
func (w *Writer) alignment() uint64 {
	for _, kv := range w.kvs {
		if kv.Key == "general.alignment" {
			return uint64(kv.Value.(uint32))
		}
	}
	return DefaultAlignment
}

// header encodes everything before the tensor data, padding included.
func (w *Writer) header() []byte {
	align := w.alignment()
	var e enc
	e.WriteString("GGUF")
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		t, _ := valueTypeOf(kv.Value)
		e.str(kv.Key)
		e.u32(uint32(t))
		e.value(kv.Value)
	}
	var off uint64
	for _, t := range w.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for i := len(t.Shape) - 1; i >= 0; i-- {
			e.u64(uint64(t.Shape[i]))
		}
		gt, _ := ggmlType(t.DType)
		e.u32(uint32(gt))
		e.u64(off)
		off += uint64(len(t.Data))
		off += padTo(off, align)
	}
	e.Write(make([]byte, padTo(uint64(e.Len()), align)))
	return e.Bytes()
}

// WriteTo writes the file to out; WriteFile is the usual entry point.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.err != nil {
		return 0, fmt.Errorf("gguf writer: %w", w.err)
	}
	n, err := out.Write(w.header())
	total := int64(n)
	if err != nil {
		return total, err
	}
	zeros := make([]byte, w.alignment())
	for _, t := range w.tensors {
		n, err := out.Write(t.Data)
		total += int64(n)
		if err != nil {
			return total, err
		}
		n, err = out.Write(zeros[:padTo(uint64(len(t.Data)), uint64(len(zeros)))])
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// WriteFile writes a GGUF v3 file (tensor data aligned to 32 bytes, or to
// general.alignment if added) atomically: into a temporary file in the
// same directory, synced, then renamed over path, so that readers never see
// a half-written model.
func (w *Writer) WriteFile(path string) error {
	if w.err != nil {
		return fmt.Errorf("gguf %s: %w", path, w.err)
	}
	err := fileio.WriteAtomic(path, func(out io.Writer) error {
		_, err := w.WriteTo(out)
		return err
	})
	if err != nil {
		return fmt.Errorf("gguf %s: %w", path, err)
	}
	return nil
}
