// Package parallel runs independent jobs (generations, conversations) on a
// fixed number of goroutines: measurement loops on a shared machine want a
// bounded worker count, the first error to stop the rest, and cancellation.
package parallel

import (
	"context"
	"sync"
)

// For runs fn(0 … n−1) on min(workers, n) goroutines, each taking the next
// index as it finishes the last. After the first error (or cancellation of
// ctx) no new index starts; that error is returned.
func For(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range max(min(workers, n), 0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil || i >= n || ctx.Err() != nil
				mu.Unlock()
				if stop {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
