package kernel

import (
	"sync"

	"persona/tensor"
)

// GEMM blocking. The micro-kernel computes an mr×nr tile of C from mr
// strided rows of A and a packed panel of B (kc rows of nr floats, 32 KiB at
// kc=256, so it stays in L1 while it is reused for up to mc rows of A).
const (
	mr      = 4   // rows of C per micro-kernel call
	nr      = 32  // columns of C per micro-kernel call (two 16-lane vectors)
	kcBlock = 256 // depth of one packed panel; a multiple of 32 for Q8_0 blocks
	mcBlock = 512 // rows of A swept per packed panel (512×256 floats of A stay in L2)
)

// bMat describes the right operand B(k,j) of C = A·B, either as float32s
// with arbitrary strides or as an encoded weight tensor W with B(k,j) = W[j,k].
type bMat struct {
	f        []float32 // B(k,j) = f[k*rs + j*cs]
	rs, cs   int
	w        *tensor.Tensor // when non-nil: B(k,j) = W[j,k], decoded while packing
	rowBytes int            // bytes of one W row
}

// gemmScratch is one goroutine's packing space.
type gemmScratch struct {
	panel [kcBlock * nr]float32 // packed B: kc rows of nr floats
	tile  [mr * nr]float32      // C tile for edges narrower than nr
	row   [kcBlock]float32      // one decoded W row segment
}

var gemmPool = sync.Pool{New: func() any { return new(gemmScratch) }}

// gemm computes C[M,N] (+)= A·B with A(i,k) = a[i*rsA + k*csA] and C dense
// row-major. It splits the larger of M and N over goroutines, so that the
// operand each goroutine packs or streams is the smaller one.
func gemm(c, a []float32, rsA, csA int, b *bMat, M, N, K int, accumulate bool) {
	// A: (M, K) strided, B: (K, N) described by b, C: (M, N)
	if gemmViaVek {
		gemmVek(c, a, rsA, csA, b, M, N, K, accumulate)
		return
	}
	if M == 0 || N == 0 {
		return
	}
	if K == 0 {
		if !accumulate {
			clear(c[:M*N])
		}
		return
	}
	work := M * N * K
	if N >= M || N >= 4*nr {
		parallel(N, nr, work, func(lo, hi int) {
			gemmBlock(c, a, rsA, csA, b, M, N, K, 0, M, lo, hi, accumulate)
		})
	} else {
		parallel(M, mr, work, func(lo, hi int) {
			gemmBlock(c, a, rsA, csA, b, M, N, K, lo, hi, 0, N, accumulate)
		})
	}
}

// gemmBlock computes rows [i0,i1) and columns [j0,j1) of C.
func gemmBlock(c, a []float32, rsA, csA int, b *bMat, M, N, K, i0, i1, j0, j1 int, accumulate bool) {
	s := gemmPool.Get().(*gemmScratch)
	defer gemmPool.Put(s)
	kern4, kern1 := kern4Impl, kern1Impl
	for pc := 0; pc < K; pc += kcBlock {
		kc := min(kcBlock, K-pc)
		add := accumulate || pc > 0
		aoff := pc * csA
		for ic := i0; ic < i1; ic += mcBlock {
			ie := min(ic+mcBlock, i1)
			for jr := j0; jr < j1; jr += nr {
				nc := min(nr, j1-jr)
				panel := s.panel[:kc*nr]
				packB(panel, b, pc, kc, jr, nc, s.row[:kc])
				i := ic
				for ; i+mr <= ie; i += mr {
					ab := a[i*rsA+aoff:]
					if nc == nr {
						kern4(kc, ab, rsA, csA, panel, c[i*N+jr:], N, add)
						continue
					}
					t := s.tile[:]
					if add {
						for r := 0; r < mr; r++ {
							copy(t[r*nr:r*nr+nc], c[(i+r)*N+jr:])
						}
					}
					kern4(kc, ab, rsA, csA, panel, t, nr, add)
					for r := 0; r < mr; r++ {
						copy(c[(i+r)*N+jr:(i+r)*N+jr+nc], t[r*nr:])
					}
				}
				for ; i < ie; i++ {
					ab := a[i*rsA+aoff:]
					if nc == nr {
						kern1(kc, ab, csA, panel, c[i*N+jr:], add)
						continue
					}
					t := s.tile[:nr]
					if add {
						copy(t[:nc], c[i*N+jr:])
					}
					kern1(kc, ab, csA, panel, t, add)
					copy(c[i*N+jr:i*N+jr+nc], t)
				}
			}
		}
	}
}

// packB writes B(pc+k, jr+j) for k < kc, j < nc into panel[k*nr+j], with
// zeros in columns nc..nr-1 so the micro-kernel never needs a column edge.
func packB(panel []float32, b *bMat, pc, kc, jr, nc int, row []float32) {
	// panel: (kc, nr)
	if nc < nr {
		clear(panel)
	}
	switch {
	case b.w != nil:
		// W row (jr+j), columns pc..pc+kc; Q8_0 segments start on a block
		// because kcBlock is a multiple of the block size.
		off := pc * b.rowBytes / b.w.Cols()
		for j := 0; j < nc; j++ {
			src := b.w.Data[(jr+j)*b.rowBytes+off:]
			decodeImpl(row, b.w.DType, src)
			for k, v := range row {
				panel[k*nr+j] = v
			}
		}
	case b.cs == 1: // rows of B are contiguous (NN, TN)
		for k := 0; k < kc; k++ {
			copy(panel[k*nr:k*nr+nc], b.f[(pc+k)*b.rs+jr:])
		}
	case b.rs == 1: // columns of B are contiguous (NT, Linear on F32)
		for j := 0; j < nc; j++ {
			src := b.f[(jr+j)*b.cs+pc:]
			src = src[:kc]
			for k, v := range src {
				panel[k*nr+j] = v
			}
		}
	default:
		for k := 0; k < kc; k++ {
			for j := 0; j < nc; j++ {
				panel[k*nr+j] = b.f[(pc+k)*b.rs+(jr+j)*b.cs]
			}
		}
	}
}
