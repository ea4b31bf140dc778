package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// The block-quantized storage types of GGML beyond Q8_0: the legacy 32-element
// blocks (Q4_0, Q4_1, Q5_0, Q5_1) and the K-quants' 256-element super-blocks
// (Q2_K … Q6_K) that llama.cpp's Q4_K_M, Q5_K_M and Q6_K files are made of.
// Each is decoded to float32 exactly as GGML's own dequantization does (the
// llama.cpp reference test compares them bit for bit); the layouts below are
// GGML's block structs, little-endian, with F16 scales.
const (
	Q4_0 DType = iota + Q8_0 + 1
	Q4_1
	Q5_0
	Q5_1
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
)

// blockLayout is a quantized type's elements and bytes per block.
type blockLayout struct{ elems, bytes int }

var blockLayouts = map[DType]blockLayout{
	Q8_0: {Q8BlockSize, q8BlockBytes},
	Q4_0: {32, 2 + 16},
	Q4_1: {32, 2 + 2 + 16},
	Q5_0: {32, 2 + 4 + 16},
	Q5_1: {32, 2 + 2 + 4 + 16},
	Q2_K: {256, 16 + 64 + 2 + 2},
	Q3_K: {256, 32 + 64 + 12 + 2},
	Q4_K: {256, 2 + 2 + 12 + 128},
	Q5_K: {256, 2 + 2 + 12 + 32 + 128},
	Q6_K: {256, 128 + 64 + 16 + 2},
}

var quantNames = map[DType]string{Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1",
	Q2_K: "Q2_K", Q3_K: "Q3_K", Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}

// BlockSize returns the elements one block of a quantized type holds (0 for
// the plain types, which have no blocks).
func (d DType) BlockSize() int { return blockLayouts[d].elems }

// Quantized reports a block-quantized type.
func (d DType) Quantized() bool { return blockLayouts[d].elems > 0 }

func half(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// decodeQuant decodes len(dst) elements (whole blocks) of a quantized type
// other than Q8_0.
func decodeQuant(dst []float32, d DType, src []byte) {
	l := blockLayouts[d]
	for b := 0; b < len(dst)/l.elems; b++ {
		blk, y := src[b*l.bytes:(b+1)*l.bytes], dst[b*l.elems:(b+1)*l.elems]
		switch d {
		case Q4_0:
			scale := half(blk)
			for j, q := range blk[2:18] {
				y[j], y[j+16] = float32(int32(q&0xf)-8)*scale, float32(int32(q>>4)-8)*scale
			}
		case Q4_1:
			scale, low := half(blk), half(blk[2:])
			for j, q := range blk[4:20] {
				y[j], y[j+16] = float32(q&0xf)*scale+low, float32(q>>4)*scale+low
			}
		case Q5_0, Q5_1:
			scale, rest, low := half(blk), blk[2:], float32(0)
			if d == Q5_1 {
				low, rest = half(blk[2:]), blk[4:]
			}
			qh, qs := binary.LittleEndian.Uint32(rest), rest[4:20]
			for j, q := range qs {
				lo := int32(q&0xf) | int32((qh>>j)<<4&0x10)
				hi := int32(q>>4) | int32(qh>>(j+12)&0x10)
				if d == Q5_0 { // no minimum: x·d, not x·d + 0, which would turn −0 into +0
					y[j], y[j+16] = float32(lo-16)*scale, float32(hi-16)*scale
				} else {
					y[j], y[j+16] = float32(lo)*scale+low, float32(hi)*scale+low
				}
			}
		case Q2_K:
			decodeQ2K(y, blk)
		case Q3_K:
			decodeQ3K(y, blk)
		case Q4_K, Q5_K:
			decodeQ45K(y, blk, d == Q5_K)
		case Q6_K:
			decodeQ6K(y, blk)
		}
	}
}

// decodeQ2K: 16 groups of 16 two-bit values; each group has a 4-bit scale
// and a 4-bit minimum (scales[i] low and high nibble), times the block's
// d and dmin.
func decodeQ2K(y []float32, blk []byte) {
	scales, qs := blk[:16], blk[16:80]
	d, dmin := half(blk[80:]), half(blk[82:])
	is := 0
	for n := 0; n < 256; n += 128 {
		q := qs[n/4:]
		for shift := uint(0); shift < 8; shift += 2 {
			for half := range 2 {
				sc := scales[is]
				is++
				dl, ml := d*float32(sc&0xf), dmin*float32(sc>>4)
				for l := range 16 {
					y[l] = dl*float32(q[l+16*half]>>shift&3) - ml
				}
				y = y[16:]
			}
		}
	}
}

// decodeQ3K: 16 groups of 16 three-bit values (two low bits in qs, the
// high bit in hmask, set meaning +0 and clear −4), each group with a
// signed 6-bit scale packed into 12 bytes, times d.
func decodeQ3K(y []float32, blk []byte) {
	hmask, qs := blk[:32], blk[32:96]
	d := half(blk[108:])
	sc := ScalesQ3K(blk[96:108])
	is := 0
	mask := byte(1)
	for n := 0; n < 256; n += 128 {
		q := qs[n/4:]
		for shift := uint(0); shift < 8; shift += 2 {
			for half := range 2 {
				dl := d * float32(sc[is])
				is++
				for l := range 16 {
					v := int32(q[l+16*half] >> shift & 3)
					if hmask[l+16*half]&mask == 0 {
						v -= 4
					}
					y[l] = dl * float32(v)
				}
				y = y[16:]
			}
			mask <<= 1
		}
	}
}

// ScalesQ3K unpacks a Q3_K block's 16 signed six-bit scales from its 12
// bytes: scale i's low four bits are byte i%8's low nibble (i < 8) or high
// nibble, its high two bits byte 8+i%4's bits 2·(i/4) and up, less 32.
// Four scales at a time, as 32-bit masks and shifts.
func ScalesQ3K(packed []byte) (sc [16]int8) {
	a0 := binary.LittleEndian.Uint32(packed[0:])
	a1 := binary.LittleEndian.Uint32(packed[4:])
	a2 := binary.LittleEndian.Uint32(packed[8:])
	const low, high = 0x0f0f0f0f, 0x03030303
	for k, u := range [4]uint32{
		a0&low | (a2&high)<<4,
		a1&low | (a2>>2&high)<<4,
		a0>>4&low | (a2>>4&high)<<4,
		a1>>4&low | (a2>>6&high)<<4,
	} {
		for j := range 4 {
			sc[4*k+j] = int8(byte(u>>(8*j))) - 32
		}
	}
	return sc
}

// ScaleMinK4 unpacks scale and minimum j (0–7) of a Q4_K or Q5_K block:
// six bits each, packed into 12 bytes.
func ScaleMinK4(j int, q []byte) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// decodeQ45K: 8 groups of 32 four-bit values (Q5_K: plus a fifth bit from
// qh), each group with a 6-bit scale and minimum, times d and dmin.
func decodeQ45K(y []float32, blk []byte, five bool) {
	d, dmin, scales := half(blk), half(blk[2:]), blk[4:16]
	qs, qh := blk[16:], []byte(nil)
	if five {
		qh, qs = blk[16:48], blk[48:]
	}
	u1, u2 := byte(1), byte(2)
	for g := 0; g < 8; g += 2 {
		s1, m1 := ScaleMinK4(g, scales)
		s2, m2 := ScaleMinK4(g+1, scales)
		d1, dm1, d2, dm2 := d*float32(s1), dmin*float32(m1), d*float32(s2), dmin*float32(m2)
		q := qs[g*16 : g*16+32]
		for l := range 32 {
			lo, hi := float32(q[l]&0xf), float32(q[l]>>4)
			if five {
				if qh[l]&u1 != 0 {
					lo += 16
				}
				if qh[l]&u2 != 0 {
					hi += 16
				}
			}
			y[l], y[l+32] = d1*lo-dm1, d2*hi-dm2
		}
		y = y[64:]
		u1, u2 = u1<<2, u2<<2
	}
}

// decodeQ6K: 16 groups of 16 six-bit values (four low bits in ql, two high
// bits in qh), each group with a signed 8-bit scale, times d.
func decodeQ6K(y []float32, blk []byte) {
	ql, qh, scales := blk[:128], blk[128:192], blk[192:208]
	d := half(blk[208:])
	for n := 0; n < 2; n++ {
		l6, h6, sc := ql[64*n:], qh[32*n:], scales[8*n:]
		out := y[128*n:]
		for l := range 32 {
			is := l / 16
			q1 := int32(l6[l]&0xf|(h6[l]>>0&3)<<4) - 32
			q2 := int32(l6[l+32]&0xf|(h6[l]>>2&3)<<4) - 32
			q3 := int32(l6[l]>>4|(h6[l]>>4&3)<<4) - 32
			q4 := int32(l6[l+32]>>4|(h6[l]>>6&3)<<4) - 32
			out[l] = d * float32(int8(sc[is])) * float32(q1)
			out[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			out[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			out[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
	}
}

// encodeQuant quantizes src (whole blocks) into out: the legacy types with
// the scale (and minimum) from each block's extremes, the K-quants with a
// small search for each group's scale (fitScaleMin, fitSymmetric). It is
// what persona quantize writes. Blocks are independent, so a matrix is split
// over the cores.
func encodeQuant(out []byte, d DType, src []float32) error {
	switch d {
	case Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K:
	default:
		return fmt.Errorf("no encoder for %v (persona writes Q4_0, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K)", d)
	}
	l := blockLayouts[d]
	n := len(src) / l.elems
	parts := min(runtime.GOMAXPROCS(0), n/64+1)
	var wg sync.WaitGroup
	for p := range parts {
		b0, b1 := p*n/parts, (p+1)*n/parts
		wg.Go(func() { encodeBlocks(out[b0*l.bytes:b1*l.bytes], d, src[b0*l.elems:b1*l.elems]) })
	}
	wg.Wait()
	return nil
}

// encodeBlocks is encodeQuant's work on a run of whole blocks.
func encodeBlocks(out []byte, d DType, src []float32) {
	l := blockLayouts[d]
	for b := 0; b < len(src)/l.elems; b++ {
		x, blk := src[b*l.elems:(b+1)*l.elems], out[b*l.bytes:(b+1)*l.bytes]
		switch d {
		case Q4_0, Q5_0:
			levels := map[DType]int{Q4_0: 8, Q5_0: 16}[d]
			scale := signedMax(x) / float32(-levels)
			putHalf(blk, scale)
			q := roundSymmetric(x, scale, levels)
			if d == Q4_0 {
				for j := range 16 {
					blk[2+j] = byte(q[j]) | byte(q[j+16])<<4
				}
			} else {
				var qh uint32
				for j := range 16 {
					blk[6+j] = byte(q[j]&0xf) | byte(q[j+16]&0xf)<<4
					qh |= uint32(q[j]>>4&1)<<j | uint32(q[j+16]>>4&1)<<(j+16)
				}
				binary.LittleEndian.PutUint32(blk[2:], qh)
			}
		case Q5_1:
			lo, hi := minMax(x)
			scale := (hi - lo) / 31
			putHalf(blk, scale)
			putHalf(blk[2:], lo)
			var qh uint32
			for j := range 16 {
				q0, q1 := roundLevel(x[j]-lo, scale, 31), roundLevel(x[j+16]-lo, scale, 31)
				blk[8+j] = byte(q0&0xf) | byte(q1&0xf)<<4
				qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+16)
			}
			binary.LittleEndian.PutUint32(blk[4:], qh)
		case Q2_K:
			encodeQ2K(blk, x)
		case Q3_K:
			encodeQ3K(blk, x)
		case Q4_K, Q5_K:
			encodeQ45K(blk, x, d == Q5_K)
		case Q6_K:
			encodeQ6K(blk, x)
		}
	}
}

func putHalf(b []byte, v float32) { binary.LittleEndian.PutUint16(b, F32ToF16(v)) }

// stored is v as its F16 round trip: quantize against the scale the
// decoder will read.
func stored(v float32) float32 { return F16ToF32(F32ToF16(v)) }

// signedMax is the element of largest magnitude, with its sign.
func signedMax(x []float32) float32 {
	var m float32
	for _, v := range x {
		if abs32(v) > abs32(m) {
			m = v
		}
	}
	return m
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

func minMax(x []float32) (lo, hi float32) {
	lo, hi = x[0], x[0]
	for _, v := range x[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// roundSymmetric quantizes to levels·2 steps of scale around zero, stored
// offset by levels (0 … 2·levels−1), against the scale as stored.
func roundSymmetric(x []float32, scale float32, levels int) []int {
	s := stored(scale)
	q := make([]int, len(x))
	for i, v := range x {
		if s == 0 {
			q[i] = levels
			continue
		}
		q[i] = min(max(int(math.Round(float64(v/s)))+levels, 0), 2*levels-1)
	}
	return q
}

// roundLevel is v/scale rounded into 0 … top.
func roundLevel(v, scale float32, top int) int {
	s := stored(scale)
	if s == 0 {
		return 0
	}
	return min(max(int(math.Round(float64(v/s))), 0), top)
}

// encodeQ45K fits 8 groups of 32 values, each with a scale and a minimum
// (x ≈ scale·q − min, q in 0 … 15 or 0 … 31), both quantized to 6 bits
// against the block's d and dmin.
func encodeQ45K(blk []byte, x []float32, five bool) {
	top := 15
	if five {
		top = 31
	}
	var scales, mins [8]float32
	var maxScale, maxMin float32
	for g := range 8 {
		scales[g], mins[g] = fitScaleMin(x[32*g:32*g+32], top)
		maxScale, maxMin = max(maxScale, scales[g]), max(maxMin, mins[g])
	}
	d, dmin := stored(maxScale/63), stored(maxMin/63)
	putHalf(blk, d)
	putHalf(blk[2:], dmin)
	var ls, lm [8]byte
	for g := range 8 {
		s, m := scaleMinCodes(x[32*g:32*g+32], scales[g], mins[g], d, dmin, top, 63)
		ls[g], lm[g] = byte(s), byte(m)
	}
	packed := blk[4:16]
	for j := range 4 {
		packed[j] = ls[j]&63 | (ls[j+4]>>4)<<6
		packed[j+4] = lm[j]&63 | (lm[j+4]>>4)<<6
		packed[j+8] = ls[j+4]&0xf | (lm[j+4]&0xf)<<4
	}
	qs, qh := blk[16:], []byte(nil)
	if five {
		qh, qs = blk[16:48], blk[48:]
		clear(qh)
	}
	for g := range 8 {
		step, low := d*float32(ls[g]), dmin*float32(lm[g])
		inv := inverse(step)
		for l := range 32 {
			q := levelOf(x[32*g+l], inv, low, top)
			pair, upper := g/2, g%2 == 1
			at := 32*pair + l
			if upper {
				qs[at] |= byte(q&0xf) << 4
			} else {
				qs[at] = byte(q & 0xf)
			}
			if five && q >= 16 {
				qh[l] |= 1 << (2*pair + g%2)
			}
		}
	}
}

// scaleMinCodes rounds a group's fitted scale and minimum to codes (0 …
// hi) of the block's d and dmin, then keeps the neighbouring pair of codes
// that fits the group best: rounding the pair can land off the group's best
// grid.
func scaleMinCodes(group []float32, scale, low, d, dmin float32, top, hi int) (s, m int) {
	var s0, m0 int
	if d > 0 {
		s0 = int(min(math.Round(float64(scale/d)), float64(hi)))
	}
	if dmin > 0 {
		m0 = int(min(math.Round(float64(low/dmin)), float64(hi)))
	}
	best := math.Inf(1)
	for a := max(s0-1, 0); a <= min(s0+1, hi); a++ {
		for b := max(m0-1, 0); b <= min(m0+1, hi); b++ {
			if e, _, _, _ := levelPass(group, d*float32(a), dmin*float32(b), top); float64(e) < best {
				best, s, m = float64(e), a, b
			}
		}
	}
	return s, m
}

// encodeQ2K fits 16 groups of 16 values, each with a scale and a minimum
// (x ≈ scale·q − min, q in 0 … 3), both quantized to 4 bits against the
// block's d and dmin. Value j's two bits sit in byte j/128·32 + j%32 of qs,
// at bit 2·(j%128/32) (decodeQ2K's order).
func encodeQ2K(blk []byte, x []float32) {
	var scales, mins [16]float32
	var maxScale, maxMin float32
	for g := range 16 {
		scales[g], mins[g] = fitScaleMin(x[16*g:16*g+16], 3)
		maxScale, maxMin = max(maxScale, scales[g]), max(maxMin, mins[g])
	}
	d, dmin := stored(maxScale/15), stored(maxMin/15)
	sc, qs := blk[:16], blk[16:80]
	clear(qs)
	putHalf(blk[80:], d)
	putHalf(blk[82:], dmin)
	for g := range 16 {
		s, m := scaleMinCodes(x[16*g:16*g+16], scales[g], mins[g], d, dmin, 3, 15)
		sc[g] = byte(s) | byte(m)<<4
		step, low := d*float32(s), dmin*float32(m)
		inv := inverse(step)
		for j := 16 * g; j < 16*g+16; j++ {
			qs[j/128*32+j%32] |= byte(levelOf(x[j], inv, low, 3)) << (2 * (j % 128 / 32))
		}
	}
}

// encodeQ3K fits 16 groups of 16 values symmetrically (q in −4 … 3), each
// with a signed 6-bit scale against the block's d. The codes run −32 … 31,
// so d takes the sign that puts the largest scale on −32. Value j's low two
// bits sit where Q2_K's do, its third bit at bit j/32 of hmask[j%32] (set
// for q ≥ 0).
func encodeQ3K(blk []byte, x []float32) {
	var scales [16]float32
	var largest float32
	for g := range 16 {
		scales[g] = fitSymmetric(x[16*g:16*g+16], 4)
		if abs32(scales[g]) > abs32(largest) {
			largest = scales[g]
		}
	}
	d := stored(-largest / 32)
	hmask, qs, packed := blk[:32], blk[32:96], blk[96:108]
	clear(hmask)
	clear(qs)
	clear(packed)
	putHalf(blk[108:], d)
	for g := range 16 {
		s := symmetricCode(x[16*g:16*g+16], scales[g], d, 4, -32, 31)
		v := byte(s + 32)
		if g < 8 {
			packed[g] |= v & 0xf
		} else {
			packed[g-8] |= v & 0xf << 4
		}
		packed[8+g%4] |= v >> 4 << (2 * (g / 4))
		step := d * float32(s)
		for j := 16 * g; j < 16*g+16; j++ {
			q := roundSigned(x[j], step, 4) + 4
			qs[j/128*32+j%32] |= byte(q&3) << (2 * (j % 128 / 32))
			if q >= 4 {
				hmask[j%32] |= 1 << (j / 32)
			}
		}
	}
}

// The K-quants' groups are fitted by a small search rather than from their
// extremes alone, which spend the levels on the tails: grids a little finer
// and coarser than the extremes' (searchSteps of them) are each rounded, then
// refitted by least squares — the scale (and offset) that best explain those
// levels — and rounded again, searchPasses roundings in all per grid; the fit
// with the least squared error wins. It takes the round trip's error of
// Q4_K and Q5_K from 1.22× and 1.15× GGML's quantizer's to 0.95–0.99×
// (docs/measurements.md).
const (
	searchSteps  = 5
	searchPasses = 2
)

// fitScaleMin fits x ≈ scale·q − low with q in 0 … top and low ≥ 0 (Q4_K and
// Q5_K's groups).
func fitScaleMin(x []float32, top int) (scale, low float32) {
	lo, hi := minMax(x)
	lo = min(lo, 0)
	if hi <= lo {
		return 0, -lo
	}
	var sx float32
	for _, v := range x {
		sx += v
	}
	n, best := float32(len(x)), float32(math.Inf(1))
	for step := range searchSteps {
		s, l := (hi-lo)/(float32(top)+(2.0/float32(searchSteps-1))*float32(step-searchSteps/2)), -lo
		for range searchPasses {
			e, sq, sqq, sxq := levelPass(x, s, l, top)
			if e < best {
				best, scale, low = e, s, l
			}
			// Least squares for x ≈ a·q + b, with b ≤ 0 (b = −low).
			det := n*sqq - sq*sq
			if det <= 0 {
				break
			}
			a, b := (n*sxq-sq*sx)/det, (sqq*sx-sq*sxq)/det
			if b > 0 {
				a, b = sxq/sqq, 0
			}
			if !(a > 0) {
				break
			}
			s, l = a, -b
		}
	}
	return scale, low
}

// levelPass rounds x to the levels scale·q − low as the encoder does
// (levelOf) and returns the squared error with the sums of q, q² and x·q
// that a least-squares refit needs.
func levelPass(x []float32, scale, low float32, top int) (e, sq, sqq, sxq float32) {
	inv := inverse(scale)
	for _, v := range x {
		q := float32(levelOf(v, inv, low, top))
		d := scale*q - low - v
		e, sq, sqq, sxq = e+d*d, sq+q, sqq+q*q, sxq+v*q
	}
	return e, sq, sqq, sxq
}

// levelOf is (v + low)/scale rounded into 0 … top, given inv = 1/scale (0
// for a zero scale, which puts every value on level 0).
func levelOf(v, inv, low float32, top int) int {
	return min(int(int32(max((v+low)*inv, 0)+0.5)), top)
}

// inverse is 1/s, or 0 where s is not positive.
func inverse(s float32) float32 {
	if s > 0 {
		return 1 / s
	}
	return 0
}

// fitSymmetric fits x ≈ scale·q with q in −levels … levels−1 (Q6_K's
// groups), searching as fitScaleMin does from the grid that puts the element
// of largest magnitude on the end level −levels.
func fitSymmetric(x []float32, levels int) (scale float32) {
	m := signedMax(x)
	if m == 0 {
		return 0
	}
	best := float32(math.Inf(1))
	for step := range searchSteps {
		s := m / (float32(-levels) + (2.0/float32(searchSteps-1))*float32(step-searchSteps/2))
		for range searchPasses {
			e, sqq, sxq := symmetricPass(x, s, levels)
			if e < best {
				best, scale = e, s
			}
			if sqq == 0 {
				break
			}
			s = sxq / sqq
		}
	}
	return scale
}

// symmetricPass rounds x to scale·q (q in −levels … levels−1) as the encoder
// does and returns the squared error with the sums of q² and x·q.
func symmetricPass(x []float32, scale float32, levels int) (e, sqq, sxq float32) {
	for _, v := range x {
		q := float32(roundSigned(v, scale, levels))
		d := scale*q - v
		e, sqq, sxq = e+d*d, sqq+q*q, sxq+v*q
	}
	return e, sqq, sxq
}

// roundSigned is v/scale rounded half away from zero into −levels …
// levels−1 (0 on a zero scale).
func roundSigned(v, scale float32, levels int) int {
	if scale == 0 {
		return 0
	}
	t := v / scale
	if t < 0 {
		return max(-int(int32(min(-t, float32(levels))+0.5)), -levels)
	}
	return min(int(int32(min(t, float32(levels))+0.5)), levels-1)
}

// symmetricCode rounds a group's fitted scale to a code (lo … hi) of the
// block's d, then keeps the neighbouring code that fits the group best, as
// scaleMinCodes does for a scale and minimum.
func symmetricCode(group []float32, scale, d float32, levels, lo, hi int) int {
	if d == 0 {
		return 0
	}
	c0 := int(min(max(math.Round(float64(scale/d)), float64(lo)), float64(hi)))
	c, best := c0, math.Inf(1)
	for k := max(c0-1, lo); k <= min(c0+1, hi); k++ {
		if e, _, _ := symmetricPass(group, d*float32(k), levels); float64(e) < best {
			best, c = float64(e), k
		}
	}
	return c
}

// encodeQ6K fits 16 groups of 16 values symmetrically (q in −32 … 31),
// each with an 8-bit signed scale against the block's d.
func encodeQ6K(blk []byte, x []float32) {
	var scales [16]float32
	var maxScale float32
	for g := range 16 {
		scales[g] = fitSymmetric(x[16*g:16*g+16], 32)
		maxScale = max(maxScale, abs32(scales[g]))
	}
	d := stored(maxScale / 127)
	putHalf(blk[208:], d)
	ql, qh, sc := blk[:128], blk[128:192], blk[192:208]
	clear(ql)
	clear(qh)
	var q [256]int
	for g := range 16 {
		s := symmetricCode(x[16*g:16*g+16], scales[g], d, 32, -127, 127)
		sc[g] = byte(int8(s))
		step := d * float32(s)
		for l := range 16 {
			q[16*g+l] = roundSigned(x[16*g+l], step, 32) + 32
		}
	}
	for n := range 2 {
		for l := range 32 {
			q1, q2, q3, q4 := q[128*n+l], q[128*n+l+32], q[128*n+l+64], q[128*n+l+96]
			ql[64*n+l] = byte(q1&0xf) | byte(q3&0xf)<<4
			ql[64*n+l+32] = byte(q2&0xf) | byte(q4&0xf)<<4
			qh[32*n+l] = byte(q1>>4&3) | byte(q2>>4&3)<<2 | byte(q3>>4&3)<<4 | byte(q4>>4&3)<<6
		}
	}
}
