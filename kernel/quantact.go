package kernel

import (
	"encoding/binary"
	"math"
	"sync"

	"persona/tensor"
)

// roundActivations returns the rows of x (each K long) as llama.cpp's CPU
// backend feeds them to a dot product with weights of type dt: rounded to
// 8 bits per block — Q8_0 blocks of 32 with an F16 scale for the legacy
// types, Q8_K blocks of 256 with a float32 scale for the K-quants — and
// read back as float32. Other types get x itself. Multiplying quantized
// weights by activations rounded this way is what makes a quantized
// model's outputs follow llama.cpp's instead of drifting from them by the
// rounding (docs/measurements.md, Quantized models).
func roundActivations(x []float32, K int, dt tensor.DType) []float32 {
	block := activationBlock(dt)
	if block == 0 || K%block != 0 {
		return x
	}
	out := getF32(len(x))
	for b := 0; b+block <= len(x); b += block {
		src, dst := x[b:b+block], out[b:b+block]
		if block == 32 {
			roundQ8_0Impl(dst, src)
		} else {
			roundQ8KImpl(dst, src)
		}
	}
	return out
}

// activationBlock is the block llama.cpp rounds activations in for weights
// of type dt: 32 (Q8_0) for the legacy quants, 256 (Q8_K) for the
// K-quants, 0 for types whose activations stay float32.
func activationBlock(dt tensor.DType) int {
	switch dt {
	case tensor.Q4_0, tensor.Q4_1, tensor.Q5_0, tensor.Q5_1, tensor.Q8_0:
		return 32
	case tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K:
		return 256
	}
	return 0
}

// sharedInput is one input that several weights multiply (Q, K and V; gate
// and up): rounded once per activation block, and for one token turned into
// Q8_K integers once, not once per weight. release returns its buffers for
// the next call: decoding would otherwise allocate them for every matrix of
// every token, and the garbage grew the heap by tens of megabytes.
type sharedInput struct {
	x       []float32
	rounded map[int][]float32
	q8      *q8K
	q80     *q80
	q81     *q80 // q80 with Q8_1 block sums, sharing its integers and scales
	sumFix  []float32
}

// forType returns the first n elements of the input (rows of K) as weights
// of type dt multiply them.
func (in *sharedInput) forType(dt tensor.DType, n, K int) []float32 {
	block := activationBlock(dt)
	if block == 0 || K%block != 0 {
		return in.x[:n]
	}
	if r, ok := in.rounded[block]; ok && len(r) == n {
		return r
	}
	if in.rounded == nil {
		in.rounded = map[int][]float32{}
	}
	r := roundActivations(in.x[:n], K, dt)
	in.rounded[block] = r
	return r
}

// forLinear is the first n elements of the input (rows of K) as Q8_K
// integers, for the K-quants with integer dot products; nil for other types.
func (in *sharedInput) forLinear(w *tensor.Tensor, n, K int) *q8K {
	if !integerDot(w.DType, K) {
		return nil
	}
	if in.q8 == nil || len(in.q8.qs) != n {
		if in.q8 != nil {
			putQ8K(in.q8)
		}
		in.q8 = integersQ8K(in.x[:n])
	}
	return in.q8
}

// forLegacy is the first n elements of the input (rows of K) as the
// integers of the blocks of 32 that weights of legacy type dt multiply —
// for Q4_1 and Q5_1 with the block sums of llama.cpp's Q8_1 blocks
// (q81SumFix), which their minimums multiply.
func (in *sharedInput) forLegacy(dt tensor.DType, n int) *q80 {
	if in.q80 == nil || len(in.q80.qs) != n {
		if in.q80 != nil {
			putQ80(in.q80)
		}
		in.q80, in.q81 = integersQ80(in.x[:n]), nil
	}
	if dt != tensor.Q4_1 && dt != tensor.Q5_1 {
		return in.q80
	}
	if in.q81 == nil {
		fix := in.q81SumFix(dt, n, 32) // n is whole blocks of 32: legacy rows are
		sum := make([]float32, len(fix))
		for b, f := range fix {
			sum[b] = in.q80.sum[b] + f // F16(d)·Σq + (F16(d·Σq) − F16(d)·Σq), exactly
		}
		in.q81 = &q80{qs: in.q80.qs, d: in.q80.d, sum: sum}
	}
	return in.q81
}

// q81SumFix is, for Q4_1 and Q5_1 weights, the first n elements of the
// input (rows of K) as q81SumFix computes it; nil for other types.
func (in *sharedInput) q81SumFix(dt tensor.DType, n, K int) []float32 {
	if (dt != tensor.Q4_1 && dt != tensor.Q5_1) || K%32 != 0 {
		return nil
	}
	if len(in.sumFix) != n/32 {
		if in.sumFix != nil {
			putF32(in.sumFix)
		}
		in.sumFix = q81SumFix(in.x[:n])
	}
	return in.sumFix
}

// q81SumFix returns, per block of 32 activations, how far llama.cpp's Q8_1
// block sum lies from the sum of the activations as roundQ8_0 rounds them.
// Q4_1 and Q5_1 weights are w = d·q + m, so every product carries m times
// each block's activation sum; llama.cpp pairs them with Q8_1 blocks, which
// store that sum as F16(d·Σq) — d the unrounded scale — where the rounded
// values add up to F16(d)·Σq exactly. The two differ by up to 2⁻¹¹ of the
// sum, the same way in every product of a row: left out, our Q4_1 and Q5_1
// products differed from GGML's by 3–5e-4 relative in every element
// (TestLinearMatchesGGML), and a model's log-probabilities by 0.05.
func q81SumFix(x []float32) []float32 {
	out := getF32(len(x) / 32)
	Parallel(len(out), 64, 64*len(out), func(lo, hi int) { // a prompt's blocks are thousands
		for b := lo; b < hi; b++ {
			out[b] = q81FixImpl(x[32*b : 32*b+32])
		}
	})
	return out
}

// q81Fix is q81SumFix for one block.
func q81Fix(src []float32) float32 {
	var amax float32
	for _, v := range src {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	if amax == 0 {
		return 0
	}
	id := 127 / amax
	var s int32
	for _, v := range src {
		s += int32(math.RoundToEven(float64(v * id)))
	}
	return q81Diff(amax/127, s)
}

// q81Diff is F16(d·s) − F16(d)·s: a block's Q8_1 sum less its rounded
// values' sum, for scale d and integer sum s.
func q81Diff(d float32, s int32) float32 {
	return tensor.F16ToF32(tensor.F32ToF16(d*float32(s))) - tensor.F16ToF32(tensor.F32ToF16(d))*float32(s)
}

// minimumsDot is Σ m·fix over a Q4_1 or Q5_1 row's blocks (bs bytes each).
func minimumsDot(row []byte, bs int, fix []float32) float32 {
	tab := f16Table()
	var s [4]float32 // four chains: the adds would otherwise wait on each other
	b := 0
	for ; b+4 <= len(fix); b += 4 {
		for j := range s {
			s[j] += minimumOf(row, bs, b+j, tab) * fix[b+j]
		}
	}
	for ; b < len(fix); b++ {
		s[0] += minimumOf(row, bs, b, tab) * fix[b]
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}

// minimumOf is the minimum m of block b of a Q4_1 or Q5_1 row (blocks of bs
// bytes, m the F16 after the scale).
func minimumOf(row []byte, bs, b int, tab *[1 << 16]float32) float32 {
	return tab[binary.LittleEndian.Uint16(row[b*bs+2:])]
}

// addMinimumsFix adds the Q8_1 sums' correction to T tokens of products
// out (T×N) of a Q4_1 or Q5_1 weight w: the rows' minimums as an N×(K/32)
// matrix, multiplied into the tokens' corrections as one small GEMM.
func addMinimumsFix(out, fix []float32, w *tensor.Tensor, T int) {
	N, K := w.Rows(), w.Cols()
	nb := K / 32
	rb := len(w.Data) / N
	tab := f16Table()
	mins := getF32(N * nb)
	for n := range N {
		row := w.Data[n*rb : (n+1)*rb]
		for b := range nb {
			mins[n*nb+b] = minimumOf(row, rb/nb, b, tab)
		}
	}
	MatMulNT(out[:T*N], fix[:T*nb], mins, T, N, nb, true)
	putF32(mins)
}

// release hands the input's rounded copies and integers back to the pools.
func (in *sharedInput) release() {
	for _, r := range in.rounded {
		putF32(r)
	}
	if in.q8 != nil {
		putQ8K(in.q8)
	}
	if in.q80 != nil {
		putQ80(in.q80)
	}
	if in.sumFix != nil {
		putF32(in.sumFix)
	}
	in.rounded, in.q8, in.q80, in.q81, in.sumFix = nil, nil, nil, nil, nil
}

// Pools of the buffers one token's activations are rounded and quantized
// into. Larger buffers (a prompt's) are left to the garbage collector: a
// pool would keep them resident between prompts, and their allocation is
// shared by the whole chunk of tokens.
var f32Pool, q8KPool, q80Pool sync.Pool

// pooledMax is the largest buffer the pools keep, in elements.
const pooledMax = 1 << 15

// getF32 returns a float32 buffer of length n (contents undefined).
func getF32(n int) []float32 {
	if n <= pooledMax {
		if p, _ := f32Pool.Get().(*[]float32); p != nil && cap(*p) >= n {
			return (*p)[:n]
		}
	}
	return make([]float32, n, pooledCap(n))
}

// pooledCap is the capacity of a new buffer of n elements: the pools' largest
// for one that will go back to a pool, so that a pooled buffer fits every
// request (a smaller one taken for a larger request would be dropped, and
// one token's rows of two widths would allocate anew at every matrix).
func pooledCap(n int) int {
	if n <= pooledMax {
		return pooledMax
	}
	return n
}

func putF32(b []float32) {
	if cap(b) <= pooledMax {
		f32Pool.Put(&b)
	}
}

// The rounding of one block; the AVX-512 versions give the same bits.
var (
	roundQ8_0Impl = roundQ8_0
	roundQ8KImpl  = roundQ8K
	q81FixImpl    = q81Fix
	// fillQ80Impl and fillQ8KImpl turn blocks rounded by roundQ8_0 or
	// roundQ8K into integers.
	fillQ80Impl = fillQ80
	fillQ8KImpl = fillQ8K
)

// roundQ8_0: scale amax/127 stored as F16, values rounded to nearest even.
func roundQ8_0(dst, src []float32) {
	var amax float32
	for _, v := range src {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	if amax == 0 {
		clear(dst)
		return
	}
	d := tensor.F16ToF32(tensor.F32ToF16(amax / 127))
	id := 127 / amax
	for i, v := range src {
		dst[i] = float32(math.RoundToEven(float64(v*id))) * d
	}
}

// roundQ8K: scale from the signed extreme (−127/max), values rounded to
// nearest even and capped at 127, scale kept in float32.
func roundQ8K(dst, src []float32) {
	var amax, signed float32
	for _, v := range src {
		if a := float32(math.Abs(float64(v))); a > amax {
			amax, signed = a, v
		}
	}
	if amax == 0 {
		clear(dst)
		return
	}
	iscale := -127 / signed
	d := 1 / iscale
	for i, v := range src {
		dst[i] = float32(min(math.RoundToEven(float64(iscale*v)), 127)) * d
	}
}

// q80 is rows of activations as roundQ8_0 rounds them for the legacy
// types, back in integers: blocks of 32 int8 values with one scale d (exact:
// the largest value is 127·d) and the block's sum d·Σq.
type q80 struct {
	qs     []int8
	d, sum []float32
}

// getQ80 returns integers for n activations (every field is written by
// fillQ80), from the pool when it has a large enough one.
func getQ80(n int) *q80 {
	nb := n / 32
	if n <= pooledMax {
		if a, _ := q80Pool.Get().(*q80); a != nil && cap(a.qs) >= n {
			a.qs, a.d, a.sum = a.qs[:nb*32], a.d[:nb], a.sum[:nb]
			return a
		}
	}
	c := pooledCap(n) / 32
	return &q80{qs: make([]int8, nb*32, c*32), d: make([]float32, nb, c), sum: make([]float32, nb, c)}
}

func putQ80(a *q80) {
	if cap(a.qs) <= pooledMax {
		q80Pool.Put(a)
	}
}

// fillQ80 sets blocks b0… of a from activations roundQ8_0 has already
// rounded: the largest is 127·d exactly, so d = max|x|/127 and q = x/d.
func fillQ80(a *q80, b0 int, x []float32) {
	for b := range len(x) / 32 {
		src, i := x[b*32:(b+1)*32], b0+b
		var amax float32
		for _, v := range src {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		if amax == 0 {
			clear(a.qs[i*32 : (i+1)*32])
			a.d[i], a.sum[i] = 0, 0
			continue
		}
		d := amax / 127
		var s int32
		for j, v := range src {
			q := int8(math.RoundToEven(float64(v / d)))
			a.qs[i*32+j] = q
			s += int32(q)
		}
		a.d[i], a.sum[i] = d, d*float32(s)
	}
}

// integersQ8K rounds raw activations as roundQ8K does and turns them into
// Q8_K integers a block at a time, without a rounded copy of the whole
// input (a prompt's was megabytes per matrix).
func integersQ8K(x []float32) *q8K {
	a := getQ8K(len(x))
	tmp := getF32(1024)[:kBlock] // pooled (one size for both): a stack array passed to the Impl functions would escape
	for b := range len(x) / kBlock {
		roundQ8KImpl(tmp, x[b*kBlock:(b+1)*kBlock])
		fillQ8KImpl(a, b, tmp)
	}
	putF32(tmp)
	return a
}

// integersQ80 is integersQ8K for roundQ8_0's blocks of 32, a few at a time.
func integersQ80(x []float32) *q80 {
	nb := len(x) / 32
	a := getQ80(len(x))
	tmp := getF32(1024)
	for b := 0; b < nb; b += len(tmp) / 32 {
		m := min(len(tmp)/32, nb-b)
		for j := range m {
			roundQ8_0Impl(tmp[32*j:32*(j+1)], x[(b+j)*32:(b+j+1)*32])
		}
		fillQ80Impl(a, b, tmp[:32*m])
	}
	putF32(tmp)
	return a
}
