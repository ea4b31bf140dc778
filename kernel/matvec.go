package kernel

import (
	"runtime"
	"sync"
	"unsafe"

	"persona/tensor"
)

// integerLinear computes out[t*N+n] = Σ_k x[t,k]·W[n,k] for K-quant weights
// and the T tokens of x as Q8_K integers: ranges of rows are handed to the
// workers, and each range is multiplied by every token, so that a prompt
// unpacks each block of weights once per few tokens instead of once per
// token (the kernels take four tokens at a time).
func integerLinear(out []float32, a *q8K, w *tensor.Tensor, T int) {
	N, K := w.Rows(), w.Cols()
	rb, err := w.DType.RowBytes(K)
	if err != nil {
		panic("kernel: Linear: " + err.Error())
	}
	dot, data := integerDotFor(w.DType), w.Data
	parallelRows(N, T*N*K, func(lo, hi int) { dot(out[lo:], N, hi-lo, data[lo*rb:hi*rb], a) })
}

// matVecF32 computes out[n] = Σ_k x[k]·w[n*K+k]: each W row is read once,
// eight rows at a time against one load of x, with the next eight rows
// prefetched meanwhile, which keeps the loop at the speed of memory.
func matVecF32(out, x, w []float32, N, K int) {
	// x: (K), w: (N, K), out: (N)
	mv := matVecOp{out: out[:N], x: x[:K], f: w[:N*K], K: K}
	parallelRows(N, N*K, func(lo, hi int) { mv.rows(lo, hi) })
}

// matVecOp is one mat-vec out = W·x whose rows can be computed in any
// ranges, so several of them can share one parallel region.
type matVecOp struct {
	out, x []float32 // x rounded for w's type, unless w takes integers
	f      []float32 // F32 weights, or nil
	w      *tensor.Tensor
	K, rb  int  // columns; bytes per encoded row
	q8     *q8K // x as 8-bit integers, for Q4_K, Q5_K and Q6_K weights
	dotQ8  func(out []float32, ldo, n int, rows []byte, a *q8K)
	q80    *q80 // x as 8-bit integers, for Q8_0 weights with dotQ80Impl
	// sumFix is, per block of x, what Q4_1 and Q5_1 rows add times their
	// minimum for llama.cpp's Q8_1 block sums (q81SumFix); nil for other types.
	sumFix []float32
}

// newMatVecOp multiplies w by one token of in: rounded for w's type, and
// as integers where w's type has an integer dot product.
func newMatVecOp(out []float32, in *sharedInput, w *tensor.Tensor) matVecOp {
	N, K := w.Rows(), w.Cols()
	mv := matVecOp{out: out[:N], K: K}
	if w.DType == tensor.F32 {
		mv.f, mv.x = w.F32()[:N*K], in.x[:K]
		return mv
	}
	rb, err := w.DType.RowBytes(K)
	if err != nil {
		panic("kernel: Linear: " + err.Error())
	}
	mv.w, mv.rb = w, rb
	switch {
	case integerDot(w.DType, K):
		mv.q8, mv.dotQ8 = in.forLinear(w, K, K), integerDotFor(w.DType)
	case w.DType == tensor.Q8_0 && dotQ80Impl != nil:
		mv.q80 = in.forLegacy(w.DType, K)
	default:
		mv.x = in.forType(w.DType, K, K)
		mv.sumFix = in.q81SumFix(w.DType, K, K)
	}
	return mv
}

// integerDot reports whether rows of type dt and K columns are multiplied
// by Q8_K integers.
func integerDot(dt tensor.DType, K int) bool { return integerDotFor(dt) != nil && K%kBlock == 0 }

// integerDotFor is the integer dot product of rows of type dt with Q8_K
// activations: the K-quants have one, other types nil.
func integerDotFor(dt tensor.DType) func(out []float32, ldo, n int, rows []byte, a *q8K) {
	switch dt {
	case tensor.Q2_K:
		return dotQ2KQ8KImpl
	case tensor.Q3_K:
		return dotQ3KQ8KImpl
	case tensor.Q4_K:
		return dotQ4KQ8KImpl
	case tensor.Q5_K:
		return dotQ5KQ8KImpl
	case tensor.Q6_K:
		return dotQ6KQ8KImpl
	}
	return nil
}

// rows computes out[lo:hi].
func (mv *matVecOp) rows(lo, hi int) {
	x, K := mv.x, mv.K
	if mv.f != nil {
		w, out := mv.f, mv.out
		n := lo
		for ; n+8 <= hi; n += 8 {
			if n+8 < hi { // the next step's rows, within this chunk
				r := min(8, hi-n-8)
				prefetchImpl(unsafe.Pointer(&w[(n+8)*K]), uintptr(r*K*4))
			}
			dot8Impl(out[n:n+8], x, w[n*K:], K)
		}
		for ; n+4 <= hi; n += 4 {
			dot4Impl(out[n:n+4], x, w[n*K:], K)
		}
		for ; n < hi; n++ {
			out[n] = dotImpl(x, w[n*K:(n+1)*K])
		}
		return
	}
	data, dt, rb := mv.w.Data, mv.w.DType, mv.rb
	if mv.q8 != nil {
		mv.dotQ8(mv.out[lo:hi], hi-lo, hi-lo, data[lo*rb:hi*rb], mv.q8)
		return
	}
	if mv.q80 != nil {
		dotQ80Impl(mv.out[lo:hi], data[lo*rb:hi*rb], mv.q80)
		return
	}
	s := getRowBuf(K)
	buf := s.buf[:K]
	for n := lo; n < hi; n++ {
		row := data[n*rb : (n+1)*rb]
		switch {
		case mv.sumFix == nil:
			mv.out[n] = dotRowImpl(x, dt, row, buf)
		case dotQ81Impl != nil:
			mv.out[n] = dotQ81Impl(x, row, dt == tensor.Q5_1, mv.sumFix)
		default:
			mv.out[n] = dotRowImpl(x, dt, row, buf) + minimumsDot(row, rb/len(mv.sumFix), mv.sumFix)
		}
	}
	rowBufPool.Put(s)
}

// parallelRows runs fn over the rows [0, n) of mat-vecs totalling work
// multiply-adds. Unlike the GEMMs' static split it hands out many small
// chunks: a mat-vec has no per-chunk packing to amortise, and on a shared
// machine a core that is interrupted should not hold up the whole region.
// Chunks are multiples of 4 rows (the dot kernel's width) and at least
// minChunkRows, so the atomic hand-out costs little next to a chunk.
func parallelRows(n, work int, fn func(lo, hi int)) {
	p := min(runtime.GOMAXPROCS(0), work/minWorkPerGoroutine, (n+3)/4)
	if p <= 1 {
		fn(0, n)
		return
	}
	chunk := max(minChunkRows, roundUp((n+chunksPerWorker*p-1)/(chunksPerWorker*p), 4))
	parallelChunks(n, chunk, p-1, fn)
}

const (
	chunksPerWorker = 8  // chunks per goroutine in a mat-vec region
	minChunkRows    = 16 // ≥ 36 KiB of F32 weights at K = 576
)

// LinearMany computes outs[i] = Linear(x, ws[i]) for weights that share the
// input x (attention's Q, K and V). For one token it is a single parallel
// region over the rows of all of them, so a decode step pays one start and
// one wait instead of len(ws); for T > 1 it is len(ws) Linear calls.
func LinearMany(outs [][]float32, x []float32, ws []*tensor.Tensor, T int) {
	if len(outs) != len(ws) {
		panic("kernel: LinearMany: outs and ws differ in length")
	}
	in := &sharedInput{x: x}
	defer in.release()
	if T != 1 {
		for i, w := range ws {
			linearShared(outs[i], in, w, T)
		}
		return
	}
	ops := make([]matVecOp, 0, 4)
	start := make([]int, 0, 5) // start[i]: first row of op i in the joint row space
	total, work := 0, 0
	for i, w := range ws {
		N, K := w.Rows(), w.Cols()
		if len(x) < K || len(outs[i]) < N {
			panic("kernel: LinearMany: slice too short for shape")
		}
		if N == 0 {
			continue
		}
		if K == 0 {
			clear(outs[i][:N])
			continue
		}
		ops = append(ops, newMatVecOp(outs[i], in, w))
		start = append(start, total)
		total += N
		work += N * K
	}
	start = append(start, total)
	parallelRows(total, work, func(lo, hi int) {
		for i := range ops {
			a, b := max(lo, start[i]), min(hi, start[i+1])
			if a < b {
				ops[i].rows(a-start[i], b-start[i])
			}
		}
	})
}

// LinearPair computes a = Linear(x, wa) and b = Linear(x, wb) for two weights
// of the same shape and then calls epi on matching parts of a and b (epi must
// be elementwise: it sees each element once, in chunks whose order is not
// fixed). For one token, rows lo..hi of both products are computed and
// finished by epi in the same chunk, so the SwiGLU gate and up projections
// and their activation are one parallel region; for T > 1 it is two Linear
// calls and epi over the whole of a and b.
func LinearPair(a, b, x []float32, wa, wb *tensor.Tensor, T int, epi func(a, b []float32)) {
	N, K := wa.Rows(), wa.Cols()
	if wb.Rows() != N || wb.Cols() != K {
		panic("kernel: LinearPair: weights differ in shape")
	}
	in := &sharedInput{x: x}
	defer in.release()
	if T != 1 || K == 0 {
		linearShared(a, in, wa, T)
		linearShared(b, in, wb, T)
		if epi != nil && T > 0 {
			epi(a[:T*N], b[:T*N])
		}
		return
	}
	if len(x) < K || len(a) < N || len(b) < N {
		panic("kernel: LinearPair: slice too short for shape")
	}
	opA, opB := newMatVecOp(a, in, wa), newMatVecOp(b, in, wb)
	parallelRows(N, 2*N*K, func(lo, hi int) {
		opA.rows(lo, hi)
		opB.rows(lo, hi)
		if epi != nil {
			epi(a[lo:hi], b[lo:hi])
		}
	})
}

// Parallel runs fn over [0, n) in chunks of grain items on the calling
// goroutine and the package's worker pool, using no more goroutines than
// work (an estimate in multiply-adds) justifies. It is for the engine's
// other per-token loops (attention heads), so that they start as cheaply as
// the mat-vecs around them.
func Parallel(n, grain, work int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	p := min(runtime.GOMAXPROCS(0), work/minWorkPerGoroutine, (n+grain-1)/grain)
	if p <= 1 {
		fn(0, n)
		return
	}
	parallelChunks(n, grain, p-1, fn)
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
