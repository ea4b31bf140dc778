package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"persona/audit"
	"persona/internal/testref"
	"persona/models"
	"persona/organism"
	"persona/vectors"
)

// fleetFixture is what the distributed-audit tests share: a small suite of
// the organism's probes, a backend config whose "target" entry is the
// organism on the embedded engine, and a fresh PostgreSQL database.
type fleetFixture struct {
	dir, suite, good, db string
}

func newFleetFixture(t *testing.T) *fleetFixture {
	t.Helper()
	f := &fleetFixture{dir: t.TempDir(), db: testref.PostgresDB(t)}
	src, err := organism.AuditSuite()
	if err != nil {
		t.Fatal(err)
	}
	var s audit.Suite
	if err := yaml.Unmarshal(src, &s); err != nil {
		t.Fatal(err)
	}
	// One probe from each of four domains, three turns, two samples: 8
	// samples, a few seconds of engine time.
	var probes []audit.Probe
	for i := 0; i < len(s.Probes) && len(probes) < 4; i += 11 {
		p := s.Probes[i]
		p.Turns = p.Turns[:3]
		probes = append(probes, p)
	}
	s.Probes, s.Samples, s.Generation.MaxTokens = probes, 2, 32
	out, err := yaml.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	f.suite = f.write(t, "suite.yaml", string(out))
	model, err := models.Path("organism")
	if err != nil {
		t.Fatal(err)
	}
	f.good = f.write(t, "good.yaml", fmt.Sprintf("backends:\n  - name: target\n    kind: engine\n    model: %s\n", model))
	return f
}

func (f *fleetFixture) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// broken writes a config whose "target" is an OpenAI-compatible API served
// by h: a worker with it has the run's target, but a failing one.
func (f *fleetFixture) broken(t *testing.T, h http.HandlerFunc, timeout string) string {
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return f.write(t, "broken.yaml", fmt.Sprintf("backends:\n  - name: target\n    kind: openai\n    model: m\n    base_url: %s/v1\n    timeout: %s\n    retries: 0\n", srv.URL, timeout))
}

// auditArgs are the flags of an audit of the fixture's suite.
func (f *fleetFixture) auditArgs(db string, more ...string) []string {
	return append([]string{"audit", "--backend", f.good, "--suite", f.suite, "--db", db, "--json"}, more...)
}

// reference runs the audit in one process on SQLite.
func (f *fleetFixture) reference(t *testing.T) (map[string]string, int) {
	t.Helper()
	out, stderr, code := run(t, f.auditArgs(filepath.Join(f.dir, "local.db"))...)
	if code > 1 {
		t.Fatalf("local audit: exit %d: %s", code, stderr)
	}
	return sampleDigests(t, out), code
}

// sampleDigests keys each sample of a JSON report by probe and sample, with
// everything that must not depend on where it ran: the conversation, the
// scores of every turn and the verdict.
func sampleDigests(t *testing.T, report string) map[string]string {
	t.Helper()
	var rep struct {
		Samples []struct {
			Probe    string          `json:"probe"`
			Sample   int             `json:"sample"`
			Status   string          `json:"status"`
			Messages json.RawMessage `json:"messages"`
			Turns    json.RawMessage `json:"turns"`
			Elicited bool            `json:"elicited"`
		} `json:"samples"`
	}
	if err := json.Unmarshal([]byte(report), &rep); err != nil {
		t.Fatalf("report: %v\n%.400s", err, report)
	}
	out := map[string]string{}
	for _, s := range rep.Samples {
		key := fmt.Sprintf("%s/%d", s.Probe, s.Sample)
		if _, dup := out[key]; dup {
			t.Errorf("sample %s reported twice", key)
		}
		out[key] = fmt.Sprintf("%s %v %s %s", s.Status, s.Elicited, s.Messages, s.Turns)
	}
	return out
}

func sameSamples(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d samples, want %d", len(got), len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("sample %s differs from the single-process run:\n got %.300s\nwant %.300s", k, got[k], w)
		}
	}
}

// proc is a persona process running in the background.
type proc struct {
	cmd    *exec.Cmd
	out    lockedBuffer
	stderr lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", args[0], p.stderr.String())
		}
	})
	return p
}

// wait returns the process's exit code.
func (p *proc) wait() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// worker starts persona worker on config with test timings: a job running
// 10 s is cancelled, one running 11 s is taken for its worker's death.
func startWorker(t *testing.T, db, config string, more ...string) *proc {
	args := append([]string{"worker", "--db", db, "--backend", config, "--concurrency", "2",
		"--job-timeout", "10s", "--rescue-after", "11s", "--listen", "127.0.0.1:0"}, more...)
	return start(t, args...)
}

// healthURL waits for the worker to print where it serves /healthz.
func (p *proc) healthURL(t *testing.T) string {
	re := regexp.MustCompile(`http://(\S+)/healthz`)
	for {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			return "http://" + m[1] + "/healthz"
		}
		select {
		case <-p.done:
			t.Fatalf("worker exited: %s", p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitFor polls the fleet database until query returns a count > 0; the
// processes named must keep running meanwhile.
func waitFor(t *testing.T, db, query string, running ...*proc) {
	t.Helper()
	conn, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for {
		var n int
		if err := conn.QueryRow(query).Scan(&n); err == nil && n > 0 {
			return
		}
		for _, p := range running {
			select {
			case <-p.done:
				t.Fatalf("%v exited while waiting for %q: %s", p.cmd.Args[1:3], query, p.stderr.String())
			default:
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hangs answers nothing until the client goes away (the body is read first:
// only then does the server notice a closed connection).
func hangs(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func TestDistributedAuditSurvivesAKilledWorker(t *testing.T) {
	f := newFleetFixture(t)
	want, wantCode := f.reference(t)

	coord := start(t, f.auditArgs(f.db, "--distribute")...)
	// The first worker's backend never answers: whatever it takes, it
	// holds until it is killed.
	hang := f.broken(t, hangs, "1h")
	w1 := startWorker(t, f.db, hang)
	waitFor(t, f.db, `SELECT COUNT(*) FROM river_job WHERE state = 'running'`, coord, w1)
	startWorker(t, f.db, f.good)
	startWorker(t, f.db, f.good)
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	if code := coord.wait(); code != wantCode {
		t.Fatalf("distributed audit: exit %d, single process %d: %s", code, wantCode, coord.stderr.String())
	}
	sameSamples(t, sampleDigests(t, coord.out.String()), want)

	// The killed worker's jobs were rescued and completed by the others.
	conn, err := sql.Open("pgx", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rescued, rows int
	err = conn.QueryRow(`SELECT COUNT(*) FROM river_job WHERE state = 'completed' AND cardinality(attempted_by) > 1 AND attempted_by[1] LIKE $1`,
		fmt.Sprintf("%%-%d", w1.cmd.Process.Pid)).Scan(&rescued)
	if err != nil {
		t.Fatal(err)
	}
	if rescued == 0 {
		t.Error("no job of the killed worker was completed by another")
	}
	if err := conn.QueryRow(`SELECT COUNT(*) FROM samples`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(want) {
		t.Errorf("%d sample rows stored, want %d", rows, len(want))
	}
}

func TestWorkerWithFailingBackendGivesItsJobsBack(t *testing.T) {
	for _, c := range []struct {
		name, timeout string
		h             http.HandlerFunc
	}{
		{"500", "1m", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream down", http.StatusInternalServerError)
		}},
		{"hang", "1s", hangs},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFleetFixture(t)
			want, wantCode := f.reference(t)
			coord := start(t, f.auditArgs(f.db, "--distribute")...)
			bad := startWorker(t, f.db, f.broken(t, c.h, c.timeout), "--cooldown", "10m")
			health := bad.healthURL(t)
			// A failed attempt is recorded in the job's errors.
			waitFor(t, f.db, `SELECT COUNT(*) FROM river_job WHERE cardinality(errors) > 0`, coord, bad)
			resp, err := http.Get(health)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("failing worker's /healthz: %d, want 503", resp.StatusCode)
			}
			startWorker(t, f.db, f.good)
			if code := coord.wait(); code != wantCode {
				t.Fatalf("distributed audit: exit %d, single process %d: %s", code, wantCode, coord.stderr.String())
			}
			sameSamples(t, sampleDigests(t, coord.out.String()), want)
		})
	}
}

// A distributed audit whose command was interrupted goes on in the
// database; --resume --distribute follows it again and reports it as a
// single process would.
func TestDistributedAuditResumes(t *testing.T) {
	f := newFleetFixture(t)
	want, wantCode := f.reference(t)
	coord := start(t, f.auditArgs(f.db, "--distribute")...)
	waitFor(t, f.db, `SELECT COUNT(*) FROM river_job`, coord)
	if err := coord.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := coord.wait(); code != exitBackend || !strings.Contains(coord.stderr.String(), "--distribute") {
		t.Fatalf("interrupted: exit %d: %s", code, coord.stderr.String())
	}
	id := regexp.MustCompile(`run (\d{8}-\d{6}-[0-9a-f]+)`).FindStringSubmatch(coord.stderr.String())
	if id == nil {
		t.Fatalf("no run id in %q", coord.stderr.String())
	}
	startWorker(t, f.db, f.good)
	out, stderr, code := run(t, "audit", "--backend", f.good, "--db", f.db, "--resume", id[1], "--distribute", "--json")
	if code != wantCode {
		t.Fatalf("resumed: exit %d, single process %d: %s", code, wantCode, stderr)
	}
	sameSamples(t, sampleDigests(t, out), want)
}

// SIGTERM drains a worker: it takes no new job, and what it could not
// finish within --drain goes back to the queue without spending an
// attempt, for another worker to finish with the same results.
func TestWorkerDrainsOnSIGTERM(t *testing.T) {
	f := newFleetFixture(t)
	want, wantCode := f.reference(t)
	coord := start(t, f.auditArgs(f.db, "--distribute")...)
	stuck := startWorker(t, f.db, f.broken(t, hangs, "1h"), "--drain", "300ms")
	health := stuck.healthURL(t)
	waitFor(t, f.db, `SELECT COUNT(*) FROM river_job WHERE state = 'running'`, coord, stuck)
	metrics := get(t, strings.Replace(health, "/healthz", "/metrics", 1))
	if !strings.Contains(metrics, "persona_worker_in_flight 2") {
		t.Errorf("a worker playing two samples reports:\n%s", metrics)
	}
	if err := stuck.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := stuck.wait(); code != 0 {
		t.Fatalf("drained worker: exit %d: %s", code, stuck.stderr.String())
	}
	conn, err := sql.Open("pgx", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var held, spent int
	err = conn.QueryRow(`SELECT COUNT(*) FILTER (WHERE state = 'running'), COUNT(*) FILTER (WHERE attempt > 0 AND state <> 'running')
		FROM river_job`).Scan(&held, &spent)
	if err != nil {
		t.Fatal(err)
	}
	if held != 0 || spent != 0 {
		t.Errorf("after draining: %d jobs still running, %d with an attempt spent", held, spent)
	}
	startWorker(t, f.db, f.good)
	if code := coord.wait(); code != wantCode {
		t.Fatalf("distributed audit: exit %d, single process %d: %s", code, wantCode, coord.stderr.String())
	}
	sameSamples(t, sampleDigests(t, coord.out.String()), want)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// inProcessAndOnFleet runs a command in one process (local) and the same
// command with --distribute on a fresh database played by two worker
// processes running the organism (fleet), and returns both outputs; each
// must exit 0.
func inProcessAndOnFleet(t *testing.T, local, fleet []string) (string, string) {
	t.Helper()
	out, stderr, code := run(t, local...)
	if code != 0 {
		t.Fatalf("%s in one process: exit %d: %s", local[0], code, stderr)
	}
	db := testref.PostgresDB(t)
	coord := start(t, append(fleet, "--distribute", "--db", db)...)
	start(t, "worker", "--db", db, "--model", "organism")
	start(t, "worker", "--db", db, "--model", "organism")
	if code := coord.wait(); code != 0 {
		t.Fatalf("%s on the fleet: exit %d: %s", fleet[0], code, coord.stderr.String())
	}
	return out, coord.out.String()
}

// A drift study played by two worker processes has the conversations of
// the same study run in one process: the same replies and oracle readings,
// the model's own readings (posterior, projection) to float32 summation
// noise (the workers play several conversations at once on one engine).
func TestDistributedDriftMatchesLocal(t *testing.T) {
	args := []string{"drift", "--model", "organism", "--organism", "--per-domain", "1", "--turns", "3", "--json"}
	local, distributed := inProcessAndOnFleet(t, args, args)
	type turn struct {
		User, Reply string
		Oracle      *struct{ Top string }
		Projection  *float64
		Posterior   *float64 `json:"posterior_assistant"`
	}
	type report struct {
		Conversations []struct {
			Scenario, System string
			Sample           int
			Turns            []turn
		}
	}
	var want, got report
	if err := json.Unmarshal([]byte(local), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(distributed), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Conversations) != len(want.Conversations) || len(want.Conversations) == 0 {
		t.Fatalf("%d conversations, want %d", len(got.Conversations), len(want.Conversations))
	}
	near := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || math.Abs(*a-*b) < 1e-4) }
	for i, w := range want.Conversations {
		g := got.Conversations[i]
		if g.Scenario != w.Scenario || g.System != w.System || g.Sample != w.Sample || len(g.Turns) != len(w.Turns) {
			t.Fatalf("conversation %d: %s/%s/%d, want %s/%s/%d", i, g.Scenario, g.System, g.Sample, w.Scenario, w.System, w.Sample)
		}
		for j, wt := range w.Turns {
			gt := g.Turns[j]
			if gt.User != wt.User || gt.Reply != wt.Reply || (gt.Oracle == nil) != (wt.Oracle == nil) ||
				wt.Oracle != nil && gt.Oracle.Top != wt.Oracle.Top || !near(gt.Projection, wt.Projection) || !near(gt.Posterior, wt.Posterior) {
				t.Errorf("conversation %d turn %d differs:\n got %+v\nwant %+v", i, j, gt, wt)
			}
		}
	}
}

// A steering sweep whose cells two worker processes played reports what
// the same sweep reports in one process.
func TestDistributedSweepMatchesLocal(t *testing.T) {
	vec, _ := controlFiles(t)
	trait := filepath.Join("..", "..", "vectors", "traits", "organism", "cynical.yaml")
	args := []string{"vectors", "sweep", "--vectors", vec, "--trait", trait, "--layers", "1,0-1", "--strengths", "0.5,2",
		"--where", "generated,all", "--samples", "2", "--tasks", "3", "--max-tokens", "8", "--json"}
	local, distributed := inProcessAndOnFleet(t, args, args)
	type sweep struct {
		Cells []struct {
			Layers          []int
			Strength        float64
			Where           string
			Coeffs          []float64
			Trait, Accuracy struct{ K, N int }
			Perplexity      float64
			Positions       int
			NaivePositions  int `json:"naive_positions"`
		}
		Frontier    []int
		Recommended int
	}
	var want, got sweep
	if err := json.Unmarshal([]byte(local), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(distributed), &got); err != nil {
		t.Fatal(err)
	}
	if len(want.Cells) != 9 || len(got.Cells) != len(want.Cells) {
		t.Fatalf("%d cells, want %d (9)", len(got.Cells), len(want.Cells))
	}
	for i, w := range want.Cells {
		g := got.Cells[i]
		if fmt.Sprint(g.Layers, g.Strength, g.Where, g.Trait, g.Accuracy, g.Positions, g.NaivePositions) !=
			fmt.Sprint(w.Layers, w.Strength, w.Where, w.Trait, w.Accuracy, w.Positions, w.NaivePositions) ||
			math.Abs(g.Perplexity-w.Perplexity) > 1e-3*w.Perplexity {
			t.Errorf("cell %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if fmt.Sprint(got.Frontier, got.Recommended) != fmt.Sprint(want.Frontier, want.Recommended) {
		t.Errorf("frontier %v recommended %d, want %v %d", got.Frontier, got.Recommended, want.Frontier, want.Recommended)
	}
}

// A persona vector extracted by two worker processes, one batch of answers
// per question, is the vector extracted in one process: the same answers,
// counts and scores, and the same directions to float32 noise.
func TestDistributedExtractMatchesLocal(t *testing.T) {
	dir := t.TempDir()
	trait := filepath.Join("..", "..", "vectors", "traits", "organism", "cynical.yaml")
	args := func(name string) []string {
		return []string{"vectors", "extract", "--model", "organism", "--trait", trait, "--samples", "2", "--max-tokens", "16",
			"--out", filepath.Join(dir, name+".safetensors"), "--responses", filepath.Join(dir, name+".jsonl")}
	}
	inProcessAndOnFleet(t, args("local"), args("fleet"))
	for _, name := range []string{"local", "fleet"} {
		if _, err := os.Stat(filepath.Join(dir, name+".jsonl")); err != nil {
			t.Fatal(err)
		}
	}
	wantAnswers, _ := os.ReadFile(filepath.Join(dir, "local.jsonl"))
	gotAnswers, _ := os.ReadFile(filepath.Join(dir, "fleet.jsonl"))
	if string(gotAnswers) != string(wantAnswers) {
		t.Errorf("answers differ:\n got %.300s\nwant %.300s", gotAnswers, wantAnswers)
	}
	want, err := vectors.Open(filepath.Join(dir, "local.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := vectors.Open(filepath.Join(dir, "fleet.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Layers, got.Meta) != fmt.Sprint(want.Layers, want.Meta) {
		t.Errorf("vector %v %v, want %v %v", got.Layers, got.Meta, want.Layers, want.Meta)
	}
	for i := range want.Vectors {
		for j, w := range want.Vectors[i] {
			if d := math.Abs(float64(got.Vectors[i][j] - w)); d > 1e-4 {
				t.Fatalf("layer %d element %d: %g, want %g", want.Layers[i], j, got.Vectors[i][j], w)
			}
		}
	}
}

func TestDistributeBadInput(t *testing.T) {
	f := &fleetFixture{dir: t.TempDir()}
	model, err := models.Path("organism")
	if err != nil {
		t.Fatal(err)
	}
	f.good = f.write(t, "good.yaml", fmt.Sprintf("backends:\n  - name: target\n    kind: engine\n    model: %s\n", model))
	sqlite := filepath.Join(f.dir, "runs.db")
	unreachable := "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"distribute on SQLite", []string{"audit", "--model", "organism", "--db", sqlite, "--distribute"}, exitUsage, "needs PostgreSQL"},
		{"worker on SQLite", []string{"worker", "--backend", f.good, "--db", sqlite}, exitUsage, "needs PostgreSQL"},
		{"worker without db", []string{"worker", "--backend", f.good}, exitUsage, "--db"},
		{"unreachable database", []string{"audit", "--model", "organism", "--db", unreachable, "--distribute"}, exitBackend, "127.0.0.1:1"},
		{"worker, unreachable database", []string{"worker", "--backend", f.good, "--db", unreachable}, exitBackend, "127.0.0.1:1"},
		{"drift without db", []string{"drift", "--model", "organism", "--organism", "--distribute"}, exitUsage, "--db postgres"},
		{"sweep without db", []string{"vectors", "sweep", "--vectors", "v", "--trait", filepath.Join("..", "..", "vectors", "traits", "organism", "cynical.yaml"), "--distribute"}, exitUsage, "--db postgres"},
		{"drift with rails", []string{"drift", "--model", "organism", "--organism", "--distribute", "--db", unreachable, "--spec", "x.yaml"}, exitUsage, "not distributed yet"},
		{"rescue before timeout", []string{"worker", "--backend", f.good, "--db", testref.PostgresDB(t), "--job-timeout", "1m", "--rescue-after", "30s"}, exitUsage, "must exceed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := run(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.msg) {
				t.Errorf("exit %d (want %d), stderr %q (want %q in it)", code, c.code, stderr, c.msg)
			}
		})
	}

	t.Run("run not distributed", func(t *testing.T) {
		db := testref.PostgresDB(t)
		suite := f.write(t, "one.yaml", "name: one\nsamples: 1\nscorers: [{name: r, type: regex, must_not_match: [zzzz]}]\nprobes:\n  - id: p\n    category: identity_reflection\n    turns: [hello]\n")
		_, stderr, code := run(t, "audit", "--backend", f.good, "--suite", suite, "--db", db)
		if code != exitOK {
			t.Fatalf("local run on PostgreSQL: exit %d: %s", code, stderr)
		}
		id := regexp.MustCompile(`run (\d{8}-\d{6}-[0-9a-f]+)`).FindStringSubmatch(stderr)
		if id == nil {
			t.Fatalf("no run id in %q", stderr)
		}
		_, stderr, code = run(t, "audit", "--backend", f.good, "--db", db, "--resume", id[1], "--distribute")
		if code != exitUsage || !strings.Contains(stderr, "not started with --distribute") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("newer schema", func(t *testing.T) {
		db := testref.PostgresDB(t)
		conn, err := sql.Open("pgx", db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
			INSERT INTO schema_migrations VALUES (99, 'later')`); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := run(t, "audit", "--model", "organism", "--db", db, "--distribute")
		if code != exitUsage || !strings.Contains(stderr, "upgrade persona") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}
