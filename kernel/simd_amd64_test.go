//go:build goexperiment.simd && amd64

package kernel

import (
	"math"
	"math/rand/v2"
	"simd/archsimd"
	"slices"
	"testing"
	"unsafe"

	"persona/tensor"
)

// vnniLinear (16-row panels, four tokens at a time, the last tokens padded)
// gives what the dot-product kernels give, to float32 rounding of the sum
// of |w·x|, for every K-quant type, token count and row count tried; and
// vnniLegacyLinear what one token at a time gives for the legacy types.
func TestVNNILinear(t *testing.T) {
	if !archsimd.X86.AVX512VNNI() {
		t.Skip("this CPU has no AVX512-VNNI; vnniLinear is not used here")
	}
	r := rand.New(rand.NewPCG(9, 10))
	for _, dt := range []tensor.DType{tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K} {
		for _, shape := range [][3]int{{1, 16, 256}, {3, 21, 768}, {4, 40, 512}, {5, 16, 256}, {17, 33, 512}, {8, 7, 256}} {
			T, N, K := shape[0], shape[1], shape[2]
			wt, _, xr := randomLinear(r, dt, T, N, K)
			a := quantizeQ8K(xr)
			got, want := make([]float32, T*N), make([]float32, T*N)
			vnniLinear(got, a, wt, T)
			integerLinear(want, a, wt, T)
			compareRows(t, dt.String(), got, want, xr, wt, T)
		}
	}
	for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q4_1, tensor.Q5_0, tensor.Q5_1} {
		for _, shape := range [][3]int{{1, 16, 32}, {3, 21, 96}, {4, 40, 256}, {5, 16, 64}, {17, 33, 320}, {8, 7, 32}} {
			T, N, K := shape[0], shape[1], shape[2]
			wt, x, xr := randomLinear(r, dt, T, N, K)
			got, want := make([]float32, T*N), make([]float32, T*N)
			in := &sharedInput{x: x} // Q4_1 and Q5_1 take Q8_1 block sums
			vnniLegacyLinear(got, in.forLegacy(dt, T*K), wt, T)
			in.release()
			for tok := range T {
				Linear(want[tok*N:(tok+1)*N], x[tok*K:(tok+1)*K], wt, 1)
			}
			compareRows(t, dt.String(), got, want, xr, wt, T)
		}
	}
}

// randomLinear returns a random N×K weight of type dt and T tokens of
// activations, as they are and rounded for dt.
func randomLinear(r *rand.Rand, dt tensor.DType, T, N, K int) (w *tensor.Tensor, x, xr []float32) {
	wf, x := make([]float32, N*K), make([]float32, T*K)
	for i := range wf {
		wf[i] = float32(r.NormFloat64())
	}
	for i := range x {
		x[i] = float32(r.NormFloat64() * 3)
	}
	data, err := tensor.Encode(dt, wf)
	if err != nil {
		data = randomBlocks(r, dt, N*K) // a type persona does not write
	}
	return &tensor.Tensor{DType: dt, Shape: []int{N, K}, Data: data}, x, roundActivations(x, K, dt)
}

// compareRows holds got to want (T tokens of N rows of w times xr) within
// float32 rounding of Σ|w·x| per row.
func compareRows(t *testing.T, what string, got, want, xr []float32, w *tensor.Tensor, T int) {
	t.Helper()
	N, K := w.Rows(), w.Cols()
	dec := make([]float32, N*K)
	tensor.Decode(dec, w.DType, w.Data)
	for tok := range T {
		for n := range N {
			var size float64
			for k := range K {
				size += math.Abs(float64(dec[n*K+k]) * float64(xr[tok*K+k]))
			}
			if d := math.Abs(float64(got[tok*N+n] - want[tok*N+n])); d > 2e-6*(1+size) {
				t.Fatalf("%s T %d N %d K %d: token %d row %d: %g, want %g", what, T, N, K, tok, n, got[tok*N+n], want[tok*N+n])
			}
		}
	}
}

// The AVX-512 quantizers of rounded activations give the portable ones'
// integers, scales and sums bit for bit, zero blocks included.
func TestQuantizeAVX512(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("this CPU has no AVX-512; the portable quantizers run here")
	}
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 20 {
		x := make([]float32, 256*(1+trial%5))
		for i := range x {
			x[i] = float32(r.NormFloat64() * float64(1+trial))
		}
		clear(x[:256*(trial%2)]) // a zero block every other trial
		for b := 0; b < len(x); b += 32 {
			if p, v := q81Fix(x[b:b+32]), q81FixAVX512(x[b:b+32]); math.Float32bits(p) != math.Float32bits(v) {
				t.Fatalf("trial %d block %d: q81FixAVX512 %g, q81Fix %g", trial, b/32, v, p)
			}
		}
		for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_K} {
			xr := roundActivations(x, len(x), dt)
			if dt == tensor.Q8_0 {
				a, b := quantizeQ80(xr), quantizeQ80(xr)
				stale(b.qs, b.d, b.sum) // every field must be written
				fillQ80AVX512(b, 0, xr)
				if !slices.Equal(a.qs, b.qs) || !slices.Equal(a.d, b.d) || !slices.Equal(a.sum, b.sum) {
					t.Fatalf("trial %d: fillQ80AVX512 differs from fillQ80", trial)
				}
				continue
			}
			a, b := quantizeQ8K(xr), quantizeQ8K(xr)
			stale(b.qs, b.d, b.bsum)
			stale(nil, b.gsum, nil)
			fillQ8KAVX512(b, 0, xr)
			if !slices.Equal(a.qs, b.qs) || !slices.Equal(a.d, b.d) || !slices.Equal(a.bsum, b.bsum) || !slices.Equal(a.gsum, b.gsum) {
				t.Fatalf("trial %d: fillQ8KAVX512 differs from fillQ8K", trial)
			}
		}
	}
}

// Q8_0 rows times Q8_0 activations in integers equal the decoded rows
// times the rounded activations, to float32 rounding of Σ|w·x|, weights of
// −128 included.
func TestDotQ80(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("this CPU has no AVX-512; Q8_0 rows are dotted in float32 here")
	}
	r := rand.New(rand.NewPCG(13, 14))
	for _, shape := range [][2]int{{1, 32}, {7, 96}, {16, 256}, {33, 2048}} {
		N, K := shape[0], shape[1]
		w, x := make([]float32, N*K), make([]float32, K)
		for i := range w {
			w[i] = float32(r.NormFloat64())
		}
		for i := range x {
			x[i] = float32(r.NormFloat64() * 5)
		}
		data, err := tensor.Encode(tensor.Q8_0, w)
		if err != nil {
			t.Fatal(err)
		}
		data[2] = 0x80 // a weight of −128, which VPABSB leaves as 128 unsigned
		xr := roundActivations(x, K, tensor.Q8_0)
		got := make([]float32, N)
		dotQ80RowsAVX(got, data, quantizeQ80(xr))
		dec := make([]float32, N*K)
		tensor.Decode(dec, tensor.Q8_0, data)
		for n := range N {
			var want, size float64
			for k := range K {
				p := float64(dec[n*K+k]) * float64(xr[k])
				want, size = want+p, size+math.Abs(p)
			}
			if d := math.Abs(float64(got[n]) - want); d > 1e-6*(1+size) {
				t.Fatalf("N %d K %d row %d: %g, decoded %g", N, K, n, got[n], want)
			}
		}
	}
}

// quantizeQ80 turns activations roundQ8_0 has already rounded into
// integers with the portable fillQ80.
func quantizeQ80(x []float32) *q80 {
	a := getQ80(len(x))
	fillQ80(a, 0, x)
	return a
}

// stale overwrites what a quantizer must set with values it never writes.
func stale(qs []int8, d, sum []float32) {
	for i := range qs {
		qs[i] = 99
	}
	for i := range d {
		d[i] = -1
	}
	for i := range sum {
		sum[i] = -1
	}
}

// transpose16 transposes 16×16 words from rows of any stride.
func TestTranspose16(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("this CPU has no AVX-512; transpose16 is not used here")
	}
	const stride = 80 // words per source row
	src := make([]uint32, 16*stride)
	for i := range src {
		src[i] = uint32(i*2654435761) ^ 0x5bd1e995
	}
	var dst [16][16]uint32
	transpose16((*byte)(unsafe.Pointer(&dst[0][0])), (*byte)(unsafe.Pointer(&src[3])), stride*4)
	for k := range 16 {
		for r := range 16 {
			if dst[k][r] != src[r*stride+3+k] {
				t.Fatalf("dst[%d][%d] = %#x, want src[%d][%d] = %#x", k, r, dst[k][r], r, k, src[r*stride+3+k])
			}
		}
	}
}
