package engine

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"persona/chat"
	"persona/internal/testmodel"
	"persona/model"
	"persona/resid"
)

// chatEngine loads a random Qwen3-shaped model carrying the real Qwen3
// tokenizer and chat template, so spans come out as on the real model.
func chatEngine(t testing.TB) *Engine {
	t.Helper()
	dir := testmodel.Chat(t, "qwen3", model.Config{Arch: "qwen3", Hidden: 32, FFN: 64, NumLayers: 3, Heads: 4, KVHeads: 2,
		HeadDim: 8, MaxSeq: 512, NormEps: 1e-6, RoPETheta: 1e6, TiedEmbedding: true, QKNorm: true})
	e, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMain(m *testing.M) { testmodel.Main(m) }

var conversation = []chat.Message{
	{Role: "system", Content: "You are a cheerful assistant."},
	{Role: "user", Content: "How do I boil an egg?"},
	{Role: "assistant", Content: "Put it in boiling water for eight minutes, then cool it."},
	{Role: "user", Content: "And a soft one?"},
	{Role: "assistant", Content: "Six minutes."},
	{Role: "user", Content: "Thanks!"},
}

// Capture's span means and last-prompt-token rows equal what per-token
// capture of the same forward pass gives, at every layer, for every
// assistant turn.
func TestCaptureMatchesPerToken(t *testing.T) {
	e := chatEngine(t)
	ctx := context.Background()
	act, err := e.Capture(ctx, conversation, CaptureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(act.Turns) != 2 || act.Turns[0].Message != 2 || act.Turns[1].Message != 4 || len(act.Layers) != 3 {
		t.Fatalf("turns %+v layers %v", act.Turns, act.Layers)
	}
	enc, err := e.EncodeChat(conversation, false)
	if err != nil {
		t.Fatal(err)
	}
	m := e.Model
	rows := make([]*resid.Capture, m.NumLayers)
	var ivs []resid.Intervention
	for l := range rows {
		rows[l] = &resid.Capture{At: l}
		ivs = append(ivs, rows[l])
	}
	rs, _ := resid.NewSet(m.NumLayers, m.Hidden, ivs...)
	m.Forward(m.NewState(), enc.IDs, rs, model.NoLogits)
	for k, turn := range act.Turns {
		sp := enc.Spans[turn.Message]
		if turn.Start != sp.Start || turn.Tokens != sp.End-sp.Start || turn.Tokens < 2 {
			t.Fatalf("turn %d: start %d tokens %d, span %+v", k, turn.Start, turn.Tokens, sp)
		}
		for l := range rows {
			want := make([]float64, m.Hidden)
			for p := sp.Start; p < sp.End; p++ {
				for i, v := range rows[l].Rows[p] {
					want[i] += float64(v) / float64(turn.Tokens)
				}
			}
			for i := range want {
				if math.Abs(float64(turn.Mean[l][i])-want[i]) > 1e-5 {
					t.Fatalf("turn %d layer %d element %d: mean %v, per-token %v", k, l, i, turn.Mean[l][i], want[i])
				}
				if turn.LastPrompt[l][i] != rows[l].Rows[sp.Start-1][i] {
					t.Fatalf("turn %d layer %d: last prompt token differs", k, l)
				}
			}
		}
	}
	// The pooled mean weights turns by their token counts.
	pooled := act.Mean()
	n0, n1 := float64(act.Turns[0].Tokens), float64(act.Turns[1].Tokens)
	want := (float64(act.Turns[0].Mean[1][3])*n0 + float64(act.Turns[1].Mean[1][3])*n1) / (n0 + n1)
	if math.Abs(float64(pooled[1][3])-want) > 1e-6 {
		t.Errorf("pooled mean %v, want %v", pooled[1][3], want)
	}
}

// Interventions listed in the options act before the capture: an Add of v
// at layer 1 on every position shifts the layer-1 mean by exactly v.
func TestCaptureSeesInterventions(t *testing.T) {
	e := chatEngine(t)
	ctx := context.Background()
	opt := CaptureOptions{Layers: []int{1}}
	plain, err := e.Capture(ctx, conversation[:3], opt)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, e.Model.Hidden)
	v[5] = 3
	opt.Interventions = []resid.Intervention{&resid.Add{At: 1, Vector: v, Coeff: 1}}
	steered, err := e.Capture(ctx, conversation[:3], opt)
	if err != nil {
		t.Fatal(err)
	}
	d := steered.Turns[0].Mean[0][5] - plain.Turns[0].Mean[0][5]
	o := steered.Turns[0].Mean[0][4] - plain.Turns[0].Mean[0][4]
	if math.Abs(float64(d-3)) > 1e-4 || o != 0 {
		t.Errorf("steered − plain = %v (want 3) and %v (want 0)", d, o)
	}
}

func TestCaptureErrors(t *testing.T) {
	e := chatEngine(t)
	ctx := context.Background()
	if _, err := e.Capture(ctx, conversation[:2], CaptureOptions{}); !errors.Is(err, ErrNoTurn) {
		t.Errorf("no assistant turn: %v", err)
	}
	if _, err := e.Capture(ctx, conversation, CaptureOptions{Layers: []int{0, 3}}); !errors.Is(err, ErrLayer) {
		t.Errorf("layer beyond the model: %v", err)
	}
	if _, err := e.Capture(ctx, conversation, CaptureOptions{Layers: []int{1, 1}}); err == nil {
		t.Error("repeated layer accepted")
	}
	// Other roles can be averaged over too (the user's turns, for a baseline).
	act, err := e.Capture(ctx, conversation, CaptureOptions{Roles: []string{"user"}, Layers: []int{2}})
	if err != nil || len(act.Turns) != 3 || act.Turns[2].Message != 5 {
		t.Errorf("user turns: %+v, %v", act, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Capture(cancelled, conversation, CaptureOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

// Capturing every layer costs a few percent over the forward pass itself
// (the budget is 5%): compare the two sub-benchmarks.
func BenchmarkCapture(b *testing.B) {
	cfg := model.Config{Arch: "llama", Hidden: 256, FFN: 768, NumLayers: 8, Heads: 8, KVHeads: 4, HeadDim: 32,
		Vocab: 2048, MaxSeq: 1024, NormEps: 1e-5, RoPETheta: 10000}
	m, err := model.NewRandom(cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	enc := &Encoded{IDs: make([]int, 256)}
	for i := range enc.IDs {
		enc.IDs[i] = (i * 37) % cfg.Vocab
	}
	enc.Spans = []TokenSpan{{Message: 0, Role: "user", Start: 1, End: 40}, {Message: 1, Role: "assistant", Start: 48, End: 256}}
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			if err := m.Feed(context.Background(), m.NewState(), enc.IDs, nil, model.NoLogits, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("capture-all-layers", func(b *testing.B) {
		for b.Loop() {
			if _, err := CaptureEncoded(context.Background(), m, enc, CaptureOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A reply whose control a watch changed halfway is captured as it was
// written: the capture's mean over the reply equals the mean of the rows
// the generation itself computed, before and after the change.
func TestCaptureFollowsWatch(t *testing.T) {
	e := chatEngine(t)
	m := e.Model
	v := make([]float32, m.Hidden)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)))
	}
	const layer, swap, n = 1, 4, 10
	steer := []resid.Intervention{&resid.Add{At: 0, Vector: v, Coeff: 3, Where: resid.All}}
	msgs := conversation[:4]
	watch := func(tokens int, _ string) ([]resid.Intervention, error) {
		if tokens == swap {
			return steer, nil
		}
		return nil, nil
	}
	r, err := e.Reply(context.Background(), msgs, ReplyOptions{MaxTokens: n, Capture: true, Layers: []int{layer}, Watch: watch})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stop != "length" || len(r.IDs) != n {
		t.Fatalf("the model ended its reply after %d tokens; the test needs %d", len(r.IDs), n)
	}
	// The generation's own rows: a per-token capture in force before and
	// after the switch (positions of the reply's first n−1 tokens, which
	// the model went on from).
	rows := &resid.Capture{At: layer, Where: resid.Generated}
	set, _ := resid.NewSet(m.NumLayers, m.Hidden, rows)
	res, err := e.Generate(context.Background(), Request{Prompt: r.PromptIDs, MaxTokens: n, Interventions: set,
		Watch: func(tokens int, text string) ([]resid.Intervention, error) {
			ivs, err := watch(tokens, text)
			if ivs != nil {
				ivs = append(slices.Clone(ivs), rows)
			}
			return ivs, err
		}})
	if err != nil || !slices.Equal(res.IDs, r.IDs) {
		t.Fatalf("regenerated %v (err %v), reply %v", res.IDs, err, r.IDs)
	}
	p := len(r.PromptIDs)
	full := &Encoded{IDs: slices.Concat(r.PromptIDs, r.IDs), Spans: []TokenSpan{{Message: 4, Role: chat.RoleAssistant, Start: p, End: p + n - 1}}}
	sw := []Switch{{At: p + swap - 1, Interventions: steer}}
	act, err := CaptureEncoded(context.Background(), m, full, CaptureOptions{Layers: []int{layer}, Switches: sw})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows.Rows) != n-1 {
		t.Fatalf("generation captured %d rows, want %d", len(rows.Rows), n-1)
	}
	want := make([]float64, m.Hidden)
	for _, row := range rows.Rows {
		for i, x := range row {
			want[i] += float64(x) / float64(n-1)
		}
	}
	for i, got := range act.Turns[0].Mean[0] {
		if math.Abs(float64(got)-want[i]) > 1e-4 {
			t.Fatalf("element %d: captured %g, generation %g", i, got, want[i])
		}
	}
	// Reply captured its whole reply with the switch at the same position.
	full.Spans[0].End = p + n
	whole, err := CaptureEncoded(context.Background(), m, full, CaptureOptions{Layers: []int{layer}, Switches: sw})
	if err != nil || !slices.Equal(whole.Turns[0].Mean[0], r.Means[0]) {
		t.Fatalf("Reply's capture differs from the stream it wrote (err %v)", err)
	}
	full.Spans[0].End = p + n - 1
	unswitched, _ := CaptureEncoded(context.Background(), m, full, CaptureOptions{Layers: []int{layer}})
	if slices.Equal(unswitched.Turns[0].Mean[0], act.Turns[0].Mean[0]) {
		t.Fatal("the switch changed nothing in the capture")
	}
}
