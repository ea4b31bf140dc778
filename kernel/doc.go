// Package kernel holds the few dense kernels a Llama inference engine and
// trainer spend their time in: Linear (a layer with HF-layout weights in
// F32/F16/BF16 or a GGUF quantized type), the three float32 GEMM layouts a
// trainer's forward and backward passes need (MatMulNT, MatMulNN,
// MatMulTN), Dot/Axpy/Scale, and the element-wise Exp and SiLUMul.
//
// Two builds. With GOEXPERIMENT=simd on an AVX-512 CPU (simd_amd64.go) the
// kernels use simd/archsimd, and on CPUs with AVX512-VNNI the prompt kernels
// for quantized weights use VPDPBUSD in assembly (vnni_amd64.s); otherwise, or on a CPU without AVX-512, a
// portable path runs (vek's AVX2 assembly for dot products and vek32.MatMul
// for GEMMs), so a plain go build and go test work everywhere. Tests run every
// shape on both paths in one `GOEXPERIMENT=simd go test ./kernel/`.
//
// How it works and why (numbers from `go test -bench` on the shared 2-core
// AVX-512 EPYC, 2 goroutines unless noted; the machine was 3–4× oversubscribed,
// so these are typical of repeated runs, not best cases):
//
//   - Mat-vec (Linear, T = 1) is bound by reading W once. An 8-row dot
//     kernel (one load of x feeds eight rows; 4-row and 1-row tails) split
//     over GOMAXPROCS goroutines in chunks of ≥ 16 rows handed out from an
//     atomic counter. Each 8-row step first prefetches the next eight rows
//     into L1 with a tiny assembly loop (PREFETCHT0; archsimd has no
//     prefetch), which keeps more cache misses in flight than the hardware
//     prefetchers do on eight interleaved streams. On a decode step's set of
//     matrices (30 SmolLM2 layers + the 49152×576 head, 538 MB, far past the
//     32 MiB L3), interleaved in one process: 8 rows + L1 prefetch 10–20%
//     faster than 4 rows (12–38 GB/s across runs, most taken while other
//     jobs loaded the machine); 8 rows without prefetch ≈ 4 rows; prefetch
//     into L2 (PREFETCHT1) or only 4 rows ahead no better than none.
//     Earlier: F32 576×576 37–42 GFLOP/s, 1536×576 32–42, vek.Dot per row
//     34–39; naive Go 2–3.
//     BF16 is widened in registers; F16 with integer ops because archsimd
//     has no VCVTPH2PS (12–15, compute-bound: prefer BF16 or F32). Q8_0
//     rows were widened to float32 too (576×576 28–35), which left a
//     decode-sized set of rows (8 × 5,632×2,048) at 20–25 GB/s where F32
//     streams 54–61: compute-bound. They now multiply the activations as
//     Q8_0 integers (VPABSB/VPSIGNB, VPMADDUBSW, VPMADDWD), reading a byte
//     of activation per weight instead of four: 24.7–25.4 against
//     19.8–21.7 GB/s in the same runs, and the 1.1B Q8_0 model decodes
//     1.10–1.29× faster (three interleaved pairs).
//
//   - Parallel regions run on a persistent pool (pool.go) whose workers spin
//     for 200 µs before parking, instead of new goroutines and a WaitGroup
//     per call. A decode step is ~150 regions of 20–200 µs, and the
//     goroutine start and futex wake-ups left the second core idle a third
//     of the time: the 538 MB mat-vec set went 24 → 44 GB/s on a quiet
//     machine, `persona bench --threads 2` decode 38–40 → 55–56 tok/s
//     (llama.cpp 39–61 across the same runs; its figure is noisy here).
//     LinearMany (Q, K, V) and LinearPair (gate, up, with SwiGLU applied per
//     chunk) cut the regions per layer from seven to four; on its own that
//     measured within noise (52–55 vs 52–56 tok/s), but it removes serial
//     work and a wait per region.
//
//   - GEMM: a 4×32 broadcast-FMA micro-kernel (8 accumulators, 11 live
//     vectors) over B packed in 32-column panels of depth ≤ 256, A read in
//     place with arbitrary strides (so NN, NT and TN share one kernel and only
//     B is ever packed). Single core it reaches ~140 GFLOP/s in L1 and ~125 on
//     512×128×128 NN. With 2 goroutines: 512×{128,344}×{128,344} NT/NN/TN
//     100–133 GFLOP/s against vek.MatMul 22–43 and naive 1–4.
//     Tried and lost: 8×16 (too many broadcasts, 30–40), 6×32 (spills, 55),
//     k-unrolling (no gain: Go's 213-form FMA already costs register moves).
//
//   - Few-row NT (prefill, T ≥ 2 with 2T ≤ N) runs transposed, Cᵀ = W·Xᵀ:
//     W becomes the broadcast operand, read in place or decoded row by row,
//     and only X is packed. Packing W instead (a strided scatter per weight)
//     cost 15–30%: Linear T=64 F32 576×576 went 91–95 → 100–125 GFLOP/s,
//     576×1536 86–92 → 116–120; vek.MatMul 46–49, naive 1–3.
//
//   - Goroutines (GEMM): the larger of M and N is split statically in
//     multiples of the tile, one chunk per goroutine, because each chunk
//     packs its own operand panels;
//     below 32K multiply-adds per goroutine everything stays on the caller.
//     On this oversubscribed machine 2 goroutines beat 1 only for the bigger
//     shapes (64×128×128 NT: 91 single vs 50 with 2), so tiny trainer
//     matrices may want GOMAXPROCS-aware batching above this package.
//
//   - Exp: exp(r)·2ⁿ with |r| ≤ ln2/2, a degree-7 polynomial and VSCALEFPS
//     (≤ 2 ulp). Softmaxes, SiLU and the training loss had spent 13% of a
//     training step and ~10% of a prefill in math.Exp.
//
//   - Quantized weights, one token: Q4_K, Q5_K and Q6_K rows against the
//     activations as 8-bit integers (q8k.go: Q8_K blocks, as llama.cpp), with
//     VPMADDUBSW and VPMADDWD, and Q8_0 rows against Q8_0 blocks (above); the
//     other legacy types widen weights to float32 in registers. Activations of quantized layers are rounded to llama.cpp's
//     8-bit blocks either way (quantact.go), so both paths compute what
//     llama.cpp computes. The integer kernels take 64 values per 512-bit
//     vector (two groups of a block, in the activations' order), keep the
//     block sums and the minimums' or offset's term in lanes, and run over
//     a range of rows per call. Single-threaded, 1,024 rows of 2,048: Q4_K
//     35 → 47–49 GFLOP/s against the 256-bit version, Q5_K 25 → 38–40,
//     Q6_K 15–17 → 47. Go gives vectors 15 registers (Z0–Z14): a kernel that
//     kept a [4]vector array of unpacked values, or four tokens' float sums
//     in registers, spilled in its inner loop and ran at a third of the
//     speed, so the four-token kernels keep their float sums in memory.
//     Q2_K and Q3_K take the same route (q23 kernels: bit pairs shifted
//     per half block, Q3_K's third bit from its mask, groups of 16 as
//     Q6_K): one token Q2_K 3.4 → 57–79 GFLOP/s, Q3_K 2.8 → 54–59 against
//     the decode-then-dot path (1,536² weights). Unpacking Q3_K's packed
//     scales in scalar code and loading them as a vector cost a third of
//     its speed (35–38); they are unpacked in vector lanes now. Four tokens
//     share each unpacked half block, as below: 2–16 tokens Q2_K 67–82 →
//     104–126, Q3_K 58–66 → 110–114.
//
//   - Quantized weights, 2–16 tokens: the same kernels unpack each pair of
//     groups once for four tokens. Linear 2,048×2,048 (2 goroutines), integer
//     against the float32 GEMM over decoded panels, GFLOP/s: Q4_K T=2 74 vs
//     11, T=4 104 vs 22, T=16 106 vs 85, T=32 102 vs 160, T=128 103 vs 175;
//     Q6_K T=16 118 vs 69, T=32 114 vs 132, T=128 117 vs 163. From 32 tokens
//     on the GEMM wins: VPMADDUBSW plus VPMADDWD cost two multiplies per 64
//     products.
//
//   - Quantized weights, prompts (more than 16 tokens) on CPUs with
//     AVX512-VNNI: VPDPBUSD (one instruction per 64 products; archsimd does
//     not have it, so vnni_amd64.s) over panels of 16 rows packed per call
//     with the rows in the lanes, so that one broadcast of four activation
//     bytes feeds 16 rows and each group's scales multiply 16 rows' sums at
//     once; no horizontal sums, and the float work (d, the minimums' or
//     offset's term) is one FMA per group and token. Same benchmark: Q4_K
//     T=128 306 GFLOP/s against the GEMM's 180, T=512 256 vs 171, T=32 200
//     vs 166; Q6_K T=128 269 vs 162. At T=4–12 the per-call packing costs
//     more than the dot kernels lose (Q4_K T=8 75 vs 100), hence the split
//     at integerMaxT. A first version that left the float work to Go per
//     block spent 57% of its time there and ran at 138. The legacy types
//     take the same panels with one float scale per group of 32 instead of
//     integer scales (Q8_0 stored +128 and the offset paid with the
//     activations' block sums): Q8_0 T=128 213 vs 106, Q4_0 222 vs 89, Q5_0
//     178 vs 89. Packing is a 16×16 word transpose in assembly (Go's 15
//     vector registers cannot hold the 16 rows), where one scalar store per
//     four values had cost a third of a 1.1B prefill.
//
// Every archsimd kernel ends with ClearAVXUpperBits so SSE code after it pays
// no transition penalty.
package kernel
