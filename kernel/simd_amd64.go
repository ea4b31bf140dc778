//go:build goexperiment.simd && amd64

package kernel

import (
	"encoding/binary"
	"runtime"
	"simd/archsimd"
	"sync"
	"unsafe"

	"persona/tensor"
)

// AVX-512 kernels written with simd/archsimd. Each exported-path kernel
// checks its slice bounds once and then walks raw pointers, because bounds
// checks inside the k loop cost as much as the FMAs. Every kernel ends with
// ClearAVXUpperBits so that SSE code after it (the Go runtime, math) does not
// pay the AVX-to-SSE transition penalty.

func init() {
	if !archsimd.X86.AVX512() {
		return
	}
	dotImpl = dotAVX512
	axpyImpl = axpyAVX512
	scaleImpl = scaleAVX512
	expImpl = expAVX512
	siluMulImpl = siluMulAVX512
	roundQ8_0Impl = roundQ8_0AVX512
	q81FixImpl = q81FixAVX512
	dotQ81Impl = func(x []float32, row []byte, five bool, fix []float32) float32 {
		return dotLegacy(x, nil, row, five, true, fix)
	}
	roundQ8KImpl = roundQ8KAVX512
	fillQ80Impl = fillQ80AVX512
	fillQ8KImpl = fillQ8KAVX512
	dotQ4KQ8KImpl = dotQ4KQ8KAVX
	dotQ5KQ8KImpl = dotQ5KQ8KAVX
	dotQ6KQ8KImpl = dotQ6KQ8KAVX
	dotQ2KQ8KImpl = dotQ2KQ8KAVX
	dotQ3KQ8KImpl = dotQ3KQ8KAVX
	dot4Impl = dot4AVX512
	dot8Impl = dot8AVX512
	prefetchImpl = prefetchL1
	kern4Impl = kern4AVX512
	kern1Impl = kern1AVX512
	dotRowImpl = dotRowAVX512
	dotQ80Impl = dotQ80RowsAVX
	decodeImpl = decodeAVX512
	fmaLoopImpl = fmaLoopAVX512
	if archsimd.X86.AVX512VNNI() {
		integerGemmImpl = vnniLinear
		legacyGemmImpl = vnniLegacyLinear
	}
	gemmViaVek = false
	simdActive = true
}

type f32x16 = archsimd.Float32x16

func at(p unsafe.Pointer, off uintptr) *[16]float32 {
	return (*[16]float32)(unsafe.Add(p, off))
}

func ld(p unsafe.Pointer, off uintptr) f32x16 { return archsimd.LoadFloat32x16(at(p, off)) }

func bcast(p unsafe.Pointer, off uintptr) f32x16 {
	return archsimd.BroadcastFloat32x16(*(*float32)(unsafe.Add(p, off)))
}

// hsum returns the sum of the 16 lanes.
func hsum(v f32x16) float32 {
	v8 := v.GetLo().Add(v.GetHi())
	v4 := v8.GetLo().Add(v8.GetHi())
	v4 = v4.AddPairs(v4)
	v4 = v4.AddPairs(v4)
	return v4.GetElem(0)
}

func dotAVX512(a, b []float32) float32 {
	// a: (n), b: (n)
	n := len(a)
	b = b[:n]
	var s0, s1 f32x16
	i := 0
	if n >= 32 {
		pa, pb := unsafe.Pointer(&a[0]), unsafe.Pointer(&b[0])
		end := uintptr(n&^31) * 4
		for off := uintptr(0); off < end; off += 128 {
			s0 = ld(pa, off).MulAdd(ld(pb, off), s0)
			s1 = ld(pa, off+64).MulAdd(ld(pb, off+64), s1)
		}
		i = n &^ 31
	}
	for ; i < n; i += 16 {
		s0 = archsimd.LoadFloat32x16SlicePart(a[i:]).MulAdd(archsimd.LoadFloat32x16SlicePart(b[i:]), s0)
	}
	r := hsum(s0.Add(s1))
	archsimd.ClearAVXUpperBits()
	return r
}

func axpyAVX512(y []float32, alpha float32, x []float32) {
	// y: (n), x: (n)
	n := len(y)
	x = x[:n]
	av := archsimd.BroadcastFloat32x16(alpha)
	i := 0
	if n >= 16 {
		py, px := unsafe.Pointer(&y[0]), unsafe.Pointer(&x[0])
		end := uintptr(n&^15) * 4
		for off := uintptr(0); off < end; off += 64 {
			ld(px, off).MulAdd(av, ld(py, off)).Store(at(py, off))
		}
		i = n &^ 15
	}
	if i < n {
		archsimd.LoadFloat32x16SlicePart(x[i:]).MulAdd(av, archsimd.LoadFloat32x16SlicePart(y[i:])).StoreSlicePart(y[i:])
	}
	archsimd.ClearAVXUpperBits()
}

// expConsts are exp16's constants, broadcast once per call of its users.
type expConsts struct {
	lo, hi, log2e, c1, c2, p0, p1, p2, p3, p4, p5, one f32x16
}

func newExpConsts() expConsts {
	b := archsimd.BroadcastFloat32x16
	return expConsts{lo: b(-105), hi: b(88.73), log2e: b(1.44269504088896341), c1: b(-0.693359375), c2: b(2.12194440e-4),
		p0: b(1.9875691500e-4), p1: b(1.3981999507e-3), p2: b(8.3334519073e-3), p3: b(4.1665795894e-2),
		p4: b(1.6666665459e-1), p5: b(5.0000001201e-1), one: b(1)}
}

// exp16: n = round(x·log₂e), r = x − n·ln2 (ln2 split in two parts so the
// product is exact), exp(r) from a minimax polynomial, and the result scaled
// by 2ⁿ with VSCALEFPS, which also makes the underflow to 0 and the
// overflow to +Inf exact. Inputs are clamped first so r stays in range
// (−Inf becomes 0).
func (c *expConsts) exp16(v f32x16) f32x16 {
	v = v.Max(c.lo).Min(c.hi)
	k := v.Mul(c.log2e).RoundToEvenScaled(0)
	r := k.MulAdd(c.c1, v)
	r = k.MulAdd(c.c2, r)
	y := c.p0.MulAdd(r, c.p1).MulAdd(r, c.p2).MulAdd(r, c.p3).MulAdd(r, c.p4).MulAdd(r, c.p5)
	y = y.MulAdd(r.Mul(r), r).Add(c.one)
	return y.Scale(k)
}

func expAVX512(x []float32) {
	n := len(x)
	c := newExpConsts()
	i := 0
	if n >= 16 {
		px := unsafe.Pointer(&x[0])
		end := uintptr(n&^15) * 4
		for off := uintptr(0); off < end; off += 64 {
			c.exp16(ld(px, off)).Store(at(px, off))
		}
		i = n &^ 15
	}
	if i < n {
		c.exp16(archsimd.LoadFloat32x16SlicePart(x[i:])).StoreSlicePart(x[i:])
	}
	archsimd.ClearAVXUpperBits()
}

// siluMulAVX512: gate = gate/(1+exp(−gate))·up, sixteen at a time.
func siluMulAVX512(gate, up []float32) {
	n := len(gate)
	up = up[:n]
	c := newExpConsts()
	zero := archsimd.BroadcastFloat32x16(0)
	f := func(g, u f32x16) f32x16 { return g.Div(c.exp16(zero.Sub(g)).Add(c.one)).Mul(u) }
	i := 0
	if n >= 16 {
		pg, pu := unsafe.Pointer(&gate[0]), unsafe.Pointer(&up[0])
		end := uintptr(n&^15) * 4
		for off := uintptr(0); off < end; off += 64 {
			f(ld(pg, off), ld(pu, off)).Store(at(pg, off))
		}
		i = n &^ 15
	}
	if i < n {
		f(archsimd.LoadFloat32x16SlicePart(gate[i:]), archsimd.LoadFloat32x16SlicePart(up[i:])).StoreSlicePart(gate[i:])
	}
	archsimd.ClearAVXUpperBits()
}

// hmax returns the largest of the 16 lanes.
func hmax(v f32x16) float32 {
	v8 := v.GetLo().Max(v.GetHi())
	v4 := v8.GetLo().Max(v8.GetHi())
	return max(v4.GetElem(0), v4.GetElem(1), v4.GetElem(2), v4.GetElem(3))
}

// roundQ8_0AVX512 is roundQ8_0 on one block of 32, with the same bits.
func roundQ8_0AVX512(dst, src []float32) {
	zero := archsimd.BroadcastFloat32x16(0)
	ps, pd := unsafe.Pointer(&src[:32][0]), unsafe.Pointer(&dst[:32][0])
	a, b := ld(ps, 0), ld(ps, 64)
	amax := hmax(a.Max(zero.Sub(a)).Max(b.Max(zero.Sub(b))))
	if amax == 0 {
		clear(dst[:32])
		return
	}
	d := archsimd.BroadcastFloat32x16(tensor.F16ToF32(tensor.F32ToF16(amax / 127)))
	id := archsimd.BroadcastFloat32x16(127 / amax)
	a.Mul(id).RoundToEvenScaled(0).Mul(d).Store(at(pd, 0))
	b.Mul(id).RoundToEvenScaled(0).Mul(d).Store(at(pd, 64))
	archsimd.ClearAVXUpperBits()
}

// q81FixAVX512 is q81Fix on one block of 32, with the same bits.
func q81FixAVX512(src []float32) float32 {
	zero := archsimd.BroadcastFloat32x16(0)
	ps := unsafe.Pointer(&src[:32][0])
	a, b := ld(ps, 0), ld(ps, 64)
	amax := hmax(a.Max(zero.Sub(a)).Max(b.Max(zero.Sub(b))))
	if amax == 0 {
		return 0
	}
	id := archsimd.BroadcastFloat32x16(127 / amax)
	s := hsumInt(a.Mul(id).RoundToEvenScaled(0).ConvertToInt32().Add(b.Mul(id).RoundToEvenScaled(0).ConvertToInt32()))
	archsimd.ClearAVXUpperBits()
	return q81Diff(amax/127, s)
}

// roundQ8KAVX512 is roundQ8K on one block of 256, with the same bits: the
// scale comes from the first element of largest magnitude.
func roundQ8KAVX512(dst, src []float32) {
	zero := archsimd.BroadcastFloat32x16(0)
	ps, pd := unsafe.Pointer(&src[:256][0]), unsafe.Pointer(&dst[:256][0])
	m := zero
	for off := uintptr(0); off < 1024; off += 64 {
		v := ld(ps, off)
		m = m.Max(v.Max(zero.Sub(v)))
	}
	amax := hmax(m)
	archsimd.ClearAVXUpperBits()
	if amax == 0 {
		clear(dst[:256])
		return
	}
	var signed float32
	for _, v := range src[:256] {
		if v == amax || v == -amax {
			signed = v
			break
		}
	}
	iscale := -127 / signed
	is, d, top := archsimd.BroadcastFloat32x16(iscale), archsimd.BroadcastFloat32x16(1/iscale), archsimd.BroadcastFloat32x16(127)
	for off := uintptr(0); off < 1024; off += 64 {
		ld(ps, off).Mul(is).RoundToEvenScaled(0).Min(top).Mul(d).Store(at(pd, off))
	}
	archsimd.ClearAVXUpperBits()
}

func scaleAVX512(x []float32, s float32) {
	// x: (n)
	n := len(x)
	sv := archsimd.BroadcastFloat32x16(s)
	i := 0
	if n >= 16 {
		px := unsafe.Pointer(&x[0])
		end := uintptr(n&^15) * 4
		for off := uintptr(0); off < end; off += 64 {
			ld(px, off).Mul(sv).Store(at(px, off))
		}
		i = n &^ 15
	}
	if i < n {
		archsimd.LoadFloat32x16SlicePart(x[i:]).Mul(sv).StoreSlicePart(x[i:])
	}
	archsimd.ClearAVXUpperBits()
}

// dot4AVX512 sets out[r] = x·w[r*ldw : r*ldw+K] for r < 4: one load of x
// feeds four rows, so the loop issues one extra load per FMA, not two.
func dot4AVX512(out, x, w []float32, ldw int) {
	// x: (K), w: (4, ldw), out: (4)
	K := len(x)
	out = out[:4]
	_ = w[3*ldw+K-1]
	var s0, s1, s2, s3 f32x16
	k := 0
	if K >= 16 {
		px, pw := unsafe.Pointer(&x[0]), unsafe.Pointer(&w[0])
		rs := uintptr(ldw) * 4
		end := uintptr(K&^15) * 4
		for off := uintptr(0); off < end; off += 64 {
			xv := ld(px, off)
			s0 = ld(pw, off).MulAdd(xv, s0)
			s1 = ld(pw, off+rs).MulAdd(xv, s1)
			s2 = ld(pw, off+2*rs).MulAdd(xv, s2)
			s3 = ld(pw, off+3*rs).MulAdd(xv, s3)
		}
		k = K &^ 15
	}
	if k < K {
		xv := archsimd.LoadFloat32x16SlicePart(x[k:])
		s0 = archsimd.LoadFloat32x16SlicePart(w[k:K]).MulAdd(xv, s0)
		s1 = archsimd.LoadFloat32x16SlicePart(w[ldw+k:ldw+K]).MulAdd(xv, s1)
		s2 = archsimd.LoadFloat32x16SlicePart(w[2*ldw+k:2*ldw+K]).MulAdd(xv, s2)
		s3 = archsimd.LoadFloat32x16SlicePart(w[3*ldw+k:3*ldw+K]).MulAdd(xv, s3)
	}
	out[0], out[1], out[2], out[3] = hsum(s0), hsum(s1), hsum(s2), hsum(s3)
	archsimd.ClearAVXUpperBits()
}

// dot8AVX512 is dot4AVX512 for eight rows (nine live vectors): twice the
// loads in flight per x load.
func dot8AVX512(out, x, w []float32, ldw int) {
	// x: (K), w: (8, ldw), out: (8)
	K := len(x)
	out = out[:8]
	_ = w[7*ldw+K-1]
	var s0, s1, s2, s3, s4, s5, s6, s7 f32x16
	k := 0
	if K >= 16 {
		px, pw := unsafe.Pointer(&x[0]), unsafe.Pointer(&w[0])
		rs := uintptr(ldw) * 4
		pw4 := unsafe.Add(pw, 4*rs)
		end := uintptr(K&^15) * 4
		for off := uintptr(0); off < end; off += 64 {
			xv := ld(px, off)
			s0 = ld(pw, off).MulAdd(xv, s0)
			s1 = ld(pw, off+rs).MulAdd(xv, s1)
			s2 = ld(pw, off+2*rs).MulAdd(xv, s2)
			s3 = ld(pw, off+3*rs).MulAdd(xv, s3)
			s4 = ld(pw4, off).MulAdd(xv, s4)
			s5 = ld(pw4, off+rs).MulAdd(xv, s5)
			s6 = ld(pw4, off+2*rs).MulAdd(xv, s6)
			s7 = ld(pw4, off+3*rs).MulAdd(xv, s7)
		}
		k = K &^ 15
	}
	if k < K {
		xv := archsimd.LoadFloat32x16SlicePart(x[k:])
		s0 = archsimd.LoadFloat32x16SlicePart(w[k:K]).MulAdd(xv, s0)
		s1 = archsimd.LoadFloat32x16SlicePart(w[ldw+k:ldw+K]).MulAdd(xv, s1)
		s2 = archsimd.LoadFloat32x16SlicePart(w[2*ldw+k:2*ldw+K]).MulAdd(xv, s2)
		s3 = archsimd.LoadFloat32x16SlicePart(w[3*ldw+k:3*ldw+K]).MulAdd(xv, s3)
		s4 = archsimd.LoadFloat32x16SlicePart(w[4*ldw+k:4*ldw+K]).MulAdd(xv, s4)
		s5 = archsimd.LoadFloat32x16SlicePart(w[5*ldw+k:5*ldw+K]).MulAdd(xv, s5)
		s6 = archsimd.LoadFloat32x16SlicePart(w[6*ldw+k:6*ldw+K]).MulAdd(xv, s6)
		s7 = archsimd.LoadFloat32x16SlicePart(w[7*ldw+k:7*ldw+K]).MulAdd(xv, s7)
	}
	out[0], out[1], out[2], out[3] = hsum(s0), hsum(s1), hsum(s2), hsum(s3)
	out[4], out[5], out[6], out[7] = hsum(s4), hsum(s5), hsum(s6), hsum(s7)
	archsimd.ClearAVXUpperBits()
}

// kern4AVX512 follows kern4Go's contract: a 4×32 tile of C in eight
// accumulators, per k two panel loads and four broadcasts of A feeding eight
// FMAs (11 live vectors, under the 14 that avoid spills).
func kern4AVX512(kc int, a []float32, rsA, csA int, panel, c []float32, ldc int, add bool) {
	// A: (4, kc) strided, panel: (kc, nr), C: (4, nr) rows ldc apart
	if kc <= 0 {
		kern4Go(kc, a, rsA, csA, panel, c, ldc, add)
		return
	}
	_ = a[3*rsA+(kc-1)*csA]
	_ = panel[kc*nr-1]
	_ = c[3*ldc+nr-1]
	pa, pb := unsafe.Pointer(&a[0]), unsafe.Pointer(&panel[0])
	r1, r2, r3 := uintptr(rsA)*4, uintptr(2*rsA)*4, uintptr(3*rsA)*4
	cs := uintptr(csA) * 4
	var c00, c01, c10, c11, c20, c21, c30, c31 f32x16
	var ao, bo uintptr
	for k := 0; k < kc; k++ {
		b0 := ld(pb, bo)
		b1 := ld(pb, bo+64)
		a0 := bcast(pa, ao)
		c00 = b0.MulAdd(a0, c00)
		c01 = b1.MulAdd(a0, c01)
		a1 := bcast(pa, ao+r1)
		c10 = b0.MulAdd(a1, c10)
		c11 = b1.MulAdd(a1, c11)
		a2 := bcast(pa, ao+r2)
		c20 = b0.MulAdd(a2, c20)
		c21 = b1.MulAdd(a2, c21)
		a3 := bcast(pa, ao+r3)
		c30 = b0.MulAdd(a3, c30)
		c31 = b1.MulAdd(a3, c31)
		ao += cs
		bo += nr * 4
	}
	pc := unsafe.Pointer(&c[0])
	l := uintptr(ldc) * 4
	if add {
		c00 = c00.Add(ld(pc, 0))
		c01 = c01.Add(ld(pc, 64))
		c10 = c10.Add(ld(pc, l))
		c11 = c11.Add(ld(pc, l+64))
		c20 = c20.Add(ld(pc, 2*l))
		c21 = c21.Add(ld(pc, 2*l+64))
		c30 = c30.Add(ld(pc, 3*l))
		c31 = c31.Add(ld(pc, 3*l+64))
	}
	c00.Store(at(pc, 0))
	c01.Store(at(pc, 64))
	c10.Store(at(pc, l))
	c11.Store(at(pc, l+64))
	c20.Store(at(pc, 2*l))
	c21.Store(at(pc, 2*l+64))
	c30.Store(at(pc, 3*l))
	c31.Store(at(pc, 3*l+64))
	archsimd.ClearAVXUpperBits()
}

// kern1AVX512 is the one-row edge kernel; k is unrolled by two so that four
// independent FMA chains hide the FMA latency.
func kern1AVX512(kc int, a []float32, csA int, panel, c []float32, add bool) {
	// A: (1, kc) strided, panel: (kc, nr), C: (1, nr)
	if kc <= 0 {
		kern1Go(kc, a, csA, panel, c, add)
		return
	}
	_ = a[(kc-1)*csA]
	_ = panel[kc*nr-1]
	_ = c[nr-1]
	pa, pb := unsafe.Pointer(&a[0]), unsafe.Pointer(&panel[0])
	cs := uintptr(csA) * 4
	var c0, c1, d0, d1 f32x16
	var ao, bo uintptr
	k := 0
	for ; k+2 <= kc; k += 2 {
		a0 := bcast(pa, ao)
		a1 := bcast(pa, ao+cs)
		c0 = ld(pb, bo).MulAdd(a0, c0)
		c1 = ld(pb, bo+64).MulAdd(a0, c1)
		d0 = ld(pb, bo+128).MulAdd(a1, d0)
		d1 = ld(pb, bo+192).MulAdd(a1, d1)
		ao += 2 * cs
		bo += 2 * nr * 4
	}
	if k < kc {
		a0 := bcast(pa, ao)
		c0 = ld(pb, bo).MulAdd(a0, c0)
		c1 = ld(pb, bo+64).MulAdd(a0, c1)
	}
	c0, c1 = c0.Add(d0), c1.Add(d1)
	pc := unsafe.Pointer(&c[0])
	if add {
		c0 = c0.Add(ld(pc, 0))
		c1 = c1.Add(ld(pc, 64))
	}
	c0.Store(at(pc, 0))
	c1.Store(at(pc, 64))
	archsimd.ClearAVXUpperBits()
}

// dotRowAVX512 dots x with one encoded weight row. BF16 and Q8_0 are widened
// in registers (no scratch); F16 goes through the table into buf.
func dotRowAVX512(x []float32, dt tensor.DType, row []byte, buf []float32) float32 {
	switch dt {
	case tensor.BF16:
		return dotBF16(x, row)
	case tensor.F16:
		return dotF16(x, row)
	}
	if v, ok := packedRow(x, nil, dt, row); ok {
		return v
	}
	return dotRowGo(x, dt, row, buf)
}

// packedRow runs the kernel of a packed quantized type over a row: the dot
// product with x, or (x nil) the weights decoded into dst. It reports
// false for the types without one.
func packedRow(x, dst []float32, dt tensor.DType, row []byte) (float32, bool) {
	switch dt {
	case tensor.Q4_0:
		return dotLegacy(x, dst, row, false, false, nil), true
	case tensor.Q4_1:
		return dotLegacy(x, dst, row, false, true, nil), true
	case tensor.Q5_0:
		return dotLegacy(x, dst, row, true, false, nil), true
	case tensor.Q5_1:
		return dotLegacy(x, dst, row, true, true, nil), true
	case tensor.Q4_K:
		return dotQ45K(x, dst, row, false), true
	case tensor.Q5_K:
		return dotQ45K(x, dst, row, true), true
	case tensor.Q6_K:
		return dotQ6K(x, dst, row), true
	}
	return 0, false
}

// vecBase is where a packed kernel reads activations (x) or writes weights
// (dst, when x is nil), and how many elements the row has.
func vecBase(x, dst []float32) (unsafe.Pointer, int) {
	v := x
	if v == nil {
		v = dst
	}
	if len(v) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&v[0]), len(v)
}

// laneBits are the qh bit numbers of a Q5_0 or Q5_1 block's 32 values.
var laneBits = [2][16]uint32{
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	{16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31},
}

// dotLegacy is Σ x·w over a Q4_0, Q4_1, Q5_0 or Q5_1 row (Q4_0 and Q5_0
// are what Q4_K_M and Q5_K_M fall back to for rows that are not whole
// 256-element blocks) without decoding it to memory. A block is d (f16),
// with a minimum m (f16) for the _1 types, 32 fifth bits qh for the Q5
// types, and 16 bytes of nibbles; a weight is (q − 8)·d, (q − 16)·d or
// q·d + m, in float32 as tensor.Decode computes it. fix, for the dot of a
// _1 type, adds m·fix[b] per block (q81SumFix: llama.cpp's Q8_1 block sums).
func dotLegacy(x, dst []float32, row []byte, five, withMin bool, fix []float32) float32 {
	hdr := 2
	if withMin {
		hdr += 2
	}
	qhAt := hdr
	if five {
		hdr += 4
	}
	bb := hdr + 16
	off := int32(0)
	switch {
	case !withMin && five:
		off = 16
	case !withMin:
		off = 8
	}
	px, n := vecBase(x, dst)
	nb := n / 32
	if nb == 0 {
		return 0
	}
	_ = row[nb*bb-1]
	tab := f16Table()
	pr := unsafe.Pointer(&row[0])
	low, one := archsimd.BroadcastUint32x16(nibbleMask), archsimd.BroadcastUint32x16(1)
	centre := archsimd.BroadcastInt32x16(off)
	bitsLo, bitsHi := archsimd.LoadUint32x16(&laneBits[0]), archsimd.LoadUint32x16(&laneBits[1])
	var acc f32x16
	var mins float32 // Σ m·fix
	for b := 0; b < nb; b++ {
		blk := unsafe.Slice((*byte)(unsafe.Add(pr, b*bb)), bb)
		d := archsimd.BroadcastFloat32x16(tab[uint16(blk[0])|uint16(blk[1])<<8])
		w := archsimd.LoadUint8x16((*[16]uint8)(unsafe.Pointer(&blk[hdr]))).ExtendToUint32()
		lo, hi := w.And(low), w.ShiftAllRight(4)
		if five {
			qh := archsimd.BroadcastUint32x16(binary.LittleEndian.Uint32(blk[qhAt:]))
			lo = lo.Or(qh.ShiftRight(bitsLo).And(one).ShiftAllLeft(4))
			hi = hi.Or(qh.ShiftRight(bitsHi).And(one).ShiftAllLeft(4))
		}
		wl := lo.AsInt32x16().Sub(centre).ConvertToFloat32().Mul(d)
		wh := hi.AsInt32x16().Sub(centre).ConvertToFloat32().Mul(d)
		if withMin {
			ms := tab[uint16(blk[2])|uint16(blk[3])<<8]
			m := archsimd.BroadcastFloat32x16(ms)
			wl, wh = wl.Add(m), wh.Add(m)
			if fix != nil {
				mins += ms * fix[b]
			}
		}
		xb := unsafe.Add(px, b*32*4)
		if dst != nil {
			wl.Store(at(xb, 0))
			wh.Store(at(xb, 64))
			continue
		}
		acc = wl.MulAdd(ld(xb, 0), acc)
		acc = wh.MulAdd(ld(xb, 64), acc)
	}
	r := hsum(acc) + mins
	archsimd.ClearAVXUpperBits()
	return r
}

// dotQ45K is Σ x·w over a Q4_K or Q5_K row without decoding it to memory:
// each 16 weights are widened from their nibbles (Q5_K: plus the fifth bit
// from qh), scaled and offset as tensor.Decode does (d·sc·q − dmin·m, in
// float32), and multiplied into x.
func dotQ45K(x, dst []float32, row []byte, five bool) float32 {
	bb := q4KBytes
	if five {
		bb = q5KBytes
	}
	px, n := vecBase(x, dst)
	nb := n / kBlock
	if nb == 0 {
		return 0
	}
	_ = row[nb*bb-1]
	tab := f16Table()
	pr := unsafe.Pointer(&row[0])
	low := archsimd.BroadcastUint32x16(nibbleMask)
	one := archsimd.BroadcastUint32x16(1)
	var acc f32x16
	for b := 0; b < nb; b++ {
		blk := unsafe.Slice((*byte)(unsafe.Add(pr, b*bb)), bb)
		d, dmin := tab[uint16(blk[0])|uint16(blk[1])<<8], tab[uint16(blk[2])|uint16(blk[3])<<8]
		scales := blk[4:16]
		qs, qh := blk[16:], []byte(nil)
		if five {
			qh, qs = blk[16:48], blk[48:]
		}
		xb := unsafe.Add(px, b*kBlock*4)
		for g := 0; g < 8; g += 2 {
			s1, m1 := tensor.ScaleMinK4(g, scales)
			s2, m2 := tensor.ScaleMinK4(g+1, scales)
			d1, dm1 := archsimd.BroadcastFloat32x16(d*float32(s1)), archsimd.BroadcastFloat32x16(dmin*float32(m1))
			d2, dm2 := archsimd.BroadcastFloat32x16(d*float32(s2)), archsimd.BroadcastFloat32x16(dmin*float32(m2))
			for h := 0; h < 32; h += 16 { // the group pair's 32 bytes, 16 at a time
				u := archsimd.LoadUint8x16((*[16]uint8)(unsafe.Pointer(&qs[g*16+h]))).ExtendToUint32()
				lo, hi := u.And(low), u.ShiftAllRight(4)
				if five {
					v := archsimd.LoadUint8x16((*[16]uint8)(unsafe.Pointer(&qh[h]))).ExtendToUint32()
					lo = lo.Or(v.ShiftAllRight(uint64(g)).And(one).ShiftAllLeft(4))
					hi = hi.Or(v.ShiftAllRight(uint64(g + 1)).And(one).ShiftAllLeft(4))
				}
				w1 := lo.ConvertToFloat32().Mul(d1).Sub(dm1)
				w2 := hi.ConvertToFloat32().Mul(d2).Sub(dm2)
				if dst != nil {
					w1.Store(at(xb, uintptr((g*32+h)*4)))
					w2.Store(at(xb, uintptr((g*32+32+h)*4)))
					continue
				}
				acc = w1.MulAdd(ld(xb, uintptr((g*32+h)*4)), acc)
				acc = w2.MulAdd(ld(xb, uintptr((g*32+32+h)*4)), acc)
			}
		}
	}
	r := hsum(acc)
	archsimd.ClearAVXUpperBits()
	return r
}

// kq holds the constant vectors of the 512-bit K-quant kernels.
var kq = func() (c struct {
	k4Scale  [4][64]int8   // byte shuffles giving groups 2p and 2p+1's scales as int16
	k5Bit    [4][32]uint16 // shift counts taking bits 2p and 2p+1 of Q5_K's qh
	q6High   [2][32]uint16 // Q6_K: shifts bringing qh's bit pairs to bits 4–5
	q6Scales [4][32]uint16 // Q6_K: which of the 16 scales each int16 lane takes
	q23Low   [2][32]uint16 // Q2_K, Q3_K: shifts of qs's bit pairs, 0 and 2 bits (lo), 4 and 6 (hi)
	q3High   [4][32]uint16 // Q3_K: shifts bringing hmask's bits to bit 2 (left in quarter 0, right after)
}) {
	for p := range 4 {
		for i := range 64 {
			c.k4Scale[p][i] = -128 // zero: the high byte of each int16
			if i%2 == 0 {
				c.k4Scale[p][i] = int8(2*p + i/32)
			}
		}
		for l := range 32 {
			c.k5Bit[p][l] = uint16(2*p + l/16)
			c.q6Scales[p][l] = uint16(4*p + l/8)
		}
	}
	for l := range 32 {
		c.q6High[0][l] = uint16(4 - 2*(l/16)) // left: 4, then 2
		c.q6High[1][l] = uint16(2 * (l / 16)) // right: 0, then 2
		j := l / 16                           // the lane's 32 values: the first or second of a pair
		c.q23Low[0][l], c.q23Low[1][l] = uint16(2*j), uint16(4+2*j)
		// hmask bit 4n+k holds quarter k of half n; quarter 0 of half 0
		// needs bits 0 and 1 moved left to bit 2, the others moved right.
		c.q3High[0][l] = uint16(2 - j)
		for q := 1; q < 4; q++ {
			c.q3High[q][l] = uint16(2*q + j - 2)
		}
	}
	return c
}()

// dotQ45KQ8KAVX is dotQ45KQ8KGo 64 weights at a time: a 32-byte run of
// nibbles holds two groups (low and high nibbles), so its low nibbles go
// into the lower half of a 512-bit vector and its high nibbles into the
// upper half, which lines its 64 values up with 64 consecutive activations. The nibbles (with Q5_K's
// fifth bit moved to bit 4) as unsigned bytes times the activations as
// signed bytes are summed in pairs into 16 bits (VPMADDUBSW: at most
// 2·31·127, no saturation), pairs of those times the two groups' scales
// into 32 bits (VPMADDWD); the block's integer sums stay in lanes, scaled
// into a float accumulator, and the minimums' term is a float vector
// product of the eight minimums and the activations' group sums: no scalar
// loop per group and one horizontal sum per row.
func dotQ45KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K, five bool) {
	bb := q4KBytes
	if five {
		bb = q5KBytes
	}
	nb, T, ok := q8KShape(out, ldo, n, rows, a, bb)
	if !ok {
		return
	}
	tab := f16Table()
	c := k4Consts{low: archsimd.BroadcastUint8x32(nibbleMask), one: archsimd.BroadcastUint8x64(1)}
	// Tokens outside, rows inside: four tokens' activations stay in the
	// L1 cache while the rows stream past them, which reads 4× fewer bytes
	// than streaming every token's activations past each row.
	t := 0
	for ; t+4 <= T; t += 4 {
		for r := 0; r < n; r++ {
			s := dotQ45K4TokensAVX(unsafe.Pointer(&rows[r*nb*bb]), a, t*nb, nb, bb, five, tab, c)
			out[t*ldo+r], out[(t+1)*ldo+r], out[(t+2)*ldo+r], out[(t+3)*ldo+r] = s[0], s[1], s[2], s[3]
		}
	}
	for ; t < T; t++ {
		for r := 0; r < n; r++ {
			out[t*ldo+r] = dotQ45KRowAVX(unsafe.Pointer(&rows[r*nb*bb]), a, t*nb, nb, bb, five, tab, c)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// q8KShape checks the slices of an integer dot product of n rows with the
// tokens of a and returns the blocks per row and the token count.
func q8KShape(out []float32, ldo, n int, rows []byte, a *q8K, blockBytes int) (nb, T int, ok bool) {
	if n == 0 || len(rows) == 0 {
		return 0, 0, false
	}
	nb = len(rows) / (n * blockBytes)
	T = len(a.d) / nb
	if T == 0 {
		return 0, 0, false
	}
	_ = rows[n*nb*blockBytes-1]
	_ = a.qs[T*nb*kBlock-1]
	_ = a.gsum[T*nb*8-1]
	_ = a.bsum[T*nb*16-1]
	_ = out[(T-1)*ldo+n-1]
	return nb, T, true
}

// k4Consts are the vectors dotQ45KQ8KAVX's row kernels share.
type k4Consts struct {
	low archsimd.Uint8x32
	one archsimd.Uint8x64
}

// k4Block unpacks what a Q4_K/Q5_K block's 64-value pairs share: the eight
// scales (bytes for k4Pair's shuffles), the nibbles, Q5_K's high bits in
// both halves of a vector, the scale d, and the minimums times dmin, which
// multiply the activations' group sums.
func k4Block(blk unsafe.Pointer, five bool, tab *[1 << 16]float32) (scales archsimd.Int8x64, qs unsafe.Pointer, qh archsimd.Uint16x32, d float32, mins archsimd.Float32x8) {
	sc, mn := unpackScalesK4(unsafe.Slice((*byte)(unsafe.Add(blk, 4)), 12))
	qs, qh = k4Values(blk, five)
	m := archsimd.BroadcastUint64x2(mn).AsUint8x16().ExtendLo8ToUint32().AsInt32x8().ConvertToFloat32()
	dmin := tab[*(*uint16)(unsafe.Add(blk, 2))]
	return archsimd.BroadcastUint64x8(sc).AsInt8x64(), qs, qh, tab[*(*uint16)(blk)], m.Mul(archsimd.BroadcastFloat32x8(dmin))
}

// k4Values is where a Q4_K/Q5_K block's nibbles start and Q5_K's high bits
// in both halves of a vector (zero for Q4_K).
func k4Values(blk unsafe.Pointer, five bool) (qs unsafe.Pointer, qh archsimd.Uint16x32) {
	if !five {
		return unsafe.Add(blk, 16), qh
	}
	h := archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(blk, 16)))
	return unsafe.Add(blk, 48), archsimd.Uint8x64{}.SetLo(h).SetHi(h).AsUint16x32()
}

// k4Sums adds one token's block i to its sums: the block's integer sums
// times d·d_x to f, the minimums times the group sums to m (subtracted at
// the end).
func k4Sums(sums archsimd.Int32x16, d float32, mins archsimd.Float32x8, a *q8K, i int, f archsimd.Float32x16, m archsimd.Float32x8) (archsimd.Float32x16, archsimd.Float32x8) {
	f = sums.ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x16(a.d[i]*d), f)
	return f, mins.MulAdd(archsimd.LoadFloat32x8((*[8]float32)(a.gsum[i*8:i*8+8])), m)
}

// k4Pair is groups 2p and 2p+1 of a block: their 64 values as bytes in the
// activations' order, and their scales as int16 (16 lanes each).
func k4Pair(qs unsafe.Pointer, qh archsimd.Uint16x32, scales archsimd.Int8x64, p int, five bool, c k4Consts) (archsimd.Uint8x64, archsimd.Int16x32) {
	return k4Nibbles(qs, qh, p, five, c), scales.PermuteOrZeroGrouped(archsimd.LoadInt8x64(&kq.k4Scale[p])).AsInt16x32()
}

// k4Nibbles is k4Pair's 64 values without their scales.
func k4Nibbles(qs unsafe.Pointer, qh archsimd.Uint16x32, p int, five bool, c k4Consts) archsimd.Uint8x64 {
	u := archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(qs, 32*p)))
	q := archsimd.Uint8x64{}.SetLo(u.And(c.low)).SetHi(u.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(c.low))
	if five {
		bit := qh.ShiftRight(archsimd.LoadUint16x32(&kq.k5Bit[p])).AsUint8x64().And(c.one)
		q = q.Or(bit.AsUint16x32().ShiftAllLeft(4).AsUint8x64())
	}
	return q
}

// pairDot is q times 64 activations at x, summed in pairs into 16 bits
// (VPMADDUBSW: at most 2·31·127, no saturation), and those times the
// scales into 32 bits (VPMADDWD).
func pairDot(q archsimd.Uint8x64, s archsimd.Int16x32, x unsafe.Pointer) archsimd.Int32x16 {
	return q.DotProductPairsSaturated(archsimd.LoadInt8x64((*[64]int8)(x))).DotProductPairs(s)
}

// dotQ45KRowAVX is one row of dotQ45KQ8KAVX times one token, whose blocks
// start at block b0 of a.
func dotQ45KRowAVX(row unsafe.Pointer, a *q8K, b0, nb, bb int, five bool, tab *[1 << 16]float32, c k4Consts) float32 {
	var f archsimd.Float32x16
	var m archsimd.Float32x8
	for b := 0; b < nb; b++ {
		scales, qs, qh, d, mins := k4Block(unsafe.Add(row, b*bb), five, tab)
		x := unsafe.Pointer(&a.qs[(b0+b)*kBlock])
		var acc archsimd.Int32x16
		for p := 0; p < 4; p++ {
			q, s := k4Pair(qs, qh, scales, p, five, c)
			acc = acc.Add(pairDot(q, s, unsafe.Add(x, 64*p)))
		}
		f, m = k4Sums(acc, d, mins, a, b0+b, f, m)
	}
	return hsum(f) - hsum8(m)
}

// hsum8 returns the sum of the 8 lanes.
func hsum8(v archsimd.Float32x8) float32 {
	v4 := v.GetLo().Add(v.GetHi())
	v4 = v4.AddPairs(v4)
	v4 = v4.AddPairs(v4)
	return v4.GetElem(0)
}

// dotQ45K4TokensAVX is one row times four tokens (blocks from b0, nb
// apart): each pair of groups is unpacked once and multiplied into all
// four, which is what makes a prompt cheaper per token than decoding.
func dotQ45K4TokensAVX(row unsafe.Pointer, a *q8K, b0, nb, bb int, five bool, tab *[1 << 16]float32, c k4Consts) [4]float32 {
	// The float sums live in memory: Go gives vectors 15 registers, and
	// the integer sums, the pair being multiplied and the constants need
	// them all in the loop over pairs.
	var f [4]archsimd.Float32x16
	var m [4]archsimd.Float32x8
	stride := nb * kBlock
	for b := 0; b < nb; b++ {
		scales, qs, qh, d, mins := k4Block(unsafe.Add(row, b*bb), five, tab)
		x := unsafe.Pointer(&a.qs[(b0+b)*kBlock])
		var a0, a1, a2, a3 archsimd.Int32x16
		for p := 0; p < 4; p++ {
			q, s := k4Pair(qs, qh, scales, p, five, c)
			xp := unsafe.Add(x, 64*p)
			a0 = a0.Add(pairDot(q, s, xp))
			a1 = a1.Add(pairDot(q, s, unsafe.Add(xp, stride)))
			a2 = a2.Add(pairDot(q, s, unsafe.Add(xp, 2*stride)))
			a3 = a3.Add(pairDot(q, s, unsafe.Add(xp, 3*stride)))
		}
		i := b0 + b
		f[0], m[0] = k4Sums(a0, d, mins, a, i, f[0], m[0])
		f[1], m[1] = k4Sums(a1, d, mins, a, i+nb, f[1], m[1])
		f[2], m[2] = k4Sums(a2, d, mins, a, i+2*nb, f[2], m[2])
		f[3], m[3] = k4Sums(a3, d, mins, a, i+3*nb, f[3], m[3])
	}
	return [4]float32{hsum(f[0]) - hsum8(m[0]), hsum(f[1]) - hsum8(m[1]), hsum(f[2]) - hsum8(m[2]), hsum(f[3]) - hsum8(m[3])}
}

// dotQ6KQ8KAVX is dotQ6KQ8KGo 64 weights at a time: the 64 bytes of low
// bits of a half block hold its first 64 values in their low nibbles and the
// next 64 in their high nibbles; the two high bits of each come from qh
// (loaded into both halves of the vector and shifted per half, with byte
// masks removing what a 16-bit shift spills). The values (0…63) times the
// activations are summed in pairs into 16 bits (at most 2·63·127), those
// times the 16 scales (each covering 8 lanes, put in place by VPERMW) into
// 32 bits; the offset of 32 is paid with the scales times the activations'
// sums per 16, in the same lanes.
func dotQ6KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K) {
	nb, T, ok := q8KShape(out, ldo, n, rows, a, q6KBytes)
	if !ok {
		return
	}
	tab := f16Table()
	c := q6Consts{
		m4: archsimd.BroadcastUint8x64(0x0f), m30: archsimd.BroadcastUint8x64(0x30),
		left: archsimd.LoadUint16x32(&kq.q6High[0]), right: archsimd.LoadUint16x32(&kq.q6High[1]),
	}
	t := 0 // tokens outside, rows inside, as in dotQ45KQ8KAVX
	for ; t+4 <= T; t += 4 {
		for r := 0; r < n; r++ {
			s := dotQ6K4TokensAVX(unsafe.Pointer(&rows[r*nb*q6KBytes]), a, t*nb, nb, tab, c)
			out[t*ldo+r], out[(t+1)*ldo+r], out[(t+2)*ldo+r], out[(t+3)*ldo+r] = s[0], s[1], s[2], s[3]
		}
	}
	for ; t < T; t++ {
		for r := 0; r < n; r++ {
			out[t*ldo+r] = dotQ6KRowAVX(unsafe.Pointer(&rows[r*nb*q6KBytes]), a, t*nb, nb, tab, c)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// q6Consts are the vectors dotQ6KQ8KAVX's row kernels share.
type q6Consts struct {
	m4, m30     archsimd.Uint8x64
	left, right archsimd.Uint16x32
}

// q6Half is half n of a Q6_K block: its first 64 values and its last 64,
// as bytes 0…63 in the activations' order.
func q6Half(blk unsafe.Pointer, n int, c q6Consts) (lo, hi archsimd.Uint8x64) {
	ql := archsimd.LoadUint8x64((*[64]uint8)(unsafe.Add(blk, 64*n)))
	h := archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(blk, 128+32*n)))
	qh := archsimd.Uint8x64{}.SetLo(h).SetHi(h).AsUint16x32()
	lo = ql.And(c.m4).Or(qh.ShiftLeft(c.left).AsUint8x64().And(c.m30))
	hi = ql.AsUint16x32().ShiftAllRight(4).AsUint8x64().And(c.m4).Or(qh.ShiftRight(c.right).AsUint8x64().And(c.m30))
	return lo, hi
}

// q6Scales is quarter k of a block's 16 scales (sc, as int16) laid out
// for pairDot: each scale over the 8 lanes of its 16 values.
func q6Scales(sc archsimd.Int16x16, k int) archsimd.Int16x32 {
	return archsimd.Int16x32{}.SetLo(sc).Permute(archsimd.LoadUint16x32(&kq.q6Scales[k]))
}

// q6Block is what a Q6_K block's halves share: its 16 scales as int16
// (for q6Scales) and as float32 times −32·d, which multiply the activations'
// sums per 16 to pay the offset: Σ scale·(q−32)·x = Σ scale·q·x − 32·Σ scale·Σx.
func q6Block(blk unsafe.Pointer, tab *[1 << 16]float32) (sc archsimd.Int16x16, d float32, off archsimd.Float32x16) {
	sc = archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(blk, 192))).ExtendToInt16()
	d = tab[*(*uint16)(unsafe.Add(blk, 208))]
	return sc, d, sc.ExtendToInt32().ConvertToFloat32().Mul(archsimd.BroadcastFloat32x16(-32 * d))
}

// q6Sums adds one token's block i to its sum f: the integer sums times
// d·d_x, and the offset's term.
func q6Sums(sums archsimd.Int32x16, d float32, off archsimd.Float32x16, a *q8K, i int, f archsimd.Float32x16) archsimd.Float32x16 {
	f = sums.ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x16(a.d[i]*d), f)
	return off.MulAdd(archsimd.LoadFloat32x16((*[16]float32)(a.bsum[i*16:i*16+16])), f)
}

// dotQ6KRowAVX is one row of dotQ6KQ8KAVX times one token, whose blocks
// start at block b0 of a.
func dotQ6KRowAVX(row unsafe.Pointer, a *q8K, b0, nb int, tab *[1 << 16]float32, c q6Consts) float32 {
	var f archsimd.Float32x16
	for b := 0; b < nb; b++ {
		blk := unsafe.Add(row, b*q6KBytes)
		sc, d, off := q6Block(blk, tab)
		x := unsafe.Pointer(&a.qs[(b0+b)*kBlock])
		var acc archsimd.Int32x16
		for n := 0; n < 2; n++ {
			lo, hi := q6Half(blk, n, c)
			acc = acc.Add(pairDot(lo, q6Scales(sc, 2*n), unsafe.Add(x, 128*n)))
			acc = acc.Add(pairDot(hi, q6Scales(sc, 2*n+1), unsafe.Add(x, 128*n+64)))
		}
		f = q6Sums(acc, d, off, a, b0+b, f)
	}
	return hsum(f)
}

// dotQ6K4TokensAVX is one row times four tokens (blocks from b0, nb
// apart), each half block unpacked once for all four.
func dotQ6K4TokensAVX(row unsafe.Pointer, a *q8K, b0, nb int, tab *[1 << 16]float32, c q6Consts) [4]float32 {
	var f [4]archsimd.Float32x16 // in memory, as in dotQ45K4TokensAVX
	stride := nb * kBlock
	for b := 0; b < nb; b++ {
		blk := unsafe.Add(row, b*q6KBytes)
		sc, d, off := q6Block(blk, tab)
		i := b0 + b
		x := unsafe.Pointer(&a.qs[i*kBlock])
		var a0, a1, a2, a3 archsimd.Int32x16
		for n := 0; n < 2; n++ {
			lo, hi := q6Half(blk, n, c)
			slo, shi := q6Scales(sc, 2*n), q6Scales(sc, 2*n+1)
			xl, xh := unsafe.Add(x, 128*n), unsafe.Add(x, 128*n+64)
			a0 = a0.Add(pairDot(lo, slo, xl)).Add(pairDot(hi, shi, xh))
			a1 = a1.Add(pairDot(lo, slo, unsafe.Add(xl, stride))).Add(pairDot(hi, shi, unsafe.Add(xh, stride)))
			a2 = a2.Add(pairDot(lo, slo, unsafe.Add(xl, 2*stride))).Add(pairDot(hi, shi, unsafe.Add(xh, 2*stride)))
			a3 = a3.Add(pairDot(lo, slo, unsafe.Add(xl, 3*stride))).Add(pairDot(hi, shi, unsafe.Add(xh, 3*stride)))
		}
		f[0] = q6Sums(a0, d, off, a, i, f[0])
		f[1] = q6Sums(a1, d, off, a, i+nb, f[1])
		f[2] = q6Sums(a2, d, off, a, i+2*nb, f[2])
		f[3] = q6Sums(a3, d, off, a, i+3*nb, f[3])
	}
	return [4]float32{hsum(f[0]), hsum(f[1]), hsum(f[2]), hsum(f[3])}
}

func dotQ2KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K) {
	dotQ23KQ8KAVX(out, ldo, n, rows, a, false)
}

func dotQ3KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K) {
	dotQ23KQ8KAVX(out, ldo, n, rows, a, true)
}

// dotQ23KQ8KAVX is dotQ2KQ8KGo (three: dotQ3KQ8KGo) 64 weights at a time,
// as dotQ6KQ8KAVX: each half block's 32 bytes of bit pairs go into both
// halves of a vector and are shifted per half, giving its values in the
// activations' order; Q3_K's third bit comes from hmask the same way. The
// values (0…3, Q3_K 0…7) times the activations are summed in pairs into 16
// bits, those times the 16 group scales into 32 bits; the minimums (Q2_K)
// or the offset of 4 (Q3_K) are paid with the activations' sums per 16.
// Four tokens share each unpacked half block; prompts of more than 16
// tokens take the VNNI panels where the CPU has them.
func dotQ23KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K, three bool) {
	bb := q23Bytes(three)
	nb, T, ok := q8KShape(out, ldo, n, rows, a, bb)
	if !ok {
		return
	}
	tab := f16Table()
	c := newQ23Consts()
	t := 0 // tokens outside, rows inside, as in dotQ6KQ8KAVX
	for ; t+4 <= T; t += 4 {
		for r := 0; r < n; r++ {
			s := dotQ23K4TokensAVX(unsafe.Pointer(&rows[r*nb*bb]), a, t*nb, nb, three, tab, &c)
			out[t*ldo+r], out[(t+1)*ldo+r], out[(t+2)*ldo+r], out[(t+3)*ldo+r] = s[0], s[1], s[2], s[3]
		}
	}
	for ; t < T; t++ {
		for r := 0; r < n; r++ {
			out[t*ldo+r] = dotQ23KRowAVX(unsafe.Pointer(&rows[r*nb*bb]), a, t*nb, nb, three, tab, &c)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// q23Consts are the vectors the Q2_K and Q3_K kernels share.
type q23Consts struct {
	m3, m4 archsimd.Uint8x64
	low    [2]archsimd.Uint16x32
	high   [4]archsimd.Uint16x32
	// Q3_K's scales (tensor.ScalesQ3K, four per word): the shifts of the low and
	// high parts per word, their masks, and the offset of 32.
	scLow, scHigh  archsimd.Uint32x4
	nibbles, pairs archsimd.Uint32x4
	thirtyTwo      archsimd.Int8x16
}

func newQ23Consts() q23Consts {
	c := q23Consts{m3: archsimd.BroadcastUint8x64(3), m4: archsimd.BroadcastUint8x64(4),
		scLow: archsimd.LoadUint32x4(&[4]uint32{0, 0, 4, 4}), scHigh: archsimd.LoadUint32x4(&[4]uint32{0, 2, 4, 6}),
		nibbles: archsimd.BroadcastUint32x4(0x0f0f0f0f), pairs: archsimd.BroadcastUint32x4(0x03030303),
		thirtyTwo: archsimd.BroadcastInt8x16(32)}
	for i := range c.low {
		c.low[i] = archsimd.LoadUint16x32(&kq.q23Low[i])
	}
	for i := range c.high {
		c.high[i] = archsimd.LoadUint16x32(&kq.q3High[i])
	}
	return c
}

// q23Half is half n of a Q2_K or Q3_K block's bit pairs (qs): its values
// 0…63 (lo) and 64…127 (hi) as bytes in the activations' order.
func q23Half(qs unsafe.Pointer, n int, c *q23Consts) (lo, hi archsimd.Uint8x64) {
	h := archsimd.LoadUint8x32((*[32]uint8)(unsafe.Add(qs, 32*n)))
	q := archsimd.Uint8x64{}.SetLo(h).SetHi(h).AsUint16x32()
	return q.ShiftRight(c.low[0]).AsUint8x64().And(c.m3), q.ShiftRight(c.low[1]).AsUint8x64().And(c.m3)
}

// q3Mask is a Q3_K block's 32 bytes of third bits (hmask) in both halves
// of a vector, for q3High.
func q3Mask(blk unsafe.Pointer) archsimd.Uint16x32 {
	h := archsimd.LoadUint8x32((*[32]uint8)(blk))
	return archsimd.Uint8x64{}.SetLo(h).SetHi(h).AsUint16x32()
}

// q3High is half n of a Q3_K block's third bits (q3Mask; bit 4n+k for
// quarter k of the half) as 4 or 0 per value, lined up with q23Half's.
func q3High(q archsimd.Uint16x32, n int, c *q23Consts) (lo, hi archsimd.Uint8x64) {
	if n == 0 {
		lo = q.ShiftLeft(c.high[0]).AsUint8x64().And(c.m4)
	} else {
		lo = q.ShiftRight(c.high[2]).AsUint8x64().And(c.m4)
	}
	return lo, q.ShiftRight(c.high[2*n+1]).AsUint8x64().And(c.m4)
}

// q23Block is what a Q2_K or Q3_K block's 16 groups are multiplied by:
// the integer scales, the float scale d of the integer sums, and each
// group's coefficient of its activations' sum (Q2_K: −dmin·minimum; Q3_K:
// the offset of 4, −4·d·scale), in vectors.
func q23Block(blk unsafe.Pointer, three bool, tab *[1 << 16]float32, c *q23Consts) (sc archsimd.Int16x16, d float32, coef archsimd.Float32x16) {
	if three { // tensor.ScalesQ3K in a vector: a0, a1, a0>>4, a1>>4 and a2>>0, 2, 4, 6
		a01, a2 := *(*uint64)(unsafe.Add(blk, 96)), *(*uint32)(unsafe.Add(blk, 104))
		low := archsimd.BroadcastUint64x2(a01).AsUint32x4().ShiftRight(c.scLow).And(c.nibbles)
		high := archsimd.BroadcastUint32x4(a2).ShiftRight(c.scHigh).And(c.pairs).ShiftAllLeft(4)
		sc = low.Or(high).AsInt8x16().Sub(c.thirtyTwo).ExtendToInt16()
		d = tab[*(*uint16)(unsafe.Add(blk, 108))]
		return sc, d, sc.ExtendToInt32().ConvertToFloat32().Mul(archsimd.BroadcastFloat32x16(-4 * d))
	}
	raw := archsimd.LoadUint8x16((*[16]uint8)(blk))
	sc = raw.And(archsimd.BroadcastUint8x16(0x0f)).ExtendToUint16().AsInt16x16()
	d, dmin := tab[*(*uint16)(unsafe.Add(blk, 80))], tab[*(*uint16)(unsafe.Add(blk, 82))]
	return sc, d, raw.ExtendToUint32().ShiftAllRight(4).ConvertToFloat32().Mul(archsimd.BroadcastFloat32x16(-dmin))
}

// q23Values is half n of a Q2_K or Q3_K block's values, as q23Half; hm is
// the block's q3Mask (Q3_K only).
func q23Values(blk unsafe.Pointer, hm archsimd.Uint16x32, n int, three bool, c *q23Consts) (lo, hi archsimd.Uint8x64) {
	if !three {
		return q23Half(unsafe.Add(blk, 16), n, c)
	}
	lo, hi = q23Half(unsafe.Add(blk, 32), n, c)
	hlo, hhi := q3High(hm, n, c)
	return lo.Or(hlo), hi.Or(hhi)
}

// dotQ23KRowAVX is one row of dotQ23KQ8KAVX times one token, whose blocks
// start at block b0 of a.
func dotQ23KRowAVX(row unsafe.Pointer, a *q8K, b0, nb int, three bool, tab *[1 << 16]float32, c *q23Consts) float32 {
	bb := q23Bytes(three)
	var f archsimd.Float32x16
	for b := 0; b < nb; b++ {
		blk := unsafe.Add(row, b*bb)
		scales, d, coef := q23Block(blk, three, tab, c)
		x := unsafe.Pointer(&a.qs[(b0+b)*kBlock])
		var hm archsimd.Uint16x32
		if three {
			hm = q3Mask(blk)
		}
		var acc archsimd.Int32x16
		for n := 0; n < 2; n++ {
			lo, hi := q23Values(blk, hm, n, three, c)
			acc = acc.Add(pairDot(lo, q6Scales(scales, 2*n), unsafe.Add(x, 128*n)))
			acc = acc.Add(pairDot(hi, q6Scales(scales, 2*n+1), unsafe.Add(x, 128*n+64)))
		}
		f = q6Sums(acc, d, coef, a, b0+b, f)
	}
	return hsum(f)
}

// dotQ23K4TokensAVX is one row times four tokens (blocks from b0, nb
// apart), each half block unpacked once for all four. Its loop repeats
// dotQ6K4TokensAVX's: a shared helper taking the four tokens' sums as an
// array spilled them and cost both kernels a quarter of their speed.
func dotQ23K4TokensAVX(row unsafe.Pointer, a *q8K, b0, nb int, three bool, tab *[1 << 16]float32, c *q23Consts) [4]float32 {
	bb := q23Bytes(three)
	var f [4]archsimd.Float32x16 // in memory, as in dotQ45K4TokensAVX
	stride := nb * kBlock
	for b := 0; b < nb; b++ {
		blk := unsafe.Add(row, b*bb)
		scales, d, coef := q23Block(blk, three, tab, c)
		i := b0 + b
		x := unsafe.Pointer(&a.qs[i*kBlock])
		var hm archsimd.Uint16x32
		if three {
			hm = q3Mask(blk)
		}
		var a0, a1, a2, a3 archsimd.Int32x16
		for n := 0; n < 2; n++ {
			lo, hi := q23Values(blk, hm, n, three, c)
			slo, shi := q6Scales(scales, 2*n), q6Scales(scales, 2*n+1)
			xl, xh := unsafe.Add(x, 128*n), unsafe.Add(x, 128*n+64)
			a0 = a0.Add(pairDot(lo, slo, xl)).Add(pairDot(hi, shi, xh))
			a1 = a1.Add(pairDot(lo, slo, unsafe.Add(xl, stride))).Add(pairDot(hi, shi, unsafe.Add(xh, stride)))
			a2 = a2.Add(pairDot(lo, slo, unsafe.Add(xl, 2*stride))).Add(pairDot(hi, shi, unsafe.Add(xh, 2*stride)))
			a3 = a3.Add(pairDot(lo, slo, unsafe.Add(xl, 3*stride))).Add(pairDot(hi, shi, unsafe.Add(xh, 3*stride)))
		}
		f[0] = q6Sums(a0, d, coef, a, i, f[0])
		f[1] = q6Sums(a1, d, coef, a, i+nb, f[1])
		f[2] = q6Sums(a2, d, coef, a, i+2*nb, f[2])
		f[3] = q6Sums(a3, d, coef, a, i+3*nb, f[3])
	}
	return [4]float32{hsum(f[0]), hsum(f[1]), hsum(f[2]), hsum(f[3])}
}

func dotQ4KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K) {
	dotQ45KQ8KAVX(out, ldo, n, rows, a, false)
}

func dotQ5KQ8KAVX(out []float32, ldo, n int, rows []byte, a *q8K) {
	dotQ45KQ8KAVX(out, ldo, n, rows, a, true)
}

// dotQ6K is Σ x·w over a Q6_K row without decoding it to memory: each 16
// weights are put together from four low bits (ql) and two high bits (qh),
// centred, and scaled as tensor.Decode does (d·sc·q, in float32).
func dotQ6K(x, dst []float32, row []byte) float32 {
	px, n := vecBase(x, dst)
	nb := n / kBlock
	if nb == 0 {
		return 0
	}
	_ = row[nb*q6KBytes-1]
	tab := f16Table()
	pr := unsafe.Pointer(&row[0])
	low, two := archsimd.BroadcastUint32x16(nibbleMask), archsimd.BroadcastUint32x16(3)
	centre := archsimd.BroadcastInt32x16(32)
	var acc f32x16
	for b := 0; b < nb; b++ {
		blk := unsafe.Slice((*byte)(unsafe.Add(pr, b*q6KBytes)), q6KBytes)
		ql, qh, scales := blk[:128], blk[128:192], blk[192:208]
		d := tab[uint16(blk[208])|uint16(blk[209])<<8]
		for n := 0; n < 2; n++ {
			xb := unsafe.Add(px, (b*kBlock+128*n)*4)
			for l := 0; l < 32; l += 16 {
				is := 8*n + l/16
				a := archsimd.LoadUint8x16((*[16]uint8)(unsafe.Pointer(&ql[64*n+l]))).ExtendToUint32()
				c := archsimd.LoadUint8x16((*[16]uint8)(unsafe.Pointer(&ql[64*n+l+32]))).ExtendToUint32()
				h := archsimd.LoadUint8x16((*[16]uint8)(unsafe.Pointer(&qh[32*n+l]))).ExtendToUint32()
				qs := [4]archsimd.Uint32x16{
					a.And(low).Or(h.And(two).ShiftAllLeft(4)),
					c.And(low).Or(h.ShiftAllRight(2).And(two).ShiftAllLeft(4)),
					a.ShiftAllRight(4).Or(h.ShiftAllRight(4).And(two).ShiftAllLeft(4)),
					c.ShiftAllRight(4).Or(h.ShiftAllRight(6).And(two).ShiftAllLeft(4)),
				}
				for k, q := range qs {
					sc := archsimd.BroadcastFloat32x16(d * float32(int8(scales[is+2*k])))
					w := q.AsInt32x16().Sub(centre).ConvertToFloat32().Mul(sc)
					if dst != nil {
						w.Store(at(xb, uintptr((l+32*k)*4)))
						continue
					}
					acc = w.MulAdd(ld(xb, uintptr((l+32*k)*4)), acc)
				}
			}
		}
	}
	r := hsum(acc)
	archsimd.ClearAVXUpperBits()
	return r
}

// f16Conv widens 16 IEEE half-precision values to float32 with integer
// operations (archsimd exposes no VCVTPH2PS): the exponent and mantissa are
// shifted into float32 position and the result scaled by 2^112, which is exact
// for normal and subnormal halves; Inf/NaN (exponent 31) are patched to
// exponent 255; the sign is OR-ed back.
type f16Conv struct {
	magMask, signMask, infMin, infAdj archsimd.Uint32x16
	scale                             f32x16
}

func newF16Conv() f16Conv {
	return f16Conv{
		magMask:  archsimd.BroadcastUint32x16(0x7fff),
		signMask: archsimd.BroadcastUint32x16(0x8000),
		infMin:   archsimd.BroadcastUint32x16(31<<23 - 1),
		infAdj:   archsimd.BroadcastUint32x16((255 - 31) << 23),
		scale:    archsimd.BroadcastFloat32x16(0x1p112),
	}
}

func (c *f16Conv) load(p unsafe.Pointer) f32x16 {
	u := archsimd.LoadUint16x16((*[16]uint16)(p)).ExtendToUint32()
	em := u.And(c.magMask).ShiftAllLeft(13)
	f := em.AsFloat32x16().Mul(c.scale)
	inf := em.Add(c.infAdj).AsFloat32x16()
	f = inf.Merge(f, em.Greater(c.infMin))
	return f.AsUint32x16().Or(u.And(c.signMask).ShiftAllLeft(16)).AsFloat32x16()
}

// dotF16 returns Σ x[k]·f16(row[2k:]).
func dotF16(x []float32, row []byte) float32 {
	K := len(x)
	row = row[:2*K]
	var s0 f32x16
	k := 0
	if K >= 16 {
		cv := newF16Conv()
		px, pr := unsafe.Pointer(&x[0]), unsafe.Pointer(&row[0])
		for ; k+16 <= K; k += 16 {
			s0 = cv.load(unsafe.Add(pr, 2*k)).MulAdd(ld(px, uintptr(4*k)), s0)
		}
	}
	r := hsum(s0)
	archsimd.ClearAVXUpperBits()
	if k < K {
		tab := f16Table()
		for ; k < K; k++ {
			r += x[k] * tab[binary.LittleEndian.Uint16(row[2*k:])]
		}
	}
	return r
}

// dotBF16 returns Σ x[k]·bf16(row[2k:]).
func dotBF16(x []float32, row []byte) float32 {
	K := len(x)
	row = row[:2*K]
	var s0 f32x16
	k := 0
	if K >= 16 {
		px, pr := unsafe.Pointer(&x[0]), unsafe.Pointer(&row[0])
		for ; k+16 <= K; k += 16 {
			w := archsimd.LoadUint16x16((*[16]uint16)(unsafe.Add(pr, 2*k))).
				ExtendToUint32().ShiftAllLeft(16).AsFloat32x16()
			s0 = w.MulAdd(ld(px, uintptr(4*k)), s0)
		}
	}
	r := hsum(s0)
	archsimd.ClearAVXUpperBits()
	for ; k < K; k++ {
		r += x[k] * bf16(row[2*k:])
	}
	return r
}

func bf16(b []byte) float32 {
	return float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16)
}

func float32frombits(u uint32) float32 { return *(*float32)(unsafe.Pointer(&u)) }

// decodeAVX512 is decodeGo with BF16 and Q8_0 widened 16 lanes at a time.
func decodeAVX512(dst []float32, dt tensor.DType, src []byte) {
	switch dt {
	case tensor.BF16:
		n := len(dst)
		src = src[:2*n]
		i := 0
		if n >= 16 {
			pd, ps := unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[0])
			for ; i+16 <= n; i += 16 {
				archsimd.LoadUint16x16((*[16]uint16)(unsafe.Add(ps, 2*i))).
					ExtendToUint32().ShiftAllLeft(16).AsFloat32x16().Store(at(pd, uintptr(4*i)))
			}
			archsimd.ClearAVXUpperBits()
		}
		for ; i < n; i++ {
			dst[i] = bf16(src[2*i:])
		}
	case tensor.F16:
		n := len(dst)
		src = src[:2*n]
		i := 0
		if n >= 16 {
			cv := newF16Conv()
			pd, ps := unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[0])
			for ; i+16 <= n; i += 16 {
				cv.load(unsafe.Add(ps, 2*i)).Store(at(pd, uintptr(4*i)))
			}
			archsimd.ClearAVXUpperBits()
		}
		if i < n {
			decodeGo(dst[i:], dt, src[2*i:])
		}
	case tensor.Q8_0:
		nb := len(dst) / tensor.Q8BlockSize
		if nb == 0 {
			return
		}
		_ = src[nb*q8BlockBytes-1]
		_ = dst[nb*32-1]
		tab := f16Table()
		pd, ps := unsafe.Pointer(&dst[0]), unsafe.Pointer(&src[0])
		for b := 0; b < nb; b++ {
			blk := unsafe.Add(ps, b*q8BlockBytes)
			d := archsimd.BroadcastFloat32x16(tab[uint16(*(*byte)(blk))|uint16(*(*byte)(unsafe.Add(blk, 1)))<<8])
			archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(blk, 2))).ExtendToInt32().ConvertToFloat32().Mul(d).Store(at(pd, uintptr(b*128)))
			archsimd.LoadInt8x16((*[16]int8)(unsafe.Add(blk, 18))).ExtendToInt32().ConvertToFloat32().Mul(d).Store(at(pd, uintptr(b*128+64)))
		}
		archsimd.ClearAVXUpperBits()
	default:
		if _, ok := packedRow(nil, dst, dt, src); !ok {
			decodeGo(dst, dt, src)
		}
	}
}

// fmaLoopAVX512 is fmaLoopGo on 12 registers of 16 lanes (named variables,
// so that none of them lives in memory).
func fmaLoopAVX512(n int) (flops float64, sink float32) {
	a, b := archsimd.BroadcastFloat32x16(0.999999), archsimd.BroadcastFloat32x16(1e-7)
	c0, c1, c2, c3 := archsimd.BroadcastFloat32x16(0.1), archsimd.BroadcastFloat32x16(0.2), archsimd.BroadcastFloat32x16(0.3), archsimd.BroadcastFloat32x16(0.4)
	c4, c5, c6, c7 := c0.Add(b), c1.Add(b), c2.Add(b), c3.Add(b)
	c8, c9, c10, c11 := c4.Add(b), c5.Add(b), c6.Add(b), c7.Add(b)
	for range n {
		c0, c1, c2, c3 = c0.MulAdd(a, b), c1.MulAdd(a, b), c2.MulAdd(a, b), c3.MulAdd(a, b)
		c4, c5, c6, c7 = c4.MulAdd(a, b), c5.MulAdd(a, b), c6.MulAdd(a, b), c7.MulAdd(a, b)
		c8, c9, c10, c11 = c8.MulAdd(a, b), c9.MulAdd(a, b), c10.MulAdd(a, b), c11.MulAdd(a, b)
	}
	sum := c0.Add(c1).Add(c2).Add(c3).Add(c4).Add(c5).Add(c6).Add(c7).Add(c8).Add(c9).Add(c10).Add(c11)
	sink = hsum(sum)
	archsimd.ClearAVXUpperBits()
	return float64(n) * 12 * 16 * 2, sink
}

// vnniPanel is up to 16 rows of a K-quant weight laid out for vnniBlock,
// block by block: the values as bytes with the rows in the lanes (four
// consecutive values of row r in lane r), the integer scales of each group
// for the 16 rows, the rows' float scales d, and per group of activation
// sums (a.gsum for Q4_K and Q5_K's groups of 32, a.bsum for the others'
// groups of 16) the rows' coefficient of that sum: −dmin·m for the
// minimums, −32·d·scale for Q6_K's offset, −4·d·scale for Q3_K's.
type vnniPanel struct {
	vals           []byte    // 4,096 per block: [groups][chunks][16][4]
	scales         []int32   // groups·16 per block
	d, coef        []float32 // 16 and groups·16 per block
	groups, chunks int
	tmp            [16 * kBlock]byte // one block of the 16 rows, unpacked
}

// getVNNIPanel returns a panel for nb blocks of type dt, from the pool when
// it has one: a prompt packs panels in every matrix of every layer, and
// fresh ones were a quarter of what a prompt allocated.
func getVNNIPanel(dt tensor.DType, nb int) *vnniPanel {
	groups, chunks := 8, 8 // Q4_K, Q5_K: groups of 32
	if dt == tensor.Q2_K || dt == tensor.Q3_K || dt == tensor.Q6_K {
		groups, chunks = 16, 4 // groups of 16
	}
	p := vnniPanelBuffers(nb*4096, nb*groups*16, nb*16, nb*groups*16)
	p.groups, p.chunks = groups, chunks
	return p
}

// vnniPanelBuffers returns a pooled panel whose slices have the given
// lengths; their contents are whatever the last user left.
func vnniPanelBuffers(vals, scales, d, coef int) *vnniPanel {
	p, _ := vnniPanels.Get().(*vnniPanel)
	if p == nil {
		p = &vnniPanel{}
	}
	p.vals, p.scales, p.d, p.coef = sized(p.vals, vals), sized(p.scales, scales), sized(p.d, d), sized(p.coef, coef)
	return p
}

var vnniPanels sync.Pool

// sized returns s with length n, reallocated if its capacity is short.
func sized[E any](s []E, n int) []E {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]E, n)
}

// pack lays out rows (nr ≤ 16 rows of nb blocks of type dt); lanes past nr
// are zero. Each block of the 16 rows is unpacked into bytes, one row after
// another, and transposed into lanes four values at a time.
func (p *vnniPanel) pack(dt tensor.DType, rows []byte, nr, nb int) {
	if nr < 16 {
		clear(p.tmp[:])
		clear(p.scales)
		clear(p.d)
		clear(p.coef)
	}
	bb, _ := dt.RowBytes(kBlock)
	tab := f16Table()
	c := k4Consts{low: archsimd.BroadcastUint8x32(nibbleMask), one: archsimd.BroadcastUint8x64(1)}
	q6 := q6Consts{
		m4: archsimd.BroadcastUint8x64(0x0f), m30: archsimd.BroadcastUint8x64(0x30),
		left: archsimd.LoadUint16x32(&kq.q6High[0]), right: archsimd.LoadUint16x32(&kq.q6High[1]),
	}
	q23 := newQ23Consts()
	g16 := p.groups * 16
	for b := range nb {
		for r := range nr {
			blk := unsafe.Pointer(&rows[(r*nb+b)*bb])
			v := p.tmp[r*kBlock : (r+1)*kBlock]
			if dt == tensor.Q2_K || dt == tensor.Q3_K {
				three := dt == tensor.Q3_K
				var hm archsimd.Uint16x32
				if three {
					hm = q3Mask(blk)
				}
				for n := 0; n < 2; n++ {
					lo, hi := q23Values(blk, hm, n, three, &q23)
					lo.Store((*[64]uint8)(v[128*n:]))
					hi.Store((*[64]uint8)(v[128*n+64:]))
				}
				sc16, d, coef16 := q23Block(blk, three, tab, &q23)
				var sc [16]int32
				var coef [16]float32
				sc16.ExtendToInt32().Store(&sc)
				coef16.Store(&coef)
				p.d[b*16+r] = d
				for g := range 16 {
					p.scales[b*g16+g*16+r], p.coef[b*g16+g*16+r] = sc[g], coef[g]
				}
				continue
			}
			if dt == tensor.Q6_K {
				for n := 0; n < 2; n++ {
					lo, hi := q6Half(blk, n, q6)
					lo.Store((*[64]uint8)(v[128*n:]))
					hi.Store((*[64]uint8)(v[128*n+64:]))
				}
				d := tab[*(*uint16)(unsafe.Add(blk, 208))]
				p.d[b*16+r] = d
				for g := range 16 {
					s := int8(*(*byte)(unsafe.Add(blk, 192+g)))
					p.scales[b*g16+g*16+r] = int32(s)
					p.coef[b*g16+g*16+r] = -32 * d * float32(s)
				}
				continue
			}
			five := dt == tensor.Q5_K
			qs, qh := k4Values(blk, five)
			sc, mn := unpackScalesK4(unsafe.Slice((*byte)(unsafe.Add(blk, 4)), 12))
			for q := 0; q < 4; q++ {
				vals := k4Nibbles(qs, qh, q, five, c)
				vals.Store((*[64]uint8)(v[64*q:]))
			}
			p.d[b*16+r] = tab[*(*uint16)(blk)]
			dmin := tab[*(*uint16)(unsafe.Add(blk, 2))]
			for g := range 8 {
				p.scales[b*g16+g*16+r] = int32(sc >> (8 * g) & 0xff)
				p.coef[b*g16+g*16+r] = -dmin * float32(mn>>(8*g)&0xff)
			}
		}
		for j := range 4 { // values 64j… of the 16 rows into lanes
			transpose16(&p.vals[b*4096+j*1024], &p.tmp[j*64], kBlock)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// vnniLinear computes out[t*N+n] = Σ_k x[t,k]·W[n,k] for K-quant weights
// and the T tokens of x as Q8_K integers with vnniRows: each range of rows
// is packed 16 at a time and multiplied by all tokens, four at a time (the
// last few from a copy padded with zero tokens).
func vnniLinear(out []float32, a *q8K, w *tensor.Tensor, T int) {
	N, K := w.Rows(), w.Cols()
	nb := K / kBlock
	rb, err := w.DType.RowBytes(K)
	if err != nil {
		panic("kernel: Linear: " + err.Error())
	}
	_ = a.qs[T*K-1]
	_ = out[(T-1)*N+N-1]
	T4 := T &^ 3
	var tail *q8K
	if T4 < T {
		tail = getQ8K(4 * K)
		defer putQ8K(tail)
		copy(tail.qs, a.qs[T4*K:T*K])
		copy(tail.d, a.d[T4*nb:T*nb])
		copy(tail.bsum, a.bsum[T4*nb*16:T*nb*16])
		copy(tail.gsum, a.gsum[T4*nb*8:T*nb*8])
	}
	fn := func(lo, hi int) {
		pan := getVNNIPanel(w.DType, nb)
		defer vnniPanels.Put(pan)
		var f [4][16]float32
		for r0 := lo; r0 < hi; r0 += 16 {
			nr := min(16, hi-r0)
			pan.pack(w.DType, w.Data[r0*rb:(r0+nr)*rb], nr, nb)
			for t0 := 0; t0 < T; t0 += 4 {
				src, s0 := a, t0
				if t0 >= T4 {
					src, s0 = tail, 0
				}
				sums := src.gsum // one sum per group of the panel: 32 values, or 16
				if pan.groups == 16 {
					sums = src.bsum
				}
				args := vnniArgs{
					vals: &pan.vals[0], scales: &pan.scales[0], coef: &pan.coef[0], d: &pan.d[0],
					x: unsafe.Pointer(&src.qs[s0*K]), xd: unsafe.Pointer(&src.d[s0*nb]),
					sum:     unsafe.Pointer(&sums[s0*nb*pan.groups]),
					xStride: K, xdStride: nb * 4, sumStride: nb * pan.groups * 4,
					blocks: nb, groups: pan.groups, chunks: pan.chunks,
				}
				vnniRows(&f, &args)
				storePanel(out, N, r0, nr, t0, T, &f)
			}
		}
	}
	vnniParallel(N, T*N*K, fn)
}

// storePanel writes a panel's sums (rows r0…r0+nr of tokens t0…t0+3, those
// before T) into out, rows of N.
func storePanel(out []float32, N, r0, nr, t0, T int, f *[4][16]float32) {
	for i := 0; i < 4 && t0+i < T; i++ {
		copy(out[(t0+i)*N+r0:(t0+i)*N+r0+nr], f[i][:nr])
	}
}

// vnniParallel runs fn over N rows (work multiply-adds) in chunks of whole
// panels, four chunks per goroutine.
func vnniParallel(N, work int, fn func(lo, hi int)) {
	p := min(runtime.GOMAXPROCS(0), work/minWorkPerGoroutine, (N+15)/16)
	if p <= 1 {
		fn(0, N)
		return
	}
	parallelChunks(N, max(16, roundUp((N+4*p-1)/(4*p), 16)), p-1, fn)
}

// fillQ80AVX512 is fillQ80 32 values at a time.
func fillQ80AVX512(a *q80, b0 int, x []float32) {
	zero := archsimd.BroadcastFloat32x16(0)
	for b := range len(x) / 32 {
		p := unsafe.Pointer(&x[b*32])
		u, v := ld(p, 0), ld(p, 64)
		amax := hmax(u.Max(zero.Sub(u)).Max(v.Max(zero.Sub(v))))
		i := b0 + b
		if amax == 0 {
			clear(a.qs[i*32 : (i+1)*32])
			a.d[i], a.sum[i] = 0, 0
			continue
		}
		d := amax / 127
		id := archsimd.BroadcastFloat32x16(1 / d)
		qu := u.Mul(id).RoundToEvenScaled(0).ConvertToInt32()
		qv := v.Mul(id).RoundToEvenScaled(0).ConvertToInt32()
		qu.TruncateToInt8().Store((*[16]int8)(a.qs[i*32:]))
		qv.TruncateToInt8().Store((*[16]int8)(a.qs[i*32+16:]))
		a.d[i], a.sum[i] = d, d*float32(hsumInt(qu.Add(qv)))
	}
	archsimd.ClearAVXUpperBits()
}

// fillQ8KAVX512 is fillQ8K 16 values at a time, with the same division,
// so the same integers.
func fillQ8KAVX512(a *q8K, b0 int, x []float32) {
	zero := archsimd.BroadcastFloat32x16(0)
	for b := range len(x) / kBlock {
		p := unsafe.Pointer(&x[b*kBlock])
		m := zero
		for off := uintptr(0); off < kBlock*4; off += 64 {
			v := ld(p, off)
			m = m.Max(v.Max(zero.Sub(v)))
		}
		amax := hmax(m)
		i := b0 + b
		if amax == 0 {
			clearQ8KBlock(a, i)
			continue
		}
		d := amax / 127
		a.d[i] = d
		dv := archsimd.BroadcastFloat32x16(d)
		var pair int32
		for g := range 16 {
			q := ld(p, uintptr(64*g)).Div(dv).RoundToEvenScaled(0).ConvertToInt32()
			q.TruncateToInt8().Store((*[16]int8)(a.qs[i*kBlock+16*g:]))
			s := hsumInt(q)
			a.bsum[i*16+g] = d * float32(s)
			if g%2 == 0 {
				pair = s
				continue
			}
			a.gsum[i*8+g/2] = d * float32(pair+s)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// hsumInt returns the sum of the 16 lanes.
func hsumInt(v archsimd.Int32x16) int32 {
	v8 := v.GetLo().Add(v.GetHi())
	v4 := v8.GetLo().Add(v8.GetHi())
	return v4.GetElem(0) + v4.GetElem(1) + v4.GetElem(2) + v4.GetElem(3)
}

// legacyBlock returns a legacy block's 32 values as unsigned bytes q, its
// scale d and the coefficient c with which w = d·q + c for every weight
// w: the offsets (128 for Q8_0 stored +128, 8 for Q4_0, 16 for Q5_0) as
// −offset·d, and the minimums of Q4_1 and Q5_1 as they are.
func legacyBlock(dt tensor.DType, blk []byte, q *[32]byte, tab *[1 << 16]float32) (d, c float32) {
	d = tab[binary.LittleEndian.Uint16(blk)]
	switch dt {
	case tensor.Q8_0: // the sign bit flipped adds 128, eight bytes at a time
		for i := 0; i < 32; i += 8 {
			binary.LittleEndian.PutUint64(q[i:], binary.LittleEndian.Uint64(blk[2+i:])^0x8080808080808080)
		}
		return d, -128 * d
	case tensor.Q4_0, tensor.Q4_1:
		qs, c := blk[2:18], -8*d
		if dt == tensor.Q4_1 {
			qs, c = blk[4:20], tab[binary.LittleEndian.Uint16(blk[2:])]
		}
		const m4 = 0x0f0f0f0f0f0f0f0f
		for i := 0; i < 16; i += 8 {
			v := binary.LittleEndian.Uint64(qs[i:])
			binary.LittleEndian.PutUint64(q[i:], v&m4)
			binary.LittleEndian.PutUint64(q[16+i:], v>>4&m4)
		}
		return d, c
	default: // Q5_0, Q5_1
		rest, c := blk[2:], -16*d
		if dt == tensor.Q5_1 {
			rest, c = blk[4:], tab[binary.LittleEndian.Uint16(blk[2:])]
		}
		qh, qs := binary.LittleEndian.Uint32(rest), rest[4:20]
		for j, v := range qs {
			q[j] = v&0xf | byte(qh>>j<<4&0x10)
			q[j+16] = v>>4 | byte(qh>>(j+12)&0x10)
		}
		return d, c
	}
}

// vnniLegacyLinear is vnniLinear for the legacy types: the panels hold
// each group's 32 values of 16 rows, their scales d and coefficients.
func vnniLegacyLinear(out []float32, a *q80, w *tensor.Tensor, T int) {
	N, K := w.Rows(), w.Cols()
	ng := K / 32
	rb, err := w.DType.RowBytes(K)
	if err != nil {
		panic("kernel: Linear: " + err.Error())
	}
	_ = out[(T-1)*N+N-1]
	_ = a.qs[T*K-1]
	T4 := T &^ 3
	tail := a
	if T4 < T {
		tail = &q80{qs: make([]int8, 4*K), d: make([]float32, 4*ng), sum: make([]float32, 4*ng)}
		copy(tail.qs, a.qs[T4*K:])
		copy(tail.d, a.d[T4*ng:])
		copy(tail.sum, a.sum[T4*ng:])
	}
	bb := rb / ng
	tab := f16Table()
	fn := func(lo, hi int) {
		// One more group's room: groups are transposed two at a time.
		pan := vnniPanelBuffers((ng+1)*512, 0, ng*16, ng*16)
		defer vnniPanels.Put(pan)
		vals, d, coef := pan.vals, pan.d, pan.coef
		var f [4][16]float32
		var tmp [16][64]byte // two groups of the 16 rows
		for r0 := lo; r0 < hi; r0 += 16 {
			nr := min(16, hi-r0)
			if nr < 16 {
				clear(tmp[:])
				clear(d)
				clear(coef)
			}
			for g := 0; g < ng; g += 2 {
				for r := range nr {
					row := w.Data[(r0+r)*rb : (r0+r+1)*rb]
					for h := g; h < min(g+2, ng); h++ {
						d[h*16+r], coef[h*16+r] = legacyBlock(w.DType, row[h*bb:(h+1)*bb], (*[32]byte)(tmp[r][32*(h-g):]), tab)
					}
				}
				transpose16(&vals[g*512], &tmp[0][0], 64)
			}
			for t0 := 0; t0 < T; t0 += 4 {
				src, s0 := a, t0
				if t0 >= T4 {
					src, s0 = tail, 0
				}
				args := vnniArgs{
					vals: &vals[0], coef: &coef[0], d: &d[0],
					x: unsafe.Pointer(&src.qs[s0*K]), xd: unsafe.Pointer(&src.d[s0*ng]), sum: unsafe.Pointer(&src.sum[s0*ng]),
					xStride: K, xdStride: ng * 4, groups: ng,
				}
				vnniRowsLegacy(&f, &args)
				storePanel(out, N, r0, nr, t0, T, &f)
			}
		}
	}
	vnniParallel(N, T*N*K, fn)
}

// dotQ80RowsAVX sets out[r] = Σ w·x for consecutive Q8_0 rows and one
// token's activations as Q8_0 integers, 32 products per block in integers:
// |w| as unsigned bytes times x with w's sign (VPSIGNB), summed in pairs
// into 16 bits (at most 2·128·127) and in pairs again into 32 bits, then
// scaled by the two blocks' scales into a float sum. The activations are
// read as bytes, a quarter of what float32 activations take: 1.2× the
// float kernel it replaced on a decode-sized set of rows (kernel/doc.go).
func dotQ80RowsAVX(out []float32, rows []byte, a *q80) {
	nb := len(a.d)
	if nb == 0 || len(out) == 0 {
		clear(out)
		return
	}
	rb := nb * q8BlockBytes
	_ = rows[len(out)*rb-1]
	_ = a.qs[nb*32-1]
	tab := f16Table()
	ones := archsimd.BroadcastInt16x16(1)
	px := unsafe.Pointer(&a.qs[0])
	for r := range out {
		pr := unsafe.Pointer(&rows[r*rb])
		var acc, acc2 archsimd.Float32x8 // two sums, so that no FMA waits for the last
		b := 0
		for ; b+2 <= nb; b += 2 {
			acc = q80Block(unsafe.Add(pr, b*q8BlockBytes), unsafe.Add(px, b*32), a.d[b], tab, ones, acc)
			acc2 = q80Block(unsafe.Add(pr, (b+1)*q8BlockBytes), unsafe.Add(px, b*32+32), a.d[b+1], tab, ones, acc2)
		}
		if b < nb {
			acc = q80Block(unsafe.Add(pr, b*q8BlockBytes), unsafe.Add(px, b*32), a.d[b], tab, ones, acc)
		}
		out[r] = hsum8(acc.Add(acc2))
	}
	archsimd.ClearAVXUpperBits()
}

// q80Block adds one Q8_0 block of weights (blk) times 32 activation bytes
// (x, scale xd) to acc.
func q80Block(blk, x unsafe.Pointer, xd float32, tab *[1 << 16]float32, ones archsimd.Int16x16, acc archsimd.Float32x8) archsimd.Float32x8 {
	w := archsimd.LoadInt8x32((*[32]int8)(unsafe.Add(blk, 2)))
	s := w.Abs().AsUint8x32().DotProductPairsSaturated(archsimd.LoadInt8x32((*[32]int8)(x)).CopySign(w)).DotProductPairs(ones)
	return s.ConvertToFloat32().MulAdd(archsimd.BroadcastFloat32x8(tab[*(*uint16)(blk)]*xd), acc)
}
