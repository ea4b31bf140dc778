package kernel

import (
	"sync"
	"time"
)

// fmaLoopImpl runs n rounds of independent float32 multiply-adds and
// returns the FLOPs done (2 per lane per multiply-add). The AVX-512 path
// keeps 12 accumulators of 16 lanes in flight, enough to cover the FMA
// latency of both pipes; the portable path keeps 16 scalars.
var fmaLoopImpl = fmaLoopGo

func fmaLoopGo(n int) (flops float64, sink float32) {
	var acc [16]float32
	for i := range acc {
		acc[i] = float32(i) * 1e-3
	}
	a, b := float32(0.999999), float32(1e-7)
	for range n {
		for i := range acc {
			acc[i] = acc[i]*a + b
		}
	}
	for _, x := range acc {
		sink += x
	}
	return float64(n) * 16 * 2, sink
}

// FMAPeak measures this machine's float32 multiply-add rate on threads
// goroutines for about d: the ceiling that effective GFLOP/s figures (the
// trainer's, the engine's) are read against. It returns GFLOP/s summed over
// the goroutines, with the SIMD path when it is active.
func FMAPeak(threads int, d time.Duration) float64 {
	threads = max(threads, 1)
	const rounds = 1 << 16
	var mu sync.Mutex
	var total float64
	var wg sync.WaitGroup
	start := time.Now()
	for range threads {
		wg.Go(func() {
			var flops float64
			var sink float32
			for time.Since(start) < d {
				f, s := fmaLoopImpl(rounds)
				flops, sink = flops+f, sink+s
			}
			mu.Lock()
			total += flops + float64(sink)*0 // keep the sink alive
			mu.Unlock()
		})
	}
	wg.Wait()
	return total / time.Since(start).Seconds() / 1e9
}
