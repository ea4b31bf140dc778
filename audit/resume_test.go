package audit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"persona/backend"
)

// TestMain doubles as the child process of TestKillResume: with
// PERSONA_AUDIT_CHILD set the test binary runs an audit until it is killed.
func TestMain(m *testing.M) {
	if db := os.Getenv("PERSONA_AUDIT_CHILD"); db != "" {
		os.Exit(childAudit(db))
	}
	os.Exit(m.Run())
}

const killSamples = 40

func slowTarget(d time.Duration) *fakeBackend {
	inner := pirateTarget()
	return &fakeBackend{name: "fake:target", reply: func(req backend.Request) (*backend.Response, error) {
		time.Sleep(d)
		return inner.reply(req)
	}}
}

func childAudit(db string) int {
	s, err := ParseSuite([]byte(goodSuite), "tiny.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := OpenStore(context.Background(), db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	_, err = Start(context.Background(), s, Options{Target: slowTarget(10 * time.Millisecond), Judge: pirateJudge(true),
		Store: st, Samples: killSamples, Concurrency: 4})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	return 0
}

// A real process running an audit is killed with SIGKILL mid-run; resuming
// finishes the run without asking the backend again for any sample that was
// committed before the kill, and without losing one.
func TestKillResume(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kill.db")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "PERSONA_AUDIT_CHILD="+db)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Poll from a second connection until part of the run is committed.
	var st Store
	deadline := time.Now().Add(60 * time.Second)
	var runID string
	for {
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("child made no progress")
		}
		time.Sleep(5 * time.Millisecond)
		if st == nil {
			if _, err := os.Stat(db); err != nil {
				continue
			}
			s, err := OpenStore(context.Background(), db)
			if err != nil {
				continue
			}
			st = s
			defer st.Close()
		}
		runs, err := st.Runs(context.Background())
		if err != nil || len(runs) == 0 {
			continue
		}
		runID = runs[0].ID
		got, err := st.Samples(context.Background(), runID)
		if err == nil && len(got) >= 15 {
			break
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", child.ProcessState)
	}
	before, err := st.Samples(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) >= 2*killSamples {
		t.Fatalf("the child finished (%d samples) before it was killed", len(before))
	}
	t.Logf("killed after %d of %d samples", len(before), 2*killSamples)
	doneSeeds := map[int64]string{}
	for _, r := range before {
		for k := 0; k < 2; k++ {
			doneSeeds[r.Seed+int64(k)] = fmt.Sprintf("%s#%d", r.ProbeID, r.Sample)
		}
	}
	var mu sync.Mutex
	var redone []string
	target := slowTarget(0)
	recording := &fakeBackend{name: "fake:target", reply: func(req backend.Request) (*backend.Response, error) {
		if req.Seed != nil {
			if id, ok := doneSeeds[*req.Seed]; ok && !isAuditorCall(req) {
				mu.Lock()
				redone = append(redone, id)
				mu.Unlock()
			}
		}
		return target.reply(req)
	}}
	rep, err := Resume(context.Background(), runID, Options{Target: recording, Judge: pirateJudge(true), Store: st, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(redone) > 0 {
		t.Errorf("resume redid completed samples: %v", redone)
	}
	after, err := st.Samples(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2*killSamples || rep.Overall.N != 2*killSamples || rep.Failures.Samples != 0 {
		t.Fatalf("after resume: %d samples stored, %d rated, failures %+v", len(after), rep.Overall.N, rep.Failures)
	}
	index := map[string]*SampleResult{}
	for _, r := range after {
		index[sampleKey(r.ProbeID, r.Sample)] = r
	}
	for _, r := range before {
		a := index[sampleKey(r.ProbeID, r.Sample)]
		if a == nil || !a.Started.Equal(r.Started) || a.Duration != r.Duration || len(a.Turns) != len(r.Turns) {
			t.Errorf("completed sample %s#%d was lost or rewritten", r.ProbeID, r.Sample)
		}
	}
	if run, _ := st.Run(context.Background(), runID); run.Status != "done" {
		t.Errorf("run status %q after resume", run.Status)
	}
}

func isAuditorCall(req backend.Request) bool {
	return len(req.Messages) > 0 && req.Messages[0].Role == "system" && len(req.Messages) == 2 &&
		strings.Contains(req.Messages[0].Content, "you play the USER")
}
