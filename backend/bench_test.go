package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRobustThroughput measures requests/s through Robust against a
// backend with a fixed 5ms latency, with 1, 8 and 32 callers and a
// concurrency limit of 16: throughput should grow about linearly with the
// callers (≈200, 1600 req/s) and flatten at the limit (≈3200 req/s).
func BenchmarkRobustThroughput(b *testing.B) {
	const latency, limit = 5 * time.Millisecond, 16
	for _, callers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			f := &fake{name: "f", latency: latency}
			r := NewRobust("r", Policy{MaxConcurrency: limit, Retries: 2, Timeout: time.Second}, f)
			var next atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range callers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := r.Chat(context.Background(), Request{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			b.ReportMetric(float64(f.own.peak.Load()), "peak-in-flight")
		})
	}
}

// BenchmarkRobustOverhead is the per-request cost of the wrapper itself
// (semaphore, timeout context, endpoint choice) over calling the backend
// directly, against a backend that answers at once.
func BenchmarkRobustOverhead(b *testing.B) {
	f := &fake{name: "f"}
	req := Request{Messages: testChat}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			f.Chat(context.Background(), req)
		}
	})
	b.Run("robust", func(b *testing.B) {
		r := NewRobust("r", Policy{MaxConcurrency: 16, Retries: 3, Timeout: time.Minute}, f)
		for b.Loop() {
			r.Chat(context.Background(), req)
		}
	})
	b.Run("robust-3-endpoints", func(b *testing.B) {
		r := NewRobust("r", Policy{MaxConcurrency: 16, Retries: 3, Timeout: time.Minute}, f, &fake{name: "g"}, &fake{name: "h"})
		for b.Loop() {
			r.Chat(context.Background(), req)
		}
	})
}
