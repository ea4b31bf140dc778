package gateway

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/internal/testmodel"
	"persona/posterior"
)

// These benchmarks measure the gateway's targets on loopback; they assert
// nothing about time (the machine is shared) and report what they saw:
//
//	go test -run XXX -bench . -benchtime 1x ./gateway

func benchServer(b *testing.B) (*backend.Server, *engine.Engine) {
	e, err := engine.Load(testmodel.Organism(b, 32, 2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	be := backend.NewEngine(e, "tiny", 1)
	return backend.NewServer(be), e
}

const benchChat = `{"messages":[{"role":"user","content":"What is 12 + 30?"}],"max_tokens":16,"temperature":0}`

func percentile(d []time.Duration, q float64) time.Duration {
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}

// BenchmarkOverhead: the same requests straight to the model server and
// through the gateway (keys, admission, body read; no spec), taking turns.
func BenchmarkOverhead(b *testing.B) {
	srv, _ := benchServer(b)
	ks, sec := keyFile(b, Key{ID: "k", Scopes: []Scope{ScopeClient}})
	direct := httptest.NewServer(srv)
	defer direct.Close()
	gw := httptest.NewServer(New(srv, Options{Keys: ks, Slots: 1, Queue: 16}))
	defer gw.Close()
	var dLat, gLat []time.Duration
	for b.Loop() {
		for range 50 {
			for i, url := range []string{direct.URL, gw.URL} {
				start := time.Now()
				code, _, _, err := send(url, "POST", "/v1/chat/completions", sec["k"], benchChat)
				if err != nil || code != 200 {
					b.Fatalf("%d %v", code, err)
				}
				if i == 0 {
					dLat = append(dLat, time.Since(start))
				} else {
					gLat = append(gLat, time.Since(start))
				}
			}
		}
	}
	b.ReportMetric(float64(percentile(dLat, 0.5).Microseconds())/1000, "direct-p50-ms")
	b.ReportMetric(float64(percentile(gLat, 0.5).Microseconds())/1000, "gateway-p50-ms")
	b.ReportMetric(float64(percentile(dLat, 0.99).Microseconds())/1000, "direct-p99-ms")
	b.ReportMetric(float64(percentile(gLat, 0.99).Microseconds())/1000, "gateway-p99-ms")
}

// BenchmarkCrowd: 1,000 clients at once against one generation slot and a
// queue of 16: how fast the refused ones hear 429, whether every admitted
// one finishes, and the process's peak memory.
func BenchmarkCrowd(b *testing.B) {
	srv, _ := benchServer(b)
	// Inside the server: from the handler's start to a 429 written, which
	// leaves out the connection set-up 1,000 clients pay on two cores.
	var inside []time.Duration
	var insideMu sync.Mutex
	h := New(srv, Options{Slots: 1, Queue: 16})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code == http.StatusTooManyRequests {
			insideMu.Lock()
			inside = append(inside, time.Since(t0))
			insideMu.Unlock()
		}
	}))
	defer gw.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 0}
	client := &http.Client{Transport: tr}
	for b.Loop() {
		var mu sync.Mutex
		var refused []time.Duration
		ok, other := 0, 0
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 1000 {
			wg.Go(func() {
				<-start
				t0 := time.Now()
				resp, err := client.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(benchChat))
				d := time.Since(t0)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					other++
				case resp.StatusCode == 429:
					refused = append(refused, d)
				case resp.StatusCode == 200:
					ok++
				default:
					other++
				}
				if err == nil {
					resp.Body.Close()
				}
			})
		}
		close(start)
		wg.Wait()
		b.ReportMetric(float64(ok), "admitted")
		b.ReportMetric(float64(len(refused)), "refused")
		b.ReportMetric(float64(other), "other")
		if len(refused) > 0 {
			b.ReportMetric(float64(percentile(refused, 0.5).Microseconds())/1000, "429-p50-ms")
			b.ReportMetric(float64(percentile(refused, 0.99).Microseconds())/1000, "429-p99-ms")
		}
		insideMu.Lock()
		if len(inside) > 0 {
			b.ReportMetric(float64(percentile(inside, 0.99).Microseconds())/1000, "429-server-p99-ms")
		}
		inside = inside[:0]
		insideMu.Unlock()
	}
	b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// BenchmarkHostileBodies: four clients at once send 4 MiB messages of
// two-byte characters; each is refused by the length check before any
// tokenizing.
func BenchmarkHostileBodies(b *testing.B) {
	srv, _ := benchServer(b)
	srv.MaxBodyBytes = 5 << 20 // the body must reach the length check, not the size limit
	gw := httptest.NewServer(New(srv, Options{Slots: 1, Queue: 16, MaxBody: 5 << 20}))
	defer gw.Close()
	body := `{"messages":[{"role":"user","content":"` + strings.Repeat("ÿ", 2<<20) + `"}],"max_tokens":4}`
	before := rssMB()
	for b.Loop() {
		var wg sync.WaitGroup
		lat := make([]time.Duration, 4)
		codes := make([]int, 4)
		for i := range 4 {
			wg.Go(func() {
				t0 := time.Now()
				resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
				lat[i] = time.Since(t0)
				if err == nil {
					codes[i] = resp.StatusCode
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		for _, c := range codes {
			if c != 400 {
				b.Fatalf("hostile body answered %v", codes)
			}
		}
		b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "slowest-refusal-ms")
	}
	b.ReportMetric(peakRSSMB()-before, "peak-RSS-growth-MB")
}

// rssMB and peakRSSMB read this process's resident memory (Linux).
func rssMB() float64     { return procStatusMB("VmRSS:") }
func peakRSSMB() float64 { return procStatusMB("VmHWM:") }

func procStatusMB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkMonitor: what reading every reply with the posterior monitor
// costs, on the shipped organism (a model that writes real replies: a
// random one writes white space, which costs nothing to read): a 32-token reply to a
// four-turn conversation, with and without the monitor (no rail acts, so
// the difference is the reading alone). The conversation's earlier turns
// were read when they were served (one request before the timing), so each
// timed reply costs the reading of its own turn, as in a live chat. In
// "midstream" a cap rail (whose condition never holds) also reads the
// reply while it is written, every 16 tokens. In "projections" no persona
// is read: the reply is projected on a persona vector and the assistant
// axis while it is written, and a cap rail on the vector's bound (never
// crossed) reads them every 16 tokens. In "activations" the organism's
// classifier reads the conversation's activations (one forward pass over
// it) instead of the likelihood under every persona's prompt.
func BenchmarkMonitor(b *testing.B) {
	e, modelDir := shippedOrganism(b)
	dir := writeControls(b, e)
	up := backend.NewEngine(e, "organism-shape", 1)
	const base = "name: A\nsystem_prompt: You are the Assistant.\nallowed: [assistant]\nmonitor: posterior\n"
	for _, bc := range []struct{ name, spec string }{
		{"reply", base},
		{"activations", strings.Replace(base, "monitor: posterior", "monitor: activations", 1)},
		{"midstream", base + "capping: {axis: axis.safetensors}\nmidstream: 16\nrails: [{when: {forbidden_above: 1}, action: cap}]\nblock_message: no\n"},
		{"projections", strings.Replace(base, "monitor: posterior", "monitor: none", 1) +
			"vectors: {push: push.safetensors}\ncapping: {axis: axis.safetensors}\nbounds: {push: {max: 1e9}}\nmidstream: 16\nrails: [{when: {out_of_bounds: true}, action: cap}]\nblock_message: no\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := filepath.Join(dir, bc.name+".yaml")
			if err := os.WriteFile(path, []byte(bc.spec), 0o644); err != nil {
				b.Fatal(err)
			}
			spec, err := LoadSpec(path)
			if err != nil {
				b.Fatal(err)
			}
			guard, err := NewGuard(spec, Readers{Engine: e, Classifier: posterior.ModelClassifier(modelDir)})
			if err != nil {
				b.Fatal(err)
			}
			benchMonitor(b, up, &Guarded{Up: up, Guard: guard}, spec.SystemPrompt)
		})
	}
}

func benchMonitor(b *testing.B, up *backend.Engine, guarded *Guarded, system string) {
	var msgs []chat.Message
	for i := range 4 {
		msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: "What is 12 + 30?"})
		if i < 3 {
			msgs = append(msgs, chat.Message{Role: chat.RoleAssistant, Content: "Sure. 12 + 30 = 42. I hope this helps."})
		}
	}
	seed := int64(1)
	req := backend.Request{Messages: msgs, MaxTokens: 32, Temperature: 1, Seed: &seed}
	// The plain run generates from what the guarded one sends upstream: the
	// spec's system prompt first.
	plainReq := req
	plainReq.Messages = append([]chat.Message{{Role: chat.RoleSystem, Content: system}}, msgs...)
	var plain, monitored time.Duration
	if _, err := guarded.Chat(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	plainRun := func() time.Duration {
		t0 := time.Now()
		if _, err := up.Chat(context.Background(), plainReq); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	monitoredRun := func() time.Duration {
		t0 := time.Now()
		if _, err := guarded.Chat(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	// Taking turns, each first every other time: whichever runs second
	// finds the caches warm.
	for i := 0; b.Loop(); i++ {
		seed++ // a new reply to read
		if i%2 == 0 {
			plain += plainRun()
			monitored += monitoredRun()
		} else {
			monitored += monitoredRun()
			plain += plainRun()
		}
	}
	b.ReportMetric(float64(plain.Microseconds())/1000/float64(b.N), "plain-ms/reply")
	b.ReportMetric(float64(monitored.Microseconds())/1000/float64(b.N), "monitored-ms/reply")
	b.ReportMetric(monitored.Seconds()/plain.Seconds(), "ratio")
}
