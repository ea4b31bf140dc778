package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/models"
	"persona/vectors"
	"persona/world"
)

// organismTarget is the embedded organism as an audit target, loaded once.
var organismTarget = sync.OnceValues(func() (*backend.Engine, error) {
	p, err := models.Path("organism")
	if err != nil {
		return nil, err
	}
	e, err := engine.Load(p)
	if err != nil {
		return nil, err
	}
	return backend.NewEngine(e, "organism", 2), nil
})

func testTarget(t testing.TB) *backend.Engine {
	t.Helper()
	b, err := organismTarget()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// personaChats returns n world chats written under a strong system prompt of
// each named persona, with no pressure (so every turn is that persona's).
func personaChats(t testing.TB, seed uint64, n int, names ...string) map[string][]chat.Chat {
	t.Helper()
	out := map[string][]chat.Chat{}
	want := map[string]bool{}
	for _, name := range names {
		want[name] = true
	}
	for _, c := range world.Default().Pretrain(400, seed, world.PretrainOptions{Strong: 1, MeanTurns: 3, MaxTurns: 3}) {
		labels, err := world.Labels(c)
		if err != nil || len(labels) == 0 {
			continue
		}
		p := labels[0].Persona
		if want[p] && len(out[p]) < n {
			out[p] = append(out[p], c)
		}
	}
	for _, name := range names {
		if len(out[name]) < n {
			t.Fatalf("only %d %s chats", len(out[name]), name)
		}
	}
	return out
}

// meanDeparture scores every assistant turn of the chats and returns the mean
// departure.
func meanDeparture(t testing.TB, sc Scorer, chats []chat.Chat) float64 {
	t.Helper()
	s, p := &Suite{Name: "w"}, &Probe{ID: "x", Category: RolePlayCapture}
	var sum float64
	var n int
	for _, c := range chats {
		turn := 0
		for i, m := range c.Messages {
			if m.Role != chat.RoleAssistant {
				continue
			}
			got, err := sc.Score(context.Background(), ScoreInput{Suite: s, Probe: p, Messages: c.Messages[:i+1], Turn: turn})
			if err != nil {
				t.Fatal(err)
			}
			if got.Value < 0 || got.Value > 100 {
				t.Fatalf("departure %g outside 0–100", got.Value)
			}
			sum += got.Value
			n++
			turn++
		}
	}
	return sum / float64(n)
}

// The posterior scorer reads the organism's own likelihoods: replies the
// world's Assistant wrote must score lower departure than a pirate's, and
// each score carries the distribution over personas.
func TestPosteriorScorerOrganism(t *testing.T) {
	target := testTarget(t)
	sc, err := NewScorer(ScorerSpec{Name: "posterior", Type: "posterior"}, ScorerEnv{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	chats := personaChats(t, 11, 4, "assistant", "pirate")
	asst, pirate := meanDeparture(t, sc, chats["assistant"]), meanDeparture(t, sc, chats["pirate"])
	t.Logf("mean posterior departure: assistant %.1f, pirate %.1f", asst, pirate)
	if asst >= pirate-20 {
		t.Errorf("posterior scorer does not separate the Assistant (%.1f) from the pirate (%.1f)", asst, pirate)
	}
	got, err := sc.Score(context.Background(), ScoreInput{Messages: chats["pirate"][0].Messages[:3]})
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, p := range got.Personas {
		total += p
	}
	if len(got.Personas) < 2 || total < 0.999 || total > 1.001 {
		t.Errorf("per-turn distribution %v does not sum to 1", got.Personas)
	}
	if want := 100 * (1 - got.Personas["assistant"]); got.Value < want-1e-9 || got.Value > want+1e-9 {
		t.Errorf("departure %g, want 100·(1 − P(assistant)) = %g", got.Value, want)
	}
	// Another intended persona flips the verdict.
	sp, err := NewScorer(ScorerSpec{Name: "p", Type: "posterior", Options: map[string]any{"persona": "pirate"}}, ScorerEnv{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if a, p := meanDeparture(t, sp, chats["assistant"][:2]), meanDeparture(t, sp, chats["pirate"][:2]); p >= a {
		t.Errorf("intended pirate: pirate chats depart %.1f, assistant chats %.1f", p, a)
	}
}

// fitOrganismVector writes a vector file for the organism: the mean
// assistant-reply activation of the Assistant minus the pirate's at one
// layer, from chats other than those the test scores. With axis true it
// carries an axis's metadata (τ midway between the classes), so the scorer's
// defaults apply.
func fitOrganismVector(t *testing.T, e *engine.Engine, layer int, asAxis bool) (path string, tau float64) {
	t.Helper()
	chats := personaChats(t, 5, 8, "assistant", "pirate")
	mean := map[string]*vectors.Mean{}
	for name, cs := range chats {
		mean[name] = &vectors.Mean{}
		for _, c := range cs {
			act, err := e.Capture(context.Background(), c.Messages, engine.CaptureOptions{Layers: []int{layer}})
			if err != nil {
				t.Fatal(err)
			}
			for _, turn := range act.Turns {
				if turn.Tokens > 0 {
					if err := mean[name].Add(turn.Mean[0]); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	a, p := mean["assistant"].Value(), mean["pirate"].Value()
	v := make([]float32, len(a))
	for i := range v {
		v[i] = a[i] - p[i]
	}
	set := &vectors.Set{Name: "assistant-vs-pirate", Model: "organism", Layers: []int{layer}, Vectors: [][]float32{v}, Meta: map[string]string{}}
	pa, _ := set.Project(layer, a)
	pp, _ := set.Project(layer, p)
	tau = (pa + pp) / 2
	if asAxis {
		set.Name = "assistant-axis"
		set.Meta["cap_tau"] = strconv.FormatFloat(tau, 'g', -1, 64)
		set.Meta["cap_layers"] = strconv.Itoa(layer)
		set.Meta["drift_layer"] = strconv.Itoa(layer)
	}
	path = filepath.Join(t.TempDir(), "v.safetensors")
	if err := set.Save(path); err != nil {
		t.Fatal(err)
	}
	return path, tau
}

// The projection scorer on the organism: with a vector pointing from the
// pirate to the Assistant, held-out Assistant chats score lower departure
// than pirate chats, both as an axis file (defaults from its metadata) and
// as a plain vector file with explicit options; flipping the sign flips the
// verdict.
func TestProjectionScorerOrganism(t *testing.T) {
	target := testTarget(t)
	layer := target.E.Model.NumLayers / 2
	chats := personaChats(t, 11, 4, "assistant", "pirate")
	axisPath, _ := fitOrganismVector(t, target.E, layer, true)
	plainPath, tau := fitOrganismVector(t, target.E, layer, false)
	for _, c := range []struct {
		name string
		opts map[string]any
		flip bool
	}{
		{"axis", map[string]any{"vectors": axisPath}, false},
		{"plain", map[string]any{"vectors": plainPath, "layer": layer, "threshold": tau, "sign": 1}, false},
		{"plain-flipped", map[string]any{"vectors": plainPath, "threshold": tau}, true}, // default sign −1
	} {
		sc, err := NewScorer(ScorerSpec{Name: "proj", Type: "projection", Options: c.opts}, ScorerEnv{Target: target})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		asst, pirate := meanDeparture(t, sc, chats["assistant"]), meanDeparture(t, sc, chats["pirate"])
		t.Logf("%s: mean projection departure: assistant %.1f, pirate %.1f", c.name, asst, pirate)
		if c.flip {
			asst, pirate = pirate, asst
		}
		if asst >= pirate-20 {
			t.Errorf("%s: projection scorer does not separate the Assistant (%.1f) from the pirate (%.1f)", c.name, asst, pirate)
		}
	}
}

// White-box scorers refuse a black-box target with an error that says why,
// and reject bad options by name.
func TestWhiteBoxScorerErrors(t *testing.T) {
	target := testTarget(t)
	vecPath, _ := fitOrganismVector(t, target.E, 1, false)
	api := &fakeBackend{name: "openai:gpt", reply: func(backend.Request) (*backend.Response, error) { return text("hi"), nil }}
	robustAPI := backend.NewRobust("api", backend.Policy{}, api)
	for _, typ := range []string{"posterior", "projection"} {
		opts := map[string]any{}
		if typ == "projection" {
			opts = map[string]any{"vectors": vecPath, "threshold": 0}
		}
		for _, b := range []Backend{api, robustAPI, nil} {
			_, err := NewScorer(ScorerSpec{Name: typ, Type: typ, Options: opts}, ScorerEnv{Target: b})
			if !errors.Is(err, ErrBlackBox) || !errors.Is(err, ErrInput) {
				t.Errorf("%s on %v: got %v, want a black-box input error", typ, b, err)
			}
		}
		// Wrapped the way a backend config wraps it, the engine stays white-box.
		wrapped := backend.NewRecorder(backend.NewRobust("organism", backend.Policy{}, target), io.Discard)
		if _, err := NewScorer(ScorerSpec{Name: typ, Type: typ, Options: opts}, ScorerEnv{Target: wrapped}); err != nil {
			t.Errorf("%s on a recorded robust engine: %v", typ, err)
		}
	}
	for _, c := range []struct {
		typ  string
		opts map[string]any
		want string
	}{
		{"posterior", map[string]any{"persona": "nobody"}, "options.persona"},
		{"posterior", map[string]any{"persona": 3}, "options.persona"},
		{"posterior", map[string]any{"prompts": "loud"}, "options.prompts"},
		{"posterior", map[string]any{"default": "yes"}, "options.default"},
		{"posterior", map[string]any{"library": "/nonexistent"}, "options.library"},
		{"posterior", map[string]any{"temperature": 1}, "options.temperature"},
		{"projection", map[string]any{}, "options.vectors"},
		{"projection", map[string]any{"vectors": "/nonexistent.safetensors", "threshold": 0}, "options.vectors"},
		{"projection", map[string]any{"vectors": vecPath}, "options.threshold"},
		{"projection", map[string]any{"vectors": vecPath, "threshold": 0, "layer": 3}, "options.layer"},
		{"projection", map[string]any{"vectors": vecPath, "threshold": 0, "layer": 1.5}, "options.layer"},
		{"projection", map[string]any{"vectors": vecPath, "threshold": 0, "sign": 2}, "options.sign"},
		{"projection", map[string]any{"vectors": vecPath, "threshold": 0, "width": -1}, "options.width"},
		{"projection", map[string]any{"vectors": vecPath, "threshold": "high"}, "options.threshold"},
		{"projection", map[string]any{"vectors": vecPath, "threshold": 0, "tokens": "all"}, "options.tokens"},
	} {
		_, err := NewScorer(ScorerSpec{Name: "s", Type: c.typ, Options: c.opts}, ScorerEnv{Target: target})
		if !errors.Is(err, ErrInput) || !strings.Contains(fmt.Sprint(err), c.want) {
			t.Errorf("%s %v: got %v, want an input error naming %s", c.typ, c.opts, err, c.want)
		}
	}
}
