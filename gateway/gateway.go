package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Options configure a Gateway.
type Options struct {
	// Keys, if set, are required on every route but /health. Nil serves
	// without authentication; the command line allows that on loopback
	// addresses only.
	Keys *Keys
	// Slots is how many generation requests run at once and Queue how many
	// more may wait for a slot; a request beyond both is answered 429 at
	// once, so a crowd meets a quick refusal instead of a growing wait.
	Slots, Queue int
	// RetryAfter is the wait a refused client is told (default 1 s).
	RetryAfter time.Duration
	// Deadline bounds a generation request from admission to its last
	// byte (0: none); past it the generation stops and the slot is freed.
	Deadline time.Duration
	// BodyTimeout bounds reading a request body (default 10 s), so a
	// client trickling one byte a second holds nothing for long.
	BodyTimeout time.Duration
	// MaxBody is the largest request body accepted (default 4 MiB).
	MaxBody int64
	// Logger receives one line per refused request (nil: discard). Secrets
	// are never logged; keys appear by id.
	Logger *slog.Logger
	// Persona, if set, is the guarded model being served: its card is at
	// GET /v1/persona, its counts join the metrics, and /ui shows it live.
	Persona *Guarded
	// Log is the conversation log /ui reads (nil: none).
	Log *Log
	// Watermark names the output watermark on the card (scheme, key_id).
	Watermark map[string]string
}

// Gateway authenticates, limits and admits requests before next serves
// them. It is safe for concurrent use.
type Gateway struct {
	next     http.Handler
	o        Options
	admitted chan struct{} // one token per request running or queued
	keys     atomic.Pointer[Keys]
	mu       sync.Mutex
	perKey   map[string]*keyState // by key id
	refused  sync.Map             // reason → *atomic.Uint64
}

type keyState struct {
	limiter  *rate.Limiter // nil: no rate limit
	inflight atomic.Int64
	key      *Key
}

// New wraps next.
func New(next http.Handler, o Options) *Gateway {
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 10 * time.Second
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 4 << 20
	}
	o.Slots = max(o.Slots, 1)
	o.Queue = max(o.Queue, 0)
	g := &Gateway{next: next, o: o, admitted: make(chan struct{}, o.Slots+o.Queue), perKey: map[string]*keyState{}}
	if o.Keys != nil {
		g.SetKeys(o.Keys)
	}
	return g
}

// SetKeys replaces the accepted keys (a reload). Limits of keys that stay
// keep their state; requests in flight finish under the key they came with.
func (g *Gateway) SetKeys(ks *Keys) {
	g.mu.Lock()
	defer g.mu.Unlock()
	next := map[string]*keyState{}
	for _, k := range ks.Keys {
		st := g.perKey[k.ID]
		if st == nil || st.key.SHA256 != k.SHA256 || st.key.Rate != k.Rate || st.key.Burst != k.Burst {
			st = &keyState{}
			if k.Rate > 0 {
				st.limiter = rate.NewLimiter(rate.Limit(k.Rate), k.Burst)
			}
		}
		st.key = k
		next[k.ID] = st
	}
	g.perKey = next
	g.keys.Store(ks)
}

// apiError is an error in the OpenAI response shape.
type apiError struct {
	status     int
	typ, code  string
	msg        string
	retryAfter time.Duration
}

func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, e apiError, keyID string) {
	c, _ := g.refused.LoadOrStore(e.code, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(1)
	if g.o.Logger != nil {
		g.o.Logger.Warn("request refused", "path", r.URL.Path, "status", e.status, "reason", e.code, "key", keyID, "remote", r.RemoteAddr)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="persona"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": e.msg, "type": e.typ, "code": e.code}})
}

// generates reports whether a route runs the model.
func generates(r *http.Request) bool {
	return r.Method == http.MethodPost && (r.URL.Path == "/v1/chat/completions" || r.URL.Path == "/v1/completions")
}

// scopeFor is the scope a route needs; "" for open routes.
func scopeFor(path string) Scope {
	switch {
	case path == "/health":
		return ""
	case path == "/metrics", path == "/ui", strings.HasPrefix(path, "/admin/"):
		return ScopeAdmin
	}
	return ScopeClient
}

// secretOf reads the key from "Authorization: Bearer …" (OpenAI clients)
// or "x-api-key" (Anthropic clients).
func secretOf(r *http.Request) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return r.Header.Get("X-Api-Key")
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var st *keyState
	keyID := ""
	if ks := g.keys.Load(); ks != nil {
		if need := scopeFor(r.URL.Path); need != "" {
			k := ks.Match(secretOf(r))
			if k == nil {
				g.refuse(w, r, apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key",
					msg: "missing or unknown API key (send it as Authorization: Bearer <key>)"}, "")
				return
			}
			keyID = k.ID
			if !k.Has(need) {
				g.refuse(w, r, apiError{status: http.StatusForbidden, typ: "invalid_request_error", code: "insufficient_scope",
					msg: fmt.Sprintf("key %s lacks the %s scope this route needs", k.ID, need)}, keyID)
				return
			}
			g.mu.Lock()
			st = g.perKey[k.ID]
			g.mu.Unlock()
		}
	}
	if st != nil && st.limiter != nil {
		if res := st.limiter.Reserve(); !res.OK() || res.Delay() > 0 {
			wait := g.o.RetryAfter
			if res.OK() {
				wait = res.Delay()
				res.Cancel()
			}
			g.refuse(w, r, apiError{status: http.StatusTooManyRequests, typ: "requests", code: "rate_limit_exceeded",
				msg: fmt.Sprintf("key %s is over its rate of %g requests a second", keyID, st.key.Rate), retryAfter: wait}, keyID)
			return
		}
	}
	switch {
	case r.URL.Path == "/admin/reload" && r.Method == http.MethodPost:
		g.reload(w, r)
		return
	case r.URL.Path == "/v1/persona" && r.Method == http.MethodGet && g.o.Persona != nil:
		g.servePersona(w, r)
		return
	case r.URL.Path == "/ui" && r.Method == http.MethodGet && g.o.Persona != nil:
		g.serveUI(w, r)
		return
	}
	if !generates(r) {
		g.serve(w, r)
		return
	}
	// The body is read before the request takes a place in the queue, under
	// its own deadline, then handed on from memory.
	body, e := g.readBody(w, r)
	if e != nil {
		g.refuse(w, r, *e, keyID)
		return
	}
	if st != nil && st.key.Concurrency > 0 {
		if st.inflight.Add(1) > int64(st.key.Concurrency) {
			st.inflight.Add(-1)
			g.refuse(w, r, apiError{status: http.StatusTooManyRequests, typ: "requests", code: "concurrency_limit_exceeded",
				msg: fmt.Sprintf("key %s already has %d requests in flight", keyID, st.key.Concurrency), retryAfter: g.o.RetryAfter}, keyID)
			return
		}
		defer st.inflight.Add(-1)
	}
	select {
	case g.admitted <- struct{}{}:
		defer func() { <-g.admitted }()
	default:
		g.refuse(w, r, apiError{status: http.StatusTooManyRequests, typ: "requests", code: "server_busy",
			msg: fmt.Sprintf("the server is busy (%d running, %d waiting); retry later", g.o.Slots, g.o.Queue), retryAfter: g.o.RetryAfter}, keyID)
		return
	}
	ctx := r.Context()
	if g.o.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.o.Deadline)
		defer cancel()
	}
	r = r.WithContext(ctx)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	g.serve(w, r)
}

// serve hands the request on; the metrics page gets the gateway's own
// counters appended.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	g.next.ServeHTTP(w, r)
	if r.URL.Path == "/metrics" && r.Method == http.MethodGet {
		g.writeMetrics(w)
		if g.o.Persona != nil {
			g.o.Persona.WriteMetrics(w)
		}
	}
}

func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(g.o.BodyTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.o.MaxBody))
	if err != nil {
		// The rest of the body is not worth waiting for: the connection
		// closes after the refusal.
		w.Header().Set("Connection", "close")
	} else {
		// No deadline while the model works: the server's watch for a
		// closed connection would take its expiry for a client gone.
		rc.SetReadDeadline(time.Time{})
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "request_too_large",
			msg: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	case err != nil:
		return nil, &apiError{status: http.StatusRequestTimeout, typ: "invalid_request_error", code: "body_timeout",
			msg: fmt.Sprintf("the request body did not arrive within %v", g.o.BodyTimeout)}
	}
	return data, nil
}

// reload rereads the key file and the persona spec. What does not load
// stays as it was: a broken file must not lock everyone out or drop the
// rails.
func (g *Gateway) reload(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	if ks := g.keys.Load(); ks != nil {
		fresh, err := LoadKeys(ks.Path)
		if err != nil {
			g.refuse(w, r, apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_keys", msg: err.Error()}, "")
			return
		}
		g.SetKeys(fresh)
		out["keys"] = len(fresh.Keys)
	}
	if p := g.o.Persona; p != nil && p.SpecPath != "" {
		if err := p.Reload(); err != nil {
			g.refuse(w, r, apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_spec", msg: err.Error()}, "")
			return
		}
		out["spec"] = p.guard().Spec.Name
	}
	if len(out) == 0 {
		g.refuse(w, r, apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "nothing_to_reload", msg: "this server has no key file or spec file"}, "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (g *Gateway) writeMetrics(w io.Writer) {
	fmt.Fprintln(w, "# HELP persona_gateway_refused_total Requests the gateway refused, by reason.")
	fmt.Fprintln(w, "# TYPE persona_gateway_refused_total counter")
	var reasons []string
	g.refused.Range(func(k, _ any) bool {
		reasons = append(reasons, k.(string))
		return true
	})
	sort.Strings(reasons)
	for _, k := range reasons {
		v, _ := g.refused.Load(k)
		fmt.Fprintf(w, "persona_gateway_refused_total{reason=%q} %d\n", k, v.(*atomic.Uint64).Load())
	}
	fmt.Fprintln(w, "# HELP persona_gateway_admitted Generation requests running or waiting for a slot.")
	fmt.Fprintln(w, "# TYPE persona_gateway_admitted gauge")
	fmt.Fprintf(w, "persona_gateway_admitted %d\n", len(g.admitted))
}
