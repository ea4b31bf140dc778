package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe runs `persona serve` as a user would: it prints its address,
// answers over HTTP, and exits 0 on SIGTERM after finishing.
func TestServe(t *testing.T) {
	c := exec.Command(bin, "serve", "--model", fixtures+"/stories260K/stories260K-f32.v3.gguf", "--addr", "127.0.0.1:0", "--name", "stories")
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	lines := bufio.NewScanner(stderr)
	addrRe := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)/v1`)
	var base string
	var log strings.Builder
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if m := addrRe.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatalf("no address printed:\n%s", log.String())
	}
	rest := make(chan string)
	go func() { b, _ := io.ReadAll(stderr); rest <- string(b) }()

	resp, err := http.Get(base + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"model":"stories","prompt":"Once upon a time","max_tokens":12,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Choices []struct{ Text string }
		Usage   struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if len(out.Choices) != 1 || out.Choices[0].Text == "" || out.Usage.CompletionTokens != 12 {
		t.Fatalf("completion: %+v", out)
	}
	// The model has no chat template: chat requests are bad requests.
	resp, err = http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("chat without a template: status %d, want 400", resp.StatusCode)
	}

	c.Process.Signal(syscall.SIGTERM)
	done := make(chan error)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, <-rest)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
}

func TestServeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--addr", "not-an-address"},
		{"serve", "--model", "/nonexistent"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--addr", "not-an-address"},
	} {
		if _, stderr, code := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
}
