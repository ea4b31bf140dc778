package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"persona/audit"
	"persona/backend"
	"persona/internal/sqldb"
	"persona/personas"
)

// WorkerOptions configure a worker.
type WorkerOptions struct {
	// Backends are the models this worker calls, by their names: it takes
	// the samples of runs whose target is one of them, and needs the run's
	// judge and auditor among them too.
	Backends []backend.Backend
	// Oracle serves the oracle scorer (the model organism); may be nil.
	Oracle personas.Oracle
	// Studies set up the kinds of study ("drift", "sweep") this worker
	// plays the items of, on its backends (they need a model it runs
	// itself).
	Studies map[string]StudySetup
	// Concurrency is how many samples run at once per target (default 4).
	Concurrency int
	// JobTimeout cancels a sample that runs longer (default 10 minutes).
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before River's
	// rescuer hands it to another worker: its worker is taken for dead
	// (default JobTimeout + 1 minute; must exceed JobTimeout). Every
	// worker of a fleet should use the same value: the elected leader's
	// applies.
	RescueAfter time.Duration
	// Cooldown is how long a worker whose backend failed stops taking
	// jobs (default 30 s).
	Cooldown time.Duration
	// ID names the worker in River's tables (default host-pid).
	ID string
	// Log receives what the worker does (default: nothing).
	Log *slog.Logger
}

func (o *WorkerOptions) fill() error {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.JobTimeout <= 0 {
		o.JobTimeout = 10 * time.Minute
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = o.JobTimeout + time.Minute
	}
	if o.RescueAfter <= o.JobTimeout {
		return fmt.Errorf("%w: the rescue delay (%v) must exceed the job timeout (%v)", audit.ErrInput, o.RescueAfter, o.JobTimeout)
	}
	if o.Cooldown <= 0 {
		o.Cooldown = 30 * time.Second
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.Log == nil {
		o.Log = quiet
	}
	if len(o.Backends) == 0 {
		return fmt.Errorf("%w: a worker needs at least one backend", audit.ErrInput)
	}
	return nil
}

// Worker takes audit samples from the queues of its backends.
type Worker struct {
	db       *DB
	opt      WorkerOptions
	backends map[string]backend.Backend
	queues   map[string]river.QueueConfig

	mu       sync.Mutex
	samplers map[string]*audit.Sampler
	players  map[string]Player

	trip      chan struct{} // a backend failed: stop taking jobs
	releasing atomic.Bool   // jobs in flight are being given back
	healthy   atomic.Bool
	inFlight  atomic.Int64
	outcomes  sync.Map // outcome → *atomic.Uint64
	seconds   atomic.Uint64
}

// NewWorker prepares a worker on db.
func NewWorker(db *DB, opt WorkerOptions) (*Worker, error) {
	if err := opt.fill(); err != nil {
		return nil, err
	}
	w := &Worker{db: db, opt: opt, backends: map[string]backend.Backend{}, queues: map[string]river.QueueConfig{},
		samplers: map[string]*audit.Sampler{}, players: map[string]Player{}, trip: make(chan struct{}, 1)}
	for _, b := range opt.Backends {
		w.backends[b.Name()] = b
		w.queues[Queue(b.Name())] = river.QueueConfig{MaxWorkers: opt.Concurrency}
		for kind := range opt.Studies {
			w.queues[StudyQueue(kind, b.Name())] = river.QueueConfig{MaxWorkers: opt.Concurrency}
		}
	}
	return w, nil
}

// Run works jobs until ctx is cancelled, then drains: it takes no new job
// and waits up to drain for the samples in flight (those still running
// after it are given back to the queue). A backend failure stops it taking
// jobs for the cool-down, giving back what it holds.
func (w *Worker) Run(ctx context.Context, drain time.Duration) error {
	for {
		client, err := w.client()
		if err != nil {
			return err
		}
		// Jobs run under their own context, not ctx: cancelling ctx is
		// the signal to drain, not to abandon samples half played.
		if err := client.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		w.healthy.Store(true)
		w.opt.Log.Info("worker started", "id", w.opt.ID, "queues", len(w.queues))
		select {
		case <-ctx.Done():
			w.healthy.Store(false)
			stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			err := client.Stop(stop)
			cancel()
			if err != nil {
				w.opt.Log.Warn("drain timed out; giving back the samples in flight", "after", drain)
				w.release(client)
			}
			w.opt.Log.Info("worker stopped", "id", w.opt.ID)
			return nil
		case <-w.trip:
			w.healthy.Store(false)
			w.opt.Log.Warn("backend failing; giving back jobs and cooling down", "for", w.opt.Cooldown)
			w.release(client)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(w.opt.Cooldown):
			}
			select { // a trip signalled while releasing is the same failure
			case <-w.trip:
			default:
			}
		}
	}
}

// release stops the client and cancels the samples it is playing; their
// jobs go back to the queue at once without spending an attempt.
func (w *Worker) release(client *river.Client[pgx.Tx]) {
	w.releasing.Store(true)
	defer w.releasing.Store(false)
	client.StopAndCancel(context.Background())
}

func (w *Worker) client() (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, river.Worker[AuditSample](sampleWorker{w: w})); err != nil {
		return nil, err
	}
	if err := river.AddWorkerSafely(workers, river.Worker[StudyItem](studyWorker{w: w})); err != nil {
		return nil, err
	}
	return river.NewClient(riverpgxv5.New(w.db.Pool), &river.Config{
		ID: w.opt.ID, Queues: w.queues, Workers: workers, Logger: quiet,
		JobTimeout: w.opt.JobTimeout, RescueStuckJobsAfter: w.opt.RescueAfter,
		// River fetches at most once per cooldown, as many jobs as it has
		// free slots: its default 100 ms capped a worker of 16 slots at
		// 160 samples/s against a 5 ms backend (BenchmarkFleet). A fetch
		// happens only when slots are free and jobs wait, so a shorter one
		// costs an idle worker nothing.
		FetchCooldown: 5 * time.Millisecond,
	})
}

// sampleWorker is River's view of a Worker for AuditSample jobs.
type sampleWorker struct {
	river.WorkerDefaults[AuditSample]
	w *Worker
}

func (s sampleWorker) Work(ctx context.Context, job *river.Job[AuditSample]) error {
	return s.w.track(job.Args.Run, func() (string, error) { return s.w.work(ctx, job) })
}

// track runs a job's work with the metrics and the log: work returns what
// happened (the outcome counted) and the error River acts on.
func (w *Worker) track(run string, work func() (string, error)) error {
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	start := time.Now()
	outcome, err := work()
	w.count(outcome)
	w.seconds.Add(uint64(time.Since(start).Microseconds()))
	if err != nil && outcome != "released" {
		w.opt.Log.Warn("result not stored", "run", run, "outcome", outcome, "err", err)
	}
	return err
}

// complete writes a job's result with write and completes the job in the
// same transaction: the result is stored exactly when its job is done.
func complete[T river.JobArgs](ctx context.Context, db *DB, job *river.Job[T], write func(pgx.Tx) error) (string, error) {
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := write(tx); err != nil {
			return err
		}
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if errors.Is(err, rivertype.ErrNotFound) {
		// The job is no longer this worker's: the rescuer took it for dead
		// and another worker stored the result first. Nothing was written.
		return "superseded", nil
	}
	if err != nil {
		return "retried", err
	}
	return "stored", nil
}

// work plays a sample and stores it with its job's completion. The
// outcome names what happened, for the metrics.
func (w *Worker) work(ctx context.Context, job *river.Job[AuditSample]) (string, error) {
	a := job.Args
	sampler, err := w.sampler(ctx, a.Run)
	if errors.Is(err, audit.ErrNoRun) {
		return "cancelled", river.JobCancel(err)
	}
	if err != nil {
		return "retried", err
	}
	r, err := sampler.Sample(ctx, audit.SampleRef{Probe: a.Probe, Sample: a.Sample})
	if err != nil {
		return "cancelled", river.JobCancel(err)
	}
	if ctx.Err() != nil && w.releasing.Load() {
		return "released", river.JobSnooze(0)
	}
	if r.ErrorKind == audit.ErrKindBackend {
		// Unhealthy from now, before the failed attempt is even recorded;
		// Run gives the jobs back and cools down.
		w.healthy.Store(false)
		select {
		case w.trip <- struct{}{}:
		default:
		}
		if job.Attempt < job.MaxAttempts {
			return "retried", errors.New(r.Error)
		}
	}
	outcome, err := complete(ctx, w.db, job, func(tx pgx.Tx) error { return audit.SaveSampleIn(ctx, sqldb.PgxIn(tx), a.Run, r) })
	if outcome == "stored" && r.Status != audit.StatusOK {
		outcome = "stored_error"
	}
	return outcome, err
}

// sampler returns the run's prepared sampler, loading the run once.
func (w *Worker) sampler(ctx context.Context, run string) (*audit.Sampler, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.samplers[run]; s != nil {
		return s, nil
	}
	info, err := w.db.Store.Run(ctx, run)
	if err != nil {
		return nil, err
	}
	var bs [3]backend.Backend
	for i, name := range []string{info.Target, info.Judge, info.Auditor} {
		if bs[i] = w.backends[name]; bs[i] == nil {
			return nil, fmt.Errorf("run %s needs backend %q, which this worker does not have", run, name)
		}
	}
	s, err := audit.NewSampler(info, audit.Options{Target: bs[0], Judge: bs[1], Auditor: bs[2], Oracle: w.opt.Oracle})
	if err != nil {
		return nil, err
	}
	if len(w.samplers) >= 64 { // runs come and go; a worker lives long
		clear(w.samplers)
	}
	w.samplers[run] = s
	return s, nil
}

func (w *Worker) count(outcome string) {
	c, _ := w.outcomes.LoadOrStore(outcome, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(1)
}

// ServeHTTP answers /healthz (200 while taking jobs, 503 while cooling
// down or draining) and /metrics (Prometheus text format).
func (w *Worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		if !w.healthy.Load() {
			http.Error(rw, "not taking jobs (backend cooling down, starting or draining)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ok")
	case "/metrics":
		rw.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(rw, "# HELP persona_worker_samples_total Sample jobs worked, by outcome.")
		fmt.Fprintln(rw, "# TYPE persona_worker_samples_total counter")
		var keys []string
		w.outcomes.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := w.outcomes.Load(k)
			fmt.Fprintf(rw, "persona_worker_samples_total{outcome=%q} %d\n", k, v.(*atomic.Uint64).Load())
		}
		fmt.Fprintln(rw, "# HELP persona_worker_sample_seconds_total Time spent working sample jobs.")
		fmt.Fprintln(rw, "# TYPE persona_worker_sample_seconds_total counter")
		fmt.Fprintf(rw, "persona_worker_sample_seconds_total %g\n", float64(w.seconds.Load())/1e6)
		fmt.Fprintln(rw, "# HELP persona_worker_in_flight Sample jobs being worked now.")
		fmt.Fprintln(rw, "# TYPE persona_worker_in_flight gauge")
		fmt.Fprintf(rw, "persona_worker_in_flight %d\n", w.inFlight.Load())
		fmt.Fprintln(rw, "# HELP persona_worker_healthy 1 while the worker takes jobs.")
		fmt.Fprintln(rw, "# TYPE persona_worker_healthy gauge")
		fmt.Fprintf(rw, "persona_worker_healthy %d\n", map[bool]int{true: 1}[w.healthy.Load()])
	default:
		http.NotFound(rw, r)
	}
}
