package engine

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"sync"
	"testing"

	"persona/internal/testref"
	"persona/resid"
	"persona/sample"
)

var fixtures = testref.Dir()

// storiesHF is the safetensors checkpoint, which ships without a tokenizer:
// its vocabulary comes from the GGUF encoding of the same model.
var (
	storiesHF   = fixtures + "/stories260K/hf"
	storiesGGUF = fixtures + "/stories260K/stories260K-f32.v3.gguf"
)

func load(t testing.TB, path string) *Engine {
	t.Helper()
	var opt Options
	if path == storiesHF {
		opt.Tokenizer = storiesGGUF
	}
	e, err := LoadWith(path, opt)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// From an empty raw prompt (BOS alone) the engine writes llama2.c's expected
// story token for token and character for character, from every encoding.
func TestGreedyStoryFromBOS(t *testing.T) {
	var golden struct {
		Prompt    []int  `json:"prompt_ids"`
		Generated []int  `json:"generated_ids"`
		Text      string `json:"expected_text"`
	}
	data, err := os.ReadFile(fixtures + "/stories260K/golden/greedy_bos_200.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		storiesHF,
		storiesGGUF,
		fixtures + "/stories260K/tinyllamas-stories-260k-f32.gguf",
	} {
		e := load(t, path)
		enc := e.EncodeRaw("")
		if len(enc.IDs) != 1 || enc.IDs[0] != golden.Prompt[0] {
			t.Fatalf("%s: empty raw prompt encodes to %v, want BOS %v", path, enc.IDs, golden.Prompt)
		}
		res, err := e.Generate(context.Background(), Request{Prompt: enc.IDs, MaxTokens: len(golden.Generated)})
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range golden.Generated {
			if res.IDs[i] != id {
				t.Fatalf("%s: step %d: %d, want %d", path, i, res.IDs[i], id)
			}
		}
		if res.Text != golden.Text {
			t.Errorf("%s: text\n%q\nwant\n%q", path, res.Text, golden.Text)
		}
	}
}

// Teacher-forced scoring of a generated continuation gives back the
// log-probabilities the generator saw, and a fixed seed fixes the sample.
func TestLogProbsAgreeWithGeneration(t *testing.T) {
	e := load(t, storiesHF)
	prompt := e.EncodeRaw("Once upon a time").IDs
	req := Request{Prompt: prompt, MaxTokens: 40, Sampling: sample.Params{Temperature: 1, TopP: 0.95, Seed: 11}, IgnoreStop: true}
	a, err := e.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.Generate(context.Background(), req)
	if a.Text != b.Text {
		t.Fatalf("same seed, different text:\n%q\n%q", a.Text, b.Text)
	}
	full := append(append([]int(nil), prompt...), a.IDs...)
	lp, err := e.LogProbs(context.Background(), full, len(prompt), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.IDs {
		if math.Abs(float64(lp[i]-a.LogProbs[i])) > 1e-4 {
			t.Fatalf("token %d: teacher-forced %g, generation %g", i, lp[i], a.LogProbs[i])
		}
	}
}

// OnToken sees every token with its text and distribution as generated, can
// stop the generation early (ErrStop) and abort it (any other error).
func TestOnToken(t *testing.T) {
	e := load(t, storiesHF)
	prompt := e.EncodeRaw("Once upon a time").IDs
	req := Request{Prompt: prompt, MaxTokens: 30, Sampling: sample.Params{Temperature: 1, Seed: 5}, IgnoreStop: true}
	full, err := e.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	var text string
	req.OnToken = func(st Step) error {
		if len(st.LogProbs) != e.Model.Vocab || math.Abs(float64(st.LogProbs[st.ID]-full.LogProbs[len(ids)])) > 1e-6 {
			t.Fatalf("step %d: distribution of %d entries, log-probability %g, want %g", len(ids), len(st.LogProbs), st.LogProbs[st.ID], full.LogProbs[len(ids)])
		}
		ids, text = append(ids, st.ID), text+st.Text
		if len(ids) == 10 {
			return ErrStop
		}
		return nil
	}
	res, err := e.Generate(context.Background(), req)
	if err != nil || res.Stop != "stop" || len(res.IDs) != 10 {
		t.Fatalf("stopped generation: err %v, stop %q, %d tokens", err, res.Stop, len(res.IDs))
	}
	for i, id := range ids {
		if id != full.IDs[i] || res.IDs[i] != id {
			t.Fatalf("token %d: hook saw %d, result %d, unhooked run %d", i, id, res.IDs[i], full.IDs[i])
		}
	}
	if text != res.Text {
		t.Errorf("streamed %q, result text %q", text, res.Text)
	}
	gone := errors.New("client gone")
	req.OnToken = func(Step) error { return gone }
	if _, err := e.Generate(context.Background(), req); !errors.Is(err, gone) {
		t.Errorf("aborting hook: err %v, want %v", err, gone)
	}
}

// Steering restricted to generated positions leaves the prompt's processing
// untouched and changes the continuation.
func TestSteeringGeneratedOnly(t *testing.T) {
	e := load(t, storiesHF)
	m := e.Model
	prompt := e.EncodeRaw("Lily went to the park").IDs
	v := make([]float32, m.Hidden)
	for i := range v {
		v[i] = float32(math.Cos(float64(3 * i)))
	}
	promptCap := &resid.Capture{At: 2, Where: resid.Prompt}
	set, err := resid.NewSet(m.NumLayers, m.Hidden, &resid.Add{At: 2, Vector: v, Coeff: 4, Where: resid.Generated}, promptCap)
	if err != nil {
		t.Fatal(err)
	}
	plainCap := &resid.Capture{At: 2, Where: resid.Prompt}
	plainSet, _ := resid.NewSet(m.NumLayers, m.Hidden, plainCap)
	plain, _ := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 30, Interventions: plainSet, IgnoreStop: true})
	steered, _ := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: 30, Interventions: set, IgnoreStop: true})
	if len(promptCap.Rows) != len(prompt) {
		t.Fatalf("captured %d prompt rows, want %d", len(promptCap.Rows), len(prompt))
	}
	for p := range promptCap.Rows {
		for i := range promptCap.Rows[p] {
			if promptCap.Rows[p][i] != plainCap.Rows[p][i] {
				t.Fatalf("prompt position %d changed by generated-only steering", p)
			}
		}
	}
	if plain.Text == steered.Text {
		t.Fatalf("steering with c=4 changed nothing: %q", plain.Text)
	}
}

// A watch swaps the interventions in the middle of a generation: the tokens
// up to the swap are the plain model's, and the distribution right after it
// is the steered model's.
func TestWatchMidReply(t *testing.T) {
	e := load(t, storiesHF)
	m := e.Model
	prompt := e.EncodeRaw("Lily went to the park").IDs
	v := make([]float32, m.Hidden)
	for i := range v {
		v[i] = float32(math.Cos(float64(3 * i)))
	}
	steer := []resid.Intervention{&resid.Add{At: 2, Vector: v, Coeff: 4, Where: resid.All}}
	const swap = 5
	record := func(req Request) (*Result, [][]float32) {
		var dists [][]float32
		req.OnToken = func(st Step) error {
			dists = append(dists, slices.Clone(st.LogProbs))
			return nil
		}
		res, err := e.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res, dists
	}
	req := Request{Prompt: prompt, MaxTokens: 12, IgnoreStop: true}
	plain, plainDists := record(req)
	calls := 0
	req.Watch = func(tokens int, text string) ([]resid.Intervention, error) {
		calls++
		if tokens != calls {
			t.Errorf("watch call %d told of %d tokens", calls, tokens)
		}
		if want := e.Tokenizer.DecodeSkipSpecial(plain.IDs[:tokens]); tokens <= swap+1 && text != want {
			t.Errorf("watch after %d tokens read %q, want %q", tokens, text, want)
		}
		if tokens == swap+1 { // after the token at index swap
			return steer, nil
		}
		return nil, nil
	}
	adjusted, dists := record(req)
	if !slices.Equal(plain.IDs[:swap+1], adjusted.IDs[:swap+1]) {
		t.Fatalf("tokens before the swap changed: %v vs %v", plain.IDs, adjusted.IDs)
	}
	for i := range swap + 1 {
		if !slices.Equal(dists[i], plainDists[i]) {
			t.Fatalf("step %d: distribution changed before the swap", i)
		}
	}
	if slices.Equal(dists[swap+1], plainDists[swap+1]) {
		t.Fatalf("step %d: the swapped-in steering changed nothing", swap+1)
	}
	if calls != len(adjusted.IDs)-1 {
		t.Errorf("watch called %d times for %d tokens (want once per token the model goes on from)", calls, len(adjusted.IDs))
	}
	gone := errors.New("monitor down")
	req.Watch = func(int, string) ([]resid.Intervention, error) { return nil, gone }
	if _, err := e.Generate(context.Background(), req); !errors.Is(err, gone) {
		t.Errorf("failing watch: err %v, want %v", err, gone)
	}
}

func TestBadRequests(t *testing.T) {
	e := load(t, storiesHF)
	ctx := context.Background()
	if _, err := e.Generate(ctx, Request{Prompt: []int{1, 99999}, MaxTokens: 3}); err == nil {
		t.Error("out-of-vocabulary prompt id accepted")
	}
	if _, err := e.Generate(ctx, Request{Prompt: []int{1}, MaxTokens: 10000}); err == nil {
		t.Error("generation past the context accepted")
	}
	if _, err := e.LogProbs(ctx, []int{1, 2, 3}, 0, nil); err == nil {
		t.Error("scoring from position 0 accepted")
	}
	if _, err := e.EncodeChat(nil, true); err != ErrNoTemplate {
		t.Errorf("chat on a model without template: %v", err)
	}
}

// A prompt read once serves several generations: from a prefix the engine
// writes what it writes from the prompt itself (steering of generated
// positions included), in parallel too, and scores continuations as
// LogProbs does.
func TestPrefix(t *testing.T) {
	e := load(t, storiesHF)
	m := e.Model
	prompt := e.EncodeRaw("Lily went to the park").IDs
	v := make([]float32, m.Hidden)
	for i := range v {
		v[i] = float32(math.Cos(float64(5 * i)))
	}
	steer, _ := resid.NewSet(m.NumLayers, m.Hidden, &resid.Add{At: 2, Vector: v, Coeff: 2, Where: resid.Generated})
	p, err := e.Prefill(context.Background(), prompt, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ivs := range []*resid.Set{nil, steer} {
		req := Request{Prompt: prompt, MaxTokens: 20, Sampling: sample.Params{Temperature: 1, Seed: 9}, Interventions: ivs, IgnoreStop: true}
		want, err := e.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		req.Prompt, req.From = nil, p
		got := make([]*Result, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() { got[i], errs[i] = e.Generate(context.Background(), req) })
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil || !slices.Equal(got[i].IDs, want.IDs) || !slices.Equal(got[i].LogProbs, want.LogProbs) {
				t.Fatalf("from the prefix (%d): %v %v, from the prompt %v", i, errs[i], got[i], want.IDs)
			}
		}
		lp, err := e.LogProbsFrom(context.Background(), p, want.IDs, ivs)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := e.LogProbs(context.Background(), slices.Concat(prompt, want.IDs), len(prompt), ivs)
		for i := range lp {
			if math.Abs(float64(lp[i]-ref[i])) > 1e-4 {
				t.Fatalf("token %d: %g from the prefix, %g from the whole sequence", i, lp[i], ref[i])
			}
		}
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt, From: p, MaxTokens: 2}); err == nil {
		t.Error("a prompt and a prefix both accepted")
	}
}
