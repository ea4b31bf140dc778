package fleet

import (
	"context"
	"strings"
	"sync"
	"testing"

	"persona/internal/sqldb"
	"persona/internal/testref"
)

// Processes that start together on a fresh database migrate it once: the
// audit store's tables and River's, each under its advisory lock.
func TestOpenTogether(t *testing.T) {
	dsn := testref.PostgresDB(t)
	const n = 6
	errs := make([]error, n)
	dbs := make([]*DB, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = Open(context.Background(), dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("opener %d: %v", i, err)
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return
	}
	var ours, river int
	if err := dbs[0].Pool.QueryRow(context.Background(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&ours); err != nil {
		t.Fatal(err)
	}
	if err := dbs[0].Pool.QueryRow(context.Background(), `SELECT COUNT(DISTINCT version) - COUNT(*) FROM river_migration`).Scan(&river); err != nil {
		t.Fatal(err)
	}
	if ours == 0 || river != 0 {
		t.Errorf("schema_migrations has %d versions; river_migration has %d repeated versions", ours, river)
	}
}

func TestOpenRefusesSQLite(t *testing.T) {
	_, err := Open(context.Background(), t.TempDir()+"/runs.db")
	if err == nil || !strings.Contains(err.Error(), "needs PostgreSQL") {
		t.Errorf("err = %v", err)
	}
	if sqldb.IsPostgres(t.TempDir()) {
		t.Error("a directory is not a PostgreSQL DSN")
	}
}

// Queue names are what River accepts (letters, digits, underscores, at most
// 64 bytes), and two targets that simplify alike still get two queues.
func TestQueue(t *testing.T) {
	long := strings.Repeat("very-long-model-name/", 10)
	names := []string{"target", "engine:organism", "Target", "gpt-4o (eu)", long, long + "x"}
	seen := map[string]string{}
	for _, n := range names {
		q := Queue(n)
		if len(q) > 64 || strings.Trim(q, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("Queue(%q) = %q", n, q)
		}
		if other, dup := seen[q]; dup {
			t.Errorf("%q and %q share queue %q", n, other, q)
		}
		seen[q] = n
		if Queue(n) != q {
			t.Errorf("Queue(%q) is not stable", n)
		}
	}
}
