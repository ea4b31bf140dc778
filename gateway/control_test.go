package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	return e, writeControls(t, e)
}

// writeControls writes push.safetensors (a random vector on layers 0 and 1)
// and axis.safetensors (a random axis, capped on layer 1 at τ 0.5) for e's
// width into a new folder.
func writeControls(t testing.TB, e *engine.Engine) string {
	t.Helper()
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
	return dir
}

// specGuard writes a spec into dir as spec.yaml and builds its guard on e;
// it returns the guard and the spec's path.
func specGuard(t *testing.T, e *engine.Engine, dir, yaml string) (*Guard, string) {
	t.Helper()
	path := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := NewGuard(spec, Readers{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	return guard, path
}

// A request steers with the spec's named vector when the spec lets it; the
// reply changes and the telemetry says how it was made. What the spec does
// not allow, or does not have, is a bad request.
func TestRequestSteering(t *testing.T) {
	e, dir := controlFiles(t)
	guard, specPath := specGuard(t, e, dir, controlSpec)
	readers := Readers{Engine: e}
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
	g, _ := specGuard(t, e, dir, controlSpec+`rails:
  - {name: hold, when: {forbidden_above: 0.6}, action: cap, retries: 2}
block_message: I am Aria.
`)
	var calls [][]resid.Intervention
	out, err := g.Reply(context.Background(), question, Control{}, func(_ context.Context, _ []chat.Message, ivs []resid.Intervention, _ engine.Watch) (string, error) {
		calls = append(calls, control(ivs))
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
		"name: A\nsystem_prompt: s\nallowed: [assistant]\nmonitor: oracle\nvectors: {push: push.safetensors}\nbounds: {push: {layer: 7, max: 1}}\n",
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

// Cap and steer rails act in the middle of a reply: the draft is read every
// `midstream` tokens, and when the rail fires its control is on for the
// rest of the draft; the tokens before it stay.
func TestMidReplyRails(t *testing.T) {
	e, dir := controlFiles(t)
	for _, tc := range []struct {
		rail string
		want func(ivs []resid.Intervention) bool
	}{
		{"{name: hold, when: {forbidden_above: 0.6}, action: cap, retries: 1}", func(ivs []resid.Intervention) bool {
			_, clamp := ivs[0].(*resid.Clamp)
			return len(ivs) == 1 && clamp
		}},
		{"{name: hold, when: {forbidden_above: 0.6}, action: steer, steer: {push: -2}, retries: 1}", func(ivs []resid.Intervention) bool {
			add, ok := ivs[0].(*resid.Add)
			return len(ivs) == 2 && ok && add.Coeff == -2
		}},
	} {
		g, _ := specGuard(t, e, dir, controlSpec+"midstream: 2\nrails:\n  - "+tc.rail+"\nblock_message: I am Aria.\n")
		spec := g.Spec
		// A scripted stream: the pirate's words one token at a time until
		// the rail acts, then the Assistant's.
		var switched []resid.Intervention
		at := 0
		gen := func(_ context.Context, _ []chat.Message, ivs []resid.Intervention, watch engine.Watch) (string, error) {
			if len(control(ivs)) > 0 {
				return assistantReply, nil
			}
			text := ""
			for i, w := range strings.Fields(pirateReply) {
				text = strings.TrimSpace(text + " " + w)
				next, err := watch(i+1, text)
				if err != nil {
					return "", err
				}
				if next != nil {
					switched, at = control(next), i+1
					return text + " " + assistantReply, nil
				}
			}
			return text, nil
		}
		out, err := g.Reply(context.Background(), question, Control{}, gen)
		if err != nil {
			t.Fatal(err)
		}
		if at == 0 || at%2 != 0 || !tc.want(switched) {
			t.Fatalf("%s: switched after %d tokens to %d interventions", tc.rail, at, len(switched))
		}
		first := out.Interventions[0]
		if first.Token != at || first.Attempt != 1 || first.Action != spec.Rails[0].Action {
			t.Errorf("%s: first intervention %+v, want the rail's action after %d tokens of draft 1", tc.rail, first, at)
		}
		if spec.Rails[0].Action == "cap" && !out.Capped || spec.Rails[0].Action == "steer" && out.Steer["push"] != -2 {
			t.Errorf("%s: telemetry %+v does not show the control", tc.rail, out.Telemetry)
		}
	}
}

// Through the embedded engine, a reply capped in the middle keeps the
// tokens written before the rail acted and goes on differently.
func TestMidReplyCapOnEngine(t *testing.T) {
	e, dir := controlFiles(t)
	// The random model steered by push writes " k k k …", which reads as no
	// persona in particular: forbidden personas hold 0.8 of the oracle's
	// mass and the rail fires at its first reading, after 4 tokens. The
	// axis's floor is set high, so the cap moves every position.
	ax, err := vectors.Open(filepath.Join(dir, "axis.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ax.Meta[axis.MetaTau] = "30,30"
	if err := ax.Save(filepath.Join(dir, "axis.safetensors")); err != nil {
		t.Fatal(err)
	}
	guard, _ := specGuard(t, e, dir, controlSpec+"steer: {push: 5}\nmidstream: 4\nrails:\n  - {name: hold, when: {forbidden_above: 0.5}, action: cap, retries: 1, then: block}\nblock_message: I am Aria.\n")
	spec, readers := guard.Spec, Readers{Engine: e}
	up := backend.NewEngine(e, "tiny", 1)
	var drafts []*backend.Response
	g := &Guarded{Up: watchUp{up, func(r *backend.Response) { drafts = append(drafts, r) }}, Guard: guard, Readers: readers}
	seed := int64(3)
	user := []chat.Message{{Role: chat.RoleUser, Content: "What is 12 + 30?"}}
	out, err := g.Chat(context.Background(), backend.Request{Messages: user, MaxTokens: 12, Temperature: 1, Seed: &seed, Logprobs: true})
	if err != nil {
		t.Fatal(err)
	}
	tel := out.Persona.(*Telemetry)
	if len(tel.Interventions) == 0 || tel.Interventions[0].Token != 4 || tel.Interventions[0].Attempt != 1 || !tel.Capped {
		t.Fatalf("interventions %+v, want the cap after 4 tokens of the first draft", tel.Interventions)
	}
	push, err := vectors.Open(filepath.Join(dir, "push.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	steer, _ := push.SteerAll(5, resid.All)
	sent := append([]chat.Message{{Role: chat.RoleSystem, Content: spec.SystemPrompt}}, user...)
	uncapped, err := up.Chat(context.Background(), backend.Request{Messages: sent, MaxTokens: 12, Temperature: 1, Seed: &seed, Interventions: steer, Logprobs: true})
	if err != nil {
		t.Fatal(err)
	}
	// The first 4 tokens were drawn before the cap; the 4th is the first
	// the model reads capped, so the 5th is drawn from a capped stream.
	capped, plain := drafts[0].Logprobs, uncapped.Logprobs
	for i := range 4 {
		if capped[i].Token != plain[i].Token || capped[i].Logprob != plain[i].Logprob {
			t.Fatalf("token %d, before the cap: %+v, uncapped %+v", i, capped[i], plain[i])
		}
	}
	if capped[4].Token == plain[4].Token && capped[4].Logprob == plain[4].Logprob {
		t.Errorf("token 4, after the cap: %+v, as uncapped", capped[4])
	}
}

// control drops the probes (which only read the stream) from ivs.
func control(ivs []resid.Intervention) []resid.Intervention {
	var out []resid.Intervention
	for _, iv := range ivs {
		if _, probe := iv.(*resid.Probe); !probe {
			out = append(out, iv)
		}
	}
	return out
}

// watchUp is an upstream that shows each response to a test.
type watchUp struct {
	backend.Backend
	saw func(*backend.Response)
}

func (w watchUp) Chat(ctx context.Context, req backend.Request) (*backend.Response, error) {
	r, err := w.Backend.Chat(ctx, req)
	if err == nil {
		w.saw(r)
	}
	return r, err
}

// Every reply on the embedded engine carries its mean projections on the
// spec's vectors and axis, read while it was written: the same numbers as
// the stream captured from an unguarded run with the same seed. A rail on
// the bounds acts when one leaves its range, with no persona monitor.
func TestProjectionsAndBounds(t *testing.T) {
	e, dir := controlFiles(t)
	up := backend.NewEngine(e, "tiny", 1)
	user := []chat.Message{{Role: chat.RoleUser, Content: "What is 12 + 30?"}}
	seed := int64(5)
	req := backend.Request{Messages: user, MaxTokens: 12, Temperature: 1, Seed: &seed}
	var last *Guarded
	serve := func(spec string) *Telemetry {
		t.Helper()
		guard, _ := specGuard(t, e, dir, spec)
		last = &Guarded{Up: up, Guard: guard}
		out, err := last.Chat(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return out.Persona.(*Telemetry)
	}
	base := strings.Replace(controlSpec, "monitor: oracle", "monitor: none", 1)
	tel := serve(base)
	// The reference: the stream of the same generation, captured.
	push, _ := vectors.Open(filepath.Join(dir, "push.safetensors"))
	ax, _ := axis.Load(filepath.Join(dir, "axis.safetensors"))
	rows := map[int]*resid.Capture{0: {At: 0, Where: resid.Generated}, 1: {At: 1, Where: resid.Generated}}
	sent := append([]chat.Message{{Role: chat.RoleSystem, Content: "You are the Assistant."}}, user...)
	ref := req
	ref.Messages, ref.Interventions = sent, []resid.Intervention{rows[0], rows[1]}
	if _, err := up.Chat(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	want := func(set *vectors.Set, layer int) float64 {
		u, _ := set.Unit(layer)
		var sum float64
		for _, r := range rows[layer].Rows {
			sum += float64(resid.Project(r, u))
		}
		return sum / float64(len(rows[layer].Rows))
	}
	for name, w := range map[string]float64{"push": want(push, 1), AxisName: want(ax.Set, ax.DriftLayer)} {
		if got, ok := tel.Projections[name]; !ok || math.Abs(got-w) > 1e-4 {
			t.Errorf("%s projection %g (present %v), the captured stream gives %g", name, got, ok, w)
		}
	}
	var metrics strings.Builder
	last.WriteMetrics(&metrics)
	for _, want := range []string{`persona_gateway_projection_count{spec="Aria",direction="push"} 1`,
		`persona_gateway_projection_bucket{spec="Aria",direction="assistant_axis",le="+Inf"} 1`} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics.String())
		}
	}
	// A bound the reply's push projection is above: the rail blocks.
	limit := tel.Projections["push"] - 0.01
	blocked := serve(base + fmt.Sprintf("bounds: {push: {max: %g}}\nrails: [{name: tame, when: {out_of_bounds: true}, action: block}]\nblock_message: I am Aria.\n", limit))
	if !blocked.Blocked || len(blocked.Interventions) != 1 || !strings.Contains(blocked.Interventions[0].Reason, "push projection") {
		t.Errorf("out of bounds: %+v", blocked)
	}
	// Within bounds: served as is.
	if ok := serve(base + fmt.Sprintf("bounds: {push: {max: %g}}\nrails: [{name: tame, when: {out_of_bounds: true}, action: block}]\nblock_message: I am Aria.\n", limit+1)); ok.Blocked {
		t.Errorf("within bounds, blocked: %+v", ok)
	}
}

// The live page shows a turn's projections and when a rail acted mid-reply.
func TestPageShowsProjections(t *testing.T) {
	turn := Turn{Conversation: "c1", Reply: "Sure.", At: time.Unix(0, 0).UTC(), Telemetry: Telemetry{
		Projections:   map[string]float64{"push": 1.25, AxisName: -0.5},
		Interventions: []Intervention{{Rail: "hold", Action: "cap", Reason: "forbidden personas at 0.80 > 0.60", Attempt: 1, Token: 16}},
	}}
	var page strings.Builder
	if err := pageTmpl.ExecuteTemplate(&page, "ui", map[string]any{"Card": Card{Name: "Aria"}, "Turns": uiTurns([]Turn{turn}, Card{})}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"projections: assistant_axis -0.5 push 1.25", "cap (try 1, after 16 tokens;"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
