// Package parallel runs independent jobs (generations, conversations, audit
// samples, attention heads) on a fixed number of goroutines: measurement
// loops on a shared machine want a bounded worker count, the first error to
// stop the rest, cancellation, and progress reports.
package parallel

import (
	"context"
	"sync"
)

// For runs fn(0 … n−1) on min(workers, n) goroutines, each taking the next
// index as it finishes the last. After the first error (or cancellation of
// ctx) no new index starts; that error is returned.
func For(ctx context.Context, workers, n int, fn func(i int) error) error {
	return ForProgress(ctx, workers, n, fn, nil)
}

// ForProgress is For that calls progress(done, n) after each index that
// finished without error, one call at a time; progress may be nil.
func ForProgress(ctx context.Context, workers, n int, fn func(i int) error, progress func(done, n int)) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
		done  int
	)
	for range max(min(workers, n), 0) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || i >= n || ctx.Err() != nil
				mu.Unlock()
				if stop {
					return
				}
				err := fn(i)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					done++
					if progress != nil {
						progress(done, n)
					}
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
