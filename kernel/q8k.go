package kernel

import (
	"encoding/binary"
	"math"

	"persona/tensor"
)

// Block sizes of the K-quants: 256 elements in 84 (Q2_K), 110 (Q3_K), 144
// (Q4_K), 176 (Q5_K) or 210 (Q6_K) bytes.
const (
	kBlock     = 256
	q2KBytes   = 84
	q3KBytes   = 110
	q4KBytes   = 144
	q5KBytes   = 176
	q6KBytes   = 210
	nibbleMask = 0xf
)

// q8K is rows of activations quantized as llama.cpp's CPU backend
// quantizes them for the K-quants: blocks of 256 int8 values with one
// float32 scale (roundQ8K's rounding), plus the sums of each group of 16
// and 32 values, which Q6_K's offset of 32 and Q4_K's per-group minimums
// multiply. Dot products with K-quant rows then run in integers, as
// llama.cpp runs them, and only those two terms in float32.
type q8K struct {
	qs   []int8
	d    []float32 // one per block of 256
	bsum []float32 // d·Σq per group of 16: the group's rounded activations summed
	gsum []float32 // the same per group of 32
}

// getQ8K returns zeroed integers for n activations, from the pool when it
// has a large enough one.
func getQ8K(n int) *q8K {
	nb := n / kBlock
	if n <= pooledMax {
		if a, _ := q8KPool.Get().(*q8K); a != nil && cap(a.qs) >= n {
			a.qs, a.d, a.bsum, a.gsum = a.qs[:n], a.d[:nb], a.bsum[:nb*16], a.gsum[:nb*8]
			clear(a.qs)
			clear(a.d)
			clear(a.bsum)
			clear(a.gsum)
			return a
		}
	}
	c := pooledCap(n) / kBlock
	return &q8K{qs: make([]int8, n, c*kBlock), d: make([]float32, nb, c), bsum: make([]float32, nb*16, c*16), gsum: make([]float32, nb*8, c*8)}
}

func putQ8K(a *q8K) {
	if cap(a.qs) <= pooledMax {
		q8KPool.Put(a)
	}
}

// unpackScalesK4 unpacks a K-quant block's twelve bytes of 6-bit scales and
// minimums into eight bytes each (scale or minimum j in byte j), with four
// 32-bit mask-and-shift steps instead of eight tensor.ScaleMinK4 calls: per
// block that scalar work had cost as much as the vector work.
func unpackScalesK4(q []byte) (sc, mn uint64) {
	const m6, m4, m2 = 0x3f3f3f3f, 0x0f0f0f0f, 0x03030303
	u0, u1, u2 := binary.LittleEndian.Uint32(q[0:4]), binary.LittleEndian.Uint32(q[4:8]), binary.LittleEndian.Uint32(q[8:12])
	sc = uint64(u0&m6) | uint64(u2&m4|(u0>>6&m2)<<4)<<32
	mn = uint64(u1&m6) | uint64(u2>>4&m4|(u1>>6&m2)<<4)<<32
	return sc, mn
}

// fillQ8K sets blocks b0… of a from activations roundQ8K has already
// rounded (each block is q·d for integers |q| ≤ 127 reaching 127) by
// recovering the integers: d = max|x|/127, q = round(x/d). The products q·d
// equal the rounded values to a unit in the last place; the sign of d is
// folded into the integers.
func fillQ8K(a *q8K, b0 int, x []float32) {
	for b := range len(x) / kBlock {
		src, i := x[b*kBlock:(b+1)*kBlock], b0+b
		var amax float32
		for _, v := range src {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		if amax == 0 {
			clearQ8KBlock(a, i)
			continue
		}
		d := amax / 127
		a.d[i] = d
		var sums [16]int32
		for j, v := range src {
			q := int8(math.RoundToEven(float64(v / d)))
			a.qs[i*kBlock+j] = q
			sums[j/16] += int32(q)
		}
		for g, s := range sums {
			a.bsum[i*16+g] = d * float32(s)
		}
		for j := range 8 {
			a.gsum[i*8+j] = d * float32(sums[2*j]+sums[2*j+1])
		}
	}
}

// clearQ8KBlock zeroes block i of a (activations that are all zero).
func clearQ8KBlock(a *q8K, i int) {
	clear(a.qs[i*kBlock : (i+1)*kBlock])
	clear(a.bsum[i*16 : (i+1)*16])
	clear(a.gsum[i*8 : (i+1)*8])
	a.d[i] = 0
}

// The integer dot products set out[t*ldo+r] = Σ w·x for n consecutive rows
// r of a K-quant weight and every token t of the Q8_K activations a (each
// token as many blocks as a row): a whole range of rows and tokens per
// call, so that the vector versions set up their constants once per range
// and unpack each block of weights once for several tokens.
func dotQ4KQ8KGo(out []float32, ldo, n int, rows []byte, a *q8K) {
	eachRowQ8K(out, ldo, n, rows, a, q4KBytes, dotQ4KRowGo)
}

func dotQ5KQ8KGo(out []float32, ldo, n int, rows []byte, a *q8K) {
	eachRowQ8K(out, ldo, n, rows, a, q5KBytes, dotQ5KRowGo)
}

func dotQ6KQ8KGo(out []float32, ldo, n int, rows []byte, a *q8K) {
	eachRowQ8K(out, ldo, n, rows, a, q6KBytes, dotQ6KRowGo)
}

func dotQ2KQ8KGo(out []float32, ldo, n int, rows []byte, a *q8K) {
	eachRowQ8K(out, ldo, n, rows, a, q2KBytes, dotQ2KRowGo)
}

func dotQ3KQ8KGo(out []float32, ldo, n int, rows []byte, a *q8K) {
	eachRowQ8K(out, ldo, n, rows, a, q3KBytes, dotQ3KRowGo)
}

func eachRowQ8K(out []float32, ldo, n int, rows []byte, a *q8K, blockBytes int, dot func(row []byte, a *q8K, b0 int) float32) {
	if n == 0 {
		return
	}
	rb := len(rows) / n
	nb := rb / blockBytes
	for t := range len(a.d) / nb {
		for r := range n {
			out[t*ldo+r] = dot(rows[r*rb:(r+1)*rb], a, t*nb)
		}
	}
}

func dotQ4KRowGo(row []byte, a *q8K, b0 int) float32 { return dotQ45KRowGo(row, a, b0, false) }
func dotQ5KRowGo(row []byte, a *q8K, b0 int) float32 { return dotQ45KRowGo(row, a, b0, true) }

// dotQ45KRowGo is Σ w·x over a Q4_K row (Q5_K with five: a fifth bit per
// value from qh) and the Q8_K activations from block b0 of a, in integer
// sums per block, scaled as llama.cpp's ggml_vec_dot_q4_K_q8_K scales them.
func dotQ45KRowGo(row []byte, a *q8K, b0 int, five bool) float32 {
	bb := q4KBytes
	if five {
		bb = q5KBytes
	}
	var sum float32
	for b := range len(row) / bb {
		blk, i := row[b*bb:(b+1)*bb], b0+b
		qs, qh := blk[16:], []byte(nil)
		if five {
			qh, qs = blk[16:48], blk[48:]
		}
		sc, mn := unpackScalesK4(blk[4:16])
		var sumi int32
		var summ float32
		for j := 0; j < 8; j++ {
			var s int32
			for l := 0; l < 32; l++ {
				q := qs[(j/2)*32+l] >> (4 * (j % 2)) & nibbleMask
				if five {
					q |= (qh[l] >> j & 1) << 4
				}
				s += int32(q) * int32(a.qs[i*kBlock+j*32+l])
			}
			sumi += int32(sc>>(8*j)&0xff) * s
			summ += float32(mn>>(8*j)&0xff) * a.gsum[i*8+j]
		}
		d := a.d[i] * f16At(blk)
		dmin := f16At(blk[2:])
		sum += d*float32(sumi) - dmin*summ
	}
	return sum
}

// dotQ6KRowGo is Σ w·x over a Q6_K row and the Q8_K activations from block
// b0 of a: the six-bit values taken unsigned (0…63) and the offset of 32
// paid with the group sums, Σ(q−32)·x = Σq·x − 32·Σx, per group of 16 with
// its int8 scale.
func dotQ6KRowGo(row []byte, a *q8K, b0 int) float32 {
	var sum float32
	for b := range len(row) / q6KBytes {
		blk, i := row[b*q6KBytes:(b+1)*q6KBytes], b0+b
		ql, qh, scales := blk[:128], blk[128:192], blk[192:208]
		xs := a.qs[i*kBlock : (i+1)*kBlock]
		var sumi int32
		var off float32
		for n := 0; n < 2; n++ {
			l6, h6 := ql[64*n:], qh[32*n:]
			var dots [8]int32 // groups of 16 in this half, in scale order
			for l := 0; l < 32; l++ {
				x := xs[128*n:]
				g := l / 16
				dots[g] += int32(l6[l]&0xf|(h6[l]&3)<<4) * int32(x[l])
				dots[g+2] += int32(l6[l+32]&0xf|(h6[l]>>2&3)<<4) * int32(x[l+32])
				dots[g+4] += int32(l6[l]>>4|(h6[l]>>4&3)<<4) * int32(x[l+64])
				dots[g+6] += int32(l6[l+32]>>4|(h6[l]>>6&3)<<4) * int32(x[l+96])
			}
			for g, dt := range dots {
				sc := int8(scales[8*n+g])
				sumi += int32(sc) * dt
				off += float32(sc) * a.bsum[i*16+8*n+g]
			}
		}
		d := f16At(blk[208:])
		sum += d * (a.d[i]*float32(sumi) - 32*off)
	}
	return sum
}

// q23Bytes is the size of a Q2_K block (three: Q3_K).
func q23Bytes(three bool) int {
	if three {
		return q3KBytes
	}
	return q2KBytes
}

// low2 is value v (0…255) of a Q2_K or Q3_K block's two low bits (qs): each
// half of 128 values is 32 bytes holding four values each, 32 apart.
func low2(qs []byte, v int) int32 { return int32(qs[32*(v/128)+v%32] >> (2 * (v % 128 / 32)) & 3) }

func dotQ2KRowGo(row []byte, a *q8K, b0 int) float32 { return dotQ23KRowGo(row, a, b0, false) }
func dotQ3KRowGo(row []byte, a *q8K, b0 int) float32 { return dotQ23KRowGo(row, a, b0, true) }

// dotQ23KRowGo is Σ w·x over a Q2_K row (three: Q3_K) and the Q8_K
// activations from block b0 of a: per group of 16, the values taken
// unsigned (0…3; Q3_K 0…7, the third bit from hmask) times the activations
// in integers, times the group's scale; then per group a coefficient times
// its activation sum — Q2_K's −dmin·minimum, Q3_K's offset of 4 as
// −4·d·scale (as Q6_K pays its 32).
func dotQ23KRowGo(row []byte, a *q8K, b0 int, three bool) float32 {
	bb := q23Bytes(three)
	var sum float32
	for b := range len(row) / bb {
		blk, i := row[b*bb:(b+1)*bb], b0+b
		var sc [16]int32
		var coef [16]float32
		var d float32
		qs, hmask := blk[16:80], []byte(nil)
		if three {
			qs, hmask, d = blk[32:96], blk[:32], f16At(blk[108:])
			for g, s := range tensor.ScalesQ3K(blk[96:108]) {
				sc[g], coef[g] = int32(s), -4*d*float32(s)
			}
		} else {
			d = f16At(blk[80:])
			dmin := f16At(blk[82:])
			for g, s := range blk[:16] {
				sc[g], coef[g] = int32(s&0xf), -dmin*float32(s>>4)
			}
		}
		xs := a.qs[i*kBlock : (i+1)*kBlock]
		var sumi int32
		var off float32
		for g := range 16 {
			var dot int32
			for v := 16 * g; v < 16*g+16; v++ {
				u := low2(qs, v)
				if three {
					u |= int32(hmask[v%32]>>(v/32)&1) << 2
				}
				dot += u * int32(xs[v])
			}
			sumi += sc[g] * dot
			off += coef[g] * a.bsum[i*16+g]
		}
		sum += d*a.d[i]*float32(sumi) + off
	}
	return sum
}

// f16At is the float16 stored little-endian at b.
func f16At(b []byte) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(b)) }
