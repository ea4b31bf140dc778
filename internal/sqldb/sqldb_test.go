package sqldb

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db":      "postgres://u:***@h:5432/db",
		"host=h user=u password=secret db=x": "host=h user=u password=*** db=x",
		"postgres://u@h/db":                  "postgres://u@h/db",
		"/tmp/audit.db":                      "/tmp/audit.db",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQ(t *testing.T) {
	pg := &DB{Postgres: true}
	if got := pg.Q("SELECT a FROM t WHERE b = ? AND c = ?"); got != "SELECT a FROM t WHERE b = $1 AND c = $2" {
		t.Error(got)
	}
	if got := (&DB{}).Q("x = ?"); got != "x = ?" {
		t.Error(got)
	}
}

// Two stores in one file keep their migrations apart, and opening again
// applies nothing twice.
func TestSchemasShareAFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	a := Schema{Table: "a_migrations", Lock: 1, Migrations: []string{`CREATE TABLE a (x INTEGER)`}}
	b := Schema{Table: "b_migrations", Lock: 2, Migrations: []string{`CREATE TABLE b (y INTEGER)`, `CREATE INDEX b_y ON b (y)`}}
	for range 2 {
		for _, s := range []Schema{a, b} {
			db, err := Open(ctx, path, s)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
	}
	db, err := Open(ctx, path, b)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM b_migrations`).Scan(&n); err != nil || n != 2 {
		t.Errorf("b migrations: %d %v", n, err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM a_migrations`).Scan(&n); err != nil || n != 1 {
		t.Errorf("a migrations: %d %v", n, err)
	}
}

// Time stamps sort as text in time order, fractions of a second included.
func TestTimeSortsAsText(t *testing.T) {
	base := time.Date(2026, 12, 4, 10, 0, 5, 0, time.UTC)
	var prev string
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 150 * time.Millisecond, time.Second} {
		s := Time(base.Add(d))
		if prev != "" && s <= prev {
			t.Errorf("%s sorts before %s", s, prev)
		}
		if back, err := time.Parse(time.RFC3339Nano, s); err != nil || !back.Equal(base.Add(d)) {
			t.Errorf("%s parses back as %v, %v", s, back, err)
		}
		prev = s
	}
}
