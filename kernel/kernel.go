package kernel

import (
	"runtime"
	"unsafe"

	"persona/tensor"
)

// The implementations behind the exported functions. The portable Go
// versions are installed here; simd_amd64.go replaces them at init time when
// the binary is built with GOEXPERIMENT=simd and the CPU has AVX-512.
var (
	dotImpl   = dotGo
	axpyImpl  = axpyGo
	scaleImpl = scaleGo
	expImpl   = expGo
	// dotQ4KQ8KImpl and the next are K-quant rows times Q8_K activations (q8K).
	dotQ4KQ8KImpl = dotQ4KQ8KGo
	dotQ5KQ8KImpl = dotQ5KQ8KGo
	dotQ6KQ8KImpl = dotQ6KQ8KGo
	dotQ2KQ8KImpl = dotQ2KQ8KGo
	dotQ3KQ8KImpl = dotQ3KQ8KGo
	// siluMulImpl is the SwiGLU activation (SiLUMul).
	siluMulImpl = siluMulGo
	// dot4Impl computes four dot products of x with rows of w that are ldw apart.
	dot4Impl = dot4Go
	dot8Impl = dot8Go
	// prefetchImpl asks for n bytes from p to be brought into cache.
	prefetchImpl = func(unsafe.Pointer, uintptr) {}
	// kern4Impl and kern1Impl are the GEMM micro-kernels (4 rows and 1 row of
	// C by nr columns); see kern4Go for the contract.
	kern4Impl = kern4Go
	kern1Impl = kern1Go
	// dotRowImpl is a dot product of x with one encoded weight row, decoding
	// on the fly; buf has room for len(x) floats when a decode is needed.
	dotRowImpl = dotRowGo
	// decodeImpl converts an encoded row to float32 (like tensor.Decode).
	decodeImpl = decodeGo
	// dotQ80Impl is consecutive Q8_0 rows times one token's activations
	// as Q8_0 integers, or nil (the rows are dotted in float32).
	dotQ80Impl func(out []float32, rows []byte, a *q80)
	// dotQ81Impl is one Q4_1 (five false) or Q5_1 row times activations
	// rounded for it, with the minimums times the Q8_1 sums' corrections
	// fix (q81SumFix) added in the same pass; nil where the portable row
	// dot and minimumsDot do it.
	dotQ81Impl func(x []float32, row []byte, five bool, fix []float32) float32
	// simdActive reports which set is installed (Linear picks the integer
	// dot products for a few tokens only with the vector set).
	simdActive = false
)

// SIMD reports whether the AVX-512 kernels are in use: the binary was built
// with GOEXPERIMENT=simd and the CPU has AVX-512. Benchmarks print it beside
// every figure.
func SIMD() bool { return simdActive }

// Dot returns Σ a[i]·b[i] over len(a) elements; b must be at least as long.
// It is the inner loop of attention scores and of every mat-vec.
func Dot(a, b []float32) float32 {
	// a: (n), b: (≥n)
	return dotImpl(a, b[:len(a)])
}

// Axpy adds alpha·x to y in place (y += alpha·x over len(y) elements). Attention
// uses it to sum values weighted by probabilities; the optimiser uses it too.
func Axpy(y []float32, alpha float32, x []float32) {
	// y: (n), x: (≥n)
	axpyImpl(y, alpha, x[:len(y)])
}

// Exp replaces every element of x by its exponential. The AVX-512 version
// reduces to exp(r)·2ⁿ with |r| ≤ ln2/2 and a degree-7 polynomial: within 2
// ulp of math.Exp over the float32 range, 0 below −104 (−Inf too) and +Inf
// above 88.7. Softmaxes and SiLU in training spend their time here.
func Exp(x []float32) {
	// x: (n)
	expImpl(x)
}

// SiLUMul sets gate[i] = silu(gate[i])·up[i] = gate[i]/(1+exp(−gate[i]))·up[i],
// the SwiGLU activation of Llama-family feed-forward blocks, with Exp's
// exponential on AVX-512.
func SiLUMul(gate, up []float32) {
	// gate: (n), up: (≥n)
	siluMulImpl(gate, up[:len(gate)])
}

// Scale multiplies x by s in place.
func Scale(x []float32, s float32) {
	// x: (n)
	scaleImpl(x, s)
}

// Linear applies a linear layer with HF-layout weights:
// out[t*N+n] = Σ_k x[t*K+k]·W[n,k] for t < T.
//
// T == 1 (decode) is a mat-vec, bound by the bandwidth of reading W once, so
// it streams W rows through a 4-row dot kernel, decoding F16/BF16/Q8_0 on the
// fly. T > 1 (prefill, training) is a GEMM that packs 32-row panels of W
// (decoding them as it goes) and reuses each panel for every token. Both
// split the work over up to GOMAXPROCS goroutines when it is large enough.
func Linear(out, x []float32, w *tensor.Tensor, T int) {
	in := &sharedInput{x: x}
	linearShared(out, in, w, T)
	in.release()
}

// linearShared is Linear on an input that other weights may multiply too,
// so it is rounded for quantized weights once (sharedInput).
func linearShared(out []float32, in *sharedInput, w *tensor.Tensor, T int) {
	// x: (T, K), W: (N, K), out: (T, N)
	N, K := w.Rows(), w.Cols()
	if len(in.x) < T*K || len(out) < T*N {
		panic("kernel: Linear: slice too short for shape")
	}
	if T <= 0 || N == 0 {
		return
	}
	if K == 0 {
		clear(out[:T*N])
		return
	}
	if T == 1 {
		mv := newMatVecOp(out, in, w)
		parallelRows(N, N*K, func(lo, hi int) { mv.rows(lo, hi) })
		return
	}
	if T > integerMaxT && legacyGemmImpl != nil && activationBlock(w.DType) == 32 && K%32 == 0 {
		legacyGemmImpl(out, in.forLegacy(w.DType, T*K), w, T)
		return
	}
	// One token takes the integer dot products (as llama.cpp does) in the
	// mat-vec above; 2–16 tokens only with the vector kernels, which beat
	// the GEMM there (the portable ones do not); more with integerGemmImpl.
	if (T <= integerMaxT && simdActive) || (T > integerMaxT && integerGemmImpl != nil) {
		if q8 := in.forLinear(w, T*K, K); q8 != nil {
			if T > integerMaxT {
				integerGemmImpl(out, q8, w, T)
			} else {
				integerLinear(out, q8, w, T)
			}
			return
		}
	}
	linear(out, in.forType(w.DType, T*K, K), w, T)
	if fix := in.q81SumFix(w.DType, T*K, K); fix != nil {
		addMinimumsFix(out, fix, w, T)
	}
}

// integerMaxT is the most tokens that K-quant weights multiply as 8-bit
// integers with the dot-product kernels; more go through integerGemmImpl
// where the CPU has VNNI, otherwise through the float32 GEMM over decoded
// panels, which runs faster than the dot products once there are enough
// tokens to reuse each decoded panel (measured in kernel/doc.go).
const integerMaxT = 16

// integerGemmImpl multiplies K-quant weights by more than integerMaxT
// tokens of Q8_K activations, or is nil (vnniLinear where the CPU has
// AVX512-VNNI).
var integerGemmImpl func(out []float32, a *q8K, w *tensor.Tensor, T int)

// legacyGemmImpl multiplies weights of a legacy type (Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0) by more than integerMaxT tokens of activations in their
// integers, or is nil (vnniLegacyLinear where the CPU has AVX512-VNNI).
var legacyGemmImpl func(out []float32, a *q80, w *tensor.Tensor, T int)

// linear is Linear on an input already rounded for w (sharedInput), for
// two or more tokens and weights without integer kernels: a GEMM.
func linear(out, x []float32, w *tensor.Tensor, T int) {
	N, K := w.Rows(), w.Cols()
	var b bMat
	if w.DType == tensor.F32 {
		b = bMat{f: w.F32(), rs: 1, cs: K}
	} else {
		rb, err := w.DType.RowBytes(K)
		if err != nil {
			panic("kernel: Linear: " + err.Error())
		}
		b = bMat{w: w, rowBytes: rb}
	}
	if useSwappedNT(T, N, K) {
		gemmSwappedNT(out, x, &b, T, N, K, false)
		return
	}
	gemm(out, x, K, 1, &b, T, N, K, false)
}

// MatMulNT computes C[M,N] (+)= A[M,K]·B[N,K]ᵀ: the trainer's forward x·Wᵀ.
func MatMulNT(c, a, b []float32, M, N, K int, accumulate bool) {
	// a: (M, K), b: (N, K), c: (M, N)
	checkLen("MatMulNT", c, a, b, M*N, M*K, N*K)
	if M == 1 && !accumulate {
		matVecF32(c[:N], a[:K], b, N, K)
		return
	}
	bm := bMat{f: b, rs: 1, cs: K}
	if useSwappedNT(M, N, K) {
		gemmSwappedNT(c, a, &bm, M, N, K, accumulate)
		return
	}
	gemm(c, a, K, 1, &bm, M, N, K, accumulate)
}

// MatMulNN computes C[M,N] (+)= A[M,K]·B[K,N]: the backward pass to the
// input, dX = dY·W.
func MatMulNN(c, a, b []float32, M, N, K int, accumulate bool) {
	// a: (M, K), b: (K, N), c: (M, N)
	checkLen("MatMulNN", c, a, b, M*N, M*K, K*N)
	bm := bMat{f: b, rs: N, cs: 1}
	gemm(c, a, K, 1, &bm, M, N, K, accumulate)
}

// MatMulTN computes C[M,N] (+)= A[K,M]ᵀ·B[K,N]: the backward pass to the
// weight, dW = dYᵀ·X (with accumulate to sum over micro-batches).
func MatMulTN(c, a, b []float32, M, N, K int, accumulate bool) {
	// a: (K, M), b: (K, N), c: (M, N)
	checkLen("MatMulTN", c, a, b, M*N, K*M, K*N)
	bm := bMat{f: b, rs: N, cs: 1}
	gemm(c, a, 1, M, &bm, M, N, K, accumulate)
}

func checkLen(name string, c, a, b []float32, nc, na, nb int) {
	if len(c) < nc || len(a) < na || len(b) < nb {
		panic("kernel: " + name + ": slice too short for shape")
	}
}

// minWorkPerGoroutine is the number of multiply-adds below which another
// goroutine costs more (wake-up, cache misses) than it saves.
const minWorkPerGoroutine = 1 << 15

// parallel runs fn over [0, n) split into at most GOMAXPROCS chunks whose
// boundaries are multiples of align, using no more goroutines than work
// (multiply-adds) justifies. The calling goroutine takes part. The split is
// static (one chunk per goroutine) for the GEMMs, whose chunks each pack
// their own operand panels.
func parallel(n, align, work int, fn func(lo, hi int)) {
	p := runtime.GOMAXPROCS(0)
	p = min(p, work/minWorkPerGoroutine, (n+align-1)/align)
	if p <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + p - 1) / p
	chunk = (chunk + align - 1) / align * align
	parallelChunks(n, chunk, p-1, fn)
}
