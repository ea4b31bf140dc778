package sample

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// A Watermark hides a keyed statistical signal in sampled tokens, so that
// whoever holds the key can later show that a text came from this model,
// and nobody without it can tell or forge it. Each step's pseudo-random
// function is keyed by HMAC-SHA256 of the key and the Context previous
// tokens, so the signal can be checked on the token ids alone.
//
// Two schemes:
//
//   - "green" (Kirchenbauer et al. 2023): the vocabulary is split into a
//     green share Gamma and the rest by the step's PRF, and Delta is added
//     to every green logit before sampling. Detection counts green tokens:
//     z = (G − γT) / √(Tγ(1−γ)). It shifts the distribution (a quality
//     cost that grows with Delta) and needs entropy to hide in.
//   - "gumbel" (Aaronson's exponential minimum): the step's PRF draws a
//     uniform r_i for every token and the token maximising r_i^(1/p_i) is
//     chosen, which is an exact draw from p: the output distribution is
//     unchanged (distortion-free) for any single generation. Detection sums
//     −log(1 − r) of the chosen tokens, which is Exp(1) per token without
//     the key and larger with it.
//
// The sampling parameters (temperature, truncation) apply as usual; the
// watermark decides how the draw from the resulting distribution is made.
type Watermark struct {
	Scheme string `json:"scheme"`
	// Key is the secret; it never appears in logs, errors or JSON.
	Key []byte `json:"-"`
	// Gamma is the green share of the vocabulary (green scheme; default 0.25).
	Gamma float64 `json:"gamma,omitempty"`
	// Delta is the bias added to green logits (green scheme; default 2).
	Delta float32 `json:"delta,omitempty"`
	// Context is how many previous tokens key each step (default 1).
	Context int `json:"context"`
}

// Schemes lists the watermarking schemes.
var Schemes = []string{"green", "gumbel"}

// ErrWatermark is returned for an unusable watermark configuration.
var ErrWatermark = errors.New("bad watermark")

// withDefaults fills the defaults and checks the configuration.
func (w Watermark) withDefaults() (Watermark, error) {
	if w.Gamma == 0 {
		w.Gamma = 0.25
	}
	if w.Delta == 0 {
		w.Delta = 2
	}
	if w.Context == 0 {
		w.Context = 1
	}
	switch {
	case w.Scheme != "green" && w.Scheme != "gumbel":
		return w, fmt.Errorf("%w: unknown scheme %q (want green or gumbel)", ErrWatermark, w.Scheme)
	case len(w.Key) == 0:
		return w, fmt.Errorf("%w: empty key", ErrWatermark)
	case !(w.Gamma >= 1.0/greenLevels && w.Gamma <= 1-1.0/greenLevels):
		return w, fmt.Errorf("%w: gamma %g must be in (0, 1)", ErrWatermark, w.Gamma)
	case w.Delta < 0 || math.IsNaN(float64(w.Delta)):
		return w, fmt.Errorf("%w: delta %g must be ≥ 0", ErrWatermark, w.Delta)
	case w.Context < 1 || w.Context > 16:
		return w, fmt.Errorf("%w: context %d must be in 1–16", ErrWatermark, w.Context)
	}
	// The green list is drawn in steps of 1/65,536 (greenBelow): the share
	// detection assumes is the one sampling uses.
	w.Gamma = math.Round(w.Gamma*greenLevels) / greenLevels
	return w, nil
}

// KeyID names a key without revealing it: the first 8 bytes of
// SHA-256("persona watermark key id" ‖ key), in hex. Persona cards and
// reports carry this, never the key.
func KeyID(key []byte) string {
	h := sha256.Sum256(append([]byte("persona watermark key id\x00"), key...))
	return hex.EncodeToString(h[:8])
}

// stepSeed is the PRF seed of one step: HMAC-SHA256(key, context ids).
func stepSeed(key []byte, context []int) uint64 {
	m := hmac.New(sha256.New, key)
	var b [8]byte
	for _, id := range context {
		binary.LittleEndian.PutUint64(b[:], uint64(id))
		m.Write(b[:])
	}
	return binary.LittleEndian.Uint64(m.Sum(nil))
}

// prf is the step's pseudo-random value for token id: two rounds of
// multiply and xor-shift over the secret step seed and the id (the keyed
// HMAC seed is what makes it unpredictable; this only has to spread it
// over the vocabulary evenly), about a nanosecond a token, so a 150k
// vocabulary is coloured in a fraction of a millisecond.
func prf(seed uint64, id int) uint64 {
	z := (seed ^ uint64(id)*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>31) * 0x94d049bb133111eb
	return z ^ z>>29
}

// unit maps a PRF value to (0, 1).
func unit(x uint64) float64 { return (float64(x>>11) + 0.5) / (1 << 53) }

// greenLevels is the resolution of a green share: each token's colour is a
// 16-bit piece of a PRF value, so one hash colours four tokens (the
// sampler colours a whole 150k vocabulary every step).
const greenLevels = 1 << 16

// greenBelow is the 16-bit threshold of a green share gamma (a multiple of
// 1/65,536 after withDefaults).
func greenBelow(gamma float64) uint64 { return uint64(gamma * greenLevels) }

// greenLane is token id's 16-bit colour value. The vocabulary is coloured
// in blocks of 32 tokens by 8 PRF values laid out as one 512-bit vector:
// token i of a block takes the low (i < 16) or high 16 bits of the vector's
// 32-bit lane i mod 16, so an AVX-512 pass colours 32 tokens with 8 hashes
// and no shuffles (addGreen).
func greenLane(seed uint64, id int) uint64 {
	i := id & 31
	lane := i & 15
	h := prf(seed, (id>>5)*8+lane>>1)
	return h >> (32*(lane&1) + 16*(i>>4)) & 0xffff
}

// addGreen adds delta to the logits of the step's green tokens (those
// whose colour value is below thr). An AVX-512 version replaces it where
// the CPU has one (green_simd_amd64.go).
var addGreen = addGreenScalar

func addGreenScalar(logits []float32, seed, thr uint64, delta float32) {
	for id := range logits {
		_, isGreen := bits.Sub64(greenLane(seed, id), thr, 0)
		logits[id] += delta * float32(isGreen)
	}
}

// green reports whether id is on the step's green list.
func green(seed uint64, id int, gamma float64) bool { return greenLane(seed, id) < greenBelow(gamma) }

// context returns the ids that key the step after history.
func (w *Watermark) context(history []int) ([]int, bool) {
	if len(history) < w.Context {
		return nil, false
	}
	return history[len(history)-w.Context:], true
}
