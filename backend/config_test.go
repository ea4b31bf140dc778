package backend

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `backends:
  - name: fleet
    kind: openai
    model: Qwen/Qwen3-8B
    endpoints:
      - http://gpu1:8000/v1
      - http://gpu2:8000/v1
    api_key_env: VLLM_API_KEY
    max_concurrency: 32
    timeout: 90s
    retries: 5
    record: fleet.jsonl
  - name: claude
    kind: anthropic
    model: claude-sonnet-4-5
    api_key_env: ANTHROPIC_API_KEY
  - name: local
    kind: engine
    model: models/organism
  - name: ci
    kind: replay
    replay: testdata/fleet.jsonl
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig), "backends.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := cfg.Backend("fleet")
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Policy(); p.MaxConcurrency != 32 || p.Timeout != 90*time.Second || p.Retries != 5 || len(f.Endpoints) != 2 {
		t.Errorf("fleet: %+v policy %+v", f, p)
	}
	c, _ := cfg.Backend("claude")
	if p := c.Policy(); p.MaxConcurrency != DefaultAPIConcurrency || p.Timeout != DefaultAPITimeout || p.Retries != DefaultAPIRetries {
		t.Errorf("claude defaults: %+v", p)
	}
	l, _ := cfg.Backend("local")
	if p := l.Policy(); p.Retries != 0 || p.Timeout != 0 {
		t.Errorf("engine defaults: %+v", p)
	}
	if _, err := cfg.Backend("nope"); err == nil || !strings.Contains(err.Error(), "fleet, claude, local, ci") {
		t.Errorf("unknown backend: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"", "cfg.yaml: empty file"},
		{"backends: []\n", "cfg.yaml:1: backends: no backends"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n    colour: red\n", "cfg.yaml:5: field colour not found"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n    timeout: soon\n", "cfg.yaml:5"},
		{"backends:\n  - name: a\n    kind: grpc\n    model: m\n", "cfg.yaml:3: backends[0].kind: \"grpc\" is not one of"},
		{"backends:\n  - name: a\n    kind: openai\n", "cfg.yaml:2: backends[0].model: required"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n  - name: a\n    kind: openai\n    model: m\n", "cfg.yaml:5: backends[1].name: \"a\" is already"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n    base_url: ftp://x\n", "cfg.yaml:5: backends[0].base_url"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n    base_url: http://x\n    endpoints: [http://y]\n", "cfg.yaml:6: backends[0].endpoints: set either"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n    endpoints: [http://ok, 'http://u:p@y']\n", "backends[0].endpoints[1]: credentials"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n    retries: -1\n", "cfg.yaml:5: backends[0].retries"},
		{"backends:\n  - name: a\n    kind: engine\n    model: m\n    api_key_env: K\n", "backends[0].api_key_env: not used by kind engine"},
		{"backends:\n  - name: a\n    kind: replay\n", "backends[0].replay: required"},
		{"backends:\n  - name: a\n    kind: openai\n    model: m\n---\nbackends: []\n", "more than one YAML document"},
		{"backends:\n  - name: 'a b'\n    kind: openai\n    model: m\n", "cfg.yaml:2: backends[0].name"},
	} {
		_, err := ParseConfig([]byte(c.yaml), "cfg.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}

// TestConfigKeyNotEchoed: a key pasted where the variable's name belongs is
// rejected without being repeated in the error.
func TestConfigKeyNotEchoed(t *testing.T) {
	const key = "sk-proj-AbCdEf0123456789"
	_, err := ParseConfig([]byte("backends:\n  - name: a\n    kind: openai\n    model: m\n    api_key_env: "+key+"\n"), "cfg.yaml")
	if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "cfg.yaml:5") {
		t.Errorf("error %v", err)
	}
}

// TestConfigOpen builds backends from a file: an OpenAI entry pointed at
// our server, and a replay entry, with paths relative to the file.
func TestConfigOpen(t *testing.T) {
	ts, _ := startServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "backends.yaml")
	os.WriteFile(file, []byte(`backends:
  - name: serve
    kind: openai
    model: tiny-qwen3
    base_url: `+ts.URL+`/v1
    record: rec.jsonl
  - name: again
    kind: replay
    replay: rec.jsonl
`), 0o644)
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := cfg.Backend("serve")
	b, closer, err := bc.Open()
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Messages: testChat, MaxTokens: 4, Seed: seed(2)}
	resp, err := b.Chat(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	closer.Close()
	rc, _ := cfg.Backend("again")
	rb, _, err := rc.Open()
	if err != nil {
		t.Fatal(err)
	}
	again, err := rb.Chat(context.Background(), req)
	if err != nil || again.Content != resp.Content {
		t.Fatalf("replayed %v %v, recorded %q", again, err, resp.Content)
	}
	t.Setenv("PERSONA_TEST_UNSET", "")
	cfg, _ = ParseConfig([]byte("backends:\n  - name: x\n    kind: openai\n    model: m\n    api_key_env: PERSONA_TEST_UNSET\n"), "k.yaml")
	if _, _, err := cfg.Backends[0].Open(); err == nil || !strings.Contains(err.Error(), "k.yaml:2: x.api_key_env: environment variable PERSONA_TEST_UNSET") {
		t.Errorf("unset key: %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(goodConfig)
	f.Add("backends:\n  - {name: a, kind: openai, model: m, timeout: 1s}\n")
	f.Add("backends: [1, 2]")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseConfig([]byte(s), "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, b := range cfg.Backends {
			if b.Name == "" || b.Kind == "" {
				t.Fatalf("accepted an entry without name or kind: %+v", b)
			}
		}
	})
}
