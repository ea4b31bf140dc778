//go:build goexperiment.simd

package main

// simdBuild records whether this binary was built with GOEXPERIMENT=simd.
const simdBuild = true
