package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stub stands in for the model server where a test must hold requests at a
// known point: it reports each generation request that reaches it on
// entered and answers when release is closed or the request's context
// ends; other routes it answers at once. (serve_test in cmd/persona runs
// the gateway in front of the real server.)
type stub struct {
	entered chan string
	release chan struct{}
}

func newStub() *stub { return &stub{entered: make(chan string, 100), release: make(chan struct{})} }

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !generates(r) {
		fmt.Fprint(w, "ok")
		return
	}
	body, _ := io.ReadAll(r.Body)
	s.entered <- string(body)
	select {
	case <-s.release:
		fmt.Fprintf(w, "ok %s", body)
	case <-r.Context().Done():
		w.WriteHeader(http.StatusGatewayTimeout)
		fmt.Fprint(w, context.Cause(r.Context()))
	}
}

func keyFile(t testing.TB, keys ...Key) (*Keys, map[string]string) {
	t.Helper()
	ks, err := LoadKeys(filepath.Join(t.TempDir(), "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, k := range keys {
		s, err := ks.Add(k)
		if err != nil {
			t.Fatal(err)
		}
		secrets[k.ID] = s
	}
	return ks, secrets
}

func do(t *testing.T, url, method, path, secret, body string) (int, http.Header, string) {
	t.Helper()
	code, h, data, err := send(url, method, path, secret, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, h, data
}

// send is do for goroutines other than the test's.
func send(url, method, path, secret, body string) (int, http.Header, string, error) {
	req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(data), nil
}

func TestAuthAndScopes(t *testing.T) {
	ks, sec := keyFile(t, Key{ID: "alice", Scopes: []Scope{ScopeClient}}, Key{ID: "ops", Scopes: []Scope{ScopeAdmin}})
	var logs bytes.Buffer
	st := newStub()
	close(st.release)
	ts := httptest.NewServer(New(st, Options{Keys: ks, Slots: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
	defer ts.Close()
	for _, c := range []struct {
		method, path, secret string
		want                 int
	}{
		{"GET", "/health", "", 200},
		{"POST", "/v1/chat/completions", "", 401},
		{"POST", "/v1/chat/completions", "psk_wrong", 401},
		{"POST", "/v1/chat/completions", sec["alice"] + "x", 401},
		{"POST", "/v1/chat/completions", sec["alice"], 200},
		{"GET", "/v1/models", sec["alice"], 200},
		{"GET", "/metrics", sec["alice"], 403},
		{"POST", "/admin/reload", sec["alice"], 403},
		{"GET", "/metrics", sec["ops"], 200},
		{"POST", "/v1/chat/completions", sec["ops"], 200},
	} {
		code, h, body := do(t, ts.URL, c.method, c.path, c.secret, "{}")
		if code != c.want {
			t.Errorf("%s %s with %.8s…: %d %s, want %d", c.method, c.path, c.secret, code, body, c.want)
		}
		if code == 401 && (h.Get("WWW-Authenticate") == "" || !strings.Contains(body, "invalid_api_key")) {
			t.Errorf("401 without its header or OpenAI error shape: %v %s", h, body)
		}
	}
	// The x-api-key header of Anthropic clients works too.
	req, _ := http.NewRequest("GET", ts.URL+"/v1/models", nil)
	req.Header.Set("X-Api-Key", sec["alice"])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("x-api-key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	_, _, metrics := do(t, ts.URL, "GET", "/metrics", sec["ops"], "")
	if !strings.Contains(metrics, `persona_gateway_refused_total{reason="invalid_api_key"} 3`) {
		t.Errorf("metrics:\n%s", metrics)
	}
	for id, s := range sec {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the secret of %s is in the log", id)
		}
	}
	if !strings.Contains(logs.String(), "key=alice") {
		t.Errorf("refusals should name the key by id:\n%s", logs.String())
	}
}

// TestAdmission: with one slot and one place in the queue, a third
// generation request is refused at once with Retry-After, and admitted ones
// finish.
func TestAdmission(t *testing.T) {
	st := newStub()
	ts := httptest.NewServer(New(st, Options{Slots: 1, Queue: 1, RetryAfter: 3 * time.Second}))
	defer ts.Close()
	results := make(chan int, 2)
	for range 2 {
		go func() {
			code, _, _, _ := send(ts.URL, "POST", "/v1/chat/completions", "", "{}")
			results <- code
		}()
	}
	<-st.entered
	<-st.entered
	code, h, body := do(t, ts.URL, "POST", "/v1/chat/completions", "", "{}")
	if code != 429 || h.Get("Retry-After") != "3" || !strings.Contains(body, "server_busy") {
		t.Errorf("third request: %d %v %s", code, h, body)
	}
	// Routes that do not generate are not queued.
	if code, _, _ := do(t, ts.URL, "GET", "/v1/models", "", ""); code != 200 {
		t.Errorf("models while busy: %d", code)
	}
	close(st.release)
	for range 2 {
		if c := <-results; c != 200 {
			t.Errorf("admitted request: %d", c)
		}
	}
	if code, _, _ := do(t, ts.URL, "POST", "/v1/chat/completions", "", "{}"); code != 200 {
		t.Errorf("after the crowd: %d", code)
	}
}

func TestPerKeyLimits(t *testing.T) {
	ks, sec := keyFile(t, Key{ID: "slow", Scopes: []Scope{ScopeClient}, Rate: 0.001, Burst: 1},
		Key{ID: "one", Scopes: []Scope{ScopeClient}, Concurrency: 1})
	st := newStub()
	ts := httptest.NewServer(New(st, Options{Keys: ks, Slots: 4, Queue: 4}))
	defer ts.Close()
	// One request in 1,000 s: the burst allows the first, not the second.
	go send(ts.URL, "POST", "/v1/chat/completions", sec["slow"], "{}")
	<-st.entered
	code, h, body := do(t, ts.URL, "POST", "/v1/chat/completions", sec["slow"], "{}")
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "rate_limit_exceeded") {
		t.Errorf("over the rate: %d %v %s", code, h, body)
	}
	// One in flight at a time.
	done := make(chan int)
	go func() {
		c, _, _, _ := send(ts.URL, "POST", "/v1/chat/completions", sec["one"], "{}")
		done <- c
	}()
	<-st.entered
	if code, _, body := do(t, ts.URL, "POST", "/v1/chat/completions", sec["one"], "{}"); code != 429 || !strings.Contains(body, "concurrency_limit_exceeded") {
		t.Errorf("second in flight: %d %s", code, body)
	}
	close(st.release)
	if c := <-done; c != 200 {
		t.Errorf("first request: %d", c)
	}
	if code, _, _ := do(t, ts.URL, "POST", "/v1/chat/completions", sec["one"], "{}"); code != 200 {
		t.Errorf("after the first finished: %d", code)
	}
}

// TestSlowBody: a body that does not arrive within BodyTimeout is refused
// with 408 and never reaches the model or takes a place in the queue.
func TestSlowBody(t *testing.T) {
	st := newStub()
	close(st.release)
	ts := httptest.NewServer(New(st, Options{Slots: 1, Queue: 0, BodyTimeout: 100 * time.Millisecond}))
	defer ts.Close()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "body_timeout") {
		t.Errorf("slow body: %d %s", resp.StatusCode, body)
	}
	if len(st.entered) != 0 {
		t.Error("the slow request reached the model")
	}
	// The one slot is free for the next client.
	if code, _, _ := do(t, ts.URL, "POST", "/v1/chat/completions", "", "{}"); code != 200 {
		t.Errorf("next request: %d", code)
	}
	// An oversized body is 413.
	if code, _, _ := do(t, ts.URL, "POST", "/v1/completions", "", strings.Repeat("x", 5<<20)); code != 413 {
		t.Errorf("5 MiB body: %d", code)
	}
}

// TestDeadline: a generation past the deadline sees its context end with
// DeadlineExceeded (the model server turns that into 504 and frees the slot).
func TestDeadline(t *testing.T) {
	st := newStub()
	ts := httptest.NewServer(New(st, Options{Slots: 1, Deadline: 50 * time.Millisecond}))
	defer ts.Close()
	code, _, body := do(t, ts.URL, "POST", "/v1/chat/completions", "", "{}")
	if code != 504 || !strings.Contains(body, "deadline exceeded") {
		t.Errorf("past the deadline: %d %s", code, body)
	}
}

// TestReload: a key revoked in the file stops working at the next reload;
// a broken file leaves the keys in force.
func TestReload(t *testing.T) {
	ks, sec := keyFile(t, Key{ID: "alice", Scopes: []Scope{ScopeClient}}, Key{ID: "ops", Scopes: []Scope{ScopeAdmin}})
	st := newStub()
	close(st.release)
	ts := httptest.NewServer(New(st, Options{Keys: ks, Slots: 1}))
	defer ts.Close()
	file, _ := LoadKeys(ks.Path)
	if err := file.Revoke("alice"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, ts.URL, "GET", "/v1/models", sec["alice"], ""); code != 200 {
		t.Errorf("before the reload: %d", code)
	}
	if code, _, body := do(t, ts.URL, "POST", "/admin/reload", sec["ops"], ""); code != 200 || !strings.Contains(body, `"keys":1`) {
		t.Errorf("reload: %d %s", code, body)
	}
	if code, _, _ := do(t, ts.URL, "GET", "/v1/models", sec["alice"], ""); code != 401 {
		t.Errorf("revoked key after the reload: %d", code)
	}
	os.WriteFile(ks.Path, []byte("{not json"), 0o600)
	if code, _, _ := do(t, ts.URL, "POST", "/admin/reload", sec["ops"], ""); code != 400 {
		t.Errorf("reload of a broken file: %d", code)
	}
	if code, _, _ := do(t, ts.URL, "GET", "/v1/models", sec["ops"], ""); code != 200 {
		t.Errorf("keys in force after a failed reload: %d", code)
	}
}

func TestKeyFile(t *testing.T) {
	ks, sec := keyFile(t, Key{ID: "alice", Scopes: []Scope{ScopeClient}, Rate: 3})
	if st, err := os.Stat(ks.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	data, _ := os.ReadFile(ks.Path)
	if strings.Contains(string(data), sec["alice"]) || !strings.HasPrefix(sec["alice"], "psk_") {
		t.Fatal("the secret is stored, or is not a persona key")
	}
	back, err := LoadKeys(ks.Path)
	if err != nil {
		t.Fatal(err)
	}
	if k := back.Match(sec["alice"]); k == nil || k.ID != "alice" || k.Burst != 3 {
		t.Errorf("match: %+v", k)
	}
	if back.Match("") != nil || back.Match(sec["alice"][:20]) != nil {
		t.Error("a wrong secret matched")
	}
	if _, err := back.Add(Key{ID: "alice", Scopes: []Scope{ScopeClient}}); !errors.Is(err, ErrKeys) {
		t.Errorf("repeated id: %v", err)
	}
	if err := back.Revoke("bob"); !errors.Is(err, ErrKeys) {
		t.Errorf("revoke unknown: %v", err)
	}
	hash := strings.Repeat("ab", 32)
	for _, bad := range []string{
		`{"keys":[{"id":"a","sha256":"` + hash + `","scopes":["root"]}]}`,
		`{"keys":[{"id":"a","sha256":"xyz","scopes":["client"]}]}`,
		`{"keys":[{"id":"a b","sha256":"` + hash + `","scopes":["client"]}]}`,
		`{"keys":[{"id":"a","sha256":"` + hash + `","scopes":[]}]}`,
		`{"keys":[{"id":"a","sha256":"` + hash + `","scopes":["client"],"rate":-1}]}`,
		`{"keys":[{"id":"a","sha256":"` + hash + `","scopes":["client"]},{"id":"a","sha256":"` + hash + `","scopes":["client"]}]}`,
		`{"keys":[{"id":"a","secret":"psk_x","scopes":["client"]}]}`,
		`{"keys":`,
	} {
		p := filepath.Join(t.TempDir(), "k.json")
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := LoadKeys(p); !errors.Is(err, ErrKeys) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func FuzzLoadKeys(f *testing.F) {
	f.Add([]byte(`{"keys":[{"id":"a","sha256":"` + strings.Repeat("ab", 32) + `","scopes":["client"],"rate":2}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "k.json")
		os.WriteFile(p, data, 0o600)
		ks, err := LoadKeys(p)
		if err != nil {
			if !errors.Is(err, ErrKeys) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for _, k := range ks.Keys {
			if len(k.Scopes) == 0 || k.Rate < 0 {
				t.Fatalf("accepted %+v", k)
			}
		}
		_ = json.Valid(data)
	})
}
