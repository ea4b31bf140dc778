// Package sqldb opens the databases persona keeps its records in: a SQLite
// file by default (embedded, nothing to run) or PostgreSQL when several
// processes or machines share them. It holds what every store needs the
// same way: connection settings that make SQLite safe under several
// processes, migrations that run once however many processes start
// together, "?" placeholders rewritten for PostgreSQL, and DSNs with their
// passwords hidden in errors.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"modernc.org/sqlite"               // database/sql driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is an open database.
type DB struct {
	*sql.DB
	Postgres bool
}

// IsPostgres reports whether a DSN names a PostgreSQL database rather than
// a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") ||
		strings.Contains(dsn, "host=") || strings.Contains(dsn, "dbname=")
}

// Schema is a store's migrations, recorded in their own table so several
// stores can share one database. Migrations only ever add, so a database
// opened by an older binary keeps working.
type Schema struct {
	// Table records the applied versions.
	Table string
	// Lock is the PostgreSQL advisory lock id under which concurrent
	// openers take turns.
	Lock       int64
	Migrations []string
}

// Open opens (creating and migrating as needed) a SQLite file or a
// PostgreSQL database given by DSN.
func Open(ctx context.Context, dsn string, schema Schema) (*DB, error) {
	d := &DB{Postgres: IsPostgres(dsn)}
	var err error
	if d.Postgres {
		d.DB, err = sql.Open("pgx", dsn)
	} else {
		// busy_timeout comes first so that every later statement on the
		// connection waits out another process's lock instead of failing.
		// Transactions take the write lock when they begin
		// (_txlock=immediate): a deferred one that reads and then writes
		// fails at once with SQLITE_BUSY when another process holds the
		// lock, without waiting. One connection serialises this process's
		// writes. WAL is switched on below, not here.
		d.DB, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)&_txlock=immediate&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)")
		if err == nil {
			d.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", Redact(dsn), err)
	}
	if err := d.PingContext(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("database %s: %w", Redact(dsn), err)
	}
	if !d.Postgres {
		// WAL lets readers proceed beside the writer. Switching to it needs
		// the file to itself, and SQLite answers SQLITE_BUSY at once,
		// without its busy handler, when another process is opening the
		// same new file: so retry here. The mode is stored in the file, so
		// once is enough.
		err := RetryBusy(ctx, func() error {
			_, err := d.ExecContext(ctx, `PRAGMA journal_mode=WAL`)
			return err
		})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("database %s: journal mode: %w", Redact(dsn), err)
		}
	}
	if err := d.migrate(ctx, schema); err != nil {
		d.Close()
		return nil, fmt.Errorf("database %s: migrate: %w", Redact(dsn), err)
	}
	return d, nil
}

// Redact hides a password in a DSN so errors and reports never carry it.
func Redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			cred := dsn[i+3 : at]
			if c := strings.Index(cred, ":"); c >= 0 {
				return dsn[:i+3] + cred[:c] + ":***" + dsn[at:]
			}
		}
	}
	if strings.Contains(dsn, "password=") {
		f := strings.Fields(dsn)
		for i, kv := range f {
			if strings.HasPrefix(kv, "password=") {
				f[i] = "password=***"
			}
		}
		return strings.Join(f, " ")
	}
	return dsn
}

// Q rewrites "?" placeholders as "$1, $2, …" for PostgreSQL.
func (d *DB) Q(query string) string {
	if !d.Postgres {
		return query
	}
	return numbered(query)
}

// numbered rewrites "?" placeholders as "$1, $2, …".
func numbered(query string) string {
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Execer runs a statement written with "?" placeholders inside a
// transaction. Stores write through it so that the same rows can be written
// in their own transaction or in a caller's (a queue worker's, which
// completes its job in the same commit).
type Execer interface {
	Exec(ctx context.Context, query string, args ...any) error
}

// In is an Execer on a transaction of d.
func (d *DB) In(tx *sql.Tx) Execer { return sqlExec{tx, d.Q} }

type sqlExec struct {
	tx *sql.Tx
	q  func(string) string
}

func (e sqlExec) Exec(ctx context.Context, query string, args ...any) error {
	_, err := e.tx.ExecContext(ctx, e.q(query), args...)
	return err
}

// PgxIn is an Execer on a pgx transaction of a PostgreSQL database.
func PgxIn(tx pgx.Tx) Execer { return pgxExec{tx} }

type pgxExec struct{ tx pgx.Tx }

func (e pgxExec) Exec(ctx context.Context, query string, args ...any) error {
	_, err := e.tx.Exec(ctx, numbered(query), args...)
	return err
}

// Tx runs f in a transaction, committed if f returns nil.
func (d *DB) Tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (d *DB) migrate(ctx context.Context, s Schema) error {
	// Concurrent openers take turns, from creating the versions table on:
	// PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against another
	// session creating the same table at the same moment.
	lock := func(tx *sql.Tx) error {
		if !d.Postgres {
			return nil
		}
		_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, s.Lock)
		return err
	}
	err := RetryBusy(ctx, func() error {
		return d.Tx(ctx, func(tx *sql.Tx) error {
			if err := lock(tx); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.Table+` (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`)
			return err
		})
	})
	if err != nil {
		return err
	}
	for i, m := range s.Migrations {
		version := i + 1
		apply := func(tx *sql.Tx) error {
			if err := lock(tx); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, d.Q(`SELECT COUNT(*) FROM `+s.Table+` WHERE version = ?`), version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(m, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", version, err)
				}
			}
			_, err := tx.ExecContext(ctx, d.Q(`INSERT INTO `+s.Table+` (version, applied_at) VALUES (?, ?)`), version, Now())
			return err
		}
		if err := RetryBusy(ctx, func() error { return d.Tx(ctx, apply) }); err != nil {
			return err
		}
	}
	var newest sql.NullInt64
	if err := d.QueryRowContext(ctx, `SELECT MAX(version) FROM `+s.Table).Scan(&newest); err != nil {
		return err
	}
	if int(newest.Int64) > len(s.Migrations) {
		return fmt.Errorf("%w: %s is at version %d, this binary knows %d; upgrade persona", ErrNewerSchema, s.Table, newest.Int64, len(s.Migrations))
	}
	return nil
}

// ErrNewerSchema is a database migrated by a newer persona than this one:
// its rows may mean what this binary cannot know, so it is not used.
var ErrNewerSchema = errors.New("database schema is newer than this binary")

// RetryBusy runs f until it does not fail with SQLITE_BUSY or
// SQLITE_LOCKED, backing off from 1 ms to 100 ms, for at most busyWait in
// all.
func RetryBusy(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(busyWait)
	pause := time.Millisecond
	for {
		err := f()
		if !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// busyWait bounds how long opening a database waits for other processes
// that are opening it too; the same as the connection's busy_timeout.
const busyWait = 10 * time.Second

// isBusy reports whether err is SQLite's "the file is locked by someone
// else" (SQLITE_BUSY or SQLITE_LOCKED, with any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// Now is the time stamp stores write (Time of now).
func Now() string { return Time(time.Now()) }

// Time writes t in UTC with a fixed number of digits, so that the database
// orders times correctly as text (RFC 3339 with trimmed zeros puts .1
// after .15). time.RFC3339Nano parses it back.
func Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }
