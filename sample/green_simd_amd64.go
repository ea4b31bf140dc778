//go:build goexperiment.simd && amd64

package sample

import "simd/archsimd"

func init() {
	if archsimd.X86.AVX512() {
		addGreen = addGreenAVX512
	}
}

// addGreenAVX512 is addGreenScalar 32 tokens at a time: the block's 8 PRF
// values in one vector, read as 16 32-bit lanes whose low and high halves
// are the colours of the block's first and second 16 tokens.
func addGreenAVX512(logits []float32, seed, thr uint64, delta float32) {
	var (
		iota  = archsimd.LoadUint64x8Slice([]uint64{0, 1, 2, 3, 4, 5, 6, 7})
		seeds = archsimd.BroadcastUint64x8(seed)
		c1    = archsimd.BroadcastUint64x8(0x9e3779b97f4a7c15)
		c2    = archsimd.BroadcastUint64x8(0xbf58476d1ce4e5b9)
		c3    = archsimd.BroadcastUint64x8(0x94d049bb133111eb)
		low   = archsimd.BroadcastUint32x16(0xffff)
		below = archsimd.BroadcastUint32x16(uint32(thr))
		bias  = archsimd.BroadcastFloat32x16(delta)
	)
	n := len(logits) &^ 31
	for base := 0; base < n; base += 32 {
		id := iota.Add(archsimd.BroadcastUint64x8(uint64(base >> 2)))
		z := seeds.Xor(id.Mul(c1)).Mul(c2)
		z = z.Xor(z.ShiftAllRight(31)).Mul(c3)
		z = z.Xor(z.ShiftAllRight(29))
		v := z.AsUint32x16()
		first, second := logits[base:base+16], logits[base+16:base+32]
		archsimd.LoadFloat32x16Slice(first).Add(bias.Masked(v.And(low).Less(below))).StoreSlice(first)
		archsimd.LoadFloat32x16Slice(second).Add(bias.Masked(v.ShiftAllRight(16).Less(below))).StoreSlice(second)
	}
	archsimd.ClearAVXUpperBits()
	for id := n; id < len(logits); id++ {
		if greenLane(seed, id) < thr {
			logits[id] += delta
		}
	}
}
