package kernel

import (
	"sync"

	"github.com/viterin/vek/vek32"
)

// gemmViaVek routes GEMMs through vek32.MatMul_Into (AVX2 assembly, its own
// goroutines) instead of the packed micro-kernel driver. It is the portable
// path: the plain-Go micro-kernel spills its accumulators and runs at 2–3
// GFLOP/s, vek at 25–40. simd_amd64.go clears it when AVX-512 kernels are
// installed.
var gemmViaVek = true

var vekPool = sync.Pool{New: func() any { return new(vekScratch) }}

type vekScratch struct{ a, b, c []float32 }

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// gemmVek computes C[M,N] (+)= A·B like gemm, materialising A as dense
// [M,K] and B as dense [K,N] when they are not already, as vek requires.
func gemmVek(c, a []float32, rsA, csA int, b *bMat, M, N, K int, accumulate bool) {
	// A: (M, K) strided, B: (K, N) described by b, C: (M, N)
	if M == 0 || N == 0 {
		return
	}
	if K == 0 {
		if !accumulate {
			clear(c[:M*N])
		}
		return
	}
	s := vekPool.Get().(*vekScratch)
	defer vekPool.Put(s)
	ad := a[:M*K]
	if !(rsA == K && csA == 1) {
		s.a = grow(s.a, M*K)
		for i := 0; i < M; i++ {
			for k := 0; k < K; k++ {
				s.a[i*K+k] = a[i*rsA+k*csA]
			}
		}
		ad = s.a
	}
	var bd []float32
	switch {
	case b.w == nil && b.cs == 1 && b.rs == N:
		bd = b.f[:K*N]
	case b.w != nil:
		s.b = grow(s.b, K*N)
		row := getRowBuf(K)
		for j := 0; j < N; j++ {
			decodeImpl(row.buf[:K], b.w.DType, b.w.Data[j*b.rowBytes:])
			for k, v := range row.buf[:K] {
				s.b[k*N+j] = v
			}
		}
		rowBufPool.Put(row)
		bd = s.b
	default:
		s.b = grow(s.b, K*N)
		for k := 0; k < K; k++ {
			for j := 0; j < N; j++ {
				s.b[k*N+j] = b.f[k*b.rs+j*b.cs]
			}
		}
		bd = s.b
	}
	if !accumulate {
		vek32.MatMul_Into(c[:M*N], ad, bd, K)
		return
	}
	s.c = grow(s.c, M*N)
	vek32.MatMul_Into(s.c, ad, bd, K)
	vek32.Add_Inplace(c[:M*N], s.c)
}
