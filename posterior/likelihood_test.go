package posterior

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"persona/chat"
	"persona/personas"
)

func testHyps() []Hypothesis {
	return []Hypothesis{
		{Name: "pirate", Prompts: []string{"You are the pirate, a sea rover."}, Prior: 1},
		{Name: "poet", Prompts: []string{"You are the poet."}, Prior: 2},
		{Name: "mixed", Prompts: []string{"You are the Assistant.", "Be helpful."}, Prior: 1},
		{Name: DefaultName, Prompts: []string{""}, Prior: 1},
	}
}

// The evidence of every hypothesis is exactly the sum of the engine's own
// teacher-forced log-probabilities over the assistant tokens (a mixture's is
// the log of the mean likelihood), cumulative over turns; the posterior is
// Bayes' rule on it.
func TestLikelihoodMatchesLogProbs(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	l, err := NewLikelihood(e, testHyps())
	if err != nil {
		t.Fatal(err)
	}
	l.WholeConversation = true
	res, err := l.Posterior(ctx, testChat)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Turns) != 3 || res.Turns[2].Message != 6 {
		t.Fatalf("turns: %+v", res.Turns)
	}
	for hi, h := range l.Hyps {
		var per [][]float64
		for _, p := range h.Prompts {
			msgs := testChat[1:]
			if p != "" {
				msgs = append([]chat.Message{{Role: "system", Content: p}}, msgs...)
			}
			enc, err := e.EncodeChat(msgs, false)
			if err != nil {
				t.Fatal(err)
			}
			lp, err := e.LogProbs(ctx, enc.IDs, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			var cum []float64
			sum := 0.0
			for _, sp := range enc.Spans {
				if sp.Role != "assistant" {
					continue
				}
				for p := sp.Start; p < sp.End; p++ {
					sum += float64(lp[p-1])
				}
				cum = append(cum, sum)
			}
			per = append(per, cum)
		}
		for k := range res.Turns {
			var xs []float64
			for _, c := range per {
				xs = append(xs, c[k])
			}
			want := logMeanExp(xs)
			if got := res.Turns[k].Evidence[hi]; math.Abs(got-want) > 1e-3*math.Max(1, math.Abs(want)) {
				t.Errorf("%s turn %d: evidence %g, LogProbs give %g", h.Name, k+1, got, want)
			}
		}
	}
	for _, turn := range res.Turns {
		s := 0.0
		for i, p := range turn.Posterior {
			s += p
			want := math.Log(res.Prior[i]) + turn.Evidence[i]
			ref := math.Log(res.Prior[0]) + turn.Evidence[0]
			if got := math.Log(p / turn.Posterior[0]); math.Abs(got-(want-ref)) > 1e-6 {
				t.Errorf("turn %d: posterior ratio %g, Bayes %g", turn.Turn, got, want-ref)
			}
		}
		if math.Abs(s-1) > 1e-9 {
			t.Errorf("posterior sums to %g", s)
		}
	}
}

// A Tracker fed a growing conversation gives the same posteriors as a fresh
// computation and runs only the new tokens.
func TestTrackerIncremental(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	l, err := NewLikelihood(e, testHyps())
	if err != nil {
		t.Fatal(err)
	}
	tr := l.Tracker()
	var last *Result
	for _, n := range []int{3, 5, 7} {
		if last, err = tr.Update(ctx, testChat[:n]); err != nil {
			t.Fatal(err)
		}
	}
	incremental := l.Forwarded.Load()

	l2, _ := NewLikelihood(e, testHyps())
	l2.WholeConversation = true
	full, err := l2.Posterior(ctx, testChat)
	if err != nil {
		t.Fatal(err)
	}
	for k := range full.Turns {
		for i := range full.Names {
			if a, b := last.Turns[k].Evidence[i], full.Turns[k].Evidence[i]; math.Abs(a-b) > 1e-3 {
				t.Errorf("turn %d %s: incremental %g, full %g", k+1, full.Names[i], a, b)
			}
		}
	}
	// Incremental work is the full pass plus at most a token per update and
	// sequence (the held-back last token).
	if once := l2.Forwarded.Load(); incremental > once+int64(3*5) {
		t.Errorf("incremental updates ran %d positions, one full pass %d", incremental, once)
	}
	// An edited earlier turn is rewound to and recomputed.
	edited := append([]chat.Message(nil), testChat...)
	edited[4].Content = "Paris, matey."
	got, err := tr.Update(ctx, edited)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l2.Posterior(ctx, edited)
	if a, b := got.Turns[2].Evidence[0], want.Turns[2].Evidence[0]; math.Abs(a-b) > 1e-3 {
		t.Errorf("after an edit: incremental %g, full %g", a, b)
	}
}

// The prompt trie runs shared prefixes once: ten personas cost less than
// ten separate passes.
func TestTrieSharesPrefixes(t *testing.T) {
	e := testEngine(t)
	hyps, err := FromLibrary(personas.Default(), LibraryOptions{Prompts: "all"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLikelihood(e, hyps)
	if err != nil {
		t.Fatal(err)
	}
	l.WholeConversation = true
	if _, err := l.Posterior(context.Background(), testChat); err != nil {
		t.Fatal(err)
	}
	separate := 0
	for _, h := range hyps {
		for _, p := range h.Prompts {
			enc, _ := e.EncodeChat(append([]chat.Message{{Role: "system", Content: p}}, testChat[1:]...), false)
			separate += len(enc.IDs) - 1
		}
	}
	if got := l.Forwarded.Load(); got >= int64(separate) {
		t.Errorf("trie ran %d positions, separate passes %d", got, separate)
	} else {
		t.Logf("trie ran %d positions, separate passes %d", got, separate)
	}
}

func TestLikelihoodErrors(t *testing.T) {
	e := testEngine(t)
	l, err := NewLikelihood(e, testHyps())
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Posterior(context.Background(), testChat[:2])
	if !errors.Is(err, ErrNoAssistant) {
		t.Errorf("no assistant turn: %v", err)
	}
	for _, hs := range [][]Hypothesis{nil, {{Name: "a", Prompts: []string{"x"}, Prior: 0}}, {{Name: "a", Prior: 1}},
		{{Name: "a", Prompts: []string{"x"}, Prior: 1}, {Name: "a", Prompts: []string{"y"}, Prior: 1}}} {
		if _, err := NewLikelihood(e, hs); err == nil {
			t.Errorf("hypotheses %+v accepted", hs)
		}
	}
	if _, err := FromLibrary(personas.Default(), LibraryOptions{Prompts: "loud"}); err == nil {
		t.Error("unknown prompt kind accepted")
	}
}

// By default each turn's emission is the engine's log-probability of
// the reply after its own user turn alone, whatever came before.
func TestTurnContext(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	l, err := NewLikelihood(e, testHyps())
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Posterior(ctx, testChat)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Turns) != 3 || res.Turns[2].Message != 6 {
		t.Fatalf("turns: %+v", res.Turns)
	}
	conv := testChat[1:]
	for k, ai := range []int{1, 3, 5} {
		for hi, h := range l.Hyps {
			var xs []float64
			for _, p := range h.Prompts {
				msgs := []chat.Message{conv[ai-1], conv[ai]}
				if p != "" {
					msgs = append([]chat.Message{{Role: "system", Content: p}}, msgs...)
				}
				enc, err := e.EncodeChat(msgs, false)
				if err != nil {
					t.Fatal(err)
				}
				lp, err := e.LogProbs(ctx, enc.IDs, 1, nil)
				if err != nil {
					t.Fatal(err)
				}
				sum := 0.0
				sp := enc.Spans[len(enc.Spans)-1]
				for q := sp.Start; q < sp.End; q++ {
					sum += float64(lp[q-1])
				}
				xs = append(xs, sum)
			}
			want := logMeanExp(xs)
			if got := res.Turns[k].Emission[hi]; math.Abs(got-want) > 1e-3*math.Max(1, math.Abs(want)) {
				t.Errorf("%s turn %d: emission %g, LogProbs give %g", h.Name, k+1, got, want)
			}
		}
	}
}

// A conversation read again after every turn runs only its newest turn
// through the model; an edited turn is scored afresh.
func TestTurnContextRemembersTurns(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	l, err := NewLikelihood(e, testHyps())
	if err != nil {
		t.Fatal(err)
	}
	var perCall []int64
	for _, n := range []int{3, 5, 7} {
		before := l.Forwarded.Load()
		if _, err := l.Posterior(ctx, testChat[:n]); err != nil {
			t.Fatal(err)
		}
		perCall = append(perCall, l.Forwarded.Load()-before)
	}
	fresh, _ := NewLikelihood(e, testHyps())
	want, err := fresh.Posterior(ctx, testChat)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Posterior(ctx, testChat)
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Forwarded.Load() - perCall[0] - perCall[1] - perCall[2]; n != 0 {
		t.Errorf("the same conversation again ran %d positions", n)
	}
	for k := range want.Turns {
		if !slices.Equal(want.Turns[k].Emission, again.Turns[k].Emission) {
			t.Errorf("turn %d: remembered %v, fresh %v", k+1, again.Turns[k].Emission, want.Turns[k].Emission)
		}
	}
	// Each growing call ran one turn: about as many positions as the first.
	for i, n := range perCall {
		if n == 0 || n > 2*perCall[0] {
			t.Errorf("call %d ran %d positions (first %d)", i+1, n, perCall[0])
		}
	}
	// From the third turn on, the personas' prompts are not run again: the
	// newest turn costs less than the same turn scored by a fresh reader.
	alone, _ := NewLikelihood(e, testHyps())
	if _, err := alone.Posterior(ctx, []chat.Message{testChat[5], testChat[6]}); err != nil {
		t.Fatal(err)
	}
	if perCall[2] >= alone.Forwarded.Load() {
		t.Errorf("third turn ran %d positions, the same turn alone %d: the prompts ran again", perCall[2], alone.Forwarded.Load())
	}
	edited := slices.Clone(testChat)
	edited[4].Content = "Paris, matey."
	before := l.Forwarded.Load()
	if _, err := l.Posterior(ctx, edited); err != nil {
		t.Fatal(err)
	}
	if l.Forwarded.Load() == before {
		t.Error("an edited turn was not scored again")
	}
}
