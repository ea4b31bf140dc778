package tensor_test

import (
	"math/rand/v2"
	"testing"

	"persona/tensor"
)

// BenchmarkDecode: decoding 4,096 elements per type, the inner loop of the
// generic (no SIMD) quantized kernels.
func BenchmarkDecode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []tensor.DType{tensor.F16, tensor.Q8_0, tensor.Q4_0, tensor.Q5_1, tensor.Q4_K, tensor.Q6_K} {
		rb, _ := dt.RowBytes(4096)
		src := make([]byte, rb)
		for i := range src {
			src[i] = byte(r.IntN(256))
		}
		dst := make([]float32, 4096)
		b.Run(dt.String(), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				tensor.Decode(dst, dt, src)
			}
		})
	}
}

// BenchmarkEncode: quantizing 4,096 normal values per type, what persona
// quantize spends its time on.
func BenchmarkEncode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q5_0, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K} {
		b.Run(dt.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if _, err := tensor.Encode(dt, x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
