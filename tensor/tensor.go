// Package tensor describes weight tensors as they lie in model files: an
// element type, a shape and the raw little-endian bytes, usually a slice of a
// memory-mapped file. It converts the storage types the engine supports
// (F32, F16, BF16, Q8_0) to float32 without owning any model logic, so the
// file-format packages (gguf, safetensors) and the compute kernels can share
// one vocabulary.
package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// DType is the storage type of a tensor's elements.
type DType uint8

const (
	F32 DType = iota + 1
	F16
	BF16
	Q8_0 // blocks of 32 int8 values sharing one F16 scale (34 bytes a block), as in GGML
)

// Q8BlockSize is the number of elements a Q8_0 block holds.
const Q8BlockSize = 32

// q8BlockBytes is the size of one Q8_0 block: an F16 scale and 32 int8 values.
const q8BlockBytes = 2 + Q8BlockSize

func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	case Q8_0:
		return "Q8_0"
	}
	if n, ok := quantNames[d]; ok {
		return n
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// RowBytes returns the number of bytes a row of n elements occupies, or an
// error when n cannot be stored in this type (Q8_0 rows must be whole blocks).
func (d DType) RowBytes(n int) (int, error) {
	switch d {
	case F32:
		return 4 * n, nil
	case F16, BF16:
		return 2 * n, nil
	}
	if l, ok := blockLayouts[d]; ok {
		if n%l.elems != 0 {
			return 0, fmt.Errorf("%v row of %d elements is not a whole number of %d-element blocks", d, n, l.elems)
		}
		return n / l.elems * l.bytes, nil
	}
	return 0, fmt.Errorf("unsupported dtype %v", d)
}

// Tensor is a view of a tensor's bytes. Shape is outermost-first (row-major,
// as in PyTorch and safetensors): a linear layer's weight is [out, in].
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Len returns the number of elements.
func (t *Tensor) Len() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Rows returns the number of rows (product of all but the innermost dimension)
// and Cols the innermost dimension.
func (t *Tensor) Rows() int { return t.Len() / max(t.Cols(), 1) }

// Cols returns the innermost dimension (1 for a scalar).
func (t *Tensor) Cols() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[len(t.Shape)-1]
}

// Validate checks that Data holds exactly the bytes the shape and type call for.
func (t *Tensor) Validate() error {
	for _, s := range t.Shape {
		if s < 0 {
			return fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
	}
	rb, err := t.DType.RowBytes(t.Cols())
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if want := rb * t.Rows(); want != len(t.Data) {
		return fmt.Errorf("tensor %q: %v %v needs %d bytes, have %d", t.Name, t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// F32 returns the elements of an F32 tensor without copying when the bytes are
// 4-byte aligned (memory-mapped files normally are), else a copy.
func (t *Tensor) F32() []float32 {
	if t.DType != F32 {
		panic("tensor: F32 on " + t.DType.String())
	}
	return BytesToF32(t.Data)
}

// BytesToF32 reinterprets little-endian float32 bytes, copying only when the
// slice is not 4-byte aligned.
func BytesToF32(b []byte) []float32 {
	n := len(b) / 4
	if n == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// F32ToBytes reinterprets float32s as their little-endian bytes (no copy).
func F32ToBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// DecodeRow converts row r of the tensor (Cols() elements) into dst.
func (t *Tensor) DecodeRow(dst []float32, r int) {
	rb, _ := t.DType.RowBytes(t.Cols())
	Decode(dst[:t.Cols()], t.DType, t.Data[r*rb:(r+1)*rb])
}

// ToF32 returns all elements as float32 (a copy unless the tensor is F32).
func (t *Tensor) ToF32() []float32 {
	if t.DType == F32 {
		return t.F32()
	}
	out := make([]float32, t.Len())
	for r := 0; r < t.Rows(); r++ {
		t.DecodeRow(out[r*t.Cols():], r)
	}
	return out
}

// Decode converts the encoded elements in src to float32s in dst; len(dst)
// elements are decoded.
func Decode(dst []float32, d DType, src []byte) {
	switch d {
	case F32:
		copy(dst, BytesToF32(src[:4*len(dst)]))
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case Q8_0:
		for b := 0; b < len(dst)/Q8BlockSize; b++ {
			blk := src[b*q8BlockBytes:]
			scale := F16ToF32(binary.LittleEndian.Uint16(blk))
			out := dst[b*Q8BlockSize : (b+1)*Q8BlockSize]
			for i := range out {
				out[i] = scale * float32(int8(blk[2+i]))
			}
		}
	default:
		if !d.Quantized() {
			panic("tensor: Decode of " + d.String())
		}
		decodeQuant(dst, d, src)
	}
}

// F16ToF32 converts an IEEE 754 half-precision value to float32.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: renormalise
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToF16 converts a float32 to IEEE 754 half precision, rounding to nearest even.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 0x1f: // overflow or Inf
		return sign | 0x7c00
	case exp <= 0: // subnormal or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the correct rounding
	}
	return sign | uint16(half)
}

// F32ToBF16 converts a float32 to bfloat16, rounding to nearest even.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Encode converts float32s to the given storage type. Q8_0 uses GGML's
// scheme: per block, scale = max|x|/127 and q = round(x/scale); the other
// quantized types are fitted per block (encodeQuant).
func Encode(d DType, src []float32) ([]byte, error) {
	rb, err := d.RowBytes(len(src))
	if err != nil {
		return nil, err
	}
	out := make([]byte, rb)
	switch d {
	case F32:
		copy(out, F32ToBytes(src))
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(out[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(out[2*i:], F32ToBF16(v))
		}
	case Q8_0:
		for b := 0; b < len(src)/Q8BlockSize; b++ {
			blk := src[b*Q8BlockSize : (b+1)*Q8BlockSize]
			var amax float32
			for _, v := range blk {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			scale := amax / 127
			inv := float32(0)
			if scale != 0 {
				inv = 1 / scale
			}
			o := out[b*q8BlockBytes:]
			binary.LittleEndian.PutUint16(o, F32ToF16(scale))
			for i, v := range blk {
				o[2+i] = byte(int8(math.Round(float64(v * inv))))
			}
		}
	default:
		if err := encodeQuant(out, d, src); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RowRange returns rows r0 … r0+n−1 of a matrix as a view sharing its
// bytes (rows of every type are whole blocks).
func (t *Tensor) RowRange(r0, n int) (Tensor, error) {
	rows, cols := t.Rows(), t.Cols()
	if len(t.Shape) != 2 || r0 < 0 || n < 0 || r0+n > rows {
		return Tensor{}, fmt.Errorf("tensor %q %v: rows %d…%d out of range", t.Name, t.Shape, r0, r0+n-1)
	}
	rb, err := t.DType.RowBytes(cols)
	if err != nil {
		return Tensor{}, err
	}
	return Tensor{Name: t.Name, DType: t.DType, Shape: []int{n, cols}, Data: t.Data[r0*rb : (r0+n)*rb]}, nil
}

// ConcatRows stacks matrices of one type and width into a new one named
// name, rows of the first first.
func ConcatRows(name string, parts ...Tensor) (Tensor, error) {
	out := Tensor{Name: name, DType: parts[0].DType, Shape: []int{0, parts[0].Cols()}}
	for _, p := range parts {
		if p.DType != out.DType || len(p.Shape) != 2 || p.Cols() != out.Shape[1] {
			return Tensor{}, fmt.Errorf("tensor %q: cannot stack %q (%v %v) under %v %v", name, p.Name, p.DType, p.Shape, out.DType, out.Shape)
		}
		out.Shape[0] += p.Shape[0]
		out.Data = append(out.Data, p.Data...)
	}
	return out, nil
}
