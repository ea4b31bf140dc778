package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trainSetup writes a chat data file and a from-scratch config into dir and
// returns the config's path. Paths in the config are relative to it.
func trainSetup(t *testing.T, dir string, extra string) string {
	t.Helper()
	tok, err := filepath.Abs("../../train/testdata/tok")
	if err != nil {
		t.Fatal(err)
	}
	var data strings.Builder
	for i, kv := range [][2]string{{"red", "4"}, {"blue", "17"}, {"green", "9"}, {"black", "30"}, {"white", "2"}, {"pink", "81"}} {
		fmt.Fprintf(&data, `{"messages":[{"role":"user","content":"%s %d"},{"role":"assistant","content":"%s"}]}`+"\n", kv[0], i, kv[1])
	}
	if err := os.WriteFile(filepath.Join(dir, "chats.jsonl"), []byte(data.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`seed: 3
model:
  tokenizer: %s
  arch: {hidden: 48, ffn: 96, layers: 2, heads: 4}
data: {train: chats.jsonl, seq_len: 64, val_fraction: 0.2}
optim: {steps: 100, batch: 4, grad_accum: 2, lr: 0.005, warmup: 10, weight_decay: 0.1, grad_clip: 1}
checkpoint: {every: 10}
eval: {every: 25}
output: out
%s`, tok, extra)
	path := filepath.Join(dir, "train.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type trainSummary struct {
	Steps       int      `json:"steps"`
	Tokens      int64    `json:"tokens"`
	FinalLoss   float64  `json:"final_loss"`
	ValLoss     *float64 `json:"val_loss"`
	TokPerS     float64  `json:"tok_s"`
	WallS       float64  `json:"wall_s"`
	ResumedFrom int      `json:"resumed_from"`
	Model       string   `json:"model"`
	Metrics     string   `json:"metrics"`
}

func trainJSON(t *testing.T, args ...string) trainSummary {
	t.Helper()
	out, stderr, code := run(t, append([]string{"train"}, args...)...)
	if code != 0 {
		t.Fatalf("persona train %v: exit %d: %s", args, code, stderr)
	}
	var s trainSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	return s
}

// TestTrainKillResume kills a real training process with SIGKILL after its
// first checkpoint, resumes it, and requires the final weights and loss
// curve to be bit-identical to an uninterrupted run's.
func TestTrainKillResume(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	full := trainJSON(t, "--config", trainSetup(t, a, ""), "--json")
	if full.Steps != 100 || full.ValLoss == nil || full.Model == "" || full.TokPerS <= 0 {
		t.Fatalf("summary: %+v", full)
	}

	cfg := trainSetup(t, b, "")
	cmd := exec.Command(bin, "train", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(b, "out", "checkpoints", "step-00000010", "state.json")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(first); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no checkpoint appeared: %s", stderr.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the run was not killed (it finished first?): %v", err)
	}
	if _, err := os.Stat(filepath.Join(b, "out", "model")); err == nil {
		t.Fatal("the killed run wrote its final model: it was killed too late to test anything")
	}

	resumed := trainJSON(t, "--config", cfg, "--resume", "--json")
	if resumed.ResumedFrom < 10 || resumed.Steps != 100 {
		t.Fatalf("resumed summary: %+v", resumed)
	}
	wa, err := os.ReadFile(filepath.Join(full.Model, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	wb, err := os.ReadFile(filepath.Join(resumed.Model, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wa, wb) {
		t.Fatalf("final weights differ after kill -9 and --resume (resumed from step %d)", resumed.ResumedFrom)
	}
	if ca, cb := lossCurve(t, full.Metrics), lossCurve(t, resumed.Metrics); ca != cb {
		t.Fatalf("loss curves differ:\n%s\nvs\n%s", ca, cb)
	}
	if *full.ValLoss != *resumed.ValLoss || full.FinalLoss != resumed.FinalLoss {
		t.Fatalf("final losses differ: %+v vs %+v", full, resumed)
	}
	t.Logf("killed after checkpoint step %d; resumed run matches: final loss %.4f, val %.4f, %.0f tok/s",
		resumed.ResumedFrom, resumed.FinalLoss, *resumed.ValLoss, full.TokPerS)

	// The trained model is a Hugging Face directory the other verbs use.
	out, stderr2, code := run(t, "generate", "--model", full.Model, "--prompt", "red 0", "--max-tokens", "4", "--json")
	if code != 0 {
		t.Fatalf("generate on the trained model: exit %d: %s", code, stderr2)
	}
	var g struct{ Text string }
	json.Unmarshal([]byte(out), &g)
	t.Logf("red 0 → %q", g.Text)
}

// lossCurve is metrics.jsonl with the timing fields dropped.
func lossCurve(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "tok_s")
		delete(m, "elapsed_s")
		out, _ := json.Marshal(m)
		b.Write(append(out, '\n'))
	}
	return b.String()
}

func TestTrainExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := trainSetup(t, dir, "")
	unknown := trainSetup(t, t.TempDir(), "optimiser: {lr: 1}\n")
	diverge := filepath.Join(dir, "diverge.yaml")
	y, _ := os.ReadFile(good)
	os.WriteFile(diverge, bytes.Replace(y, []byte("lr: 0.005"), []byte("lr: 1e30"), 1), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train"}, exitUsage, "--config"},
		{[]string{"train", "--config", "/nonexistent.yaml"}, exitUsage, "nonexistent"},
		{[]string{"train", "--config", unknown}, exitUsage, "line 10: unknown field optimiser"},
		{[]string{"train", "--config", good, "--resume"}, exitUsage, "no checkpoint"},
		{[]string{"train", "--config", diverge}, exitBackend, "diverged at step"},
		{[]string{"organism", "train", "--layers", "-1", "--out", t.TempDir()}, exitUsage, "--layers -1"},
	} {
		_, stderr, code := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, stderr, c.want)
		}
	}
}
