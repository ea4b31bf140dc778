package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"persona/internal/sqldb"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	// database/sql driver "sqlite"
)

// Store keeps runs and their samples. Each sample is saved in its own
// transaction as soon as it finishes, which is what makes runs resumable
// after kill -9: a sample is either wholly stored or not at all.
type Store interface {
	CreateRun(ctx context.Context, r *RunInfo) error
	Run(ctx context.Context, id string) (*RunInfo, error)
	// Runs lists runs, newest first.
	Runs(ctx context.Context) ([]RunInfo, error)
	// SaveSample stores a sample, replacing an earlier attempt at the same
	// probe sample (an errored one being retried on resume).
	SaveSample(ctx context.Context, runID string, r *SampleResult) error
	// Samples returns a run's samples ordered by probe and sample.
	Samples(ctx context.Context, runID string) ([]*SampleResult, error)
	// FinishRun marks a run done and keeps its report.
	FinishRun(ctx context.Context, id string, rep *Report) error
	// Report returns a finished run's kept report (without transcripts).
	Report(ctx context.Context, id string) (*Report, error)
	Close() error
}

// ErrNoRun is returned for a run id the store does not hold.
var ErrNoRun = errors.New("no such run")

// sqlStore is the Store over a SQLite or PostgreSQL database.
type sqlStore struct{ db *sqldb.DB }

// IsPostgresDSN reports whether a --db value names a PostgreSQL database
// rather than a SQLite file.
func IsPostgresDSN(dsn string) bool { return sqldb.IsPostgres(dsn) }

// OpenStore opens (creating and migrating as needed) a SQLite file or a
// PostgreSQL database given by DSN.
func OpenStore(ctx context.Context, dsn string) (Store, error) {
	db, err := sqldb.Open(ctx, dsn, sqldb.Schema{Table: "schema_migrations", Lock: 7411626, Migrations: migrations})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &sqlStore{db: db}, nil
}

// migrations are applied in order, each in its own transaction, and recorded
// in schema_migrations; a store opened by an older binary keeps working
// because migrations only ever add.
var migrations = []string{
	// 1: runs, samples, and the per-turn scores as rows so that teams can
	// query trajectories in SQL without parsing transcripts.
	`CREATE TABLE runs (
		id TEXT PRIMARY KEY,
		suite_name TEXT NOT NULL,
		suite_file TEXT NOT NULL,
		suite_source TEXT NOT NULL,
		target TEXT NOT NULL,
		judge TEXT NOT NULL,
		auditor TEXT NOT NULL,
		samples INTEGER NOT NULL,
		seed BIGINT NOT NULL,
		created_at TEXT NOT NULL,
		finished_at TEXT,
		status TEXT NOT NULL,
		report TEXT
	);
	CREATE TABLE samples (
		run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		probe_id TEXT NOT NULL,
		sample INTEGER NOT NULL,
		category TEXT NOT NULL,
		seed BIGINT NOT NULL,
		status TEXT NOT NULL,
		error_kind TEXT NOT NULL,
		error TEXT NOT NULL,
		elicited INTEGER NOT NULL,
		messages TEXT NOT NULL,
		started_at TEXT NOT NULL,
		duration_ns BIGINT NOT NULL,
		PRIMARY KEY (run_id, probe_id, sample)
	);
	CREATE TABLE turn_scores (
		run_id TEXT NOT NULL,
		probe_id TEXT NOT NULL,
		sample INTEGER NOT NULL,
		turn INTEGER NOT NULL,
		message INTEGER NOT NULL,
		finish TEXT NOT NULL,
		persona DOUBLE PRECISION NOT NULL,
		elicited INTEGER NOT NULL,
		incoherent INTEGER NOT NULL,
		scores TEXT NOT NULL,
		PRIMARY KEY (run_id, probe_id, sample, turn),
		FOREIGN KEY (run_id, probe_id, sample) REFERENCES samples(run_id, probe_id, sample) ON DELETE CASCADE
	)`,
	// 2: runs whose samples workers take from a queue (package fleet).
	`ALTER TABLE runs ADD COLUMN distributed INTEGER NOT NULL DEFAULT 0`,
}

func (s *sqlStore) CreateRun(ctx context.Context, r *RunInfo) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error { return CreateRunIn(ctx, s.db.In(tx), r) })
}

// CreateRunIn records a new run inside a caller's transaction: a
// distributed run is created in the same commit that enqueues its samples.
func CreateRunIn(ctx context.Context, ex sqldb.Execer, r *RunInfo) error {
	return ex.Exec(ctx, `INSERT INTO runs (id, suite_name, suite_file, suite_source, target, judge, auditor, samples, seed, created_at, status, distributed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.SuiteName, r.SuiteFile, string(r.Suite), r.Target, r.Judge, r.Auditor, r.Samples, r.Seed,
		sqldb.Time(r.Created), r.Status, b2i(r.Distributed))
}

const runCols = `id, suite_name, suite_file, suite_source, target, judge, auditor, samples, seed, created_at, status, finished_at, distributed`

func scanRun(sc interface{ Scan(...any) error }) (*RunInfo, error) {
	var r RunInfo
	var src, created string
	var finished sql.NullString
	var distributed int
	if err := sc.Scan(&r.ID, &r.SuiteName, &r.SuiteFile, &src, &r.Target, &r.Judge, &r.Auditor, &r.Samples, &r.Seed, &created, &r.Status, &finished, &distributed); err != nil {
		return nil, err
	}
	r.Distributed = distributed != 0
	r.Suite = []byte(src)
	r.Created, _ = time.Parse(time.RFC3339Nano, created)
	if t, err := time.Parse(time.RFC3339Nano, finished.String); finished.Valid && err == nil {
		r.Finished = &t
	}
	return &r, nil
}

func (s *sqlStore) Run(ctx context.Context, id string) (*RunInfo, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, s.db.Q(`SELECT `+runCols+` FROM runs WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %w %q", ErrInput, ErrNoRun, id)
	}
	return r, err
}

func (s *sqlStore) Runs(ctx context.Context) ([]RunInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+runCols+` FROM runs ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RunInfo
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *sqlStore) SaveSample(ctx context.Context, runID string, r *SampleResult) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error { return SaveSampleIn(ctx, s.db.In(tx), runID, r) })
}

// SaveSampleIn stores a sample inside a caller's transaction, replacing an
// earlier attempt at it: a fleet worker writes the result in the same
// commit that completes the sample's job, so a result is stored exactly
// when its job is done.
func SaveSampleIn(ctx context.Context, ex sqldb.Execer, runID string, r *SampleResult) error {
	msgs, err := json.Marshal(r.Messages)
	if err != nil {
		return err
	}
	// turn_scores go with the sample by cascade.
	if err := ex.Exec(ctx, `DELETE FROM turn_scores WHERE run_id = ? AND probe_id = ? AND sample = ?`, runID, r.ProbeID, r.Sample); err != nil {
		return err
	}
	if err := ex.Exec(ctx, `DELETE FROM samples WHERE run_id = ? AND probe_id = ? AND sample = ?`, runID, r.ProbeID, r.Sample); err != nil {
		return err
	}
	if err := ex.Exec(ctx, `INSERT INTO samples (run_id, probe_id, sample, category, seed, status, error_kind, error, elicited, messages, started_at, duration_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		runID, r.ProbeID, r.Sample, string(r.Category), r.Seed, r.Status, r.ErrorKind, r.Error, b2i(r.Elicited),
		string(msgs), sqldb.Time(r.Started), int64(r.Duration)); err != nil {
		return err
	}
	for t, tr := range r.Turns {
		scores, err := json.Marshal(tr.Scores)
		if err != nil {
			return err
		}
		if err := ex.Exec(ctx, `INSERT INTO turn_scores (run_id, probe_id, sample, turn, message, finish, persona, elicited, incoherent, scores)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			runID, r.ProbeID, r.Sample, t, tr.Message, tr.Finish, tr.Persona, b2i(tr.Elicited), b2i(tr.Incoherent), string(scores)); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) Samples(ctx context.Context, runID string) ([]*SampleResult, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Q(`SELECT probe_id, sample, category, seed, status, error_kind, error, elicited, messages, started_at, duration_ns
		FROM samples WHERE run_id = ? ORDER BY probe_id, sample`), runID)
	if err != nil {
		return nil, err
	}
	var out []*SampleResult
	index := map[string]*SampleResult{}
	for rows.Next() {
		r := &SampleResult{}
		var cat, msgs, started string
		var elicited int
		var dur int64
		if err := rows.Scan(&r.ProbeID, &r.Sample, &cat, &r.Seed, &r.Status, &r.ErrorKind, &r.Error, &elicited, &msgs, &started, &dur); err != nil {
			rows.Close()
			return nil, err
		}
		r.Category, r.Elicited, r.Duration = Category(cat), elicited != 0, time.Duration(dur)
		r.Started, _ = time.Parse(time.RFC3339Nano, started)
		if err := json.Unmarshal([]byte(msgs), &r.Messages); err != nil {
			rows.Close()
			return nil, fmt.Errorf("run %s probe %s sample %d: messages: %w", runID, r.ProbeID, r.Sample, err)
		}
		out = append(out, r)
		index[sampleKey(r.ProbeID, r.Sample)] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	trows, err := s.db.QueryContext(ctx, s.db.Q(`SELECT probe_id, sample, message, finish, persona, elicited, incoherent, scores
		FROM turn_scores WHERE run_id = ? ORDER BY probe_id, sample, turn`), runID)
	if err != nil {
		return nil, err
	}
	defer trows.Close()
	for trows.Next() {
		var probe, scores string
		var sample, elicited, incoherent int
		var tr TurnResult
		if err := trows.Scan(&probe, &sample, &tr.Message, &tr.Finish, &tr.Persona, &elicited, &incoherent, &scores); err != nil {
			return nil, err
		}
		tr.Elicited, tr.Incoherent = elicited != 0, incoherent != 0
		if err := json.Unmarshal([]byte(scores), &tr.Scores); err != nil {
			return nil, err
		}
		if r := index[sampleKey(probe, sample)]; r != nil {
			r.Turns = append(r.Turns, tr)
		}
	}
	return out, trows.Err()
}

func (s *sqlStore) FinishRun(ctx context.Context, id string, rep *Report) error {
	// The stored report omits transcripts: they are in samples already.
	slim := *rep
	slim.Samples = nil
	js, err := json.Marshal(&slim)
	if err != nil {
		return err
	}
	finished := time.Now().UTC()
	if rep.Run.Finished != nil {
		finished = *rep.Run.Finished
	}
	_, err = s.db.ExecContext(ctx, s.db.Q(`UPDATE runs SET status = 'done', finished_at = ?, report = ? WHERE id = ?`), sqldb.Time(finished), string(js), id)
	return err
}

func (s *sqlStore) Report(ctx context.Context, id string) (*Report, error) {
	var js sql.NullString
	err := s.db.QueryRowContext(ctx, s.db.Q(`SELECT report FROM runs WHERE id = ?`), id).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %w %q", ErrInput, ErrNoRun, id)
	}
	if err != nil {
		return nil, err
	}
	if !js.Valid || js.String == "" {
		return nil, fmt.Errorf("%w: run %q has not finished", ErrInput, id)
	}
	var rep Report
	if err := json.Unmarshal([]byte(js.String), &rep); err != nil {
		return nil, fmt.Errorf("store: run %q: report: %w", id, err)
	}
	return &rep, nil
}

func (s *sqlStore) Close() error { return s.db.Close() }
