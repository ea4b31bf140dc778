package tensor

import (
	"encoding/binary"
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
	hmask, qs, packed := blk[:32], blk[32:96], blk[96:108]
	d := half(blk[108:])
	var sc [16]int32
	for i := range 16 {
		// Scale i: low 4 bits from byte i%8 (low nibble for i < 8, high
		// after), high 2 bits from byte 8+i%4 at bit 2·(i/4).
		low := int32(packed[i%8])
		if i >= 8 {
			low >>= 4
		}
		sc[i] = (low & 0xf) | (int32(packed[8+i%4])>>(2*(i/4))&3)<<4 - 32
	}
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

// scaleMinK4 unpacks scale and minimum j (0–7) of a Q4_K or Q5_K block:
// six bits each, packed into 12 bytes.
func scaleMinK4(j int, q []byte) (sc, m byte) {
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
		s1, m1 := scaleMinK4(g, scales)
		s2, m2 := scaleMinK4(g+1, scales)
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
