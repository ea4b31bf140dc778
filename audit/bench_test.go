package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"persona/backend"
)

// benchSuite is one single-turn probe judged by a regex: the cheapest probe
// the harness can run, so what is measured is the harness and the backend's
// latency, not a scorer.
func benchSuite(b *testing.B) *Suite {
	b.Helper()
	s, err := ParseSuite([]byte(`name: bench
persona: a helpful assistant
samples: 1
seed: 1
scorers:
  - name: pirate
    type: regex
    must_not_match: ["(?i)\\barr\\b"]
probes:
  - id: p
    category: role_play_capture
    turns: ["hello"]
`), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// sleeper is a backend with a fixed latency.
type sleeper struct{ latency time.Duration }

func (s sleeper) Name() string { return "sleeper" }
func (s sleeper) Chat(ctx context.Context, _ backend.Request) (*backend.Response, error) {
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return text("Hello! How can I help?"), nil
}

// memStore keeps samples in memory: the harness without a database.
type memStore struct {
	mu sync.Mutex
	n  int
}

func (m *memStore) CreateRun(context.Context, *RunInfo) error                { return nil }
func (m *memStore) Run(context.Context, string) (*RunInfo, error)            { return nil, ErrNoRun }
func (m *memStore) Runs(context.Context) ([]RunInfo, error)                  { return nil, nil }
func (m *memStore) Samples(context.Context, string) ([]*SampleResult, error) { return nil, nil }
func (m *memStore) FinishRun(context.Context, string, *Report) error         { return nil }
func (m *memStore) Report(context.Context, string) (*Report, error)          { return nil, ErrNoRun }
func (m *memStore) Close() error                                             { return nil }
func (m *memStore) SaveSample(context.Context, string, *SampleResult) error {
	m.mu.Lock()
	m.n++
	m.mu.Unlock()
	return nil
}

// runBench runs b.N samples of the bench probe and reports probes/s and
// ns/probe, timed from the start to the last sample saved: the report built
// after it (bootstrap CIs over b.N samples) is not per-probe work.
func runBench(b *testing.B, target Backend, st Store, concurrency int) {
	b.Helper()
	s := benchSuite(b)
	var last time.Time
	b.ResetTimer()
	start := time.Now()
	_, err := Start(context.Background(), s, Options{Target: target, Store: st, Concurrency: concurrency, Samples: b.N,
		Progress: func(done, total int, _ *SampleResult) {
			if done == total {
				last = time.Now()
			}
		}})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	el := last.Sub(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "probes/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N), "ns/op")
}

func sqliteStore(b *testing.B) Store {
	st, err := OpenStore(context.Background(), filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkAuditThroughput measures probes/s through the whole harness
// (scheduling, the target call, scoring, saving each sample to SQLite)
// against a target with a fixed 5 ms latency behind a backend concurrency
// limit of 16, at audit concurrency 1, 8 and 32: throughput should grow
// about linearly with concurrency (≈200, ≈1600 probes/s) and flatten at the
// backend's limit (≈3200 probes/s), unless the harness itself is the
// bottleneck.
func BenchmarkAuditThroughput(b *testing.B) {
	const latency, limit = 5 * time.Millisecond, 16
	for _, c := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", c), func(b *testing.B) {
			target := backend.NewRobust("sleeper", backend.Policy{MaxConcurrency: limit}, sleeper{latency})
			runBench(b, target, sqliteStore(b), c)
		})
	}
}

// BenchmarkAuditOverhead measures the harness's own cost per probe: a
// target that answers at once, one worker, with the SQLite store (what a
// run pays: one transaction per sample) and with an in-memory store (the
// scheduling and scoring alone).
func BenchmarkAuditOverhead(b *testing.B) {
	b.Run("store=sqlite", func(b *testing.B) { runBench(b, sleeper{}, sqliteStore(b), 1) })
	b.Run("store=memory", func(b *testing.B) { runBench(b, sleeper{}, &memStore{}, 1) })
}
