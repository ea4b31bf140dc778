package testref

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// PostgresDSN returns the DSN of the test server's shared database
// (PERSONA_TEST_PG_DSN, which tools/ci/postgres.sh prints). Without it the
// test is skipped with that command, or fails under CI.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("PERSONA_TEST_PG_DSN")
	if dsn == "" {
		Require(tb, Missing("PostgreSQL (PERSONA_TEST_PG_DSN is not set)", "export PERSONA_TEST_PG_DSN=$(bash tools/ci/postgres.sh)"))
	}
	return dsn
}

// PostgresDB creates a new, empty database on the test server and returns
// its DSN; it is dropped when the test ends. Tests of what happens on a
// fresh database (migrations, queues) get one each, so they cannot see
// each other's rows.
func PostgresDB(tb testing.TB) string {
	tb.Helper()
	dsn := PostgresDSN(tb)
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("PERSONA_TEST_PG_DSN: %v", err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "persona_t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		admin.Close()
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
		admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}
