// Package kernel holds the few dense kernels a Llama inference engine and
// trainer spend their time in: Linear (a layer with HF-layout weights in
// F32/F16/BF16/Q8_0), the three float32 GEMM layouts a trainer's forward and
// backward passes need, and Dot/Axpy/Scale.
//
// Built with GOEXPERIMENT=simd on an AVX-512 CPU, the kernels use
// simd/archsimd; otherwise a portable Go path (vek for dot products) runs, so a
// plain go build and go test work everywhere.
package kernel
