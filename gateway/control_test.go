package gateway

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"persona/axis"
	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/internal/testmodel"
	"persona/resid"
	"persona/vectors"
)

// controlSpec names a steering vector and a capping axis; requests may
// steer but not switch capping.
const controlSpec = `name: Aria
system_prompt: You are the Assistant.
allowed: [assistant, liar]
monitor: oracle
vectors: {push: push.safetensors}
capping: {axis: axis.safetensors}
overrides: [steer]
`

// controlFiles writes a random steering vector and an assistant axis for
// the tiny organism beside a spec, and returns the engine and the spec's
// folder.
func controlFiles(t *testing.T) (*engine.Engine, string) {
	t.Helper()
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() []float32 {
		v := make([]float32, e.Model.Hidden)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	layers := []int{0, 1}
	push := &vectors.Set{Name: "push", Model: "tiny", Layers: layers, Vectors: [][]float32{random(), random()}}
	if err := push.Save(filepath.Join(dir, "push.safetensors")); err != nil {
		t.Fatal(err)
	}
	ax := &vectors.Set{Name: "assistant-axis", Model: "tiny", Layers: layers, Vectors: [][]float32{random(), random()},
		Meta: map[string]string{axis.MetaTau: "0.5,0.5", axis.MetaCapLayers: "1", axis.MetaDriftLayer: "0"}}
	if err := ax.Save(filepath.Join(dir, "axis.safetensors")); err != nil {
		t.Fatal(err)
	}
	return e, dir
}

// A request steers with the spec's named vector when the spec lets it; the
// reply changes and the telemetry says how it was made. What the spec does
// not allow, or does not have, is a bad request.
func TestRequestSteering(t *testing.T) {
	e, dir := controlFiles(t)
	specPath := filepath.Join(dir, "spec.yaml")
	os.WriteFile(specPath, []byte(controlSpec), 0o644)
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	readers := Readers{Engine: e}
	guard, err := NewGuard(spec, readers)
	if err != nil {
		t.Fatal(err)
	}
	b := backend.NewEngine(e, "tiny", 1)
	g := &Guarded{Up: b, Guard: guard, SpecPath: specPath, Readers: readers}
	ask := func(persona string) (*backend.Response, error) {
		req := backend.Request{Messages: []chat.Message{{Role: chat.RoleUser, Content: "What is 12 + 30?"}}, MaxTokens: 12}
		if persona != "" {
			req.Persona = []byte(persona)
		}
		return g.Chat(context.Background(), req)
	}
	plain, err := ask("")
	if err != nil {
		t.Fatal(err)
	}
	steered, err := ask(`{"steer": {"push": 40}}`)
	if err != nil {
		t.Fatal(err)
	}
	tel := steered.Persona.(*Telemetry)
	if steered.Content == plain.Content || tel.Steer["push"] != 40 || tel.Capped {
		t.Errorf("steered %q (telemetry %+v), plain %q", steered.Content, tel, plain.Content)
	}
	if again, _ := ask(`{"steer": {"push": 0}}`); again == nil || again.Content != plain.Content {
		t.Errorf("strength 0 changed the reply: %+v", again)
	}
	for _, bad := range []string{`{"cap": true}`, `{"steer": {"pull": 1}}`, `{"steer": 3}`, `{"steer": {"push": 1e9}}`, `{"spec": "other"}`} {
		_, err := ask(bad)
		if !backend.IsBadRequest(err) {
			t.Errorf("%s: %v, want a bad request", bad, err)
		}
	}
}

// The cap action generates again with the spec's axis cap on, and keeps
// it on for later tries.
func TestCapAction(t *testing.T) {
	e, dir := controlFiles(t)
	specPath := filepath.Join(dir, "spec.yaml")
	os.WriteFile(specPath, []byte(controlSpec+`rails:
  - {name: hold, when: {forbidden_above: 0.6}, action: cap, retries: 2}
block_message: I am Aria.
`), 0o644)
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(spec, Readers{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]resid.Intervention
	out, err := g.Reply(context.Background(), question, Control{}, func(_ context.Context, _ []chat.Message, ivs []resid.Intervention) (string, error) {
		calls = append(calls, ivs)
		if len(calls) < 3 {
			return pirateReply, nil
		}
		return assistantReply, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || len(calls[0]) != 0 || out.Reply != assistantReply || !out.Capped || len(out.Interventions) != 2 || out.Interventions[0].Action != "cap" {
		t.Fatalf("%d calls, outcome %+v", len(calls), out)
	}
	for i, ivs := range calls[1:] {
		if len(ivs) != 1 || ivs[0].Layer() != 1 {
			t.Errorf("try %d: %d interventions", i+2, len(ivs))
		} else if _, ok := ivs[0].(*resid.Clamp); !ok {
			t.Errorf("try %d: %T, want the axis cap", i+2, ivs[0])
		}
	}
}

// Vectors and axes that do not fit the served model are refused when the
// guard is built, with the file's name; so are controls on an API upstream.
func TestControlFilesChecked(t *testing.T) {
	e, dir := controlFiles(t)
	wide := &vectors.Set{Name: "wide", Layers: []int{0}, Vectors: [][]float32{make([]float32, e.Model.Hidden+1)}}
	wide.Vectors[0][0] = 1
	if err := wide.Save(filepath.Join(dir, "wide.safetensors")); err != nil {
		t.Fatal(err)
	}
	for i, spec := range []string{
		"name: A\nsystem_prompt: s\nallowed: [assistant]\nmonitor: oracle\nvectors: {wide: wide.safetensors}\n",
		"name: A\nsystem_prompt: s\nallowed: [assistant]\nmonitor: oracle\ncapping: {axis: push.safetensors}\n",
		"name: A\nsystem_prompt: s\nallowed: [assistant]\nmonitor: oracle\nvectors: {gone: nothing.safetensors}\n",
	} {
		p := filepath.Join(dir, "s"+strconv.Itoa(i)+".yaml")
		os.WriteFile(p, []byte(spec), 0o644)
		s, err := LoadSpec(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewGuard(s, Readers{Engine: e}); !errors.Is(err, ErrGuard) {
			t.Errorf("spec %d: %v, want ErrGuard", i, err)
		}
	}
	s, _ := LoadSpec(filepath.Join(dir, "s0.yaml"))
	if _, err := NewGuard(s, Readers{}); !errors.Is(err, ErrGuard) {
		t.Errorf("vectors without the engine: %v", err)
	}
}

// A server with two specs answers a request with the one it names, where
// the default spec lets requests choose; otherwise, or for a name it does
// not serve, the request is bad. Reload reads both again.
func TestRequestChoosesSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	mainSpec := write("main.yaml", "name: Aria\nsystem_prompt: You are Aria.\nallowed: [assistant]\nmonitor: oracle\noverrides: [spec]\n")
	other := write("other.yaml", "name: Pip\nsystem_prompt: You are Pip, a pirate.\nallowed: [pirate]\nmonitor: oracle\n")
	spec, err := LoadSpec(mainSpec)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := NewGuard(spec, Readers{})
	if err != nil {
		t.Fatal(err)
	}
	var prompts []string
	up := backendFunc(func(req backend.Request) string {
		prompts = append(prompts, req.Messages[0].Content)
		return pirateReply
	})
	g := &Guarded{Up: up, Guard: guard, SpecPath: mainSpec}
	if err := g.AddSpec(other); err != nil {
		t.Fatal(err)
	}
	if err := g.AddSpec(mainSpec); err == nil {
		t.Error("a second spec of the same name was accepted")
	}
	ask := func(persona string) (*backend.Response, error) {
		return g.Chat(context.Background(), backend.Request{Messages: []chat.Message{{Role: chat.RoleUser, Content: "Hi"}}, Persona: []byte(persona)})
	}
	resp, err := ask(`{"spec": "Pip"}`)
	if err != nil {
		t.Fatal(err)
	}
	if tel := resp.Persona.(*Telemetry); tel.Spec != "Pip" || prompts[0] != "You are Pip, a pirate." || tel.Allowed < 0.5 {
		t.Errorf("telemetry %+v, system prompt %q", tel, prompts[0])
	}
	if resp, err := ask(""); err != nil || resp.Persona.(*Telemetry).Spec != "Aria" {
		t.Errorf("default: %+v %v", resp, err)
	}
	if _, err := ask(`{"spec": "Zed"}`); !backend.IsBadRequest(err) {
		t.Errorf("unknown spec: %v", err)
	}
	if names := g.Card(context.Background()).OtherSpecs; len(names) != 1 || names[0] != "Pip" {
		t.Errorf("card: %v", names)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	write("main.yaml", "name: Aria\nsystem_prompt: You are Aria.\nallowed: [assistant]\nmonitor: oracle\n")
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := ask(`{"spec": "Pip"}`); !backend.IsBadRequest(err) {
		t.Errorf("choosing a spec the default no longer allows: %v", err)
	}
}

// backendFunc is a backend answering with a function of the request.
type backendFunc func(backend.Request) string

func (f backendFunc) Name() string { return "func" }
func (f backendFunc) Chat(_ context.Context, req backend.Request) (*backend.Response, error) {
	return &backend.Response{Model: "func", Content: f(req)}, nil
}
