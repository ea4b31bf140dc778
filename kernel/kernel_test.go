package kernel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"persona/tensor"
)

// Tolerance: a float32 result must be within relTol·Σ|terms| (+ a tiny
// absolute floor) of the float64 reference, where Σ|terms| is the sum of the
// absolute products that make it up. Blocked float32 sums over K ≤ 1000 stay
// well inside this; a wrong index or a dropped tile does not.
const relTol = 2e-5

// bothPaths runs f with the active implementations, with the packed GEMM
// driver on plain-Go micro-kernels, and (when SIMD ones are installed) with
// the portable set, so one `GOEXPERIMENT=simd go test` exercises them all.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("active", f)
	func() {
		savedVek, k4, k1 := gemmViaVek, kern4Impl, kern1Impl
		defer func() { gemmViaVek, kern4Impl, kern1Impl = savedVek, k4, k1 }()
		gemmViaVek, kern4Impl, kern1Impl = false, kern4Go, kern1Go
		t.Run("go-kernels", f)
	}()
	if !simdActive {
		return
	}
	gemmViaVek = true
	defer func() { gemmViaVek = false }()
	saved := [...]any{dotImpl, axpyImpl, scaleImpl, dot4Impl, kern4Impl, kern1Impl, dotRowImpl, decodeImpl, dot8Impl, prefetchImpl, dotQ80Impl, q81FixImpl, dotQ81Impl}
	dotImpl, axpyImpl, scaleImpl, dot4Impl = dotGo, axpyGo, scaleGo, dot4Go
	q81FixImpl, dotQ81Impl = q81Fix, nil
	dot8Impl, prefetchImpl = dot8Go, func(unsafe.Pointer, uintptr) {}
	kern4Impl, kern1Impl, dotRowImpl, decodeImpl = kern4Go, kern1Go, dotRowGo, decodeGo
	dotQ80Impl = nil
	defer func() {
		dotImpl = saved[0].(func([]float32, []float32) float32)
		axpyImpl = saved[1].(func([]float32, float32, []float32))
		scaleImpl = saved[2].(func([]float32, float32))
		dot4Impl = saved[3].(func([]float32, []float32, []float32, int))
		kern4Impl = saved[4].(func(int, []float32, int, int, []float32, []float32, int, bool))
		kern1Impl = saved[5].(func(int, []float32, int, []float32, []float32, bool))
		dotRowImpl = saved[6].(func([]float32, tensor.DType, []byte, []float32) float32)
		decodeImpl = saved[7].(func([]float32, tensor.DType, []byte))
		dot8Impl = saved[8].(func([]float32, []float32, []float32, int))
		prefetchImpl = saved[9].(func(unsafe.Pointer, uintptr))
		dotQ80Impl = saved[10].(func([]float32, []byte, *q80))
		q81FixImpl = saved[11].(func([]float32) float32)
		dotQ81Impl = saved[12].(func([]float32, []byte, bool, []float32) float32)
	}()
	t.Run("portable", f)
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// refGEMM returns C = C0·acc + Σ_k A(i,k)·B(k,j) in float64 and the matching
// Σ|terms| for the tolerance.
func refGEMM(c0 []float32, accumulate bool, M, N, K int, A, B func(i, k int) float32) (ref, mag []float64) {
	ref = make([]float64, M*N)
	mag = make([]float64, M*N)
	for i := 0; i < M; i++ {
		for j := 0; j < N; j++ {
			var s, m float64
			if accumulate {
				s, m = float64(c0[i*N+j]), math.Abs(float64(c0[i*N+j]))
			}
			for k := 0; k < K; k++ {
				p := float64(A(i, k)) * float64(B(k, j))
				s += p
				m += math.Abs(p)
			}
			ref[i*N+j], mag[i*N+j] = s, m
		}
	}
	return ref, mag
}

func check(t *testing.T, got []float32, ref, mag []float64) {
	t.Helper()
	bad := 0
	for i := range ref {
		if d := math.Abs(float64(got[i]) - ref[i]); !(d <= relTol*mag[i]+1e-6) {
			if bad < 5 {
				t.Errorf("element %d: got %v, want %v (|diff| %.3g, Σ|terms| %.3g)", i, got[i], ref[i], d, mag[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d elements out of tolerance", bad, len(ref))
	}
}

var gemmShapes = [][3]int{ // M, N, K
	{1, 1, 1}, {1, 1, 17}, {4, 32, 16}, {5, 33, 17}, {2, 3, 4}, {13, 100, 172},
	{1, 70, 260}, {70, 1, 260}, {3, 200, 600}, {300, 3, 9}, {7, 344, 128},
	{64, 128, 128}, {129, 31, 257}, {512, 40, 64}, {9, 513, 33}, {33, 70, 40}, {2, 4, 3},
}

func TestMatMul(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, s := range gemmShapes {
			M, N, K := s[0], s[1], s[2]
			for _, acc := range []bool{false, true} {
				t.Run(fmt.Sprintf("%dx%dx%d/acc=%v", M, N, K, acc), func(t *testing.T) {
					a, c0 := randVec(r, M*K), randVec(r, M*N)
					bNK, bKN := randVec(r, N*K), randVec(r, K*N)
					aT := randVec(r, K*M)

					c := append([]float32(nil), c0...)
					MatMulNT(c, a, bNK, M, N, K, acc)
					ref, mag := refGEMM(c0, acc, M, N, K,
						func(i, k int) float32 { return a[i*K+k] }, func(k, j int) float32 { return bNK[j*K+k] })
					check(t, c, ref, mag)

					c = append(c[:0], c0...)
					MatMulNN(c, a, bKN, M, N, K, acc)
					ref, mag = refGEMM(c0, acc, M, N, K,
						func(i, k int) float32 { return a[i*K+k] }, func(k, j int) float32 { return bKN[k*N+j] })
					check(t, c, ref, mag)

					c = append(c[:0], c0...)
					MatMulTN(c, aT, bKN, M, N, K, acc)
					ref, mag = refGEMM(c0, acc, M, N, K,
						func(i, k int) float32 { return aT[k*M+i] }, func(k, j int) float32 { return bKN[k*N+j] })
					check(t, c, ref, mag)
				})
			}
		}
	})
}

// scaleOffsets are where the F16 scales of each block lie, per quantized
// type (GGML's block layouts; package tensor checks them against GGML).
var scaleOffsets = map[tensor.DType][]int{
	tensor.Q4_0: {0}, tensor.Q4_1: {0, 2}, tensor.Q5_0: {0}, tensor.Q5_1: {0, 2},
	tensor.Q2_K: {80, 82}, tensor.Q3_K: {108}, tensor.Q4_K: {0, 2}, tensor.Q5_K: {0, 2}, tensor.Q6_K: {208},
}

// randomBlocks returns n elements of a quantized type as random blocks
// whose scales are small finite halves (random bytes elsewhere are valid
// quants).
func randomBlocks(r *rand.Rand, dt tensor.DType, n int) []byte {
	rb, _ := dt.RowBytes(dt.BlockSize())
	out := make([]byte, n/dt.BlockSize()*rb)
	for i := range out {
		out[i] = byte(r.IntN(256))
	}
	for b := 0; b < len(out); b += rb {
		for _, off := range scaleOffsets[dt] {
			h := tensor.F32ToF16(float32(r.Float64()*0.02 + 0.001))
			out[b+off], out[b+off+1] = byte(h), byte(h>>8)
		}
	}
	return out
}

// makeWeight encodes a random [N,K] matrix and returns it with its decoded
// float32 values, which are what Linear must multiply by.
func makeWeight(t testing.TB, r *rand.Rand, dt tensor.DType, N, K int) (*tensor.Tensor, []float32) {
	if dt.Quantized() && dt != tensor.Q8_0 {
		wt := &tensor.Tensor{Name: "w", DType: dt, Shape: []int{N, K}, Data: randomBlocks(r, dt, N*K)}
		return wt, wt.ToF32()
	}
	w := randVec(r, N*K)
	var data []byte
	for n := 0; n < N; n++ {
		b, err := tensor.Encode(dt, w[n*K:(n+1)*K])
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	wt := &tensor.Tensor{Name: "w", DType: dt, Shape: []int{N, K}, Data: data}
	if dt == tensor.F32 { // keep the F32 path zero-copy: aligned bytes
		wt.Data = tensor.F32ToBytes(w)
	}
	return wt, wt.ToF32()
}

func TestLinear(t *testing.T) {
	shapes := [][3]int{ // T, N, K
		{1, 1, 32}, {1, 7, 172}, {1, 5, 64}, {1, 257, 576}, {2, 33, 64}, {3, 5, 32},
		{5, 65, 172}, {64, 96, 576}, {17, 40, 320}, {4, 32, 1}, {1, 3, 15}, {40, 101, 96}, {33, 66, 64},
		{1, 9, 512}, {7, 33, 256}, {16, 9, 512}, {20, 7, 256}, {21, 37, 512}, {40, 16, 768}, {20, 48, 256},
	}
	bothPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_1, tensor.Q5_0, tensor.Q5_1, tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K} {
			for _, s := range shapes {
				T, N, K := s[0], s[1], s[2]
				if dt.Quantized() && K%dt.BlockSize() != 0 {
					continue
				}
				t.Run(fmt.Sprintf("%v/T=%d/%dx%d", dt, T, N, K), func(t *testing.T) {
					w, wf := makeWeight(t, r, dt, N, K)
					x := randVec(r, T*K)
					out := randVec(r, T*N) // garbage that must be overwritten
					Linear(out, x, w, T)
					xr := roundActivations(x, K, dt) // what quantized weights multiply
					ref, mag := refGEMM(nil, false, T, N, K,
						func(i, k int) float32 { return xr[i*K+k] }, func(k, j int) float32 { return wf[j*K+k] })
					if dt == tensor.Q4_1 || dt == tensor.Q5_1 {
						addQ81Reference(ref, x, w, T)
					}
					check(t, out, ref, mag)
				})
			}
		}
	})
}

// addQ81Reference adds to ref (T×N products of a Q4_1 or Q5_1 weight w)
// what llama.cpp's Q8_1 activation blocks change: each block's minimum m
// times the block sum as Q8_1 stores it, F16(d·Σq) with the unrounded scale
// d = max|x|/127, instead of the rounded activations' sum F16(d)·Σq.
func addQ81Reference(ref []float64, x []float32, w *tensor.Tensor, T int) {
	N, K := w.Rows(), w.Cols()
	bs := len(w.Data) / N / (K / 32)
	f16 := func(v float64) float64 { return float64(tensor.F16ToF32(tensor.F32ToF16(float32(v)))) }
	for t := range T {
		for b := range K / 32 {
			blk := x[t*K+32*b : t*K+32*b+32]
			var amax float32
			for _, v := range blk {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			if amax == 0 {
				continue
			}
			sum := 0.0
			for _, v := range blk {
				sum += math.RoundToEven(float64(v * (127 / amax)))
			}
			d := amax / 127
			diff := f16(float64(d*float32(sum))) - f16(float64(d))*sum
			for n := range N {
				m := tensor.F16ToF32(uint16(w.Data[(n*(K/32)+b)*bs+2]) | uint16(w.Data[(n*(K/32)+b)*bs+3])<<8)
				ref[t*N+n] += float64(m) * diff
			}
		}
	}
}

func TestVectorOps(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, n := range []int{0, 1, 5, 15, 16, 17, 31, 32, 33, 63, 64, 100, 1000} {
			a, b := randVec(r, n), randVec(r, n+3) // b longer than a is allowed
			var s, m float64
			for i := range a {
				s += float64(a[i]) * float64(b[i])
				m += math.Abs(float64(a[i]) * float64(b[i]))
			}
			check(t, []float32{Dot(a, b)}, []float64{s}, []float64{m})

			y := randVec(r, n)
			ref, mag := make([]float64, n), make([]float64, n)
			for i := range y {
				ref[i] = float64(y[i]) + 0.75*float64(a[i])
				mag[i] = math.Abs(float64(y[i])) + math.Abs(0.75*float64(a[i]))
			}
			Axpy(y, 0.75, a)
			check(t, y, ref, mag)

			for i := range y {
				ref[i], mag[i] = float64(y[i])*-1.5, math.Abs(float64(y[i])*1.5)
			}
			Scale(y, -1.5)
			check(t, y, ref, mag)
		}
	})
}

func TestDecodeMatchesTensor(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0} {
			for _, n := range []int{32, 64, 96, 576} {
				v := randVec(r, n)
				enc, _ := tensor.Encode(dt, v)
				want, got := make([]float32, n), make([]float32, n)
				tensor.Decode(want, dt, enc)
				decodeImpl(got, dt, enc)
				for i := range want {
					if want[i] != got[i] {
						t.Fatalf("%v n=%d: element %d: got %v, want %v", dt, n, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// TestF16AllValues converts every half-precision bit pattern, including
// subnormals, infinities and NaNs, and compares bits with package tensor.
func TestF16AllValues(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		src := make([]byte, 2<<16)
		for i := 0; i < 1<<16; i++ {
			src[2*i], src[2*i+1] = byte(i), byte(i>>8)
		}
		got := make([]float32, 1<<16)
		decodeImpl(got, tensor.F16, src)
		for i, g := range got {
			if w := tensor.F16ToF32(uint16(i)); math.Float32bits(g) != math.Float32bits(w) {
				t.Fatalf("f16 %#04x: got %v (%#08x), want %v (%#08x)", i, g, math.Float32bits(g), w, math.Float32bits(w))
			}
		}
		// and through the fused dot: x = 1 at one position picks out one value
		x := make([]float32, 48)
		buf := make([]float32, 48)
		for _, i := range []int{0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x8001, 0xfbff, 0xc000} {
			for pos := range x {
				row := make([]byte, 96)
				row[2*pos], row[2*pos+1] = byte(i), byte(i>>8)
				clear(x)
				x[pos] = 1
				if g, w := dotRowImpl(x, tensor.F16, row, buf), tensor.F16ToF32(uint16(i)); g != w {
					t.Fatalf("dot f16 %#04x at %d: got %v, want %v", i, pos, g, w)
				}
			}
		}
	})
}

// Quantized weights multiply activations rounded as llama.cpp rounds them:
// 8 bits per block of 32 (F16 scale) for the legacy types, per block of 256
// (float32 scale from the signed extreme) for the K-quants; the rounding
// error stays within about half a step, and plain types see x itself.
func TestRoundActivations(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	x := randVec(r, 2*512)
	if got := roundActivations(x, 512, tensor.F16); &got[0] != &x[0] {
		t.Error("F16 weights got rounded activations")
	}
	for _, c := range []struct {
		dt    tensor.DType
		block int
	}{{tensor.Q8_0, 32}, {tensor.Q4_0, 32}, {tensor.Q4_K, 256}, {tensor.Q6_K, 256}} {
		xr := roundActivations(x, 512, c.dt)
		for b := 0; b < len(x); b += c.block {
			var amax float64
			for _, v := range x[b : b+c.block] {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			step := amax / 127
			for i := b; i < b+c.block; i++ {
				if d := math.Abs(float64(xr[i] - x[i])); d > 0.6*step+1e-7 { // half a step, plus the F16 scale's rounding over 127 steps
					t.Fatalf("%v element %d: %g rounded to %g, more than half a step (%g)", c.dt, i, x[i], xr[i], step)
				}
			}
		}
	}
	zero := make([]float32, 256)
	if xr := roundActivations(zero, 256, tensor.Q4_K); xr[0] != 0 {
		t.Errorf("zeros rounded to %g", xr[0])
	}
}

// TestLinearMany checks the joint row space of several weights (row counts
// not multiples of the dot kernel's 4, mixed encodings, an empty weight)
// against one reference product per weight, for one token and for several.
func TestLinearMany(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		const K = 576
		for _, T := range []int{1, 3} {
			var ws []*tensor.Tensor
			var wfs [][]float32
			var outs [][]float32
			for i, N := range []int{577, 5, 0, 192, 1536} {
				dt := []tensor.DType{tensor.F32, tensor.BF16, tensor.F32, tensor.Q8_0, tensor.F32}[i]
				w, wf := makeWeight(t, r, dt, N, K)
				ws, wfs = append(ws, w), append(wfs, wf)
				outs = append(outs, randVec(r, T*N))
			}
			x := randVec(r, T*K)
			LinearMany(outs, x, ws, T)
			for i, w := range ws {
				wf, xr := wfs[i], roundActivations(x, K, w.DType)
				ref, mag := refGEMM(nil, false, T, w.Rows(), K,
					func(i, k int) float32 { return xr[i*K+k] }, func(k, j int) float32 { return wf[j*K+k] })
				check(t, outs[i], ref, mag)
			}
		}
	})
}

// TestLinearPair checks both products and that the epilogue sees every
// element exactly once.
func TestLinearPair(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, s := range [][3]int{{1, 1536, 576}, {1, 37, 64}, {4, 100, 96}} {
			T, N, K := s[0], s[1], s[2]
			wa, fa := makeWeight(t, r, tensor.F32, N, K)
			wb, fb := makeWeight(t, r, tensor.BF16, N, K)
			x := randVec(r, T*K)
			a, b := randVec(r, T*N), randVec(r, T*N)
			LinearPair(a, b, x, wa, wb, T, func(a, b []float32) {
				for i := range a {
					a[i] = 2*a[i] + b[i]
					b[i] += 1
				}
			})
			refA, magA := refGEMM(nil, false, T, N, K,
				func(i, k int) float32 { return x[i*K+k] }, func(k, j int) float32 { return fa[j*K+k] })
			refB, magB := refGEMM(nil, false, T, N, K,
				func(i, k int) float32 { return x[i*K+k] }, func(k, j int) float32 { return fb[j*K+k] })
			for i := range refA {
				refA[i], magA[i] = 2*refA[i]+refB[i], 2*magA[i]+magB[i]
				refB[i], magB[i] = refB[i]+1, magB[i]+1
			}
			check(t, a, refA, magA)
			check(t, b, refB, magB)
		}
	})
}

// TestParallel checks that every index is visited once, also when regions
// are started from several goroutines at once and from inside a region (the
// pool is then busy and plain goroutines take over).
func TestParallel(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, n := range []int{1, 7, 100, 1000} {
				hits := make([]int32, n)
				Parallel(n, 3, 1<<30, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&hits[i], 1)
						if i == 0 {
							inner := make([]int32, 50)
							Parallel(50, 1, 1<<30, func(lo, hi int) {
								for j := lo; j < hi; j++ {
									atomic.AddInt32(&inner[j], 1)
								}
							})
							for j, h := range inner {
								if h != 1 {
									t.Errorf("nested: index %d visited %d times", j, h)
								}
							}
						}
					}
				})
				for i, h := range hits {
					if h != 1 {
						t.Errorf("n=%d: index %d visited %d times", n, i, h)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// Exp agrees with math.Exp to 2 ulp over the float32 range, maps −Inf and
// very negative inputs to 0 and large ones to +Inf, on every tail length.
func TestExp(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 15, 16, 17, 100, 1000} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.Float64()*190 - 102)
			if i%7 == 0 {
				x[i] = float32(r.NormFloat64())
			}
		}
		got := slices.Clone(x)
		Exp(got)
		for i, v := range x {
			want := math.Exp(float64(v))
			if d := math.Abs(float64(got[i])-want) / want; d > 2.4e-7 && want > 1.2e-38 {
				t.Fatalf("n %d: exp(%g) = %g, want %g (relative %.2g)", n, v, got[i], want, d)
			}
		}
	}
	special := []float32{float32(math.Inf(-1)), -200, -104, 0, 89, 1000, float32(math.Inf(1))}
	Exp(special)
	if want := []float32{0, 0, 0, 1, float32(math.Inf(1)), float32(math.Inf(1)), float32(math.Inf(1))}; !slices.Equal(special, want) {
		t.Fatalf("special values: %v, want %v", special, want)
	}
}

// SiLUMul agrees with the float64 formula to a few ulp; the activation
// rounding's AVX-512 versions give exactly the portable bits.
func TestSiLUMulAndRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 16, 33, 1000} {
		g, u := make([]float32, n), make([]float32, n)
		for i := range g {
			g[i], u[i] = float32(r.NormFloat64()*4), float32(r.NormFloat64())
		}
		got := slices.Clone(g)
		SiLUMul(got, u)
		for i, x := range g {
			want := float64(x) / (1 + math.Exp(-float64(x))) * float64(u[i])
			if d := math.Abs(float64(got[i]) - want); d > 1e-6*math.Abs(want)+1e-30 {
				t.Fatalf("silu(%g)·%g = %g, want %g", x, u[i], got[i], want)
			}
		}
	}
	for trial := range 200 {
		src := make([]float32, 256)
		for i := range src {
			src[i] = float32(r.NormFloat64() * math.Pow(10, float64(trial%7-3)))
			if trial%5 == 0 && i%9 == 0 {
				src[i] = float32(int(src[i]*4)) / 4 // ties
			}
		}
		if trial%50 == 0 {
			clear(src[:32])
		}
		if trial%3 == 0 {
			src[100] = -src[7] // a negative of the same magnitude after the first
		}
		for _, c := range []struct {
			n         int
			fast, ref func(dst, src []float32)
		}{{32, roundQ8_0Impl, roundQ8_0}, {256, roundQ8KImpl, roundQ8K}} {
			a, b := make([]float32, c.n), make([]float32, c.n)
			c.fast(a, src[:c.n])
			c.ref(b, src[:c.n])
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("block of %d, trial %d, element %d: %g, portable %g", c.n, trial, i, a[i], b[i])
				}
			}
		}
	}
}

// quantizeQ8K turns activations roundQ8K has already rounded into Q8_K
// integers with the portable fillQ8K.
func quantizeQ8K(x []float32) *q8K {
	a := getQ8K(len(x))
	fillQ8K(a, 0, x)
	return a
}

// Q4_K, Q5_K and Q6_K rows times Q8_K activations in integers (both versions,
// one to six tokens: the vector kernels take four at a time and the rest
// one by one) equal the decoded rows times the rounded activations, and the
// two versions agree to float32 rounding; the integers times the scale give
// back the rounded values.
func TestDotKQuantQ8K(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		dt        tensor.DType
		fast, ref func([]float32, int, int, []byte, *q8K)
	}{
		{tensor.Q2_K, dotQ2KQ8KImpl, dotQ2KQ8KGo}, {tensor.Q3_K, dotQ3KQ8KImpl, dotQ3KQ8KGo},
		{tensor.Q4_K, dotQ4KQ8KImpl, dotQ4KQ8KGo}, {tensor.Q5_K, dotQ5KQ8KImpl, dotQ5KQ8KGo}, {tensor.Q6_K, dotQ6KQ8KImpl, dotQ6KQ8KGo},
	} {
		for trial := range 24 {
			K, N, T := 256*(1+trial%4), 1+trial%3, 1+trial%6
			ldo := N + trial%2 // out rows of ldo, the last columns untouched
			w, x := make([]float32, N*K), make([]float32, T*K)
			for i := range w {
				w[i] = float32(r.NormFloat64())
			}
			for i := range x {
				x[i] = float32(r.NormFloat64() * float64(1+trial))
			}
			rows, err := tensor.Encode(c.dt, w)
			if c.dt == tensor.Q2_K || c.dt == tensor.Q3_K { // no encoder: random blocks are valid ones
				rows, err = randomBlocks(r, c.dt, N*K), nil
			}
			if err != nil {
				t.Fatal(err)
			}
			xr := roundActivations(x, K, c.dt)
			a := quantizeQ8K(xr)
			for i, v := range xr {
				if back := float32(a.qs[i]) * a.d[i/256]; math.Abs(float64(back-v)) > 1e-6*math.Abs(float64(v)) {
					t.Fatalf("K %d element %d: %d·%g = %g, rounded %g", K, i, a.qs[i], a.d[i/256], back, v)
				}
			}
			dec := make([]float32, N*K)
			tensor.Decode(dec, c.dt, rows)
			got, ref := make([]float32, T*ldo), make([]float32, T*ldo)
			for i := range got {
				got[i], ref[i] = -7, -7
			}
			c.fast(got, ldo, N, rows, a)
			c.ref(ref, ldo, N, rows, a)
			for tok := range T {
				for n := range ldo {
					g, f := got[tok*ldo+n], ref[tok*ldo+n]
					if n >= N {
						if g != -7 || f != -7 {
							t.Fatalf("%v: token %d column %d beyond the rows written: %g, %g", c.dt, tok, n, g, f)
						}
						continue
					}
					var want, size float64
					for i, v := range dec[n*K : (n+1)*K] {
						p := float64(v) * float64(xr[tok*K+i])
						want, size = want+p, size+math.Abs(p)
					}
					// The integer sums are exact in both; only the float
					// sum over blocks runs in another order (the vector
					// versions keep it in lanes), so they differ by float32
					// rounding of terms of about the size of Σ|w·x|.
					if d := math.Abs(float64(g - f)); d > 1e-6*(1+size) {
						t.Fatalf("%v K %d token %d of %d row %d of %d: kernel %g, portable %g", c.dt, K, tok, T, n, N, g, f)
					}
					// Against the decoded rows: the same products, each
					// weight rounded to float32 on one side and the sums
					// scaled per block on the other — float32 rounding of
					// Σ|w·x| again, which can dwarf a sum that cancels.
					if d := math.Abs(float64(g) - want); d > 1e-5*(1+size) {
						t.Fatalf("%v K %d token %d of %d row %d of %d: integer dot %g, decoded dot %g (Σ|w·x| %g)", c.dt, K, tok, T, n, N, g, want, size)
					}
				}
			}
		}
	}
}

// unpackScalesK4 gives every scale and minimum tensor.ScaleMinK4 gives.
func TestUnpackScalesK4(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	q := make([]byte, 12)
	for range 1000 {
		for i := range q {
			q[i] = byte(r.IntN(256))
		}
		sc, mn := unpackScalesK4(q)
		for j := range 8 {
			s, m := tensor.ScaleMinK4(j, q)
			if byte(sc>>(8*j)) != s || byte(mn>>(8*j)) != m {
				t.Fatalf("%x group %d: %d, %d; want %d, %d", q, j, byte(sc>>(8*j)), byte(mn>>(8*j)), s, m)
			}
		}
	}
}
