package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kind sorts backend failures by what a caller should do about them: retry,
// fix the request, or report an infrastructure failure (exit 3).
type Kind int

const (
	// KindBadRequest: the backend rejected the request itself (HTTP 400, 404,
	// 413, 422, a prompt longer than the context). Retrying cannot help; the
	// input or configuration must change (exit 2).
	KindBadRequest Kind = iota + 1
	// KindAuth: credentials missing or refused (HTTP 401, 403). Not retried.
	KindAuth
	// KindRateLimit: HTTP 429. Retried, after Retry-After when the server
	// sends one.
	KindRateLimit
	// KindServer: HTTP 5xx, including Anthropic's 529 overloaded. Retried.
	KindServer
	// KindConnection: refused, reset or dropped connections. Retried.
	KindConnection
	// KindTimeout: an attempt ran past the per-request timeout. Retried.
	KindTimeout
	// KindMalformed: a success status with a body that is not the protocol
	// (truncated or invalid JSON, no choices). Retried: proxies and
	// overloaded servers produce these transiently.
	KindMalformed
	// KindNotRecorded: a replay backend has no recording for the request.
	KindNotRecorded
)

var kindNames = map[Kind]string{
	KindBadRequest:  "bad request",
	KindAuth:        "authentication failed",
	KindRateLimit:   "rate limited",
	KindServer:      "server error",
	KindConnection:  "connection failed",
	KindTimeout:     "timed out",
	KindMalformed:   "malformed response",
	KindNotRecorded: "not recorded",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "error " + strconv.Itoa(int(k))
}

// Error is a failed backend call. Every backend in this package returns
// *Error for failures it can classify, so callers decide with errors.As
// (or IsBadRequest / IsInfrastructure) instead of matching strings.
//
// Messages are written by this package from the status and the API's error
// message; they never include request headers, so API keys cannot leak
// through them.
type Error struct {
	Backend string
	Kind    Kind
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// RetryAfter is what the server asked us to wait (Retry-After or
	// retry-after-ms), 0 when it did not say.
	RetryAfter time.Duration
	// Attempts is how many attempts were made (set by the retrying wrapper).
	Attempts int
	Msg      string
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Backend != "" {
		b.WriteString(e.Backend)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	} else if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether another attempt might succeed.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindRateLimit, KindServer, KindConnection, KindTimeout, KindMalformed:
		return true
	}
	return false
}

// IsBadRequest reports whether err means the request (or the configuration
// that produced it) is wrong, not the backend: exit code 2.
func IsBadRequest(err error) bool {
	if errors.Is(err, ErrUnsupported) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && e.Kind == KindBadRequest
}

// IsInfrastructure reports whether err is a failure of the backend or the
// path to it (exit code 3): anything that is not a bad request and not the
// caller's own cancellation.
func IsInfrastructure(err error) bool {
	if err == nil || IsBadRequest(err) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return true
	}
	return !errors.Is(err, context.Canceled)
}

// kindForStatus maps an HTTP error status to a Kind.
func kindForStatus(status int) Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return KindRateLimit
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return KindAuth
	case status == http.StatusRequestTimeout:
		return KindTimeout
	case status >= 500:
		return KindServer
	default:
		return KindBadRequest
	}
}

// retryAfter reads how long the server asked us to wait: the
// non-standard retry-after-ms (OpenAI) first, then Retry-After in seconds
// or as an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// transportError classifies an error that came with no HTTP response: the
// attempt's own deadline, a network failure, or (anything else from an SDK
// after a 2xx) a body we could not decode. ctx is the attempt's context.
func transportError(ctx context.Context, name string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		// A cancellation that is not ours: treat as a dropped connection.
		return &Error{Backend: name, Kind: KindConnection, Err: err}
	}
	if ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), errAttemptTimeout) {
			return &Error{Backend: name, Kind: KindTimeout, Msg: "no response within the request timeout", Err: err}
		}
		return ctx.Err() // the caller gave up; not ours to classify
	}
	var ne net.Error
	switch {
	case errors.As(err, new(*json.SyntaxError)), errors.As(err, new(*json.UnmarshalTypeError)),
		// Both SDKs read the whole body, then decode it and wrap the
		// decoder's error (io.ErrUnexpectedEOF for truncated JSON) so:
		strings.Contains(err.Error(), "parsing response json"):
		return &Error{Backend: name, Kind: KindMalformed, Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &Error{Backend: name, Kind: KindTimeout, Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE), errors.As(err, new(*net.OpError)),
		strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "server closed"):
		return &Error{Backend: name, Kind: KindConnection, Err: err}
	}
	return &Error{Backend: name, Kind: KindMalformed, Err: err}
}

// errAttemptTimeout is the cancellation cause the retrying wrapper puts on an
// attempt that ran out of time, so backends can tell it from the caller's
// own cancellation.
var errAttemptTimeout = errors.New("request timeout")
