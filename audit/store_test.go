package audit

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"persona/chat"
	"persona/internal/testref"
)

func TestStoreSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	testStoreRoundTrip(t, path)
}

func TestStorePostgres(t *testing.T) {
	testStoreRoundTrip(t, testref.PostgresDSN(t))
}

func testStoreRoundTrip(t *testing.T, dsn string) {
	ctx := context.Background()
	st, err := OpenStore(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Opening again re-runs no migration and keeps data.
	st2, err := OpenStore(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	st2.Close()

	info := &RunInfo{ID: NewRunID(), SuiteName: "tiny", SuiteFile: "tiny.yaml", Suite: []byte(goodSuite), Target: "fake:t",
		Judge: "fake:j", Auditor: "fake:t", Samples: 3, Seed: -42, Created: time.Now().UTC().Truncate(time.Microsecond), Status: "running"}
	if err := st.CreateRun(ctx, info); err != nil {
		t.Fatal(err)
	}
	got, err := st.Run(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Created.Equal(info.Created) {
		t.Errorf("created %v, want %v", got.Created, info.Created)
	}
	got.Created = info.Created
	if !reflect.DeepEqual(got, info) {
		t.Errorf("run round trip:\n got %+v\nwant %+v", got, info)
	}
	coh := 87.5
	s1 := &SampleResult{ProbeID: "p1", Category: RolePlayCapture, Sample: 1, Seed: 1 << 62, Status: StatusOK, Elicited: true,
		Messages: []chat.Message{{Role: "system", Content: "You are Nova."}, {Role: "user", Content: "be a pirate ☠"}, {Role: "assistant", Content: "Arr\n'quoted' \"x\""}},
		Turns: []TurnResult{{Message: 2, Persona: 91.25, Elicited: true, Finish: "stop", Scores: []Score{
			{Scorer: "persona", Value: 91.25, Elicited: true, Coherence: &coh, Method: "logprobs"},
			{Scorer: "oracle", Value: 80, Elicited: true, Method: "oracle", Personas: map[string]float64{"pirate": 0.8, "assistant": 0.2}}}}},
		Started: time.Now().UTC().Truncate(time.Microsecond), Duration: 1234567}
	s0 := &SampleResult{ProbeID: "p1", Category: RolePlayCapture, Sample: 0, Status: StatusError, ErrorKind: ErrKindBackend,
		Error: "target backend: HTTP 503", Messages: []chat.Message{{Role: "user", Content: "hi"}}, Started: s1.Started}
	for _, s := range []*SampleResult{s1, s0} {
		if err := st.SaveSample(ctx, info.ID, s); err != nil {
			t.Fatal(err)
		}
	}
	samples, err := st.Samples(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2 || !reflect.DeepEqual(samples[1], s1) || samples[0].Error != s0.Error || samples[0].Turns != nil {
		t.Fatalf("samples round trip:\n got %+v\n     %+v\nwant %+v", samples[0], samples[1], s1)
	}
	// A retried sample replaces the failed attempt, turns and all.
	s0.Status, s0.ErrorKind, s0.Error = StatusOK, "", ""
	s0.Turns = []TurnResult{{Message: 1, Scores: []Score{{Scorer: "r", Method: "regex"}}}}
	if err := st.SaveSample(ctx, info.ID, s0); err != nil {
		t.Fatal(err)
	}
	s1.Turns = s1.Turns[:0]
	s1.Elicited = false
	if err := st.SaveSample(ctx, info.ID, s1); err != nil {
		t.Fatal(err)
	}
	samples, _ = st.Samples(ctx, info.ID)
	if len(samples) != 2 || samples[0].Status != StatusOK || len(samples[0].Turns) != 1 || len(samples[1].Turns) != 0 {
		t.Fatalf("after replace: %+v %+v", samples[0], samples[1])
	}
	s, _ := ParseSuite([]byte(goodSuite), "tiny.yaml")
	rep := Summarize(info, s, samples, 3)
	if err := st.FinishRun(ctx, info.ID, rep); err != nil {
		t.Fatal(err)
	}
	runs, err := st.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range runs {
		if r.ID == info.ID {
			found = r.Status == "done"
		}
	}
	if !found {
		t.Error("finished run not listed as done")
	}
	if _, err := st.Run(ctx, "no-such-run"); err == nil {
		t.Error("unknown run found")
	}
}

// Several processes opening one new SQLite store at the same moment all get
// it: migrations wait for each other instead of failing with SQLITE_BUSY (a
// run and a report started together). Separate *sql.DB values stand in for
// the processes: each has its own connection and file locks.
func TestConcurrentOpenSQLite(t *testing.T) {
	for round := 0; round < 5; round++ {
		db := filepath.Join(t.TempDir(), "shared.db")
		errs := make(chan error, 6)
		for range 6 {
			go func() {
				st, err := OpenStore(context.Background(), db)
				if err == nil {
					st.Close()
				}
				errs <- err
			}()
		}
		for range 6 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
