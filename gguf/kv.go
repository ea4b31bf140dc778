package gguf

import "math"

// Get returns the raw value of a metadata key, typed as described on KV.
func (f *File) Get(key string) (any, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

// String returns a string-valued key.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.(string)
	return s, ok
}

// Uint returns an integer-valued key of any integer type, as long as it is
// not negative; writers disagree on whether counts are uint32, int32 or
// uint64, and callers should not have to care.
func (f *File) Uint(key string) (uint64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Float returns a numeric key of any float or integer type as float64
// (e.g. a layer-norm epsilon, or a rope base some writers store as integer).
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	if u, ok := f.Uint(key); ok {
		return float64(u), true
	}
	return 0, false
}

// Bool returns a bool-valued key.
func (f *File) Bool(key string) (bool, bool) {
	v, _ := f.Get(key)
	b, ok := v.(bool)
	return b, ok
}

// Strings returns a string-array key, such as tokenizer.ggml.tokens.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Get(key)
	s, ok := v.([]string)
	return s, ok
}

// Float32s returns a float-array key, such as tokenizer.ggml.scores. A
// float64 array is converted (with rounding).
func (f *File) Float32s(key string) ([]float32, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case []float32:
		return x, true
	case []float64:
		out := make([]float32, len(x))
		for i, e := range x {
			out[i] = float32(e)
		}
		return out, true
	}
	return nil, false
}

// Int32s returns an integer-array key, such as tokenizer.ggml.token_type,
// as int32s. Arrays of other integer types are converted when every element
// fits in an int32, since writers differ in which type they pick.
func (f *File) Int32s(key string) ([]int32, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case []int32:
		return x, true
	case []uint8:
		return convInts(x)
	case []int8:
		return convInts(x)
	case []uint16:
		return convInts(x)
	case []int16:
		return convInts(x)
	case []uint32:
		return convInts(x)
	case []uint64:
		return convInts(x)
	case []int64:
		return convInts(x)
	}
	return nil, false
}

func convInts[T uint8 | int8 | uint16 | int16 | uint32 | uint64 | int64](x []T) ([]int32, bool) {
	out := make([]int32, len(x))
	for i, e := range x {
		if e < 0 && int64(e) < math.MinInt32 || e > 0 && uint64(e) > math.MaxInt32 {
			return nil, false
		}
		out[i] = int32(e)
	}
	return out, true
}
