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
	"persona/internal/sqldb"
)

// A study is a piece of work that splits into independent items played on
// a model the worker runs itself: a drift study's conversations, a
// steering sweep's cells. The study is stored with its run as the caller
// encodes it; each worker sets it up once with the StudySetup of its kind
// and plays items; their results come back as JSON, to be summarised where
// the study was started.

// Player plays the items of one study on a worker.
type Player interface {
	// Play plays item i; the result is stored as its JSON.
	Play(ctx context.Context, i int) (any, error)
}

// PlayFunc is a Player.
type PlayFunc func(ctx context.Context, i int) (any, error)

// Play calls f.
func (f PlayFunc) Play(ctx context.Context, i int) (any, error) { return f(ctx, i) }

// StudyEnv is what a study's setup gets from its worker.
type StudyEnv struct {
	// Model is the backend the study runs on.
	Model backend.Backend
	// Backends are all the worker's backends by name: a study scored by
	// an LLM judge finds it here.
	Backends map[string]backend.Backend
}

// StudySetup sets a study up from the study as StartStudy stored it.
// Errors wrapping ErrBadStudy, from it or from its Player, cancel the
// item's job; others are retried (another worker may have what this one
// lacks).
type StudySetup func(ctx context.Context, env StudyEnv, study []byte) (Player, error)

// ErrBadStudy is a stored study (or item) that no worker can play.
var ErrBadStudy = errors.New("study cannot be played")

// StudyItem is the job of playing one item of a distributed study.
type StudyItem struct {
	Run   string `json:"run"`
	Index int    `json:"index"`
}

// Kind names the job in River's tables.
func (StudyItem) Kind() string { return "persona_study_item" }

// StudyQueue is the queue of the items of studies of a kind on a model.
func StudyQueue(kind, model string) string { return queueName(kind+"_", model) }

// StartStudy records a distributed study of n items of the given kind on
// the model named model, and enqueues them in the same transaction.
func (d *DB) StartStudy(ctx context.Context, id, kind, model string, study []byte, n int) error {
	return pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		err := sqldb.PgxIn(tx).Exec(ctx, `INSERT INTO studies (id, kind, model, study, items, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			id, kind, model, string(study), n, sqldb.Now())
		if err != nil {
			return err
		}
		jobs := make([]river.JobArgs, n)
		for i := range jobs {
			jobs[i] = StudyItem{Run: id, Index: i}
		}
		return d.insert(ctx, tx, StudyQueue(kind, model), jobs)
	})
}

// WaitStudy follows a distributed study until every item's result is
// stored and returns them in order, as JSON.
func (d *DB) WaitStudy(ctx context.Context, id string, n int, poll time.Duration, progress func(Progress)) ([]json.RawMessage, error) {
	err := wait(ctx, poll, progress, func() (Progress, error) {
		return d.progress(ctx, StudyItem{}.Kind(), id, n, `SELECT COUNT(*) FROM study_results WHERE run_id = $1`)
	})
	if err != nil {
		return nil, err
	}
	rows, err := d.Pool.Query(ctx, `SELECT result FROM study_results WHERE run_id = $1 ORDER BY idx`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []json.RawMessage
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, json.RawMessage(r))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, fmt.Errorf("study %s: %d results stored of %d", id, len(out), n)
	}
	return out, nil
}

// studyWorker is River's view of a Worker for StudyItem jobs.
type studyWorker struct {
	river.WorkerDefaults[StudyItem]
	w *Worker
}

func (s studyWorker) Work(ctx context.Context, job *river.Job[StudyItem]) error {
	return s.w.track(job.Args.Run, func() (string, error) { return s.w.play(ctx, job) })
}

func (w *Worker) play(ctx context.Context, job *river.Job[StudyItem]) (string, error) {
	a := job.Args
	player, err := w.player(ctx, a.Run)
	if errors.Is(err, ErrBadStudy) {
		return "cancelled", river.JobCancel(err)
	}
	if err != nil {
		return "retried", err
	}
	result, err := player.Play(ctx, a.Index)
	if ctx.Err() != nil && w.releasing.Load() {
		return "released", river.JobSnooze(0)
	}
	if errors.Is(err, ErrBadStudy) {
		return "cancelled", river.JobCancel(err)
	}
	if err != nil {
		return "retried", err
	}
	js, err := json.Marshal(result)
	if err != nil {
		return "cancelled", river.JobCancel(err)
	}
	return complete(ctx, w.db, job, func(tx pgx.Tx) error {
		return sqldb.PgxIn(tx).Exec(ctx, `INSERT INTO study_results (run_id, idx, result) VALUES (?, ?, ?)
			ON CONFLICT (run_id, idx) DO UPDATE SET result = excluded.result`, a.Run, a.Index, string(js))
	})
}

// player returns the study's player, set up once per study.
func (w *Worker) player(ctx context.Context, run string) (Player, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.players[run]; p != nil {
		return p, nil
	}
	var kind, model, study string
	err := w.db.Pool.QueryRow(ctx, `SELECT kind, model, study FROM studies WHERE id = $1`, run).Scan(&kind, &model, &study)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: no study %q", ErrBadStudy, run)
	}
	if err != nil {
		return nil, err
	}
	setup, b := w.opt.Studies[kind], w.backends[model]
	if setup == nil || b == nil {
		return nil, fmt.Errorf("study %s is a %s study on %q, which this worker does not play", run, kind, model)
	}
	p, err := setup(ctx, StudyEnv{Model: b, Backends: w.backends}, []byte(study))
	if err != nil {
		return nil, err
	}
	if len(w.players) >= 8 { // a player holds a study's state on the model
		clear(w.players)
	}
	w.players[run] = p
	return p, nil
}
