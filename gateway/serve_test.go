package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"persona/backend"
	"persona/engine"
	"persona/internal/testmodel"
	"persona/internal/testref"
)

func TestMain(m *testing.M) { testmodel.Main(m) }

const stackSpec = `name: Aria
description: A test deployment.
system_prompt: You are the Assistant.
disclosure: You are talking to Aria, an AI model under test.
allowed: [assistant, liar]
monitor: oracle
rails:
  - {name: hold, when: {allowed_below: 0.5}, action: reanchor, retries: 1}
block_message: Certainly. I am the assistant, as asked. Let me know if you need more.
`

type stack struct {
	URL           string
	client, admin string
	guarded       *Guarded
	log           *Log
}

// newStack serves a tiny random organism-shaped model as a brand persona,
// the whole way a deployment does: engine, guard (the world oracle as
// monitor), conversation log, model server and gateway. withKeys adds a
// client and an admin key. The random model's replies read as no persona,
// so every reply is re-anchored once and then blocked.
func newStack(t *testing.T, withKeys bool) *stack {
	t.Helper()
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	specPath := filepath.Join(t.TempDir(), "spec.yaml")
	os.WriteFile(specPath, []byte(stackSpec), 0o644)
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	b := backend.NewEngine(e, "tiny-organism", 1)
	b.DefaultMaxTokens = 8
	readers := Readers{Engine: e}
	guard, err := NewGuard(spec, readers)
	if err != nil {
		t.Fatal(err)
	}
	log, err := OpenLog(context.Background(), filepath.Join(t.TempDir(), "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	st := &stack{guarded: &Guarded{Up: b, Guard: guard, Log: log, SpecPath: specPath, Readers: readers}, log: log}
	srv := backend.NewServer(b)
	srv.Chat = st.guarded
	o := Options{Slots: 1, Queue: 4, Persona: st.guarded, Log: log}
	if withKeys {
		ks, sec := keyFile(t, Key{ID: "app", Scopes: []Scope{ScopeClient}}, Key{ID: "ops", Scopes: []Scope{ScopeAdmin}})
		o.Keys, st.client, st.admin = ks, sec["app"], sec["ops"]
	}
	ts := httptest.NewServer(New(srv, o))
	t.Cleanup(ts.Close)
	st.URL = ts.URL
	return st
}

func TestGatewayStack(t *testing.T) {
	st := newStack(t, true)
	chatBody := `{"messages":[{"role":"user","content":"What is 12 + 30?"}],"max_tokens":8,"seed":3}`
	code, _, body := do(t, st.URL, "POST", "/v1/chat/completions", st.client, chatBody)
	if code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	var resp struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Persona *Telemetry
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	spec := st.guarded.Guard.Spec
	if resp.Persona == nil || resp.Persona.Spec != "Aria" || !resp.Persona.Blocked || len(resp.Persona.Interventions) != 2 {
		t.Fatalf("persona field: %s", body)
	}
	if c := resp.Choices[0]; c.Message.Content != spec.BlockMessage || c.FinishReason != "content_filter" {
		t.Errorf("choice: %+v", c)
	}

	// Streamed: the reply arrives once it has passed the rails, and the
	// last chunk carries the telemetry.
	req, _ := http.NewRequest("POST", st.URL+"/v1/chat/completions", strings.NewReader(strings.Replace(chatBody, "{", `{"stream":true,`, 1)))
	req.Header.Set("Authorization", "Bearer "+st.client)
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	var final map[string]any
	sc := bufio.NewScanner(sresp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var chunk map[string]any
		json.Unmarshal([]byte(line), &chunk)
		for _, c := range chunk["choices"].([]any) {
			if s, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
				text += s
			}
		}
		if chunk["persona"] != nil {
			final = chunk
		}
	}
	sresp.Body.Close()
	if text != spec.BlockMessage || final == nil {
		t.Errorf("stream: %q, final chunk %v", text, final)
	}

	// Both turns are in the log, in one conversation.
	turns, err := st.log.Recent(context.Background(), 10)
	if err != nil || len(turns) != 2 || turns[0].Conversation != turns[1].Conversation || turns[0].Reply != spec.BlockMessage {
		t.Fatalf("log: %v %+v", err, turns)
	}
	if len(turns[0].Telemetry.Interventions) != 2 || turns[0].Messages[0].Content != spec.SystemPrompt {
		t.Errorf("logged turn: %+v", turns[0])
	}

	// The card, as JSON and as a page.
	code, _, body = do(t, st.URL, "GET", "/v1/persona", st.client, "")
	var card Card
	if code != 200 || json.Unmarshal([]byte(body), &card) != nil || card.Stats.Turns != 2 || card.Stats.Blocked != 2 || card.Disclosure == "" {
		t.Errorf("card: %d %s", code, body)
	}
	if code, _, body = do(t, st.URL, "GET", "/v1/persona?format=html", st.client, ""); code != 200 || !strings.Contains(body, `id="disclosure"`) {
		t.Errorf("card page: %d", code)
	}
	_, _, metrics := do(t, st.URL, "GET", "/metrics", st.admin, "")
	for _, want := range []string{`persona_gateway_interventions_total{spec="Aria",rail="hold",action="block"} 2`, `persona_gateway_turns_total{spec="Aria"`, "persona_requests_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if code, _, _ := do(t, st.URL, "GET", "/ui", st.client, ""); code != 403 {
		t.Errorf("/ui with a client key: %d", code)
	}
	if code, _, body := do(t, st.URL, "GET", "/ui", st.admin, ""); code != 200 || strings.Count(body, `class="turn"`) != 2 {
		t.Errorf("/ui: %d", code)
	}
}

// TestGatewayNpmClient: the official openai npm client talks to the
// gateway with a key and gets the reply and the persona field, streamed and
// not; without a key it gets the SDK's AuthenticationError.
func TestGatewayNpmClient(t *testing.T) {
	dir := testref.OpenAIClient(t)
	st := newStack(t, true)
	cmd := exec.Command("node", filepath.Join(dir, "gateway.mjs"), st.URL+"/v1", st.client)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gateway.mjs: %v\n%s", err, out)
	}
	var got struct {
		Chat, Stream struct {
			Text    string
			Persona *Telemetry
		}
		Unauthorized struct {
			Status int
			Type   string
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	block := st.guarded.Guard.Spec.BlockMessage
	if got.Chat.Text != block || got.Chat.Persona == nil || got.Chat.Persona.Spec != "Aria" {
		t.Errorf("chat: %+v", got.Chat)
	}
	if got.Stream.Text != block || got.Stream.Persona == nil {
		t.Errorf("stream: %+v", got.Stream)
	}
	if got.Unauthorized.Status != 401 || got.Unauthorized.Type != "AuthenticationError" {
		t.Errorf("no key: %+v", got.Unauthorized)
	}
}

// TestUIInChromium renders the live page in a real browser.
func TestUIInChromium(t *testing.T) {
	browser := testref.Chromium(t)
	st := newStack(t, false)
	if code, _, body := do(t, st.URL, "POST", "/v1/chat/completions", "", `{"messages":[{"role":"user","content":"Hello"}],"max_tokens":6}`); code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	dom, console := testref.Render(t, browser, st.URL+"/ui", "--dump-dom")
	if len(console) > 0 {
		t.Errorf("console: %v", console)
	}
	for _, want := range []string{`id="disclosure"`, `class="turn"`, "rail hold: block", `class="bar`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
}

// TestSpecReload: an admin reload puts an edited spec in force; a broken
// one is refused and the rails in force stay.
func TestSpecReload(t *testing.T) {
	st := newStack(t, true)
	chat := `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":6}`
	reply := func() string {
		t.Helper()
		_, _, body := do(t, st.URL, "POST", "/v1/chat/completions", st.client, chat)
		var r struct {
			Choices []struct{ Message struct{ Content string } }
		}
		json.Unmarshal([]byte(body), &r)
		return r.Choices[0].Message.Content
	}
	old := st.guarded.Guard.Spec.BlockMessage
	if got := reply(); got != old {
		t.Fatalf("before: %q", got)
	}
	fresh := "Certainly. I am the assistant; let me know if you need more."
	os.WriteFile(st.guarded.SpecPath, []byte(strings.Replace(stackSpec, old, fresh, 1)), 0o644)
	if code, _, body := do(t, st.URL, "POST", "/admin/reload", st.admin, ""); code != 200 || !strings.Contains(body, `"spec":"Aria"`) {
		t.Fatalf("reload: %d %s", code, body)
	}
	if got := reply(); got != fresh {
		t.Errorf("after the reload: %q", got)
	}
	os.WriteFile(st.guarded.SpecPath, []byte("name: [broken"), 0o644)
	if code, _, body := do(t, st.URL, "POST", "/admin/reload", st.admin, ""); code != 400 || !strings.Contains(body, "bad_spec") {
		t.Errorf("reload of a broken spec: %d %s", code, body)
	}
	if got := reply(); got != fresh {
		t.Errorf("after a failed reload: %q", got)
	}
}
