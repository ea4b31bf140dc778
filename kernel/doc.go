// Package kernel holds the few dense kernels a Llama inference engine and
// trainer spend their time in: Linear (a layer with HF-layout weights in
// F32/F16/BF16/Q8_0), the three float32 GEMM layouts a trainer's forward and
// backward passes need (MatMulNT, MatMulNN, MatMulTN), and Dot/Axpy/Scale.
//
// Two builds. With GOEXPERIMENT=simd on an AVX-512 CPU (simd_amd64.go) the
// kernels use simd/archsimd; otherwise, or on a CPU without AVX-512, a
// portable path runs (vek's AVX2 assembly for dot products and vek32.MatMul
// for GEMMs), so a plain go build and go test work everywhere. Tests run every
// shape on both paths in one `GOEXPERIMENT=simd go test ./kernel/`.
//
// How it works and why (numbers from `go test -bench` on the shared 2-core
// AVX-512 EPYC, 2 goroutines unless noted; the machine was 3–4× oversubscribed,
// so these are typical of repeated runs, not best cases):
//
//   - Mat-vec (Linear, T = 1) is bound by reading W once. A 4-row dot kernel
//     (one load of x feeds four rows) split over GOMAXPROCS goroutines:
//     F32 576×576 37–42 GFLOP/s, 1536×576 32–42, vek.Dot per row 34–39 (same
//     ballpark: both are at the bandwidth of L2/memory); naive Go 2–3.
//     BF16 and Q8_0 are widened in registers (Q8_0 576×576 28–35, fewer bytes
//     but more work per byte); F16 is widened with integer ops because
//     archsimd has no VCVTPH2PS (12–15, compute-bound: prefer BF16 or F32).
//     The 49152×576 head (113 MB) measured 5–9 GFLOP/s for both us and vek
//     while other jobs shared memory bandwidth.
//   - GEMM: a 4×32 broadcast-FMA micro-kernel (8 accumulators, 11 live
//     vectors) over B packed in 32-column panels of depth ≤ 256, A read in
//     place with arbitrary strides (so NN, NT and TN share one kernel and only
//     B is ever packed). Single core it reaches ~140 GFLOP/s in L1 and ~125 on
//     512×128×128 NN. With 2 goroutines: 512×{128,344}×{128,344} NT/NN/TN
//     100–133 GFLOP/s against vek.MatMul 22–43 and naive 1–4.
//     Tried and lost: 8×16 (too many broadcasts, 30–40), 6×32 (spills, 55),
//     k-unrolling (no gain: Go's 213-form FMA already costs register moves).
//   - Few-row NT (prefill, T ≥ 2 with 2T ≤ N) runs transposed, Cᵀ = W·Xᵀ:
//     W becomes the broadcast operand, read in place or decoded row by row,
//     and only X is packed. Packing W instead (a strided scatter per weight)
//     cost 15–30%: Linear T=64 F32 576×576 went 91–95 → 100–125 GFLOP/s,
//     576×1536 86–92 → 116–120; vek.MatMul 46–49, naive 1–3.
//   - Goroutines: the larger of M and N is split in multiples of the tile;
//     below 32K multiply-adds per goroutine everything stays on the caller.
//     On this oversubscribed machine 2 goroutines beat 1 only for the bigger
//     shapes (64×128×128 NT: 91 single vs 50 with 2), so tiny trainer
//     matrices may want GOMAXPROCS-aware batching above this package.
//
// Every archsimd kernel ends with ClearAVXUpperBits so SSE code after it pays
// no transition penalty.
package kernel
