package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is how a Robust backend treats its endpoints. The zero value means
// unlimited concurrency, no timeout and no retries.
type Policy struct {
	// MaxConcurrency bounds requests in flight across all endpoints
	// (0: unlimited). Requests beyond it wait their turn, in arrival order
	// as far as the Go scheduler allows.
	MaxConcurrency int
	// Timeout bounds each attempt (0: none); the caller's context bounds the
	// whole request, retries included.
	Timeout time.Duration
	// Retries is how many more attempts a retryable failure (429, 5xx,
	// connection, timeout, malformed body) gets.
	Retries int
	// BaseDelay and MaxDelay shape the backoff: after its n-th consecutive
	// failure an endpoint is benched for a uniformly random time in
	// [0, min(MaxDelay, BaseDelay·2ⁿ⁻¹)] ("full jitter", so clients that
	// failed together do not retry together), or for the server's
	// Retry-After when it sent one. Defaults: 250ms and 20s.
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter caps how long a Retry-After is honoured (default 60s); a
	// server asking for longer ends the request with its error instead.
	MaxRetryAfter time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.BaseDelay <= 0 {
		p.BaseDelay = 250 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 20 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = time.Minute
	}
	return p
}

// Robust puts concurrency limits, timeouts, retries and load spreading
// around any backends serving one model. It is the only place retries
// happen: the API clients in this package turn their SDKs' retries off, so
// one Policy decides how often a request is tried, every attempt is counted
// against MaxConcurrency, and a failing replica is left for a healthy one
// instead of being retried in place.
//
// With several endpoints each attempt goes to the endpoint with the fewest
// requests in flight (round-robin among ties). An endpoint that fails with a
// retryable error is benched until its backoff or Retry-After has passed,
// so retries fail over to the other replicas; when every endpoint is
// benched the request waits for the first to come back.
type Robust struct {
	name   string
	policy Policy
	eps    []*endpoint
	sem    chan struct{}
	next   atomic.Uint64
	mu     sync.Mutex // guards endpoint bench times
	rng    *rand.Rand // under mu
}

type endpoint struct {
	b        Backend
	inflight atomic.Int64
	// benchedUntil and fails are guarded by Robust.mu.
	benchedUntil time.Time
	fails        int
}

// NewRobust wraps endpoints (at least one) serving the same model; name is
// what Name reports.
func NewRobust(name string, p Policy, endpoints ...Backend) *Robust {
	if len(endpoints) == 0 {
		panic("backend: NewRobust without endpoints")
	}
	r := &Robust{name: name, policy: p.withDefaults(), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	for _, b := range endpoints {
		r.eps = append(r.eps, &endpoint{b: b})
	}
	if p.MaxConcurrency > 0 {
		r.sem = make(chan struct{}, p.MaxConcurrency)
	}
	return r
}

func (r *Robust) Name() string { return r.name }

// Endpoints returns the wrapped backends, in the order given.
func (r *Robust) Endpoints() []Backend {
	out := make([]Backend, len(r.eps))
	for i, e := range r.eps {
		out[i] = e.b
	}
	return out
}

// Chat sends req, retrying and failing over as the policy says. Failures are
// *Error with Attempts set; a caller that cancels gets its context's error.
func (r *Robust) Chat(ctx context.Context, req Request) (*Response, error) {
	var last *Error
	var lastEp *endpoint
	for attempt := 0; ; attempt++ {
		ep, wait := r.pick(lastEp)
		if err := sleep(ctx, wait); err != nil {
			return nil, r.gaveUp(ctx, err, last, attempt)
		}
		resp, err := r.attempt(ctx, ep, req)
		if err == nil {
			r.mu.Lock()
			ep.fails = 0
			r.mu.Unlock()
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, r.gaveUp(ctx, ctx.Err(), last, attempt+1)
		}
		var be *Error
		if !errors.As(err, &be) {
			// Not classified by the backend: the request is not retried.
			return nil, err
		}
		be = cloneError(be)
		be.Attempts = attempt + 1
		if !be.Retryable() || attempt >= r.policy.Retries {
			return nil, be
		}
		if be.RetryAfter > r.policy.MaxRetryAfter {
			return nil, be
		}
		r.bench(ep, be)
		last, lastEp = be, ep
	}
}

// attempt runs one try on ep under the concurrency limit and timeout.
func (r *Robust) attempt(ctx context.Context, ep *endpoint, req Request) (*Response, error) {
	if r.sem != nil {
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-r.sem }()
	}
	ep.inflight.Add(1)
	defer ep.inflight.Add(-1)
	actx := ctx
	if r.policy.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, r.policy.Timeout, errAttemptTimeout)
		defer cancel()
	}
	resp, err := ep.b.Chat(actx, req)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errAttemptTimeout) {
		var be *Error
		if !errors.As(err, &be) || be.Kind != KindTimeout {
			err = &Error{Backend: ep.b.Name(), Kind: KindTimeout, Msg: "no response within " + r.policy.Timeout.String(), Err: err}
		}
	}
	return resp, err
}

// pick chooses the endpoint for the next attempt and how long to wait for
// it: the least-loaded endpoint that is not benched (avoiding the one that
// just failed when there is a choice), else the one back soonest.
func (r *Robust) pick(avoid *endpoint) (*endpoint, time.Duration) {
	now := time.Now()
	start := int(r.next.Add(1) - 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	var best, soonest *endpoint
	for i := range r.eps {
		ep := r.eps[(start+i)%len(r.eps)]
		if soonest == nil || ep.benchedUntil.Before(soonest.benchedUntil) {
			soonest = ep
		}
		if ep.benchedUntil.After(now) || (ep == avoid && len(r.eps) > 1) {
			continue
		}
		if best == nil || ep.inflight.Load() < best.inflight.Load() {
			best = ep
		}
	}
	if best != nil {
		return best, 0
	}
	if avoid != nil && len(r.eps) > 1 && !avoid.benchedUntil.After(now) {
		return avoid, 0 // everyone else is benched; the one that failed is not
	}
	return soonest, max(0, soonest.benchedUntil.Sub(now))
}

// bench keeps ep out of rotation after a retryable failure: for the
// server's Retry-After when it gave one, else for a backoff that grows with
// the endpoint's consecutive failures.
func (r *Robust) bench(ep *endpoint, err *Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep.fails++
	d := err.RetryAfter
	if d == 0 {
		d = r.backoffLocked(ep.fails - 1)
	}
	if until := time.Now().Add(d); until.After(ep.benchedUntil) {
		ep.benchedUntil = until
	}
}

func (r *Robust) backoffLocked(n int) time.Duration {
	ceil := r.policy.MaxDelay
	if n < 30 {
		ceil = min(ceil, r.policy.BaseDelay<<n)
	}
	return time.Duration(r.rng.Int64N(int64(ceil) + 1))
}

// gaveUp reports a request that ended while waiting: the caller's deadline
// is an infrastructure timeout (the backend was too slow for the budget
// given), a cancellation is passed through.
func (r *Robust) gaveUp(ctx context.Context, err error, last *Error, attempts int) error {
	if errors.Is(err, context.DeadlineExceeded) {
		e := &Error{Backend: r.name, Kind: KindTimeout, Attempts: attempts, Msg: "deadline exceeded", Err: err}
		if last != nil {
			e.Msg += "; last error: " + last.Error()
		}
		return e
	}
	return err
}

func cloneError(e *Error) *Error { c := *e; return &c }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
