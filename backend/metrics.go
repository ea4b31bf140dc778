package backend

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram: from a cached health check to a long generation on a CPU.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// metrics is the server's counters, written in the Prometheus text
// exposition format by hand (the format is a few lines of text; a client
// library would be the largest dependency of the server).
type metrics struct {
	mu               sync.Mutex
	requests         map[[2]string]uint64 // (route, code) → count
	latency          map[string]*histogram
	promptTokens     atomic.Uint64
	completionTokens atomic.Uint64
	inflight         atomic.Int64
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	n      uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, latency: map[string]*histogram{}}
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[2]string{route, strconv.Itoa(code)}]++
	h := m.latency[route]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.latency[route] = h
	}
	s := d.Seconds()
	for i, ub := range latencyBuckets {
		if s <= ub {
			h.counts[i]++
			break
		}
	}
	h.sum += s
	h.n++
}

func (m *metrics) tokens(u Usage) {
	m.promptTokens.Add(uint64(u.PromptTokens))
	m.completionTokens.Add(uint64(u.CompletionTokens))
}

func (m *metrics) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP persona_requests_total HTTP requests served, by route and status code.")
	fmt.Fprintln(w, "# TYPE persona_requests_total counter")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		fmt.Fprintf(w, "persona_requests_total{route=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	fmt.Fprintln(w, "# HELP persona_tokens_total Tokens processed, by kind (prompt or completion).")
	fmt.Fprintln(w, "# TYPE persona_tokens_total counter")
	fmt.Fprintf(w, "persona_tokens_total{kind=\"prompt\"} %d\n", m.promptTokens.Load())
	fmt.Fprintf(w, "persona_tokens_total{kind=\"completion\"} %d\n", m.completionTokens.Load())
	fmt.Fprintln(w, "# HELP persona_requests_in_flight Requests being served now.")
	fmt.Fprintln(w, "# TYPE persona_requests_in_flight gauge")
	fmt.Fprintf(w, "persona_requests_in_flight %d\n", m.inflight.Load())
	fmt.Fprintln(w, "# HELP persona_request_duration_seconds Time to serve a request, by route.")
	fmt.Fprintln(w, "# TYPE persona_request_duration_seconds histogram")
	routes := make([]string, 0, len(m.latency))
	for r := range m.latency {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, route := range routes {
		h := m.latency[route]
		var cum uint64
		for i, ub := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "persona_request_duration_seconds_bucket{route=%q,le=%q} %d\n", route, strconv.FormatFloat(ub, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "persona_request_duration_seconds_bucket{route=%q,le=\"+Inf\"} %d\n", route, h.n)
		fmt.Fprintf(w, "persona_request_duration_seconds_sum{route=%q} %g\n", route, h.sum)
		fmt.Fprintf(w, "persona_request_duration_seconds_count{route=%q} %d\n", route, h.n)
	}
}
