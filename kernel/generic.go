package kernel

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/viterin/vek/vek32"

	"persona/tensor"
)

// Portable implementations, used when the SIMD build is off or the CPU lacks
// AVX-512. Dot goes through vek, which has its own AVX2 assembly.

func dotGo(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	return vek32.Dot(a, b)
}

func axpyGo(y []float32, alpha float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}

func expGo(x []float32) {
	for i, v := range x {
		x[i] = float32(math.Exp(float64(v)))
	}
}

func siluMulGo(gate, up []float32) {
	for i, g := range gate {
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
	}
}

func scaleGo(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

// dot4Go sets out[r] = Σ_k x[k]·w[r*ldw+k] for r < 4, k < len(x).
func dot4Go(out, x, w []float32, ldw int) {
	// x: (K), w: (4, ldw), out: (4)
	K := len(x)
	for r := 0; r < 4; r++ {
		out[r] = dotGo(x, w[r*ldw:r*ldw+K])
	}
}

// dot8Go sets out[r] = Σ_k x[k]·w[r*ldw+k] for r < 8, k < len(x).
func dot8Go(out, x, w []float32, ldw int) {
	// x: (K), w: (8, ldw), out: (8)
	dot4Go(out[:4], x, w, ldw)
	dot4Go(out[4:8], x, w[4*ldw:], ldw)
}

// kern4Go is the contract every 4-row micro-kernel follows:
// for i < 4, j < nr: C[i*ldc+j] (+)= Σ_{k<kc} A(i,k)·panel[k*nr+j],
// with A(i,k) = a[i*rsA + k*csA], adding to C when add is set.
func kern4Go(kc int, a []float32, rsA, csA int, panel, c []float32, ldc int, add bool) {
	// A: (4, kc) strided, panel: (kc, nr), C: (4, nr) rows ldc apart
	panel = panel[:kc*nr]
	for j := 0; j < nr; j += 4 {
		var c00, c01, c02, c03, c10, c11, c12, c13 float32
		var c20, c21, c22, c23, c30, c31, c32, c33 float32
		ak := 0
		for k := 0; k < kc; k++ {
			p := panel[k*nr+j : k*nr+j+4 : k*nr+j+4]
			b0, b1, b2, b3 := p[0], p[1], p[2], p[3]
			a0, a1, a2, a3 := a[ak], a[ak+rsA], a[ak+2*rsA], a[ak+3*rsA]
			ak += csA
			c00 += a0 * b0
			c01 += a0 * b1
			c02 += a0 * b2
			c03 += a0 * b3
			c10 += a1 * b0
			c11 += a1 * b1
			c12 += a1 * b2
			c13 += a1 * b3
			c20 += a2 * b0
			c21 += a2 * b1
			c22 += a2 * b2
			c23 += a2 * b3
			c30 += a3 * b0
			c31 += a3 * b1
			c32 += a3 * b2
			c33 += a3 * b3
		}
		store4(c[j:], add, c00, c01, c02, c03)
		store4(c[ldc+j:], add, c10, c11, c12, c13)
		store4(c[2*ldc+j:], add, c20, c21, c22, c23)
		store4(c[3*ldc+j:], add, c30, c31, c32, c33)
	}
}

func store4(c []float32, add bool, v0, v1, v2, v3 float32) {
	c = c[:4]
	if add {
		c[0] += v0
		c[1] += v1
		c[2] += v2
		c[3] += v3
		return
	}
	c[0], c[1], c[2], c[3] = v0, v1, v2, v3
}

// kern1Go is the one-row micro-kernel: C[j] (+)= Σ_k a[k*csA]·panel[k*nr+j].
func kern1Go(kc int, a []float32, csA int, panel, c []float32, add bool) {
	// A: (1, kc) strided, panel: (kc, nr), C: (1, nr)
	var acc [nr]float32
	ak := 0
	for k := 0; k < kc; k++ {
		av := a[ak]
		ak += csA
		p := panel[k*nr : k*nr+nr]
		for j := range acc {
			acc[j] += av * p[j]
		}
	}
	c = c[:nr]
	if add {
		for j := range acc {
			c[j] += acc[j]
		}
		return
	}
	copy(c, acc[:])
}

// dotRowGo decodes an encoded weight row into buf and dots it with x.
func dotRowGo(x []float32, dt tensor.DType, row []byte, buf []float32) float32 {
	if dt == tensor.F32 {
		return dotGo(x, tensor.BytesToF32(row[:4*len(x)]))
	}
	buf = buf[:len(x)]
	decodeImpl(buf, dt, row)
	return dotGo(x, buf)
}

// decodeGo converts len(dst) encoded elements to float32. It is
// tensor.Decode with a table for F16, which is several times faster.
func decodeGo(dst []float32, dt tensor.DType, src []byte) {
	switch dt {
	case tensor.F16:
		tab := f16Table()
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = tab[binary.LittleEndian.Uint16(src[2*i:])]
		}
	case tensor.BF16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case tensor.Q8_0:
		tab := f16Table()
		for b := 0; b < len(dst)/tensor.Q8BlockSize; b++ {
			blk := src[b*q8BlockBytes : (b+1)*q8BlockBytes]
			d := tab[binary.LittleEndian.Uint16(blk)]
			out := dst[b*tensor.Q8BlockSize : (b+1)*tensor.Q8BlockSize]
			for i := range out {
				out[i] = d * float32(int8(blk[2+i]))
			}
		}
	default:
		tensor.Decode(dst, dt, src)
	}
}

// q8BlockBytes is the size of a Q8_0 block: an F16 scale and 32 int8s.
const q8BlockBytes = 2 + tensor.Q8BlockSize

var (
	f16Once sync.Once
	f16Tab  *[1 << 16]float32
)

// f16Table returns every half-precision value converted to float32 (256 KiB,
// built on first use).
func f16Table() *[1 << 16]float32 {
	f16Once.Do(func() {
		t := new([1 << 16]float32)
		for i := range t {
			t[i] = tensor.F16ToF32(uint16(i))
		}
		f16Tab = t
	})
	return f16Tab
}
