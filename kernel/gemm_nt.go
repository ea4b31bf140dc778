package kernel

import "sync"

// NT products with few rows, C[T,N] = X[T,K]·W[N,K]ᵀ with T small next to N
// (prefill: T tokens against a weight of N rows), are computed transposed,
// Cᵀ = W·Xᵀ. Then W is the micro-kernel's broadcast operand, read in place
// (or decoded row by row, never transposed), and only the small X is packed
// into panels of 32 tokens. Packing W instead costs one strided scatter per
// weight, which at T = 64 is a third of the time of the multiply itself.

// swapMaxPacked bounds the packed Xᵀ (T×K floats, ≤ 1 MiB) so that it stays
// in L2 while every W row streams past it once; bigger products use gemm,
// which amortises packing W over many rows.
const swapMaxPacked = 1 << 18

// useSwappedNT reports whether C[T,N] = X·Wᵀ should take the transposed route.
func useSwappedNT(T, N, K int) bool {
	return !gemmViaVek && T >= 2 && T*2 <= N && roundUp(T, nr)*K <= swapMaxPacked
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// swapScratch holds one goroutine's packed Xᵀ and decoded W rows.
type swapScratch struct {
	xp   []float32 // token panels: panel p is K rows of nr tokens
	rows []float32 // mr decoded W rows of K floats (non-F32 weights)
	tile [mr * nr]float32
}

var swapPool = sync.Pool{New: func() any { return new(swapScratch) }}

// gemmSwappedNT computes C[T,N] (+)= X[T,K]·W[N,K]ᵀ with W described by b
// as in gemm (B(k,n) = W[n,k]: b.rs == 1, b.cs == K, or an encoded tensor).
func gemmSwappedNT(c, x []float32, b *bMat, T, N, K int, accumulate bool) {
	// x: (T, K), W: (N, K), c: (T, N)
	parallel(N, mr, T*N*K, func(lo, hi int) {
		swappedBlock(c, x, b, T, N, K, lo, hi, accumulate)
	})
}

// swappedBlock computes columns [n0,n1) of C, i.e. rows [n0,n1) of Cᵀ.
func swappedBlock(c, x []float32, b *bMat, T, N, K, n0, n1 int, accumulate bool) {
	s := swapPool.Get().(*swapScratch)
	defer swapPool.Put(s)
	np := (T + nr - 1) / nr
	if cap(s.xp) < np*nr*K {
		s.xp = make([]float32, np*nr*K)
	}
	xp := s.xp[:np*nr*K]
	// Pack Xᵀ: xp[p*nr*K + k*nr + t] = x[(p*nr+t)*K + k], zero past T.
	for p := 0; p < np; p++ {
		panel := xp[p*nr*K : (p+1)*nr*K]
		tc := min(nr, T-p*nr)
		if tc < nr {
			clear(panel)
		}
		for t := 0; t < tc; t++ {
			row := x[(p*nr+t)*K : (p*nr+t+1)*K]
			dst := panel[t:]
			for k, v := range row {
				dst[k*nr] = v
			}
		}
	}
	if b.w != nil && cap(s.rows) < mr*K {
		s.rows = make([]float32, mr*K)
	}
	kern4, kern1 := kern4Impl, kern1Impl
	tile := s.tile[:]
	// wRows returns W rows [n, n+cnt) as float32 with their stride.
	wRows := func(n, cnt int) []float32 {
		if b.w == nil {
			return b.f[n*K:]
		}
		for i := 0; i < cnt; i++ {
			decodeImpl(s.rows[i*K:(i+1)*K], b.w.DType, b.w.Data[(n+i)*b.rowBytes:])
		}
		return s.rows
	}
	n := n0
	for ; n+mr <= n1; n += mr {
		a := wRows(n, mr)
		for p := 0; p < np; p++ {
			kern4(K, a, K, 1, xp[p*nr*K:], tile, nr, false)
			scatterT(c, tile, N, n, mr, p*nr, min(nr, T-p*nr), accumulate)
		}
	}
	for ; n < n1; n++ {
		a := wRows(n, 1)
		for p := 0; p < np; p++ {
			kern1(K, a, 1, xp[p*nr*K:], tile, false)
			scatterT(c, tile, N, n, 1, p*nr, min(nr, T-p*nr), accumulate)
		}
	}
}

// scatterT writes the transposed tile: C[(t0+t)*N + n+i] (+)= tile[i*nr+t].
func scatterT(c, tile []float32, N, n, rows, t0, tc int, accumulate bool) {
	if rows == mr && !accumulate { // the common case, unrolled
		tl := (*[mr * nr]float32)(tile)
		for t := 0; t < tc; t++ {
			d := (*[mr]float32)(c[(t0+t)*N+n:])
			j := t & (nr - 1)
			d[0], d[1], d[2], d[3] = tl[j], tl[nr+j], tl[2*nr+j], tl[3*nr+j]
		}
		return
	}
	for t := 0; t < tc; t++ {
		dst := c[(t0+t)*N+n : (t0+t)*N+n+rows]
		if accumulate {
			for i := range dst {
				dst[i] += tile[i*nr+t]
			}
		} else {
			for i := range dst {
				dst[i] = tile[i*nr+t]
			}
		}
	}
}
