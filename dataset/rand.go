package dataset

import "math/bits"

// rng is SplitMix64 with Fisher–Yates shuffling written out here rather than
// taken from math/rand: the order of training batches must be the same in
// every process, on every platform and under every future Go release, and
// only code we own can promise that.
type rng struct{ state uint64 }

// newRNG seeds a generator from a seed and a stream number (the epoch), so
// that nearby seeds and epochs give unrelated sequences.
func newRNG(seed, stream uint64) *rng {
	return &rng{state: mix64(seed) ^ mix64(stream+0x632be59bd9b4e019)}
}

// mix64 is SplitMix64's output function: a bijection that scatters nearby
// inputs across all 64 bits.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix64(r.state)
}

// below returns a uniform integer in [0, n) by Lemire's multiply-and-reject
// method, which has no modulo bias.
func (r *rng) below(n uint64) uint64 {
	hi, lo := bits.Mul64(r.next(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.next(), n)
		}
	}
	return hi
}

// shuffle permutes s uniformly (Fisher–Yates).
func (r *rng) shuffle(s []int) {
	for i := len(s) - 1; i > 0; i-- {
		j := int(r.below(uint64(i + 1)))
		s[i], s[j] = s[j], s[i]
	}
}
