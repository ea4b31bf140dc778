// Package fleet spreads audits and studies over many worker
// processes on many machines through the PostgreSQL database that already
// keeps the runs.
//
// The queue is River (github.com/riverqueue/river), kept in the same
// database: a distributed run is created in the same transaction that
// enqueues one job per sample, so a run never exists without its work or
// work without its run. A worker (persona worker) takes jobs from the
// queues of the targets it has backends for, plays each sample with its own
// backends, and stores the result in the same transaction that marks the
// job completed. That is what makes results exactly-once: a worker killed
// with kill -9 mid-sample has committed nothing, River's rescuer hands its
// job to another worker once RescueAfter has passed, and if the first
// worker was only slow, not dead, whichever commit comes second finds the
// job no longer running and rolls back, result included.
//
// A worker whose backend fails stops taking jobs for a cool-down and gives
// back the jobs it holds, so healthy workers finish the run; after
// MaxAttempts failed attempts a sample is stored as a backend error, as in
// a local run, and the run reports exit 3.
//
// The process that started the run (persona audit --distribute) follows it
// from the database and writes the report when every sample is stored;
// --resume re-attaches to a run, re-enqueueing what is neither stored nor
// queued. SQLite stays the store of a single machine: a fleet needs
// PostgreSQL.
//
// Studies go the same way, one job per item (study.go): a drift study's
// conversations, a steering sweep's cells, a vector extraction's batches of
// answers, set up once per worker from what the study stored and played on
// a model the worker runs itself.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"persona/audit"
	"persona/internal/sqldb"
)

// Errors a caller turns into exit codes: bad input (2).
var (
	ErrNotPostgres    = errors.New("a fleet needs PostgreSQL")
	ErrNotDistributed = errors.New("run is not distributed")
)

// MaxAttempts is how many times a sample is tried (on any workers) before
// it is stored as a backend error.
const MaxAttempts = 5

// migrationLock is the PostgreSQL advisory lock under which processes that
// start together take turns migrating River's tables.
const migrationLock int64 = 7411628

// DB is a fleet's shared database: the audit store and River's tables.
type DB struct {
	Pool  *pgxpool.Pool
	Store audit.Store
	// river inserts jobs; it works none.
	river *river.Client[pgx.Tx]
}

// Open connects to the PostgreSQL database at dsn and brings the audit
// store's and River's schemas up to date, once however many processes open
// it together.
func Open(ctx context.Context, dsn string) (*DB, error) {
	if !sqldb.IsPostgres(dsn) {
		return nil, fmt.Errorf("%w: %q is a SQLite file; give --db postgres://…", ErrNotPostgres, dsn)
	}
	store, err := audit.OpenStore(ctx, dsn)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("database %s: %w", sqldb.Redact(dsn), err)
	}
	d := &DB{Pool: pool, Store: store}
	own, err := sqldb.Open(ctx, dsn, schema)
	if err != nil {
		d.Close()
		return nil, err
	}
	own.Close()
	if err := d.migrate(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("database %s: queue tables: %w", sqldb.Redact(dsn), err)
	}
	d.river, err = river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quiet})
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// schema holds what the fleet keeps beside the audit store: distributed
// studies (drift, sweeps) and their items' results, as JSON.
var schema = sqldb.Schema{Table: "fleet_migrations", Lock: 7411629, Migrations: []string{
	`CREATE TABLE studies (
		id TEXT PRIMARY KEY,
		kind TEXT NOT NULL,
		model TEXT NOT NULL,
		study TEXT NOT NULL,
		items INTEGER NOT NULL,
		created_at TEXT NOT NULL
	);
	CREATE TABLE study_results (
		run_id TEXT NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
		idx INTEGER NOT NULL,
		result TEXT NOT NULL,
		PRIMARY KEY (run_id, idx)
	)`,
}}

// quiet drops River's own logging; workers log what a user needs.
var quiet = slog.New(slog.DiscardHandler)

func (d *DB) migrate(ctx context.Context) error {
	m, err := rivermigrate.New(riverpgxv5.New(d.Pool), &rivermigrate.Config{Logger: quiet})
	if err != nil {
		return err
	}
	// River applies each version in its own transaction (one adds an enum
	// value that the next uses, which PostgreSQL refuses in a single
	// transaction), so the lock is the session's, held on a connection
	// of its own while River migrates through the others.
	conn, err := d.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// Close releases the connections.
func (d *DB) Close() {
	d.Pool.Close()
	d.Store.Close()
}

// AuditSample is the job of playing one sample of a distributed audit run.
type AuditSample struct {
	Run    string `json:"run"`
	Probe  string `json:"probe"`
	Sample int    `json:"sample"`
}

// Kind names the job in River's tables.
func (AuditSample) Kind() string { return "persona_audit_sample" }

// Queue is the queue of a target's audit samples: a worker takes jobs only
// for targets it has a backend for.
func Queue(target string) string { return queueName("audit_", target) }

// queueName makes a queue name River accepts (short and plain) from a
// backend's name: the name simplified and cut, with a hash that keeps two
// names apart.
func queueName(prefix, name string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, c := range strings.ToLower(name) {
		if b.Len() >= 40 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s_%08x", b.String(), h.Sum32())
}

// StartAudit records a new distributed run of s and enqueues all its
// samples in the same transaction.
func (d *DB) StartAudit(ctx context.Context, info *audit.RunInfo, s *audit.Suite) error {
	info.Distributed = true
	todo, _ := audit.Pending(s, info.Samples, nil)
	return pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		if err := audit.CreateRunIn(ctx, sqldb.PgxIn(tx), info); err != nil {
			return err
		}
		return d.enqueue(ctx, tx, info, todo)
	})
}

// ResumeAudit loads a distributed run and enqueues its samples that are
// neither stored as completed nor queued already (errored ones are tried
// again).
func (d *DB) ResumeAudit(ctx context.Context, id string) (*audit.RunInfo, *audit.Suite, error) {
	info, err := d.Store.Run(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !info.Distributed {
		return nil, nil, fmt.Errorf("%w: run %s was not started with --distribute; resume it without --distribute", ErrNotDistributed, id)
	}
	s, err := audit.ParseSuite(info.Suite, info.SuiteFile)
	if err != nil {
		return nil, nil, fmt.Errorf("stored suite of run %s: %w", id, err)
	}
	stored, err := d.Store.Samples(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	todo, _ := audit.Pending(s, info.Samples, stored)
	err = pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error { return d.enqueue(ctx, tx, info, todo) })
	return info, s, err
}

// enqueue inserts one job per sample.
func (d *DB) enqueue(ctx context.Context, tx pgx.Tx, info *audit.RunInfo, todo []audit.SampleRef) error {
	jobs := make([]river.JobArgs, len(todo))
	for i, ref := range todo {
		jobs[i] = AuditSample{Run: info.ID, Probe: ref.Probe, Sample: ref.Sample}
	}
	return d.insert(ctx, tx, Queue(info.Target), jobs)
}

// insert puts jobs on a queue. Jobs are unique by their arguments among
// those not yet completed, so enqueueing a run again adds only what is
// missing, and a completed sample stored as an error can be tried again.
func (d *DB) insert(ctx context.Context, tx pgx.Tx, queue string, jobs []river.JobArgs) error {
	if len(jobs) == 0 {
		return nil
	}
	opts := &river.InsertOpts{Queue: queue, MaxAttempts: MaxAttempts, UniqueOpts: river.UniqueOpts{
		ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateScheduled, rivertype.JobStateRetryable},
	}}
	params := make([]river.InsertManyParams, len(jobs))
	for i, j := range jobs {
		params[i] = river.InsertManyParams{Args: j, InsertOpts: opts}
	}
	_, err := d.river.InsertManyTx(ctx, tx, params)
	return err
}

// Progress is how far a distributed run is.
type Progress struct {
	// Done counts samples stored with no job left to redo them.
	Done, Total int
	// Queued counts the run's jobs waiting, running or waiting for a retry.
	Queued int
}

// AuditProgress counts a run's stored samples and live jobs.
func (d *DB) AuditProgress(ctx context.Context, info *audit.RunInfo, s *audit.Suite) (Progress, error) {
	_, total := audit.Pending(s, info.Samples, nil)
	return d.progress(ctx, AuditSample{}.Kind(), info.ID, total, `SELECT COUNT(*) FROM samples WHERE run_id = $1`)
}

// progress counts a run's stored results (the stored query, $1 the run)
// and its live jobs of kind, both in one statement: a job completes in the
// commit that stores its result, so one snapshot never shows a result
// neither stored nor queued while it is being finished.
func (d *DB) progress(ctx context.Context, kind, run string, total int, stored string) (Progress, error) {
	p := Progress{Total: total}
	var n int
	err := d.Pool.QueryRow(ctx, `SELECT (`+stored+`),
		(SELECT COUNT(*) FROM river_job WHERE kind = $2 AND args->>'run' = $1
			AND state IN ('available', 'pending', 'running', 'scheduled', 'retryable'))`,
		run, kind).Scan(&n, &p.Queued)
	p.Done = min(n, total-p.Queued)
	return p, err
}

// ErrStalled is a run with samples missing and no job left to store them
// (cancelled or discarded by hand).
var ErrStalled = errors.New("run stalled")

// WaitAudit follows a distributed run until every sample is stored, calling
// progress on each poll, then summarises it and marks it done.
func (d *DB) WaitAudit(ctx context.Context, info *audit.RunInfo, s *audit.Suite, poll time.Duration, progress func(Progress)) (*audit.Report, error) {
	err := wait(ctx, poll, progress, func() (Progress, error) { return d.AuditProgress(ctx, info, s) })
	if err != nil {
		return nil, err
	}
	return audit.Finish(ctx, d.Store, info, s, info.Samples)
}

// wait polls count until nothing is queued, then says whether all is done.
func wait(ctx context.Context, poll time.Duration, progress func(Progress), count func() (Progress, error)) error {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		p, err := count()
		if err != nil {
			return err
		}
		if progress != nil {
			progress(p)
		}
		if p.Queued == 0 {
			if p.Done < p.Total {
				return fmt.Errorf("%w: %d of %d results are stored and no job is left for the rest", ErrStalled, p.Done, p.Total)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
