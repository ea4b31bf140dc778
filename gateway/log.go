package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"persona/chat"
	"persona/internal/sqldb"
)

// Log keeps every guarded turn with its telemetry in a database (a SQLite
// file by default, PostgreSQL when shared): the record an operator audits
// afterwards. A turn is committed before its response is sent, so a
// gateway killed at any moment has logged every reply a client received.
type Log struct{ db *sqldb.DB }

// Turn is one logged reply.
type Turn struct {
	Conversation string         `json:"conversation"`
	Turn         int            `json:"turn"` // 1-based assistant turn
	At           time.Time      `json:"at"`
	Model        string         `json:"model"`
	Messages     []chat.Message `json:"messages"` // the conversation before the reply
	Reply        string         `json:"reply"`
	Telemetry    Telemetry      `json:"telemetry"`
}

var logSchema = sqldb.Schema{Table: "gateway_migrations", Lock: 7411627, Migrations: []string{
	`CREATE TABLE gateway_turns (
		conversation TEXT NOT NULL,
		turn INTEGER NOT NULL,
		at TEXT NOT NULL,
		model TEXT NOT NULL,
		messages TEXT NOT NULL,
		reply TEXT NOT NULL,
		telemetry TEXT NOT NULL,
		top TEXT NOT NULL,
		allowed DOUBLE PRECISION NOT NULL,
		interventions INTEGER NOT NULL,
		PRIMARY KEY (conversation, turn, at)
	);
	CREATE INDEX gateway_turns_at ON gateway_turns (at)`,
}}

// OpenLog opens (creating as needed) the log at dsn.
func OpenLog(ctx context.Context, dsn string) (*Log, error) {
	db, err := sqldb.Open(ctx, dsn, logSchema)
	if err != nil {
		return nil, fmt.Errorf("conversation log: %w", err)
	}
	return &Log{db: db}, nil
}

// Close closes the database.
func (l *Log) Close() error { return l.db.Close() }

// ConversationID names a conversation by what does not change as it grows:
// its system prompts and first user turn. Two clients who open with the
// same words share an id; a client that wants its own sends distinct
// first messages (or reads the id back from the log).
func ConversationID(msgs []chat.Message) string {
	h := sha256.New()
	for _, m := range msgs {
		fmt.Fprintf(h, "%s\x00%s\x00", m.Role, m.Content)
		if m.Role == chat.RoleUser {
			break
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Append stores a turn and returns once it is committed.
func (l *Log) Append(ctx context.Context, t Turn) error {
	if t.Turn == 0 {
		t.Turn = 1
		for _, m := range t.Messages {
			if m.Role == chat.RoleAssistant {
				t.Turn++
			}
		}
	}
	msgs, err := json.Marshal(t.Messages)
	if err != nil {
		return err
	}
	tel, err := json.Marshal(t.Telemetry)
	if err != nil {
		return err
	}
	return sqldb.RetryBusy(ctx, func() error {
		_, err := l.db.ExecContext(ctx, l.db.Q(`INSERT INTO gateway_turns (conversation, turn, at, model, messages, reply, telemetry, top, allowed, interventions)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), t.Conversation, t.Turn, sqldb.Time(t.At), t.Model, string(msgs), t.Reply,
			string(tel), t.Telemetry.Top, t.Telemetry.Allowed, len(t.Telemetry.Interventions))
		return err
	})
}

// Recent returns the newest n turns, newest first.
func (l *Log) Recent(ctx context.Context, n int) ([]Turn, error) {
	return l.query(ctx, `SELECT conversation, turn, at, model, messages, reply, telemetry FROM gateway_turns ORDER BY at DESC LIMIT ?`, n)
}

// Conversation returns one conversation's turns in order.
func (l *Log) Conversation(ctx context.Context, id string) ([]Turn, error) {
	return l.query(ctx, `SELECT conversation, turn, at, model, messages, reply, telemetry FROM gateway_turns WHERE conversation = ? ORDER BY at`, id)
}

func (l *Log) query(ctx context.Context, q string, args ...any) ([]Turn, error) {
	rows, err := l.db.QueryContext(ctx, l.db.Q(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Turn
	for rows.Next() {
		var t Turn
		var at, msgs, tel string
		if err := rows.Scan(&t.Conversation, &t.Turn, &at, &t.Model, &msgs, &t.Reply, &tel); err != nil {
			return nil, err
		}
		t.At, _ = time.Parse(time.RFC3339Nano, at)
		if err := json.Unmarshal([]byte(msgs), &t.Messages); err != nil {
			return nil, fmt.Errorf("conversation log: turn %s/%d: %w", t.Conversation, t.Turn, err)
		}
		if err := json.Unmarshal([]byte(tel), &t.Telemetry); err != nil {
			return nil, fmt.Errorf("conversation log: turn %s/%d: %w", t.Conversation, t.Turn, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Prune deletes turns older than the retention period and returns how many.
func (l *Log) Prune(ctx context.Context, retention time.Duration) (int64, error) {
	cut := sqldb.Time(time.Now().Add(-retention))
	res, err := l.db.ExecContext(ctx, l.db.Q(`DELETE FROM gateway_turns WHERE at < ?`), cut)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
