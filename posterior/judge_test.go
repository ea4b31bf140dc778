package posterior

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"persona/backend"
	"persona/vectors"
)

// fakeJudge rates 90 for the pirate and 10 for everyone else; with
// logprobs it spreads 70/30 over two numbers.
type fakeJudge struct {
	logprobs bool
	calls    int
}

func (f *fakeJudge) Name() string { return "fake" }
func (f *fakeJudge) Chat(_ context.Context, req backend.Request) (*backend.Response, error) {
	f.calls++
	if req.Logprobs && !f.logprobs {
		return nil, backend.ErrUnsupported
	}
	p := req.Messages[len(req.Messages)-1].Content
	v, alt := "10", "20"
	if strings.Contains(p, `name="pirate"`) || strings.Contains(p, "evil") {
		v, alt = "90", "80"
	}
	resp := &backend.Response{Content: v}
	if req.Logprobs {
		resp.Logprobs = []backend.TokenLogprob{{Token: v, Top: []backend.TopLogprob{{Token: v, Logprob: math.Log(0.7)}, {Token: alt, Logprob: math.Log(0.3)}}}}
	}
	return resp, nil
}

func TestJudgePosterior(t *testing.T) {
	for _, lp := range []bool{true, false} {
		f := &fakeJudge{logprobs: lp}
		jp := &JudgePosterior{J: NewJudge(f), Hyps: testHyps()}
		res, err := jp.Posterior(context.Background(), testChat)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Turns) != 3 || res.Turns[0].Top != "pirate" {
			t.Fatalf("logprobs %v: %+v", lp, res.Turns)
		}
		want := 90.0
		if lp {
			want = 0.7*90 + 0.3*80
		}
		if got := res.Turns[0].Evidence[0]; math.Abs(got-want) > 1e-9 {
			t.Errorf("logprobs %v: rating %g, want %g", lp, got, want)
		}
		// Unsupported logprobs are asked for once only.
		if !lp && f.calls != 3*4+1 {
			t.Errorf("%d judge calls, want 13", f.calls)
		}
	}
	if _, err := (&JudgePosterior{J: NewJudge(&fakeJudge{}), Hyps: testHyps()}).Posterior(context.Background(), testChat[:2]); !errors.Is(err, ErrNoAssistant) {
		t.Errorf("no assistant turn: %v", err)
	}
	// As a vectors.Scorer.
	spec, err := vectors.ParseTraitSpec([]byte("name: evil\npairs: [{pos: a, neg: b}]\nquestions: {extraction: [q1], evaluation: [q2]}\nrubric: \"{question} {answer}\"\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewJudge(&fakeJudge{logprobs: true}).Score(context.Background(), spec, "q1", "I am evil")
	if err != nil || sc.Trait != 0.7*90+0.3*80 {
		t.Errorf("score %+v %v", sc, err)
	}
}
