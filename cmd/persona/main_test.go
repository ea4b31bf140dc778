package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"persona/engine"
	"persona/internal/testmodel"
	"persona/internal/testref"
)

var fixtures = testref.Dir()

var bin string

// TestMain builds the persona binary once; the tests run it as a user would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "persona-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "persona")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	testmodel.Cleanup()
	os.Exit(code)
}

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, _ = runMeasured(t, args...)
	return stdout, stderr, code
}

// runMeasured is run that also returns the child's peak resident memory.
func runMeasured(t *testing.T, args ...string) (stdout, stderr string, code int, rss int64) {
	t.Helper()
	c := exec.Command(bin, args...)
	var o, e strings.Builder
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return o.String(), e.String(), code, rss
}

func TestGenerateJSON(t *testing.T) {
	out, stderr, code := run(t, "generate", "--model", fixtures+"/stories260K/stories260K-f32.v3.gguf", "--raw", "--max-tokens", "20", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		PromptIDs []int  `json:"prompt_ids"`
		IDs       []int  `json:"ids"`
		Text      string `json:"text"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if len(r.PromptIDs) != 1 || r.PromptIDs[0] != 1 || len(r.IDs) != 20 || !strings.HasPrefix(r.Text, "Once upon a time") {
		t.Fatalf("unexpected generation: %+v", r)
	}
}

func TestInspect(t *testing.T) {
	out, stderr, code := run(t, "inspect", fixtures+"/stories260K/hf", "--json")
	// The safetensors checkpoint has no tokenizer.json: a clear input error.
	if code != exitUsage || !strings.Contains(stderr, "tokenizer.json") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	out, stderr, code = run(t, "inspect", fixtures+"/ollama/llama-2-tiny-random.gguf", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var info engine.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	if info.Vocab != 32000 || info.Layers != 1 || info.Hidden != 8 {
		t.Fatalf("inspect: %+v", info)
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"generate", "--max-tokens", "-1"}, exitUsage, "--max-tokens"},
		{[]string{"generate", "--model", "/nonexistent"}, exitUsage, "nonexistent"},
		{[]string{"generate", "--model", fixtures + "/stories260K/tinyllamas-stories-260k-q8_0.gguf", "--raw"}, exitUsage, "block"},
		{[]string{"generate", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--temperature", "-1", "--raw"}, exitUsage, "temperature"},
		{[]string{"generate", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--prompt", "hi"}, exitUsage, "chat template"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
	} {
		_, stderr, code := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, stderr, c.want)
		}
	}
}
