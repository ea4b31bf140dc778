package kernel

import "unsafe"

// vnniArgs describes four tokens times one 16-row panel for vnniRows: the
// panel's values, integer scales, coefficients and row scales (vnniPanel,
// from its first block), and the tokens' Q8_K activations, activation
// scales and group sums (each from the first token's first block, the
// tokens the given strides in bytes apart).
type vnniArgs struct {
	vals                         *byte
	scales                       *int32
	coef, d                      *float32
	x, xd, sum                   unsafe.Pointer
	xStride, xdStride, sumStride int
	blocks, groups, chunks       int
}

// vnniRows multiplies a 16-row panel of K-quant weights (vnniPanel) by four
// tokens' Q8_K activations with VNNI's VPDPBUSD, which sums four products
// of unsigned weight bytes and signed activation bytes into each 32-bit lane
// in one instruction, where VPMADDUBSW and VPMADDWD take two; archsimd
// offers only those two, hence assembly. The panel's lanes are rows, so one
// broadcast of four activation bytes feeds 16 rows and each group's scales
// multiply 16 rows' sums at once. For token t and row r over the blocks b
// and groups g of 4·chunks values,
//
//	f[t][r] = Σ_b d[b][r]·xd[t][b]·Σ_g scales[b][g][r]·Σ_{c,i} vals[b][g][c][r][i]·x[t][b][g][c][i]
//	        + Σ_b Σ_g coef[b][g][r]·sum[t][b][g]
//
// The caller guarantees AVX512-VNNI, values below 64 and groups of at most
// 32, so that no sum leaves 32 bits.
//
//go:noescape
func vnniRows(f *[4][16]float32, p *vnniArgs)

// vnniRowsLegacy is vnniRows for the legacy types (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0): groups of 32 values (8 chunks) without integer scales, each with
// the rows' own scale d and sum coefficient, and the tokens' own activation
// scale and sum per group (xd and sum strided alike):
//
//	f[t][r] = Σ_g d[g][r]·xd[t][g]·Σ_{c,i} vals[g][c][r][i]·x[t][g][c][i] + coef[g][r]·sum[t][g]
//
// p.scales, p.blocks and p.chunks are not used; values are bytes 0…255.
//
//go:noescape
func vnniRowsLegacy(f *[4][16]float32, p *vnniArgs)

// transpose16 sets dst[k][r] = src[r][k] for a 16×16 matrix of 32-bit
// words, src rows srcStride bytes apart and dst rows contiguous: it lays
// out four values of 16 rows as vnniRows reads them, 64 shuffles for 256
// words where one store per word cost 2.5 cycles. AVX-512 only.
//
//go:noescape
func transpose16(dst, src *byte, srcStride int)
