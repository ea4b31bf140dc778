package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultServer answers Chat Completions with whatever fault the test asks
// for on the n-th call (1-based).
func faultServer(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body first: only then does the server watch the
		// connection, so a client hanging up cancels r.Context().
		io.Copy(io.Discard, r.Body)
		handle(int(calls.Add(1)), w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, &calls
}

const okCompletion = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

func writeAPIError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":%q,"param":null,"code":null}}`, msg, typ)
}

func okBody(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(okCompletion))
}

// checkNoLeak fails when goroutines started during the test outlive it
// (after idle keep-alive connections are closed).
func checkNoLeak(t *testing.T, tr *http.Transport) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		// A generous bound: goroutines of closed connections exit promptly,
		// a leaked one never does.
		deadline := time.Now().Add(20 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			tr.CloseIdleConnections()
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestFaults(t *testing.T) {
	for _, c := range []struct {
		name    string
		handle  func(n int, w http.ResponseWriter, r *http.Request)
		ok      bool
		calls   int64
		kind    Kind
		minTime time.Duration
	}{
		{name: "500 then ok", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= 2 {
				writeAPIError(w, 500, "server_error", "boom")
				return
			}
			okBody(w)
		}, ok: true, calls: 3},
		{name: "500 always", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			writeAPIError(w, 503, "server_error", "unavailable")
		}, calls: 3, kind: KindServer},
		{name: "429 retry-after", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				writeAPIError(w, 429, "rate_limit_exceeded", "slow down")
				return
			}
			okBody(w)
		}, ok: true, calls: 2, minTime: time.Second},
		{name: "429 retry-after too long", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3600")
			writeAPIError(w, 429, "rate_limit_exceeded", "come back in an hour")
		}, calls: 1, kind: KindRateLimit},
		{name: "400 not retried", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			writeAPIError(w, 400, "invalid_request_error", "bad")
		}, calls: 1, kind: KindBadRequest},
		{name: "401 not retried", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			writeAPIError(w, 401, "invalid_request_error", "no key")
		}, calls: 1, kind: KindAuth},
		{name: "hang", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, calls: 3, kind: KindTimeout, minTime: 3 * 200 * time.Millisecond},
		{name: "hang once", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				<-r.Context().Done()
				return
			}
			okBody(w)
		}, ok: true, calls: 2},
		{name: "dropped connection", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, calls: 3, kind: KindConnection},
		{name: "truncated body", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte(okCompletion[:40]))
		}, calls: 3, kind: KindConnection},
		{name: "malformed JSON", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"id": "x", "choices": [ {"message": `))
		}, calls: 3, kind: KindMalformed},
		{name: "no choices", handle: func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"id":"x","object":"chat.completion","choices":[]}`))
		}, calls: 3, kind: KindMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &http.Transport{}
			checkNoLeak(t, tr)
			ts, calls := faultServer(t, c.handle)
			o, err := NewOpenAI(OpenAIConfig{Model: "m", BaseURL: ts.URL, HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				t.Fatal(err)
			}
			r := NewRobust("fault", Policy{Retries: 2, Timeout: 200 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}, o)
			start := time.Now()
			resp, err := r.Chat(context.Background(), Request{Messages: testChat})
			took := time.Since(start)
			if got := calls.Load(); got != c.calls {
				t.Errorf("%d calls, want %d", got, c.calls)
			}
			if took < c.minTime {
				t.Errorf("took %v, want ≥ %v", took, c.minTime)
			}
			if c.ok {
				if err != nil || resp.Content != "fine" {
					t.Fatalf("got %v, %v", resp, err)
				}
				return
			}
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T) is not *Error", err, err)
			}
			if be.Kind != c.kind || be.Attempts != int(c.calls) {
				t.Errorf("error %q: kind %v after %d attempts, want %v after %d", err, be.Kind, be.Attempts, c.kind, c.calls)
			}
			if want := c.kind != KindBadRequest; IsInfrastructure(err) != want || IsBadRequest(err) == want {
				t.Errorf("%v: infrastructure %v, bad request %v", err, IsInfrastructure(err), IsBadRequest(err))
			}
		})
	}
}

// TestCancelDuringBackoff: a caller that gives up is answered at once with
// its own context error, not after the backoff.
func TestCancelDuringBackoff(t *testing.T) {
	f := &fake{name: "f", fail: func(int) error { return &Error{Kind: KindRateLimit, RetryAfter: 30 * time.Second} }}
	r := NewRobust("r", Policy{Retries: 5}, f)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := r.Chat(ctx, Request{})
	if !errors.Is(err, context.Canceled) || IsInfrastructure(err) {
		t.Fatalf("cancelled: %v", err)
	}
	// Had the wait run its 30 s course, a second attempt would have been
	// made; one call means the cancellation cut the backoff short.
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	// A deadline, by contrast, is the backend being too slow: exit 3.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = r.Chat(ctx, Request{})
	var be *Error
	if !errors.As(err, &be) || be.Kind != KindTimeout || !IsInfrastructure(err) {
		t.Fatalf("deadline: %v", err)
	}
}

// fake is a Backend with fixed latency and scripted failures. Fakes that
// share a gauge count the requests in flight across all of them.
type fake struct {
	name    string
	latency time.Duration
	fail    func(n int) error // nil: always succeed
	// hold, if set, keeps every call in flight until it is closed.
	hold  chan struct{}
	calls atomic.Int64
	own   gauge
	all   *gauge
}

// gauge tracks a number of requests in flight and the most ever seen.
type gauge struct{ cur, peak atomic.Int64 }

func (g *gauge) enter() {
	cur := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if cur <= p || g.peak.CompareAndSwap(p, cur) {
			return
		}
	}
}

func (g *gauge) leave() { g.cur.Add(-1) }

func (f *fake) Name() string { return f.name }

func (f *fake) Chat(ctx context.Context, req Request) (*Response, error) {
	n := f.calls.Add(1)
	for _, g := range []*gauge{&f.own, f.all} {
		if g != nil {
			g.enter()
			defer g.leave()
		}
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.latency > 0 {
		if err := sleep(ctx, f.latency); err != nil {
			return nil, err
		}
	}
	if f.fail != nil {
		if err := f.fail(int(n)); err != nil {
			return nil, err
		}
	}
	return &Response{Model: f.name, Content: "ok from " + f.name, FinishReason: "stop"}, nil
}

// TestSpreadAndFailover: requests go to the least-loaded replica (in turn
// among equals), never more than the limit across all of them, and a dead
// replica's share moves to the live ones.
func TestSpreadAndFailover(t *testing.T) {
	// One at a time every replica is idle, so they take turns exactly.
	a, b, c := &fake{name: "a"}, &fake{name: "b"}, &fake{name: "c"}
	r := NewRobust("fleet", Policy{}, a, b, c)
	for range 30 {
		if _, err := r.Chat(context.Background(), Request{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []*fake{a, b, c} {
		if n := f.calls.Load(); n != 10 {
			t.Errorf("%s served %d of 30 sequential requests, want 10", f.name, n)
		}
	}

	// A replica with a request in flight gets no more while another is idle.
	busy, idle := &fake{name: "busy", hold: make(chan struct{})}, &fake{name: "idle"}
	r = NewRobust("fleet", Policy{}, busy, idle)
	held := make(chan error, 1)
	go func() { _, err := r.Chat(context.Background(), Request{}); held <- err }()
	for busy.own.cur.Load() == 0 && idle.calls.Load() == 0 {
		runtime.Gosched()
	}
	if idle.calls.Load() > 0 {
		t.Fatal("the first request went to the second replica, not the first in turn")
	}
	for range 10 {
		resp, err := r.Chat(context.Background(), Request{})
		if err != nil || resp.Model != "idle" {
			t.Fatalf("while the other replica is busy: %v %v", resp, err)
		}
	}
	close(busy.hold)
	if err := <-held; err != nil {
		t.Fatal(err)
	}

	// Under load the limit holds across replicas.
	var all gauge
	a, b, c = &fake{name: "a", latency: 2 * time.Millisecond, all: &all}, &fake{name: "b", latency: 2 * time.Millisecond, all: &all}, &fake{name: "c", latency: 2 * time.Millisecond, all: &all}
	r = NewRobust("fleet", Policy{MaxConcurrency: 6}, a, b, c)
	var wg sync.WaitGroup
	for range 60 {
		wg.Go(func() {
			if _, err := r.Chat(context.Background(), Request{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := all.peak.Load(); p > 6 {
		t.Errorf("%d requests in flight at once with a limit of 6", p)
	}
	if n := a.calls.Load() + b.calls.Load() + c.calls.Load(); n != 60 {
		t.Errorf("%d calls for 60 requests", n)
	}

	dead := &fake{name: "dead", fail: func(int) error { return &Error{Kind: KindConnection, Msg: "refused"} }}
	live := &fake{name: "live"}
	r = NewRobust("fleet", Policy{Retries: 1, BaseDelay: time.Second}, dead, live)
	for i := range 10 {
		resp, err := r.Chat(context.Background(), Request{})
		if err != nil || resp.Model != "live" {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
	}
	// The dead replica is benched after its first failure, not tried again
	// for every request.
	if n := dead.calls.Load(); n > 2 {
		t.Errorf("dead replica tried %d times in 10 requests", n)
	}
}

// TestConcurrencyLimit: MaxConcurrency attempts run at once, never more.
func TestConcurrencyLimit(t *testing.T) {
	f := &fake{name: "f", hold: make(chan struct{})}
	r := NewRobust("r", Policy{MaxConcurrency: 4}, f)
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() { r.Chat(context.Background(), Request{}) })
	}
	// The limit is reached (the 36 others wait their turn) ...
	for f.own.cur.Load() < 4 {
		runtime.Gosched()
	}
	// ... and, released, all 40 finish without ever exceeding it.
	close(f.hold)
	wg.Wait()
	if p := f.own.peak.Load(); p != 4 {
		t.Errorf("peak concurrency %d, want 4", p)
	}
	if n := f.calls.Load(); n != 40 {
		t.Errorf("%d calls, want 40", n)
	}
}

// TestKeyNeverWritten: an API key must not appear in a recording or an
// error message, even when the server echoes it back.
func TestKeyNeverWritten(t *testing.T) {
	const key = "sk-test-SECRET-9f8e7d6c5b4a"
	t.Setenv("PERSONA_TEST_OPENAI_KEY", key)
	ts, _ := faultServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if got != "Bearer "+key {
			writeAPIError(w, 401, "invalid_request_error", "missing key")
			return
		}
		if n == 1 {
			// A careless server quoting the credential back in an error.
			writeAPIError(w, 400, "invalid_request_error", "Incorrect API key provided: "+got)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"your key is %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, key)
	})
	o, err := NewOpenAI(OpenAIConfig{Model: "m", BaseURL: ts.URL, APIKeyEnv: "PERSONA_TEST_OPENAI_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	var rec bytes.Buffer
	r := NewRecorder(NewRobust("openai:m", Policy{Retries: 1}, o), &rec)
	_, err = r.Chat(context.Background(), Request{Messages: testChat})
	if err == nil || strings.Contains(err.Error(), key) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), key) {
		t.Errorf("error leaks the key: %v", err)
	}
	if !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("error %q: the echoed key should read [REDACTED]", err)
	}
	if _, err := r.Chat(context.Background(), Request{Messages: testChat}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.String(), key) || strings.Count(rec.String(), "\n") != 2 {
		t.Errorf("recording leaks the key or lacks lines:\n%s", rec.String())
	}
	// Missing variable: the error names the variable, nothing else.
	_, err = NewOpenAI(OpenAIConfig{Model: "m", APIKeyEnv: "PERSONA_TEST_UNSET_VARIABLE"})
	if err == nil || !strings.Contains(err.Error(), "PERSONA_TEST_UNSET_VARIABLE") {
		t.Errorf("unset key variable: %v", err)
	}
}

// TestRecordReplay: what was recorded is served back, in order, for the
// same requests; anything else is KindNotRecorded.
func TestRecordReplay(t *testing.T) {
	n := 0
	f := &fake{name: "f", fail: func(int) error {
		n++
		if n == 3 {
			return &Error{Kind: KindBadRequest, Msg: "too long"}
		}
		return nil
	}}
	var buf bytes.Buffer
	rec := NewRecorder(f, &buf)
	reqA := Request{Messages: testChat, MaxTokens: 5, Seed: seed(1)}
	reqB := Request{Messages: testChat, MaxTokens: 6}
	ctx := context.Background()
	rec.Chat(ctx, reqA)
	rec.Chat(ctx, reqB)
	rec.Chat(ctx, reqA) // fails
	rp, err := ReadReplay(&buf, "rec.jsonl", "")
	if err != nil {
		t.Fatal(err)
	}
	if rp.Len() != 3 || rp.Name() != "f" {
		t.Fatalf("replay of %d exchanges named %q", rp.Len(), rp.Name())
	}
	if resp, err := rp.Chat(ctx, reqA); err != nil || resp.Content != "ok from f" {
		t.Errorf("first A: %v %v", resp, err)
	}
	if _, err := rp.Chat(ctx, reqA); !IsBadRequest(err) {
		t.Errorf("second A replays the recorded failure: %v", err)
	}
	if _, err := rp.Chat(ctx, reqA); !IsBadRequest(err) {
		t.Errorf("third A repeats the last recording: %v", err)
	}
	if resp, err := rp.Chat(ctx, reqB); err != nil || resp.Content != "ok from f" {
		t.Errorf("B: %v %v", resp, err)
	}
	var be *Error
	if _, err := rp.Chat(ctx, Request{Messages: testChat}); !errors.As(err, &be) || be.Kind != KindNotRecorded || !IsInfrastructure(err) {
		t.Errorf("unrecorded request: %v", err)
	}
	if _, err := ReadReplay(strings.NewReader("{\"time\":\"2026-01-01T00:00:00Z\"}\n{"), "bad.jsonl", ""); err == nil || !strings.Contains(err.Error(), "bad.jsonl:1") {
		t.Errorf("bad recording: %v", err)
	}
}

func FuzzReadReplay(f *testing.F) {
	var buf bytes.Buffer
	NewRecorder(&fake{name: "f"}, &buf).Chat(context.Background(), Request{Messages: testChat, Logprobs: true})
	f.Add(buf.String())
	f.Add(`{"request":{},"error":{"kind":"rate limited","message":"x"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		rp, err := ReadReplay(strings.NewReader(s), "fuzz.jsonl", "")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.jsonl") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		rp.Chat(context.Background(), Request{})
	})
}
