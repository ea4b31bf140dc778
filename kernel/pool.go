package kernel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A decode step is ~150 parallel regions of 20–200 µs each (five per layer
// plus the output head), so starting a region must cost well under a
// microsecond. Spawning goroutines and waiting on a WaitGroup costs a futex
// wake-up and a scheduler hand-off per region (5–50 µs, and the profile
// showed the second core idle a third of the time). Instead a few persistent
// workers spin on an atomic for a short while after each region, as
// llama.cpp's thread pool does, and park on a channel only when no new
// region arrives within spinFor. Regions hand out chunks from an atomic
// counter, so a core that is late (parked, or interrupted by another
// process on this shared machine) simply takes fewer chunks.

// spinFor is how long an idle worker polls for the next region before it
// parks. It covers the serial stretches between the mat-vecs of one decode
// step (norms, RoPE, sampling: a few to a few tens of µs) with margin, but is
// short enough that an idle engine stops burning its cores almost at once.
const spinFor = 200 * time.Microsecond

// region is one parallel loop: fn over [0, n) in chunks of chunk items.
// A fresh region is published for every loop, so a worker that arrives
// after the loop has finished finds no chunks left and touches nothing the
// next loop uses.
type region struct {
	fn       func(lo, hi int)
	n, chunk int64
	workers  int          // pool workers asked to help (the caller helps too)
	next     atomic.Int64 // first item not yet handed out
	done     atomic.Int64 // items finished
}

// run takes chunks until none is left.
func (r *region) run() {
	for {
		lo := r.next.Add(r.chunk) - r.chunk
		if lo >= r.n {
			return
		}
		hi := min(lo+r.chunk, r.n)
		r.fn(int(lo), int(hi))
		r.done.Add(hi - lo)
	}
}

type poolWorker struct {
	id       int
	sleeping atomic.Bool
	wake     chan struct{} // buffered(1): a token to leave the park
}

type workerPool struct {
	mu      sync.Mutex // held by the goroutine whose region the pool runs
	cur     atomic.Pointer[region]
	workers []*poolWorker // grown under mu, never shrunk
}

var pool workerPool

// loop is a worker's life: wait for a region it is asked to help with, help,
// repeat.
func (p *workerPool) loop(w *poolWorker) {
	var seen *region
	for {
		r := p.wait(w, seen)
		seen = r
		if w.id < r.workers {
			r.run()
		}
	}
}

// wait returns the first published region other than seen, spinning for up
// to spinFor before it parks.
func (p *workerPool) wait(w *poolWorker, seen *region) *region {
	if seen == nil || w.id < seen.workers { // a worker left out of the last region parks at once
		start := time.Now()
		for i := 1; ; i++ {
			if r := p.cur.Load(); r != seen {
				return r
			}
			if i%256 == 0 {
				if time.Since(start) > spinFor {
					break
				}
				if i%4096 == 0 {
					runtime.Gosched() // let anything else on this P (GC, timers) run
				}
			}
		}
	}
	for {
		w.sleeping.Store(true)
		if r := p.cur.Load(); r != seen {
			if !w.sleeping.CompareAndSwap(true, false) {
				<-w.wake // the publisher saw us asleep and sent a token: consume it
			}
			return r
		}
		<-w.wake
		if r := p.cur.Load(); r != seen {
			return r
		}
	}
}

// parallelChunks runs fn over [0, n) in chunks of chunk items (the last may
// be shorter) on the calling goroutine and up to helpers pool workers. If the
// pool is busy (another goroutine's loop, or a loop nested inside one) it
// falls back to one goroutine per helper.
func parallelChunks(n, chunk, helpers int, fn func(lo, hi int)) {
	r := &region{fn: fn, n: int64(n), chunk: int64(chunk), workers: helpers}
	if !pool.mu.TryLock() {
		var wg sync.WaitGroup
		for i := 0; i < helpers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.run()
			}()
		}
		r.run()
		wg.Wait()
		return
	}
	for len(pool.workers) < helpers {
		w := &poolWorker{id: len(pool.workers), wake: make(chan struct{}, 1)}
		pool.workers = append(pool.workers, w)
		go pool.loop(w)
	}
	pool.cur.Store(r)
	for _, w := range pool.workers[:helpers] {
		if w.sleeping.Load() && w.sleeping.CompareAndSwap(true, false) {
			w.wake <- struct{}{}
		}
	}
	r.run()
	// Every chunk is handed out; wait for the ones still being computed.
	for i := 1; r.done.Load() < r.n; i++ {
		if i%64 == 0 {
			runtime.Gosched()
		}
	}
	pool.mu.Unlock()
}
