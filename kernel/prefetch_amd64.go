package kernel

import "unsafe"

// prefetchL1 hints that the n bytes from p are read soon (PREFETCHT0, one
// per 64-byte line). archsimd has no prefetch; a mat-vec that asks for its
// next rows while it multiplies the current ones keeps more misses in
// flight than the hardware prefetchers alone (see doc.go). Prefetches never
// fault, but callers stay within their slices anyway.
//
//go:noescape
func prefetchL1(p unsafe.Pointer, n uintptr)
