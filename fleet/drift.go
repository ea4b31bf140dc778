package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"persona/backend"
	"persona/drift"
	"persona/internal/sqldb"
)

// DriftConversation is the job of playing one conversation of a
// distributed drift study.
type DriftConversation struct {
	Run   string `json:"run"`
	Index int    `json:"index"`
}

// Kind names the job in River's tables.
func (DriftConversation) Kind() string { return "persona_drift_conversation" }

// DriftSetup sets a study up on one of the worker's backends (the model
// the study runs on) from the study as StartDrift stored it. Errors
// wrapping ErrBadStudy cancel the study's jobs; others are retried.
type DriftSetup func(ctx context.Context, model backend.Backend, study []byte) (*drift.Plan, error)

// ErrBadStudy is a stored study that no worker can play.
var ErrBadStudy = errors.New("drift study cannot be played")

// StartDrift records a distributed drift study of n conversations on the
// model named model, and enqueues them in the same transaction. The study
// is opaque here: the DriftSetup of the workers reads it.
func (d *DB) StartDrift(ctx context.Context, id, model string, study []byte, n int) error {
	return pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		err := sqldb.PgxIn(tx).Exec(ctx, `INSERT INTO drift_runs (id, model, study, conversations, created_at) VALUES (?, ?, ?, ?, ?)`,
			id, model, string(study), n, sqldb.Now())
		if err != nil {
			return err
		}
		jobs := make([]river.JobArgs, n)
		for i := range jobs {
			jobs[i] = DriftConversation{Run: id, Index: i}
		}
		return d.insert(ctx, tx, DriftQueue(model), jobs)
	})
}

// WaitDrift follows a distributed study until every conversation is
// stored and returns them in order, as JSON.
func (d *DB) WaitDrift(ctx context.Context, id string, n int, poll time.Duration, progress func(Progress)) ([]json.RawMessage, error) {
	err := wait(ctx, poll, progress, func() (Progress, error) {
		return d.progress(ctx, DriftConversation{}.Kind(), id, n, `SELECT COUNT(*) FROM drift_conversations WHERE run_id = $1`)
	})
	if err != nil {
		return nil, err
	}
	rows, err := d.Pool.Query(ctx, `SELECT conversation FROM drift_conversations WHERE run_id = $1 ORDER BY idx`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []json.RawMessage
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, json.RawMessage(c))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, fmt.Errorf("drift run %s: %d conversations stored of %d", id, len(out), n)
	}
	return out, nil
}

// driftWorker is River's view of a Worker for DriftConversation jobs.
type driftWorker struct {
	river.WorkerDefaults[DriftConversation]
	w *Worker
}

func (s driftWorker) Work(ctx context.Context, job *river.Job[DriftConversation]) error {
	return s.w.track(job.Args.Run, func() (string, error) { return s.w.converse(ctx, job) })
}

func (w *Worker) converse(ctx context.Context, job *river.Job[DriftConversation]) (string, error) {
	a := job.Args
	player, err := w.player(ctx, a.Run)
	if errors.Is(err, ErrBadStudy) {
		return "cancelled", river.JobCancel(err)
	}
	if err != nil {
		return "retried", err
	}
	c, err := player.Converse(ctx, a.Index)
	if ctx.Err() != nil && w.releasing.Load() {
		return "released", river.JobSnooze(0)
	}
	if errors.Is(err, drift.ErrInput) {
		return "cancelled", river.JobCancel(err)
	}
	if err != nil {
		return "retried", err
	}
	js, err := json.Marshal(c)
	if err != nil {
		return "cancelled", river.JobCancel(err)
	}
	return complete(ctx, w.db, job, func(tx pgx.Tx) error {
		return sqldb.PgxIn(tx).Exec(ctx, `INSERT INTO drift_conversations (run_id, idx, conversation) VALUES (?, ?, ?)
			ON CONFLICT (run_id, idx) DO UPDATE SET conversation = excluded.conversation`, a.Run, a.Index, string(js))
	})
}

// player returns the study's prepared player, set up once per study.
func (w *Worker) player(ctx context.Context, run string) (*drift.Plan, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.players[run]; p != nil {
		return p, nil
	}
	var model, study string
	err := w.db.Pool.QueryRow(ctx, `SELECT model, study FROM drift_runs WHERE id = $1`, run).Scan(&model, &study)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: no drift run %q", ErrBadStudy, run)
	}
	if err != nil {
		return nil, err
	}
	b := w.backends[model]
	if b == nil {
		return nil, fmt.Errorf("drift run %s runs on %q, which this worker does not have", run, model)
	}
	p, err := w.opt.Drift(ctx, b, []byte(study))
	if err != nil {
		return nil, err
	}
	if len(w.players) >= 8 { // a plan holds a study's state on the model
		clear(w.players)
	}
	w.players[run] = p
	return p, nil
}
