package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"persona/audit"
	"persona/backend"
	"persona/internal/testref"
)

// benchSuite is one single-turn probe judged by a regex, samples times:
// the cheapest sample there is, so what is measured is the queue, the
// database and the backend's latency.
func benchSuite(tb testing.TB, samples int) *audit.Suite {
	s, err := audit.ParseSuite(fmt.Appendf(nil, `name: bench
samples: %d
seed: 1
scorers:
  - name: pirate
    type: regex
    must_not_match: ["(?i)\\barr\\b"]
probes:
  - id: p
    category: role_play_capture
    turns: ["hello"]
`, samples), "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// slowAPI is an OpenAI-compatible chat endpoint on loopback that answers
// every request after a fixed latency: a stand-in for a model server, so
// that the fleet's own cost shows.
func slowAPI(tb testing.TB, latency time.Duration) backend.Backend {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(latency)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}`)
	}))
	tb.Cleanup(srv.Close)
	b, err := backend.NewOpenAI(backend.OpenAIConfig{Name: "api", Model: "m", BaseURL: srv.URL + "/v1"})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkFleet runs a distributed audit of 400 samples with 1, 2 and 4
// workers (in this process, each with its own connections and River
// client, 16 samples at once) against a 5 ms API on loopback, and reports
// probes/s and the PostgreSQL cost per sample: transactions committed and
// rows written in the database over the run (queue polling included),
// from pg_stat_database. workers=0 is the reference: the same audit run
// by one process without the queue (audit.Start, 16 samples at once,
// the same PostgreSQL store).
func BenchmarkFleet(b *testing.B) {
	const samples = 400
	for _, workers := range []int{0, 1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, testref.PostgresDB(b))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			api := slowAPI(b, 5*time.Millisecond)
			runCtx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for i := range workers {
				w, err := NewWorker(db, WorkerOptions{Backends: []backend.Backend{api}, Concurrency: 16, ID: fmt.Sprintf("bench-%d", i)})
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() { w.Run(runCtx, time.Minute) })
			}
			defer func() { stop(); wg.Wait() }()
			s := benchSuite(b, samples)
			var xacts, rows, secs float64
			for b.Loop() {
				before := dbStats(b, db)
				start := time.Now()
				var rep *audit.Report
				if workers == 0 {
					rep, err = audit.Start(ctx, s, audit.Options{Target: api, Store: db.Store, Concurrency: 16})
				} else {
					info := audit.NewRunInfo("", s, api.Name(), "", "", 0)
					if err := db.StartAudit(ctx, info, s); err != nil {
						b.Fatal(err)
					}
					rep, err = db.WaitAudit(ctx, info, s, 10*time.Millisecond, nil)
				}
				if err != nil {
					b.Fatal(err)
				}
				secs += time.Since(start).Seconds()
				if rep.Failures.Samples != 0 {
					b.Fatalf("%d samples failed", rep.Failures.Samples)
				}
				after := dbStats(b, db)
				xacts += after[0] - before[0]
				rows += after[1] - before[1]
			}
			n := float64(b.N * samples)
			b.ReportMetric(n/secs, "probes/s")
			b.ReportMetric(xacts/n, "xacts/sample")
			b.ReportMetric(rows/n, "rows/sample")
		})
	}
}

// dbStats returns the database's committed transactions and rows
// inserted, updated or deleted so far. The statistics are published by
// each session within a second or so, so it waits that long first.
func dbStats(tb testing.TB, db *DB) [2]float64 {
	time.Sleep(1500 * time.Millisecond)
	var x, r float64
	err := db.Pool.QueryRow(context.Background(), `SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&x, &r)
	if err != nil {
		tb.Fatal(err)
	}
	return [2]float64{x, r}
}
