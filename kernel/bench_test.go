package kernel

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/viterin/vek/vek32"

	"persona/tensor"
)

// Benchmarks report GFLOP/s (2 flops per multiply-add). Each group runs the
// package kernel next to a vek-based and a naive baseline so that ratios can
// be read within one noisy run on shared cores:
//
//	GOEXPERIMENT=simd go test -run=^$ -bench=. -count=3 ./kernel/

func reportGFLOPS(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// vekMatVec is the library alternative to our mat-vec: vek32.Dot per row, rows
// split over GOMAXPROCS goroutines.
func vekMatVec(out, x, w []float32, N, K int) {
	p := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	chunk := (N + p - 1) / p
	for lo := 0; lo < N; lo += chunk {
		hi := min(lo+chunk, N)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := lo; n < hi; n++ {
				out[n] = vek32.Dot(x, w[n*K:(n+1)*K])
			}
		}()
	}
	wg.Wait()
}

// naiveNT is the textbook triple loop: C[M,N] = A[M,K]·B[N,K]ᵀ.
func naiveNT(c, a, b []float32, M, N, K int) {
	for i := 0; i < M; i++ {
		for j := 0; j < N; j++ {
			var s float32
			for k := 0; k < K; k++ {
				s += a[i*K+k] * b[j*K+k]
			}
			c[i*N+j] = s
		}
	}
}

// naiveNN is the i-k-j loop: C[M,N] = A[M,K]·B[K,N].
func naiveNN(c, a, b []float32, M, N, K int) {
	clear(c[:M*N])
	for i := 0; i < M; i++ {
		for k := 0; k < K; k++ {
			av := a[i*K+k]
			row := b[k*N : (k+1)*N]
			ci := c[i*N : (i+1)*N]
			for j := range ci {
				ci[j] += av * row[j]
			}
		}
	}
}

var smolShapes = [][2]int{{576, 576}, {1536, 576}, {49152, 576}} // N, K: attention, FFN, vocab

func BenchmarkLinear(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, T := range []int{1, 64} {
		for _, s := range smolShapes {
			N, K := s[0], s[1]
			wf := randVec(r, N*K)
			x := randVec(r, T*K)
			out := make([]float32, T*N)
			flops := 2 * float64(T*N*K)
			name := fmt.Sprintf("T=%d/%dx%d", T, N, K)
			for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0} {
				if dt != tensor.F32 && N == 49152 {
					continue
				}
				w := &tensor.Tensor{DType: dt, Shape: []int{N, K}}
				if dt == tensor.F32 {
					w.Data = tensor.F32ToBytes(wf)
				} else {
					w.Data, _ = tensor.Encode(dt, wf)
				}
				b.Run(name+"/kernel-"+dt.String(), func(b *testing.B) {
					for b.Loop() {
						Linear(out, x, w, T)
					}
					reportGFLOPS(b, flops)
				})
			}
			if T == 1 {
				b.Run(name+"/vek", func(b *testing.B) {
					for b.Loop() {
						vekMatVec(out, x, wf, N, K)
					}
					reportGFLOPS(b, flops)
				})
			} else {
				wT := make([]float32, K*N) // vek wants B as [K, N]; transposed once, untimed
				for n := 0; n < N; n++ {
					for k := 0; k < K; k++ {
						wT[k*N+n] = wf[n*K+k]
					}
				}
				b.Run(name+"/vek", func(b *testing.B) {
					for b.Loop() {
						vek32.MatMul_Into(out, x, wT, K)
					}
					reportGFLOPS(b, flops)
				})
			}
			if T*N <= 64*1536 {
				b.Run(name+"/naive", func(b *testing.B) {
					for b.Loop() {
						naiveNT(out, x, wf, T, N, K)
					}
					reportGFLOPS(b, flops)
				})
			}
		}
	}
}

func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range [][3]int{{512, 128, 128}, {512, 344, 128}, {512, 128, 344}, {64, 128, 128}} {
		M, N, K := s[0], s[1], s[2]
		flops := 2 * float64(M*N*K)
		name := fmt.Sprintf("%dx%dx%d", M, N, K)
		a, bb := randVec(r, M*K), randVec(r, N*K)
		aT := randVec(r, K*M)
		c := make([]float32, M*N)
		b.Run(name+"/NT", func(b *testing.B) {
			for b.Loop() {
				MatMulNT(c, a, bb, M, N, K, false)
			}
			reportGFLOPS(b, flops)
		})
		b.Run(name+"/NN", func(b *testing.B) {
			for b.Loop() {
				MatMulNN(c, a, bb, M, N, K, false)
			}
			reportGFLOPS(b, flops)
		})
		b.Run(name+"/TN", func(b *testing.B) {
			for b.Loop() {
				MatMulTN(c, aT, bb, M, N, K, true)
			}
			reportGFLOPS(b, flops)
		})
		b.Run(name+"/vek-NN", func(b *testing.B) {
			for b.Loop() {
				vek32.MatMul_Into(c, a, bb, K)
			}
			reportGFLOPS(b, flops)
		})
		b.Run(name+"/naive-NN", func(b *testing.B) {
			for b.Loop() {
				naiveNN(c, a, bb, M, N, K)
			}
			reportGFLOPS(b, flops)
		})
	}
}

func BenchmarkDot(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	x, y := randVec(r, 576), randVec(r, 576)
	b.Run("kernel", func(b *testing.B) {
		for b.Loop() {
			Dot(x, y)
		}
		reportGFLOPS(b, 2*576)
	})
	b.Run("vek", func(b *testing.B) {
		for b.Loop() {
			vek32.Dot(x, y)
		}
		reportGFLOPS(b, 2*576)
	})
}

// BenchmarkFMAPeak reports the machine's float32 multiply-add ceiling on one
// and on every core.
func BenchmarkFMAPeak(b *testing.B) {
	for _, threads := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			var g float64
			for b.Loop() {
				g = FMAPeak(threads, 200*time.Millisecond)
			}
			b.ReportMetric(g, "GFLOP/s")
		})
	}
}

// BenchmarkQuantLinear: one token (T=1, a mat-vec) and 64 tokens (a GEMM
// over decoded rows) through a 1536×1536 weight per storage type, with
// the type's AVX-512 kernels ("kernel") and, beside them in the same run,
// with the portable decoder ("decode": each row decoded to float32, then
// dotted or packed). F32 is the reference the quantized types are read
// against.
func BenchmarkQuantLinear(b *testing.B) {
	const N, K = 1536, 1536
	r := rand.New(rand.NewPCG(2, 2))
	wf := randVec(r, N*K)
	for _, T := range []int{1, 64} {
		x, out := randVec(r, T*K), make([]float32, T*N)
		for _, dt := range []tensor.DType{tensor.F32, tensor.Q8_0, tensor.Q4_0, tensor.Q4_1, tensor.Q5_0, tensor.Q5_1, tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K} {
			w := &tensor.Tensor{DType: dt, Shape: []int{N, K}, Data: tensor.F32ToBytes(wf)}
			if dt != tensor.F32 {
				var err error
				if w.Data, err = tensor.Encode(dt, wf); err != nil { // a type persona does not write
					w.Data = randomBlocks(r, dt, N*K)
				}
			}
			for _, path := range []string{"kernel", "decode"} {
				if dt == tensor.F32 && path == "decode" {
					continue
				}
				b.Run(fmt.Sprintf("T=%d/%v/%s", T, dt, path), func(b *testing.B) {
					if path == "decode" {
						savedRow, savedDecode := dotRowImpl, decodeImpl
						dotRowImpl, decodeImpl = dotRowGo, decodeGo
						defer func() { dotRowImpl, decodeImpl = savedRow, savedDecode }()
					}
					for b.Loop() {
						Linear(out, x, w, T)
					}
					reportGFLOPS(b, float64(2*T*N*K))
				})
			}
		}
	}
}
