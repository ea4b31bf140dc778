package main

import (
	"encoding/json"
	"os"
	"path/filepath"
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
	if code != 0 || !strings.Contains(out, "oracle agrees with the labels on") || !strings.Contains(out, "(100.00%)") {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
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
