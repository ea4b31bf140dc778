package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestFor(t *testing.T) {
	var sum atomic.Int64
	if err := For(context.Background(), 3, 100, func(i int) error { sum.Add(int64(i)); return nil }); err != nil {
		t.Fatal(err)
	}
	if sum.Load() != 4950 {
		t.Errorf("sum %d, want 4950", sum.Load())
	}
	boom := errors.New("boom")
	var ran atomic.Int64
	err := For(context.Background(), 1, 100, func(i int) error {
		ran.Add(1)
		if i == 5 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || ran.Load() != 6 {
		t.Errorf("err %v after %d jobs, want boom after 6", err, ran.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := For(ctx, 2, 10, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// Progress counts every finished index once, in order of completion, never
// two calls at once.
func TestForProgress(t *testing.T) {
	var calls, inside atomic.Int64
	last := 0
	err := ForProgress(context.Background(), 4, 50, func(int) error { return nil }, func(done, n int) {
		if inside.Add(1) != 1 {
			t.Error("progress called concurrently")
		}
		if done != last+1 || n != 50 {
			t.Errorf("progress(%d, %d) after %d", done, n, last)
		}
		last = done
		calls.Add(1)
		inside.Add(-1)
	})
	if err != nil || calls.Load() != 50 {
		t.Errorf("err %v, %d progress calls", err, calls.Load())
	}
}
