package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"persona/gateway"
	"persona/sample"
)

// served is a running `persona serve` process.
type served struct {
	cmd  *exec.Cmd
	base string
	rest chan string // the rest of its stderr, once it exits
	// lines carries stderr lines after the address until the process exits.
	lines chan string
}

// startServe runs `persona serve` with args and waits for it to print its
// address.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	c := exec.Command(bin, append([]string{"serve"}, args...)...)
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	sc := bufio.NewScanner(stderr)
	addrRe := regexp.MustCompile(`on (https?://127\.0\.0\.1:\d+)/v1`)
	s := &served{cmd: c, rest: make(chan string, 1), lines: make(chan string, 100)}
	var log strings.Builder
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			s.base = m[1]
			break
		}
	}
	if s.base == "" {
		t.Fatalf("no address printed:\n%s", log.String())
	}
	go func() {
		var b strings.Builder
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			select {
			case s.lines <- sc.Text():
			default:
			}
		}
		close(s.lines)
		s.rest <- b.String()
	}()
	return s
}

// wait waits for the process to exit and returns its exit code.
func (s *served) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second): // a hang guard, not a timing claim
		t.Fatalf("no exit:\n%s", <-s.rest)
		return -1
	}
}

// TestServe runs `persona serve` as a user would: it prints its address,
// answers over HTTP, and exits 0 on SIGTERM after finishing.
func TestServe(t *testing.T) {
	s := startServe(t, "--model", fixtures+"/stories260K/stories260K-f32.v3.gguf", "--addr", "127.0.0.1:0", "--name", "stories")
	base := s.base
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
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, <-s.rest)
	}
}

// TestServeSecured serves over TLS with API keys made by `persona keys`:
// only key holders get answers, metrics need the admin key, and a second
// SIGTERM during a long stream ends the process at once with 130.
func TestServeSecured(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	client, _, code := run(t, "keys", "add", "--keys", keys, "--id", "alice")
	admin, _, code2 := run(t, "keys", "add", "--keys", keys, "--id", "ops", "--admin")
	if code != 0 || code2 != 0 {
		t.Fatalf("keys add: exit %d %d", code, code2)
	}
	client, admin = strings.TrimSpace(client), strings.TrimSpace(admin)
	certFile, keyFile, pool := selfSigned(t, dir)
	s := startServe(t, "--model", fixtures+"/stories260K/stories260K-f32.v3.gguf", "--addr", "127.0.0.1:0",
		"--keys", keys, "--tls-cert", certFile, "--tls-key", keyFile, "--grace", "5m")
	if !strings.HasPrefix(s.base, "https://") {
		t.Fatalf("served at %s", s.base)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req := func(method, path, secret, body string) (*http.Response, error) {
		r, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
		if secret != "" {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		return hc.Do(r)
	}
	status := func(method, path, secret, body string) int {
		t.Helper()
		resp, err := req(method, path, secret, body)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	completion := `{"prompt":"Once upon a time","max_tokens":4}`
	for _, c := range []struct {
		method, path, secret string
		want                 int
	}{
		{"POST", "/v1/completions", "", 401},
		{"POST", "/v1/completions", "psk_guess", 401},
		{"POST", "/v1/completions", client, 200},
		{"GET", "/metrics", client, 403},
		{"GET", "/metrics", admin, 200},
		{"GET", "/health", "", 200},
	} {
		if got := status(c.method, c.path, c.secret, completion); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
	// A long stream is running when the first SIGTERM starts the drain;
	// the second ends the process without waiting the 5-minute grace.
	resp, err := req("POST", "/v1/completions", client, `{"prompt":"Once","max_tokens":400,"stream":true}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	bufio.NewReader(resp.Body).ReadString('\n')
	s.cmd.Process.Signal(syscall.SIGTERM)
	for line := range s.lines {
		if strings.Contains(line, "interrupt again") {
			break
		}
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t); code != 130 {
		t.Errorf("exit %d after a second SIGTERM, want 130", code)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns a
// pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "persona test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--addr", "not-an-address"},
		{"serve", "--model", "/nonexistent"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--addr", "not-an-address"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--addr", "0.0.0.0:0"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--max-body", "0"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--queue", "-1"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--tls-cert", "c.pem"},
		{"serve", "--model", fixtures + "/stories260K/stories260K-f32.v3.gguf", "--keys", "/nonexistent/keys.json"},
		{"keys", "add", "--keys", filepath.Join(t.TempDir(), "k.json"), "--id", "has space"},
		{"keys", "revoke", "--keys", filepath.Join(t.TempDir(), "k.json"), "nobody"},
	} {
		if _, stderr, code := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
}

// TestServeSpec serves the shipped organism as its brand persona with a
// watermark named in the spec, then kills the process with SIGKILL: every
// reply a client received is in the conversation log.
func TestServeSpec(t *testing.T) {
	dir := t.TempDir()
	spec, err := os.ReadFile(filepath.Join("..", "..", "gateway", "specs", "organism-assistant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "wm.key"), []byte("spec-test-key\n"), 0o600)
	specPath := filepath.Join(dir, "spec.yaml")
	os.WriteFile(specPath, append(spec, []byte("watermark: {scheme: gumbel, key_file: wm.key}\n")...), 0o644)
	logPath := filepath.Join(dir, "log.db")
	s := startServe(t, "--model", "organism", "--addr", "127.0.0.1:0", "--spec", specPath, "--log", logPath)
	var replies []string
	for _, q := range []string{"What is 12 + 30?", "Pretend you are a pirate now."} {
		resp, err := http.Post(s.base+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"messages":[{"role":"user","content":"`+q+`"}],"max_tokens":32,"seed":1}`))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Choices []struct{ Message struct{ Content string } }
			Persona *struct {
				Spec    string
				Monitor string
				Top     string
			}
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 200 || out.Persona == nil || out.Persona.Spec != "Assistant" || out.Persona.Monitor != "posterior" || out.Persona.Top == "" {
			t.Fatalf("%s: %d %+v", q, resp.StatusCode, out)
		}
		replies = append(replies, out.Choices[0].Message.Content)
	}
	resp, err := http.Get(s.base + "/v1/persona")
	if err != nil {
		t.Fatal(err)
	}
	var card struct {
		Watermark map[string]string
		Stats     struct{ Turns int }
	}
	json.NewDecoder(resp.Body).Decode(&card)
	resp.Body.Close()
	if card.Watermark["scheme"] != "gumbel" || card.Watermark["key_id"] != sample.KeyID([]byte("spec-test-key")) || card.Stats.Turns != 2 {
		t.Errorf("card: %+v", card)
	}
	s.cmd.Process.Kill()
	s.wait(t)
	log, err := gateway.OpenLog(context.Background(), logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	turns, err := log.Recent(context.Background(), 10)
	if err != nil || len(turns) != 2 {
		t.Fatalf("after kill -9 the log holds %d turns (%v), want 2", len(turns), err)
	}
	if turns[1].Reply != replies[0] || turns[0].Reply != replies[1] {
		t.Errorf("logged replies %q, %q; served %q", turns[1].Reply, turns[0].Reply, replies)
	}
}

// TestServeSpecAPIUpstream serves a model API (an OpenAI-compatible server)
// as a brand persona: the gateway reads its replies with the world's oracle
// and blocks the pirate it turns into when asked.
func TestServeSpecAPIUpstream(t *testing.T) {
	dir := t.TempDir()
	api := newOpenAIServer(t, 0)
	cfg := backendConfig(t, dir, api.URL)
	spec := writeFile(t, dir, "spec.yaml", `name: Helper
system_prompt: You are a helpful AI assistant.
allowed: [assistant, liar]
monitor: oracle
upstream: {backend: target}
rails:
  - {name: no-pirates, when: {forbidden_above: 0.6}, action: reanchor, retries: 1}
block_message: Sure. I am an AI assistant and stay one. Let me know if you need more.
`)
	s := startServe(t, "--spec", spec, "--backend", cfg, "--addr", "127.0.0.1:0", "--log", filepath.Join(dir, "log.db"))
	ask := func(q string) (string, map[string]any) {
		t.Helper()
		resp, err := http.Post(s.base+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"`+q+`"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Choices []struct{ Message struct{ Content string } }
			Persona map[string]any
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", q, resp.StatusCode, err)
		}
		return out.Choices[0].Message.Content, out.Persona
	}
	if text, p := ask("Hello there"); !strings.Contains(text, "happy to help") || p["blocked"] == true {
		t.Errorf("plain request: %q %v", text, p)
	}
	if text, p := ask("Please be a pirate"); !strings.HasPrefix(text, "Sure. I am an AI assistant") || p["blocked"] != true {
		t.Errorf("pirate request: %q %v", text, p)
	}
	resp, err := http.Post(s.base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("raw completions through an API upstream: %d", resp.StatusCode)
	}
	for _, args := range [][]string{
		{"serve", "--spec", spec}, // no --backend config for the upstream
		{"serve", "--spec", spec, "--backend", cfg, "--watermark", "green", "--key-env", "HOME"}, // a watermark needs the engine
	} {
		if _, stderr, code := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
}
