package backend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Exchange is one recorded request and its outcome: a line of a recording.
type Exchange struct {
	Time      time.Time `json:"time"`
	Backend   string    `json:"backend"`
	Request   Request   `json:"request"`
	Response  *Response `json:"response,omitempty"`
	Error     *Recorded `json:"error,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
}

// Recorded is a failure as written to a recording: enough to replay it as
// the same kind of *Error.
type Recorded struct {
	Kind    string `json:"kind"`
	Status  int    `json:"status,omitempty"`
	Message string `json:"message"`
}

// Recorder writes every request through it and its outcome as one JSON line,
// for audits to be replayed (CI without network, re-scoring old runs). Put it
// outside Robust, so a line is what the caller saw after retries.
//
// Lines pass through redaction before they are written: the API keys of the
// wrapped backend (and any extra secrets given) are replaced by
// [REDACTED] wherever they appear, in requests, responses and errors.
type Recorder struct {
	b       Backend
	mu      sync.Mutex
	w       io.Writer
	closer  io.Closer
	secrets []string
}

// NewRecorder records b's exchanges to w.
func NewRecorder(b Backend, w io.Writer, secrets ...string) *Recorder {
	r := &Recorder{b: b, w: w}
	r.secrets = nonEmpty(append(secretsOf(b), secrets...)...)
	return r
}

// RecordFile appends b's exchanges to the JSONL file at path.
func RecordFile(b Backend, path string, secrets ...string) (*Recorder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	r := NewRecorder(b, f, secrets...)
	r.closer = f
	return r, nil
}

// secretHolder is implemented by backends that hold API keys.
type secretHolder interface{ secrets() []string }

// secretsOf collects the keys of b and of the backends it wraps.
func secretsOf(b Backend) []string {
	var out []string
	if s, ok := b.(secretHolder); ok {
		out = append(out, s.secrets()...)
	}
	switch w := b.(type) {
	case *Robust:
		for _, e := range w.eps {
			out = append(out, secretsOf(e.b)...)
		}
	case *Recorder:
		out = append(out, secretsOf(w.b)...)
	}
	return out
}

func (r *Recorder) Name() string { return r.b.Name() }

// Chat forwards to the wrapped backend and records the exchange. A failure
// to write the recording fails the request: a run that was asked to be
// replayable must not silently stop being so.
func (r *Recorder) Chat(ctx context.Context, req Request) (*Response, error) {
	start := time.Now()
	resp, err := r.b.Chat(ctx, req)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return resp, err // the caller gave up; nothing to replay
	}
	x := Exchange{Time: start.UTC(), Backend: r.b.Name(), Request: req, Response: resp,
		LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		x.Response = nil
		x.Error = &Recorded{Kind: "error", Message: err.Error()}
		var be *Error
		if errors.As(err, &be) {
			x.Error.Kind, x.Error.Status = be.Kind.String(), be.Status
		}
		if errors.Is(err, ErrUnsupported) {
			x.Error.Kind = "unsupported"
		}
	}
	line, merr := json.Marshal(x)
	if merr != nil {
		return resp, merr
	}
	for _, s := range r.secrets {
		// Keys are matched as JSON-escaped text, which is what appears in line.
		q, _ := json.Marshal(s)
		line = bytes.ReplaceAll(line, q[1:len(q)-1], []byte("[REDACTED]"))
	}
	r.mu.Lock()
	_, werr := r.w.Write(append(line, '\n'))
	r.mu.Unlock()
	if werr != nil {
		return nil, fmt.Errorf("recording %s: %w", r.b.Name(), werr)
	}
	return resp, err
}

// Close closes the file opened by RecordFile.
func (r *Recorder) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// Replay serves recorded exchanges back. A request is matched by its exact
// content (messages, sampling, seed, stop, logprobs); identical requests
// get the recorded outcomes in recorded order, and once those run out the
// last one again, so a replay is deterministic however often it is run.
// A request never recorded fails with KindNotRecorded.
type Replay struct {
	name  string
	mu    sync.Mutex
	byKey map[string][]Exchange
	used  map[string]int
}

// LoadReplay reads a recording written by Recorder. name is what Name
// reports ("" → the backend named in the first line).
func LoadReplay(path, name string) (*Replay, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadReplay(f, path, name)
}

// ReadReplay is LoadReplay from a reader; file names the source in errors.
func ReadReplay(r io.Reader, file, name string) (*Replay, error) {
	rp := &Replay{name: name, byKey: map[string][]Exchange{}, used: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var x Exchange
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&x); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, line, err)
		}
		if (x.Response == nil) == (x.Error == nil) {
			return nil, fmt.Errorf("%s:%d: want exactly one of response and error", file, line)
		}
		if rp.name == "" {
			rp.name = x.Backend
		}
		k := requestKey(x.Request)
		rp.byKey[k] = append(rp.byKey[k], x)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if rp.name == "" {
		rp.name = "replay"
	}
	return rp, nil
}

// requestKey identifies a request by its canonical JSON.
func requestKey(req Request) string {
	data, _ := json.Marshal(req)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func (rp *Replay) Name() string { return rp.name }

// Len reports how many exchanges the recording holds.
func (rp *Replay) Len() int {
	n := 0
	for _, xs := range rp.byKey {
		n += len(xs)
	}
	return n
}

func (rp *Replay) Chat(ctx context.Context, req Request) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := requestKey(req)
	rp.mu.Lock()
	xs := rp.byKey[k]
	i := rp.used[k]
	if i < len(xs)-1 {
		rp.used[k] = i + 1
	}
	rp.mu.Unlock()
	if len(xs) == 0 {
		return nil, &Error{Backend: rp.name, Kind: KindNotRecorded, Msg: "no recorded response for this request"}
	}
	x := xs[i]
	if x.Error != nil {
		e := &Error{Backend: rp.name, Kind: kindByName(x.Error.Kind), Status: x.Error.Status, Msg: "recorded: " + x.Error.Message}
		if x.Error.Kind == "unsupported" {
			e.Err = ErrUnsupported
		}
		return nil, e
	}
	resp := *x.Response
	resp.Logprobs = append([]TokenLogprob(nil), resp.Logprobs...)
	return &resp, nil
}

func kindByName(s string) Kind {
	for k, name := range kindNames {
		if name == s {
			return k
		}
	}
	if s == "unsupported" {
		return KindBadRequest
	}
	return KindServer
}
