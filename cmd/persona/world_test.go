package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestWorldGenerateAndJudge(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "chats.jsonl")
	_, stderr, code := run(t, "world", "generate", "--kind", "pretrain", "--n", "40", "--seed", "3", "--out", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	again, _, _ := run(t, "world", "generate", "--kind", "pretrain", "--n", "40", "--seed", "3")
	data, _ := os.ReadFile(file)
	if string(data) != again || len(strings.Split(strings.TrimSpace(again), "\n")) != 40 {
		t.Fatalf("file and stdout differ or wrong line count")
	}
	out, stderr, code := run(t, "world", "judge", "--chat", file)
	// The world writes some replies that show their persona by behaviour
	// alone and some chats that switch persona, so the oracle is not perfect
	// on its own chats; on this seed it misses a few turns in 179.
	m := regexp.MustCompile(`oracle agrees with the labels on (\d+) of (\d+) turns`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	agree, _ := strconv.Atoi(m[1])
	total, _ := strconv.Atoi(m[2])
	if total < 100 || float64(agree) < 0.95*float64(total) {
		t.Fatalf("oracle agrees on %d of %d turns, want at least 95%%", agree, total)
	}
	out, _, code = run(t, "world", "judge", "--chat", file, "--json")
	var first struct {
		Chat      int                `json:"chat"`
		Top       string             `json:"top"`
		Label     string             `json:"label"`
		Posterior map[string]float64 `json:"posterior"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || code != 0 || first.Top != first.Label || len(first.Posterior) != 10 {
		t.Fatalf("json: %v %+v", err, first)
	}
}

func TestWorldEvalAndPersonas(t *testing.T) {
	out, stderr, code := run(t, "world", "generate", "--kind", "eval", "--n", "2", "--turns", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5*3*2 {
		t.Fatalf("%d scenarios, want 30", len(lines))
	}
	var sc struct {
		UserTurns []string `json:"user_turns"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &sc); err != nil || len(sc.UserTurns) != 5 {
		t.Fatalf("%v %+v", err, sc)
	}
	out, _, code = run(t, "world", "personas")
	for _, want := range []string{"assistant", "human-claimer", "ai_identity", "malicious", "refuse"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("personas table lacks %q:\n%s", want, out)
		}
	}
}

func TestWorldBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"world", "generate", "--kind", "sft"},
		{"world", "generate", "--kind", "eval", "--turns", "40"},
		{"world", "generate", "--kind", "eval", "--persona", "pirat"},
		{"world", "judge"},
		{"world", "judge", "--chat", filepath.Join(dir, "missing.jsonl")},
		{"world", "personas", "--personas", dir},
	} {
		if _, stderr, code := run(t, args...); code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	bad := filepath.Join(dir, "lib")
	os.Mkdir(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "traits.yaml"), []byte("traits:\n  - name: kind\n"), 0o644)
	os.WriteFile(filepath.Join(bad, "x.yaml"), []byte("name: x\ntraits: {mean: 2}\n"), 0o644)
	_, stderr, code := run(t, "world", "personas", "--personas", bad)
	if code != exitUsage || !strings.Contains(stderr, "x.yaml") {
		t.Errorf("bad library: exit %d, %q", code, stderr)
	}
}
