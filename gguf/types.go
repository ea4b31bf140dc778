package gguf

import (
	"fmt"

	"persona/tensor"
)

// Type is a GGML tensor element type as stored in a GGUF tensor record. The
// numbering is GGML's own, so that files written by llama.cpp and by this
// package agree; types GGML has since removed are deliberately absent and
// are refused when reading, because their sizes cannot be checked.
type Type uint32

// GGML tensor types. F32, F16, BF16, the legacy quants (Q4_0 … Q8_0) and the
// K-quants Q2_K … Q6_K can be turned into a tensor.Tensor; the others are
// known so that files holding them can still be opened (for their metadata
// and their other tensors) and bounds-checked.
const (
	TypeF32     Type = 0
	TypeF16     Type = 1
	TypeQ4_0    Type = 2
	TypeQ4_1    Type = 3
	TypeQ5_0    Type = 6
	TypeQ5_1    Type = 7
	TypeQ8_0    Type = 8
	TypeQ8_1    Type = 9
	TypeQ2_K    Type = 10
	TypeQ3_K    Type = 11
	TypeQ4_K    Type = 12
	TypeQ5_K    Type = 13
	TypeQ6_K    Type = 14
	TypeQ8_K    Type = 15
	TypeIQ2_XXS Type = 16
	TypeIQ2_XS  Type = 17
	TypeIQ3_XXS Type = 18
	TypeIQ1_S   Type = 19
	TypeIQ4_NL  Type = 20
	TypeIQ3_S   Type = 21
	TypeIQ2_S   Type = 22
	TypeIQ4_XS  Type = 23
	TypeI8      Type = 24
	TypeI16     Type = 25
	TypeI32     Type = 26
	TypeI64     Type = 27
	TypeF64     Type = 28
	TypeIQ1_M   Type = 29
	TypeBF16    Type = 30
	TypeTQ1_0   Type = 34
	TypeTQ2_0   Type = 35
	TypeMXFP4   Type = 39
)

// quantTypes maps the block-quantized GGML types the engine reads to
// tensor types.
var quantTypes = map[Type]tensor.DType{
	TypeQ4_0: tensor.Q4_0, TypeQ4_1: tensor.Q4_1, TypeQ5_0: tensor.Q5_0, TypeQ5_1: tensor.Q5_1, TypeQ8_0: tensor.Q8_0,
	TypeQ2_K: tensor.Q2_K, TypeQ3_K: tensor.Q3_K, TypeQ4_K: tensor.Q4_K, TypeQ5_K: tensor.Q5_K, TypeQ6_K: tensor.Q6_K,
}

// typeInfo is the storage layout of a GGML type: elements per block and
// bytes per block. Sizes follow GGML's block structs.
type typeInfo struct {
	name  string
	block uint64
	bytes uint64
}

var typeTable = map[Type]typeInfo{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", 32, 18},
	TypeQ4_1:    {"Q4_1", 32, 20},
	TypeQ5_0:    {"Q5_0", 32, 22},
	TypeQ5_1:    {"Q5_1", 32, 24},
	TypeQ8_0:    {"Q8_0", 32, 34},
	TypeQ8_1:    {"Q8_1", 32, 36},
	TypeQ2_K:    {"Q2_K", 256, 84},
	TypeQ3_K:    {"Q3_K", 256, 110},
	TypeQ4_K:    {"Q4_K", 256, 144},
	TypeQ5_K:    {"Q5_K", 256, 176},
	TypeQ6_K:    {"Q6_K", 256, 210},
	TypeQ8_K:    {"Q8_K", 256, 292},
	TypeIQ2_XXS: {"IQ2_XXS", 256, 66},
	TypeIQ2_XS:  {"IQ2_XS", 256, 74},
	TypeIQ3_XXS: {"IQ3_XXS", 256, 98},
	TypeIQ1_S:   {"IQ1_S", 256, 50},
	TypeIQ4_NL:  {"IQ4_NL", 32, 18},
	TypeIQ3_S:   {"IQ3_S", 256, 110},
	TypeIQ2_S:   {"IQ2_S", 256, 82},
	TypeIQ4_XS:  {"IQ4_XS", 256, 136},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", 256, 56},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", 256, 54},
	TypeTQ2_0:   {"TQ2_0", 256, 66},
	TypeMXFP4:   {"MXFP4", 32, 17},
}

// String returns GGML's name for the type (e.g. "Q8_0"), so that error
// messages use the words llama.cpp users know.
func (t Type) String() string {
	if ti, ok := typeTable[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("Type(%d)", uint32(t))
}

// BlockSize returns the number of elements one storage block of the type
// holds (1 for plain types, 32 or 256 for quantized ones), or 0 if unknown.
func (t Type) BlockSize() uint64 { return typeTable[t].block }

// BlockBytes returns the bytes one storage block occupies, or 0 if unknown.
func (t Type) BlockBytes() uint64 { return typeTable[t].bytes }

// valueType is the tag GGUF stores before each metadata value.
type valueType uint32

const (
	vUint8   valueType = 0
	vInt8    valueType = 1
	vUint16  valueType = 2
	vInt16   valueType = 3
	vUint32  valueType = 4
	vInt32   valueType = 5
	vFloat32 valueType = 6
	vBool    valueType = 7
	vString  valueType = 8
	vArray   valueType = 9
	vUint64  valueType = 10
	vInt64   valueType = 11
	vFloat64 valueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (v valueType) String() string {
	if int(v) < len(valueTypeNames) {
		return valueTypeNames[v]
	}
	return fmt.Sprintf("value type %d", uint32(v))
}

// fixedSize returns the encoded size of a scalar value type, or 0 for
// strings, arrays and unknown tags.
func (v valueType) fixedSize() uint64 {
	switch v {
	case vUint8, vInt8, vBool:
		return 1
	case vUint16, vInt16:
		return 2
	case vUint32, vInt32, vFloat32:
		return 4
	case vUint64, vInt64, vFloat64:
		return 8
	}
	return 0
}
