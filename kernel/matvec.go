package kernel

import (
	"sync"

	"persona/tensor"
)

// matVec computes out[n] = Σ_k x[k]·W[n,k] for an encoded weight.
func matVec(out, x []float32, w *tensor.Tensor, N, K int) {
	// x: (K), W: (N, K), out: (N)
	if w.DType == tensor.F32 {
		matVecF32(out, x, w.F32(), N, K)
		return
	}
	rb, err := w.DType.RowBytes(K)
	if err != nil {
		panic("kernel: Linear: " + err.Error())
	}
	data, dt := w.Data, w.DType
	parallel(N, 4, N*K, func(lo, hi int) {
		s := getRowBuf(K)
		buf := s.buf[:K]
		for n := lo; n < hi; n++ {
			out[n] = dotRowImpl(x, dt, data[n*rb:(n+1)*rb], buf)
		}
		rowBufPool.Put(s)
	})
}

// matVecF32 computes out[n] = Σ_k x[k]·w[n*K+k]: each W row is read once,
// four rows at a time against one load of x, which keeps the loop at the
// speed of memory.
func matVecF32(out, x, w []float32, N, K int) {
	// x: (K), w: (N, K), out: (N)
	x = x[:K]
	w = w[:N*K]
	parallel(N, 4, N*K, func(lo, hi int) {
		n := lo
		for ; n+4 <= hi; n += 4 {
			dot4Impl(out[n:n+4], x, w[n*K:], K)
		}
		for ; n < hi; n++ {
			out[n] = dotImpl(x, w[n*K:(n+1)*K])
		}
	})
}

// rowBuf is per-goroutine scratch for one decoded weight row.
type rowBuf struct{ buf []float32 }

var rowBufPool = sync.Pool{New: func() any { return new(rowBuf) }}

func getRowBuf(n int) *rowBuf {
	s := rowBufPool.Get().(*rowBuf)
	if cap(s.buf) < n {
		s.buf = make([]float32, n)
	}
	return s
}
