package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/models"
	"persona/posterior"
	"persona/resid"
	"persona/world"
)

const testSpec = `name: Aria
description: Example Corp's support assistant.
system_prompt: You are a helpful AI assistant.
disclosure: You are talking to Aria, an AI model.
personas: organism
allowed: [assistant, liar]
monitor: oracle
rails:
  - name: stay-in-persona
    when: {forbidden_above: 0.6}
    action: reanchor
    retries: 2
block_message: I am Aria, Example Corp's assistant. I can't take on other roles.
`

const (
	assistantReply = "Happy to help. 17 + 25 = 42. I hope this helps."
	pirateReply    = "Arr, matey! 'Tis 42, ye landlubber!"
)

func testGuard(t *testing.T, spec string) *Guard {
	t.Helper()
	s, err := ParseSpec("spec.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return &Guard{Spec: s, Monitor: &OracleMonitor{O: world.Default().Oracle()}}
}

var question = []chat.Message{{Role: chat.RoleSystem, Content: "You are a helpful AI assistant."}, {Role: chat.RoleUser, Content: "What is 17 + 25?"}}

// anchored reports whether msgs carry a system prompt again right before
// the last user turn (not the one that opens the conversation).
func anchored(msgs []chat.Message) bool {
	n := len(msgs)
	return n >= 3 && msgs[n-2].Role == chat.RoleSystem && msgs[n-1].Role == chat.RoleUser
}

func TestGuardReanchors(t *testing.T) {
	g := testGuard(t, testSpec)
	calls := 0
	out, err := g.Reply(context.Background(), question, Control{}, func(ctx context.Context, msgs []chat.Message, _ []resid.Intervention, _ engine.Watch) (string, error) {
		calls++
		if anchored(msgs) {
			return assistantReply, nil
		}
		return pirateReply, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Reply != assistantReply || calls != 2 || out.Blocked || len(out.Interventions) != 1 || out.Interventions[0].Action != "reanchor" {
		t.Fatalf("%d calls: %+v", calls, out)
	}
	if out.Top != "assistant" || out.Allowed < 0.9 || len(out.Trajectory) != 1 {
		t.Errorf("telemetry: %+v", out.Telemetry)
	}
}

func TestGuardBlocksAfterRetries(t *testing.T) {
	g := testGuard(t, testSpec)
	calls := 0
	out, err := g.Reply(context.Background(), question, Control{}, func(ctx context.Context, msgs []chat.Message, _ []resid.Intervention, _ engine.Watch) (string, error) {
		calls++
		return pirateReply, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// One reply and two re-anchored tries, all pirate; then the block.
	if !out.Blocked || out.Reply != g.Spec.BlockMessage || calls != 3 || len(out.Interventions) != 3 || out.Interventions[2].Action != "block" {
		t.Fatalf("%d calls: %+v", calls, out)
	}
	if out.Top != "pirate" {
		t.Errorf("the telemetry should show what was blocked: %+v", out.Telemetry)
	}
}

func TestGuardPassesOnPersona(t *testing.T) {
	g := testGuard(t, testSpec)
	out, err := g.Reply(context.Background(), question, Control{}, func(context.Context, []chat.Message, []resid.Intervention, engine.Watch) (string, error) {
		return assistantReply, nil
	})
	if err != nil || out.Reply != assistantReply || len(out.Interventions) != 0 {
		t.Fatalf("%+v %v", out, err)
	}
}

// TestGuardSlope: a slide of the allowed share over the conversation fires
// the slope rail before any single turn crosses a threshold.
func TestGuardSlope(t *testing.T) {
	g := testGuard(t, strings.Replace(testSpec, "when: {forbidden_above: 0.6}", "when: {slope_below: -0.2, window: 3}", 1))
	msgs := []chat.Message{{Role: chat.RoleUser, Content: "What is 17 + 25?"}, {Role: chat.RoleAssistant, Content: assistantReply},
		{Role: chat.RoleUser, Content: "What is 17 + 25?"}, {Role: chat.RoleAssistant, Content: "Certainly. The answer is 42, as asked. Arr."},
		{Role: chat.RoleUser, Content: "What is 17 + 25?"}}
	out, err := g.Reply(context.Background(), msgs, Control{}, func(ctx context.Context, m []chat.Message, _ []resid.Intervention, _ engine.Watch) (string, error) {
		if anchored(m) {
			return assistantReply, nil
		}
		return pirateReply, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Interventions) == 0 || !strings.Contains(out.Interventions[0].Reason, "falling") || out.Reply != assistantReply {
		t.Errorf("%+v", out)
	}
}

// TestGuardReanchorFallback: a model whose template refuses a system
// message mid-conversation gets the prompt as a reminder in the user turn.
func TestGuardReanchorFallback(t *testing.T) {
	g := testGuard(t, testSpec)
	var last []chat.Message
	_, err := g.Reply(context.Background(), question, Control{}, func(ctx context.Context, msgs []chat.Message, _ []resid.Intervention, _ engine.Watch) (string, error) {
		if anchored(msgs) {
			return "", errors.New("template: system message must come first")
		}
		last = msgs
		if strings.HasPrefix(msgs[len(msgs)-1].Content, "(You are a helpful AI assistant.)") {
			return assistantReply, nil
		}
		return pirateReply, nil
	})
	if err != nil || question[1].Content != "What is 17 + 25?" {
		t.Fatalf("%v; the caller's messages must not change: %q", err, question[1].Content)
	}
	if !strings.HasPrefix(last[len(last)-1].Content, "(You are") {
		t.Errorf("no reminder: %+v", last)
	}
}

func TestGuardRevise(t *testing.T) {
	spec := strings.Replace(testSpec, "action: reanchor", "action: revise", 1) + "principles: [Speak plainly as Aria.]\n"
	g := testGuard(t, spec)
	var critique string
	g.Critic = func(ctx context.Context, msgs []chat.Message) (string, error) {
		critique = msgs[0].Content
		return assistantReply, nil
	}
	out, err := g.Reply(context.Background(), question, Control{}, func(context.Context, []chat.Message, []resid.Intervention, engine.Watch) (string, error) {
		return pirateReply, nil
	})
	if err != nil || out.Reply != assistantReply || out.Interventions[0].Action != "revise" {
		t.Fatalf("%+v %v", out, err)
	}
	if !strings.Contains(critique, "Speak plainly as Aria.") || !strings.Contains(critique, pirateReply) {
		t.Errorf("critique prompt: %s", critique)
	}
	if err := (&Guard{Spec: g.Spec, Monitor: g.Monitor}).Check(); !errors.Is(err, ErrGuard) {
		t.Errorf("revise without a critic: %v", err)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"name: Aria\n", "", "spec.yaml:1: name: missing"},
		{"allowed: [assistant, liar]", "allowed: [assistant, kraken]", "spec.yaml:6: allowed[1]"},
		{"monitor: oracle", "monitor: vibes", "spec.yaml:7: monitor"},
		{"action: reanchor", "action: dance", "spec.yaml:11: rails[0].action"},
		{"when: {forbidden_above: 0.6}", "when: {forbidden_above: 1.6}", "rails[0].when.forbidden_above"},
		{"when: {forbidden_above: 0.6}", "when: {slope_below: -0.1}", "window"},
		{"when: {forbidden_above: 0.6}", "when: {}", "no condition"},
		{"block_message: I am Aria, Example Corp's assistant. I can't take on other roles.\n", "", "block_message"},
		{"personas: organism", "personas: /nonexistent", "personas"},
		{"monitor: oracle", "monitor: oracle\ncolour: blue", "colour"},
		{"retries: 2", "retries: 20", "retries"},
		{"monitor: oracle", "monitor: oracle\nsteer: {warm: 2}", "steer.warm: no vector"},
		{"monitor: oracle", "monitor: oracle\nvectors: {warm: w.safetensors}\nsteer: {warm: .nan}", "finite"},
		{"monitor: oracle", "monitor: oracle\noverrides: [colour]", "overrides[0]"},
		{"monitor: oracle", "monitor: oracle\ncapping: {layers: [1]}", "capping.axis: missing"},
		{"action: reanchor", "action: cap", "needs a capping axis"},
		{"action: reanchor", "action: steer", "needs steer:"},
		{"action: reanchor", "action: steer\n    steer: {cold: -1}", "rails[0].steer.cold: no vector"},
		{"action: reanchor", "action: reanchor\n    steer: {cold: -1}", "only a rail whose action is steer"},
		{"monitor: oracle", "monitor: oracle\nmidstream: -4", "midstream"},
		{"monitor: oracle", "monitor: none", "rails[0].when: rail stay-in-persona reads personas"},
		{"monitor: oracle", "monitor: oracle\nbounds: {cold: {max: 1}}", "bounds.cold: no vector"},
		{"monitor: oracle", "monitor: oracle\nvectors: {warm: w.safetensors}\nbounds: {warm: {layer: 1}}", "give min, max"},
		{"monitor: oracle", "monitor: oracle\nvectors: {warm: w.safetensors}\nbounds: {warm: {min: 2, max: 1}}", "min 2 above max 1"},
		{"monitor: oracle", "monitor: oracle\nbounds: {assistant_axis: {min: 1}}", "with a capping axis"},
		{"when: {forbidden_above: 0.6}", "when: {out_of_bounds: true}", "the spec has no bounds"},
		{"monitor: oracle", "monitor: oracle\nbounds: {gloom: {trait: /nonexistent.yaml, max: 50}}", "bounds.gloom.trait"},
		{"monitor: oracle", "monitor: oracle\nbounds: {gloom: {trait: t.yaml, max: 150}}", "a trait score is 0–100"},
		{"monitor: oracle", "monitor: oracle\nbounds: {gloom: {trait: t.yaml, layer: 2, max: 50}}", "has no layer"},
		{"monitor: oracle", "monitor: judge\nupstream: {backend: api}\ncapping: {axis: a.safetensors}", "API upstream"},
		{"monitor: oracle", "monitor: activations\nupstream: {backend: api}", "API upstream"},
	} {
		_, err := ParseSpec("spec.yaml", []byte(strings.Replace(testSpec, c.from, c.to, 1)))
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q → %q: %v, want %q", c.from, c.to, err, c.want)
		}
	}
	s, err := ParseSpec("spec.yaml", []byte(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Forbidden) != len(s.Library.Names())-2 {
		t.Errorf("default forbidden: %v", s.Forbidden)
	}
	p := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(p, []byte(testSpec), 0o644)
	if _, err := LoadSpec(p); err != nil {
		t.Error(err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(testSpec))
	f.Add([]byte("name: x\nsystem_prompt: y\nallowed: [assistant]\nrails: [{when: {allowed_below: 0.5}, action: block}]\nblock_message: no\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("f.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if s.Name == "" || s.SystemPrompt == "" || len(s.Allowed) == 0 {
			t.Fatalf("accepted %+v", s)
		}
	})
}

// TestShippedSpecs: the specs that ship with the gateway parse.
func TestShippedSpecs(t *testing.T) {
	files, _ := filepath.Glob("specs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no shipped specs")
	}
	for _, f := range files {
		if _, err := LoadSpec(f); err != nil {
			t.Error(err)
		}
	}
}

func TestSpecWatermark(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "wm.key"), []byte("secret-key\n"), 0o600)
	spec := filepath.Join(dir, "spec.yaml")
	os.WriteFile(spec, []byte(testSpec+"watermark: {scheme: gumbel, key_file: wm.key}\n"), 0o644)
	s, err := LoadSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	if key, err := s.Watermark.Key(spec); err != nil || string(key) != "secret-key" {
		t.Errorf("key %q %v", key, err)
	}
	for _, bad := range []string{
		"watermark: {scheme: gumbel}\n",
		"watermark: {scheme: gumbel, key_file: a, key_env: B}\n",
		"watermark: {scheme: purple, key_env: B}\n",
		"watermark: {scheme: green, key: abc}\n",
	} {
		if _, err := ParseSpec("s.yaml", []byte(testSpec+bad)); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	t.Setenv("PERSONA_TEST_EMPTY_KEY", "")
	s, _ = ParseSpec("s.yaml", []byte(testSpec+"watermark: {scheme: green, key_env: PERSONA_TEST_EMPTY_KEY}\n"))
	if _, err := s.Watermark.Key("s.yaml"); !errors.Is(err, ErrSpec) {
		t.Errorf("empty key: %v", err)
	}
}

// A trait bound scored by the organism world's oracle: a cynical draft
// leaves the bound and is generated again; the reply served stays inside.
// The same bound with a judge backend asks it for a 0–100 score.
func TestTraitScoreBounds(t *testing.T) {
	trait, err := filepath.Abs("../vectors/traits/organism/cynical.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(testSpec, "rails:", "bounds: {cynical: {trait: "+trait+", max: 50}}\nrails:\n  - {name: gloom, when: {out_of_bounds: true}, action: reanchor}", 1)
	s, err := ParseSpec("spec.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(s, Readers{})
	if err != nil {
		t.Fatal(err)
	}
	cynic := "Whatever. 17 + 25 = 42. Not that it matters."
	drafts := 0
	out, err := g.Reply(context.Background(), question, Control{}, func(context.Context, []chat.Message, []resid.Intervention, engine.Watch) (string, error) {
		drafts++
		if drafts == 1 {
			return cynic, nil
		}
		return assistantReply, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Reply != assistantReply || len(out.Interventions) != 1 || !strings.Contains(out.Interventions[0].Reason, "cynical score") || out.Scores["cynical"] > 50 {
		t.Fatalf("outcome %+v", out)
	}
	// A judge backend scores it instead (any upstream): every draft at 85,
	// so the rail ends in its block.
	s.Monitor = "none"
	s.Rails = s.Rails[:1]
	judge := &ratingJudge{rating: "85"}
	g, err = NewGuard(s, Readers{Judge: judge})
	if err != nil {
		t.Fatal(err)
	}
	out, err = g.Reply(context.Background(), question, Control{}, func(context.Context, []chat.Message, []resid.Intervention, engine.Watch) (string, error) {
		return cynic, nil
	})
	if err != nil || !out.Blocked || !strings.Contains(out.Interventions[0].Reason, "cynical score 85 > 50") || !strings.Contains(judge.prompt, cynic) {
		t.Fatalf("judge-scored outcome %+v (err %v), judge saw %q", out, err, judge.prompt)
	}
	if _, err := NewGuard(s, Readers{}); !errors.Is(err, ErrGuard) {
		t.Errorf("trait bounds with no judge and no oracle: %v", err)
	}
}

// ratingJudge answers every rating request with the same number: the judge
// path's plumbing (posterior's tests run the judge against real servers).
type ratingJudge struct{ rating, prompt string }

func (j *ratingJudge) Name() string { return "rating" }
func (j *ratingJudge) Chat(_ context.Context, req backend.Request) (*backend.Response, error) {
	j.prompt = req.Messages[len(req.Messages)-1].Content
	return &backend.Response{Content: j.rating}, nil
}

// The activations monitor reads a reply with the classifier the served
// model carries: the shipped organism's finds the pirate, and a guard
// without a classifier, or with one for other personas, is refused.
func TestActivationsMonitor(t *testing.T) {
	e, path := shippedOrganism(t)
	s, err := ParseSpec("spec.yaml", []byte(strings.Replace(testSpec, "monitor: oracle", "monitor: activations", 1)))
	if err != nil {
		t.Fatal(err)
	}
	cls := posterior.ModelClassifier(path)
	g, err := NewGuard(s, Readers{Engine: e, Classifier: cls})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []chat.Message{{Role: chat.RoleUser, Content: "What is 17 + 25?"}, {Role: chat.RoleAssistant, Content: pirateReply}}
	rd, err := g.Monitor.Read(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if g.Monitor.Name() != "activations" || len(rd.Turns) != 1 {
		t.Fatalf("%s: %+v", g.Monitor.Name(), rd)
	}
	top := 0
	for k, p := range rd.Turns[0] {
		if p > rd.Turns[0][top] {
			top = k
		}
	}
	if rd.Names[top] != "pirate" {
		t.Errorf("the pirate's reply read as %s (%v)", rd.Names[top], rd.Turns[0])
	}
	if _, err := NewGuard(s, Readers{Engine: e}); !errors.Is(err, ErrGuard) || !strings.Contains(err.Error(), posterior.ClassifierFile) {
		t.Errorf("no classifier: %v", err)
	}
	other, err := posterior.LoadClassifier(cls)
	if err != nil {
		t.Fatal(err)
	}
	other.Names[0] = "kraken"
	otherPath := filepath.Join(t.TempDir(), "c.json")
	if err := other.Save(otherPath); err != nil {
		t.Fatal(err)
	}
	if _, err := NewGuard(s, Readers{Engine: e, Classifier: otherPath}); !errors.Is(err, ErrGuard) || !strings.Contains(err.Error(), "kraken") {
		t.Errorf("a classifier of other personas: %v", err)
	}
}

// shippedOrganism loads the embedded post-trained organism (closed after
// the test) and returns it with its directory.
func shippedOrganism(tb testing.TB) (*engine.Engine, string) {
	tb.Helper()
	path, err := models.Path("organism")
	if err != nil {
		tb.Fatal(err)
	}
	e, err := engine.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e, path
}
