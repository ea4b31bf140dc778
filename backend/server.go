package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"persona/sample"

	"persona/chat"
)

// Server is an OpenAI-compatible HTTP API over the embedded engine, so tools
// built for OpenAI (Inspect, promptfoo, garak, the openai clients) can talk
// to a local model: GET /v1/models, POST /v1/chat/completions and
// POST /v1/completions (both with "stream": true server-sent events), plus
// GET /health and Prometheus-format GET /metrics.
//
// It implements the part of the API that text chat needs: sampling
// (temperature, top_p, seed), max_tokens, stop, logprobs with top_logprobs.
// n > 1, tools and non-text content parts are rejected with 400 rather than
// ignored, so a client never silently gets something other than it asked.
type Server struct {
	// B is the embedded engine: raw completions and watermark detection.
	B *Engine
	// Chat answers /v1/chat/completions: B itself, or a gateway that holds
	// B's replies to a persona spec.
	Chat Streamer
	// MaxBodyBytes bounds request bodies (default 4 MiB); larger ones get 413.
	MaxBodyBytes int64
	// Log receives one line per failed request (nil: discard).
	Log *slog.Logger

	mux     *http.ServeMux
	metrics *metrics
	started time.Time
}

// NewServer serves the embedded engine b under its model name.
func NewServer(b *Engine) *Server {
	s := NewChatServer(b)
	s.B = b
	return s
}

// NewChatServer serves chat from any streaming backend (a gateway in front
// of a model API); raw completions and watermark detection need the
// embedded engine and answer 404 here.
func NewChatServer(c Streamer) *Server {
	s := &Server{Chat: c, MaxBodyBytes: 4 << 20, mux: http.NewServeMux(), metrics: newMetrics(), started: time.Now()}
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /v1/models/{id...}", s.model)
	s.mux.HandleFunc("POST /v1/chat/completions", s.chatCompletions)
	s.mux.HandleFunc("POST /v1/completions", s.completions)
	s.mux.HandleFunc("POST /v1/watermark/detect", s.detectWatermark)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "model": s.Chat.Model()})
	})
	s.mux.HandleFunc("GET /metrics", s.metrics.serve)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "invalid_request_error", "not_found", fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
	return s
}

// ServeHTTP records every request in the metrics and dispatches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	s.metrics.inflight.Add(1)
	defer func() {
		s.metrics.inflight.Add(-1)
		s.metrics.observe(routeLabel(r.URL.Path), rec.code, time.Since(start))
	}()
	r.Body = http.MaxBytesReader(rec, r.Body, s.MaxBodyBytes)
	s.mux.ServeHTTP(rec, r)
}

// routeLabel keeps metric label values to a fixed set.
func routeLabel(path string) string {
	switch {
	case path == "/v1/chat/completions", path == "/v1/completions", path == "/v1/models", path == "/v1/watermark/detect", path == "/health", path == "/metrics":
		return path
	case strings.HasPrefix(path, "/v1/models/"):
		return "/v1/models/{id}"
	}
	return "other"
}

// statusWriter remembers the status code and passes Flush through for SSE.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// apiError is an OpenAI-style error: {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	status  int
	typ     string
	code    string
	message string
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request_error", "", fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *apiError) {
	body := map[string]any{"message": e.message, "type": e.typ, "param": nil, "code": nil}
	if e.code != "" {
		body["code"] = e.code
	}
	writeJSON(w, e.status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// fromBackend maps a generation error to an API error.
func fromBackend(err error) *apiError {
	switch {
	case IsBadRequest(err):
		var e *Error
		msg := err.Error()
		if errors.As(err, &e) && e.Msg != "" {
			msg = e.Msg
		}
		return badRequest("%s", msg)
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusGatewayTimeout, "timeout", "", "generation timed out"}
	}
	return &apiError{http.StatusInternalServerError, "server_error", "", err.Error()}
}

// decodeBody reads a JSON request body into v: 413 when it is over the size
// limit, 400 when it is not JSON of the right shape.
func decodeBody(r *http.Request, v any) *apiError {
	data, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
			fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	} else if err != nil {
		return badRequest("reading the request body: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badRequest("request body is not valid JSON for this endpoint: %v", err)
	}
	return nil
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{s.modelObject()}})
}

func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.Chat.Model() {
		writeError(w, s.unknownModel(id))
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

func (s *Server) modelObject() map[string]any {
	m := map[string]any{"id": s.Chat.Model(), "object": "model", "created": s.started.Unix(), "owned_by": "persona"}
	if s.B == nil {
		return m
	}
	if wm := s.B.Watermark; wm != nil {
		// Clients may learn that output is marked and under which key id;
		// the key itself never leaves the server.
		m["watermark"] = map[string]any{"scheme": wm.Scheme, "key_id": sample.KeyID(wm.Key)}
	}
	return m
}

func (s *Server) unknownModel(id string) *apiError {
	return &apiError{http.StatusNotFound, "invalid_request_error", "model_not_found",
		fmt.Sprintf("model %q is not served here; this server serves %q", id, s.Chat.Model())}
}

// samplingFields are the request fields both completion endpoints share.
type samplingFields struct {
	Model               string          `json:"model"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// request checks the shared fields and fills a backend Request. OpenAI's
// defaults apply: temperature 1, top_p 1.
func (s *Server) request(f *samplingFields, defaultMax int) (Request, *apiError) {
	var req Request
	if f.Model != "" && f.Model != s.Chat.Model() {
		return req, s.unknownModel(f.Model)
	}
	if f.N != nil && *f.N != 1 {
		return req, badRequest("n = %d is not supported (only n = 1)", *f.N)
	}
	req.MaxTokens = defaultMax
	for _, mt := range []*int{f.MaxTokens, f.MaxCompletionTokens} {
		if mt != nil {
			if *mt < 1 {
				return req, badRequest("max_tokens %d must be ≥ 1", *mt)
			}
			req.MaxTokens = *mt
		}
	}
	req.Temperature = 1
	if f.Temperature != nil {
		if *f.Temperature < 0 || *f.Temperature > 2 {
			return req, badRequest("temperature %g must be in [0, 2]", *f.Temperature)
		}
		req.Temperature = *f.Temperature
	}
	if f.TopP != nil {
		if *f.TopP <= 0 || *f.TopP > 1 {
			return req, badRequest("top_p %g must be in (0, 1]", *f.TopP)
		}
		req.TopP = *f.TopP
	}
	req.Seed = f.Seed
	if len(f.Stop) > 0 && string(f.Stop) != "null" {
		var one string
		if err := json.Unmarshal(f.Stop, &one); err == nil {
			req.Stop = []string{one}
		} else if err := json.Unmarshal(f.Stop, &req.Stop); err != nil {
			return req, badRequest("stop must be a string or an array of strings")
		}
		if len(req.Stop) > 4 {
			return req, badRequest("at most 4 stop sequences (got %d)", len(req.Stop))
		}
	}
	return req, nil
}

// chatRequest is the body of POST /v1/chat/completions. Fields not listed
// are ignored, as OpenAI-compatible servers do; the ones that would change
// the answer's shape (tools, n) are rejected.
type chatRequest struct {
	samplingFields
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Logprobs    bool            `json:"logprobs"`
	TopLogprobs *int            `json:"top_logprobs"`
	Tools       json.RawMessage `json:"tools"`
	// Persona is this server's extension: what a gateway may let a
	// request change (steering, capping).
	Persona json.RawMessage `json:"persona"`
}

// messageText accepts a string or a list of text parts.
func messageText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("content must be a string or a list of content parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content part of type %q is not supported (text only)", p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var body chatRequest
	if e := decodeBody(r, &body); e != nil {
		writeError(w, e)
		return
	}
	req, e := s.request(&body.samplingFields, 0)
	if e != nil {
		writeError(w, e)
		return
	}
	if len(body.Tools) > 0 && string(body.Tools) != "null" && string(body.Tools) != "[]" {
		writeError(w, badRequest("tools are not supported"))
		return
	}
	if len(body.Messages) == 0 {
		writeError(w, badRequest("messages must not be empty"))
		return
	}
	for i, m := range body.Messages {
		text, err := messageText(m.Content)
		if err != nil {
			writeError(w, badRequest("messages[%d]: %v", i, err))
			return
		}
		role := m.Role
		switch role {
		case "developer":
			role = chat.RoleSystem
		case chat.RoleSystem, chat.RoleUser, chat.RoleAssistant, chat.RoleTool:
		default:
			writeError(w, badRequest("messages[%d]: unknown role %q", i, m.Role))
			return
		}
		req.Messages = append(req.Messages, chat.Message{Role: role, Content: text})
	}
	req.Logprobs, req.Persona = body.Logprobs, body.Persona
	if body.TopLogprobs != nil {
		if !body.Logprobs {
			writeError(w, badRequest("top_logprobs requires logprobs: true"))
			return
		}
		if *body.TopLogprobs < 0 || *body.TopLogprobs > MaxTopLogprobs {
			writeError(w, badRequest("top_logprobs %d must be in [0, %d]", *body.TopLogprobs, MaxTopLogprobs))
			return
		}
		req.TopLogprobs = *body.TopLogprobs
	}
	id, created := "chatcmpl-"+randomID(), time.Now().Unix()
	run := func(emit func(Delta) error) (*Response, error) { return s.Chat.ChatStream(r.Context(), req, emit) }
	if !body.Stream {
		resp, err := run(nil)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.metrics.tokens(resp.Usage)
		choice := map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": resp.Content},
			"logprobs":      chatLogprobs(resp.Logprobs, req.Logprobs),
			"finish_reason": resp.FinishReason,
		}
		out := map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": s.Chat.Model(),
			"choices": []any{choice}, "usage": usage(resp.Usage),
		}
		if resp.Persona != nil {
			out["persona"] = resp.Persona
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	sse := newSSE(w)
	chunk := func(delta map[string]any, lps any, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": s.Chat.Model(),
			"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": lps, "finish_reason": finish}},
		}
	}
	resp, err := run(func(d Delta) error {
		if !sse.started {
			if err := sse.send(chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil)); err != nil {
				return err
			}
		}
		return sse.send(chunk(map[string]any{"content": d.Text}, chatLogprobs(d.Logprobs, req.Logprobs), nil))
	})
	if err != nil {
		s.failStream(w, r, sse, err)
		return
	}
	s.metrics.tokens(resp.Usage)
	if !sse.started {
		sse.send(chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil))
	}
	final := chunk(map[string]any{}, nil, resp.FinishReason)
	if resp.Persona != nil {
		final["persona"] = resp.Persona
	}
	sse.send(final)
	if body.StreamOptions != nil && body.StreamOptions.IncludeUsage {
		sse.send(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": s.Chat.Model(),
			"choices": []any{}, "usage": usage(resp.Usage)})
	}
	sse.done()
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	samplingFields
	Prompt   json.RawMessage `json:"prompt"`
	Logprobs *int            `json:"logprobs"`
	Echo     bool            `json:"echo"`
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	if s.B == nil {
		writeError(w, &apiError{http.StatusNotFound, "invalid_request_error", "not_found", "raw completions need the embedded engine; this server answers chats only"})
		return
	}
	var body completionRequest
	if e := decodeBody(r, &body); e != nil {
		writeError(w, e)
		return
	}
	req, e := s.request(&body.samplingFields, 16) // OpenAI's default for this endpoint
	if e != nil {
		writeError(w, e)
		return
	}
	var prompt string
	if err := json.Unmarshal(body.Prompt, &prompt); err != nil {
		var list []string
		if json.Unmarshal(body.Prompt, &list) != nil || len(list) != 1 {
			writeError(w, badRequest("prompt must be a string (or a list of exactly one string)"))
			return
		}
		prompt = list[0]
	}
	if body.Echo {
		writeError(w, badRequest("echo is not supported"))
		return
	}
	if body.Logprobs != nil {
		if *body.Logprobs < 0 || *body.Logprobs > 5 {
			writeError(w, badRequest("logprobs %d must be in [0, 5]", *body.Logprobs))
			return
		}
		req.Logprobs, req.TopLogprobs = true, *body.Logprobs
	}
	id, created := "cmpl-"+randomID(), time.Now().Unix()
	chunk := func(text string, lps []TokenLogprob, offset int, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "text_completion", "created": created, "model": s.Chat.Model(),
			"choices": []any{map[string]any{"index": 0, "text": text, "logprobs": completionLogprobs(lps, req.Logprobs, offset), "finish_reason": finish}},
		}
	}
	if !body.Stream {
		resp, err := s.B.Complete(r.Context(), prompt, req, nil)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.metrics.tokens(resp.Usage)
		out := chunk(resp.Content, resp.Logprobs, 0, resp.FinishReason)
		out["usage"] = usage(resp.Usage)
		writeJSON(w, http.StatusOK, out)
		return
	}
	sse := newSSE(w)
	offset := 0
	resp, err := s.B.Complete(r.Context(), prompt, req, func(d Delta) error {
		c := chunk(d.Text, d.Logprobs, offset, nil)
		for _, lp := range d.Logprobs {
			offset += len(lp.Token)
		}
		return sse.send(c)
	})
	if err != nil {
		s.failStream(w, r, sse, err)
		return
	}
	s.metrics.tokens(resp.Usage)
	sse.send(chunk("", nil, offset, resp.FinishReason))
	sse.done()
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if clientGone(r) {
		markGone(w)
		return // nobody to tell
	}
	e := fromBackend(err)
	if e.status >= 500 && s.Log != nil {
		s.Log.Error("request failed", "path", r.URL.Path, "err", err)
	}
	writeError(w, e)
}

// statusClientGone is what the metrics record for a request whose client
// went away before the answer (nginx's convention): neither a success nor
// the server's failure.
const statusClientGone = 499

// clientGone reports whether the request ended because its client left, as
// opposed to a deadline the server set.
func clientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

// markGone records 499 for the metrics without writing to the client, also
// for a stream whose 200 already went out: what counts is that the client
// did not get its answer.
func markGone(w http.ResponseWriter) {
	if sw, ok := w.(*statusWriter); ok {
		sw.code, sw.wroteHeader = statusClientGone, true
	}
}

// failStream reports an error on a stream: as a normal error response when
// nothing was sent yet, else as a final {"error": ...} event (what vLLM and
// OpenAI do), since the status line is gone.
func (s *Server) failStream(w http.ResponseWriter, r *http.Request, sse *sseWriter, err error) {
	if !sse.started {
		s.fail(w, r, err)
		return
	}
	if clientGone(r) {
		markGone(w)
		return
	}
	e := fromBackend(err)
	sse.send(map[string]any{"error": map[string]any{"message": e.message, "type": e.typ, "param": nil, "code": nil}})
	sse.done()
}

func usage(u Usage) map[string]int {
	return map[string]int{"prompt_tokens": u.PromptTokens, "completion_tokens": u.CompletionTokens,
		"total_tokens": u.PromptTokens + u.CompletionTokens}
}

// byteValues lists a token's bytes as OpenAI does (numbers, not base64).
func byteValues(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

// chatLogprobs is the chat API's "logprobs" object, or nil when not asked.
func chatLogprobs(lps []TokenLogprob, asked bool) any {
	if !asked {
		return nil
	}
	content := make([]map[string]any, 0, len(lps))
	for _, lp := range lps {
		top := make([]map[string]any, 0, len(lp.Top))
		for _, t := range lp.Top {
			top = append(top, map[string]any{"token": t.Token, "logprob": t.Logprob, "bytes": byteValues(t.Token)})
		}
		content = append(content, map[string]any{"token": lp.Token, "logprob": lp.Logprob, "bytes": byteValues(lp.Token), "top_logprobs": top})
	}
	return map[string]any{"content": content, "refusal": nil}
}

// completionLogprobs is the legacy completions API's "logprobs" object.
func completionLogprobs(lps []TokenLogprob, asked bool, offset int) any {
	if !asked {
		return nil
	}
	out := map[string]any{"tokens": []string{}, "token_logprobs": []float64{}, "top_logprobs": []map[string]float64{}, "text_offset": []int{}}
	var toks []string
	var lp []float64
	var top []map[string]float64
	var offs []int
	for _, t := range lps {
		toks, lp, offs = append(toks, t.Token), append(lp, t.Logprob), append(offs, offset)
		offset += len(t.Token)
		m := map[string]float64{}
		for _, a := range t.Top {
			m[a.Token] = a.Logprob
		}
		top = append(top, m)
	}
	if len(toks) > 0 {
		out["tokens"], out["token_logprobs"], out["top_logprobs"], out["text_offset"] = toks, lp, top, offs
	}
	return out
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sseWriter writes server-sent events in the OpenAI streaming format:
// "data: {json}\n\n" per chunk, "data: [DONE]\n\n" at the end.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

// streamWriteTimeout bounds each write of a stream: a client that stops
// reading fills its socket buffers, the next write fails after this long,
// and the generation ends and frees its slot.
const streamWriteTimeout = 10 * time.Second

func newSSE(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) send(v any) error {
	s.start()
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", data); err != nil {
		return errClientGone
	}
	if err := s.rc.Flush(); err != nil {
		return errClientGone
	}
	return nil
}

func (s *sseWriter) done() {
	s.start()
	io.WriteString(s.w, "data: [DONE]\n\n")
	s.rc.Flush()
}

// Serve runs h on ln until ctx ends, then shuts down gracefully: no new
// connections, running requests get grace to finish, then are cut off.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	// Headers must arrive within 10 s and an idle keep-alive connection is
	// closed after a minute; bodies and generations have their own limits
	// (package gateway), since a server-wide read or write timeout would
	// also cut off a long stream.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// maxDetectBytes bounds the text one detection request tokenizes: about
// 16,000 tokens, far more than a test needs and little memory.
const maxDetectBytes = 64 << 10

// detectRequest is the body of POST /v1/watermark/detect: text (tokenized
// with the served model's tokenizer) or the token ids themselves, and
// optionally a window for finding marked stretches in mixed text.
type detectRequest struct {
	Text   *string `json:"text"`
	IDs    []int   `json:"ids"`
	Window int     `json:"window"`
	Alpha  float64 `json:"alpha"`
}

// detectWatermark tests a text for this server's watermark.
func (s *Server) detectWatermark(w http.ResponseWriter, r *http.Request) {
	var wm *sample.Watermark
	if s.B != nil {
		wm = s.B.Watermark
	}
	if wm == nil {
		writeError(w, &apiError{http.StatusNotFound, "invalid_request_error", "no_watermark", "this server does not watermark its output"})
		return
	}
	var req detectRequest
	if e := decodeBody(r, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.Alpha == 0 {
		req.Alpha = 1e-4
	}
	ids := req.IDs
	switch {
	case (req.Text == nil) == (req.IDs == nil):
		writeError(w, badRequest("give either text or ids"))
		return
	case !(req.Alpha > 0 && req.Alpha < 1):
		writeError(w, badRequest("alpha %g must be a probability in (0, 1)", req.Alpha))
		return
	case req.Text != nil && len(*req.Text) > maxDetectBytes:
		writeError(w, badRequest("text of %d bytes; at most %d are tested at once", len(*req.Text), maxDetectBytes))
		return
	case req.Text != nil:
		ids = s.B.E.Tokenizer.Encode(*req.Text, false)
		if back := s.B.E.Tokenizer.DecodeSkipSpecial(ids); back != *req.Text {
			writeError(w, badRequest("the text does not survive this model's tokenizer: it was not written with %s's vocabulary", s.Chat.Model()))
			return
		}
	default:
		if err := s.B.E.Model.CheckIDs(ids); err != nil {
			writeError(w, badRequest("ids: %v", err))
			return
		}
	}
	d, err := wm.Detect(ids)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	out := map[string]any{"object": "watermark.detection", "key_id": sample.KeyID(wm.Key), "alpha": req.Alpha,
		"watermarked": d.PValue < req.Alpha, "detection": d}
	if req.Window > 0 {
		spans, err := wm.DetectSpans(ids, req.Window, req.Alpha)
		if err != nil {
			writeError(w, badRequest("%v", err))
			return
		}
		out["spans"] = spans
	}
	writeJSON(w, http.StatusOK, out)
}
