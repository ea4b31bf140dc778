package judge

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"

	"persona/backend"
)

func TestRead(t *testing.T) {
	lp := func(tok string, p float64) backend.TopLogprob {
		return backend.TopLogprob{Token: tok, Logprob: math.Log(p)}
	}
	for _, c := range []struct {
		name   string
		resp   backend.Response
		value  float64
		method string
		err    bool
	}{
		{"text", backend.Response{Content: " 42\n"}, 42, "text", false},
		{"text with words", backend.Response{Content: "Score: 75"}, 75, "text", false},
		{"out of range", backend.Response{Content: "250"}, 0, "", true},
		{"no number", backend.Response{Content: "N/A"}, 0, "", true},
		{"weighted", backend.Response{Content: "80", Logprobs: []backend.TokenLogprob{{Token: "80", Top: []backend.TopLogprob{lp("80", 0.5), lp("60", 0.25), lp("x", 0.25)}}}},
			(0.5*80 + 0.25*60) / 0.75, "logprobs", false},
		{"leading blank token", backend.Response{Content: " 30", Logprobs: []backend.TokenLogprob{{Token: " "}, {Token: "30", Top: []backend.TopLogprob{lp("30", 0.5), lp("40", 0.5)}}}},
			35, "logprobs", false},
		// A digit-per-token tokenizer: "8","5" — weighting the first digit
		// would rate 8, so the text is read instead.
		{"split digits", backend.Response{Content: "85", Logprobs: []backend.TokenLogprob{{Token: "8", Top: []backend.TopLogprob{lp("8", 0.9), lp("9", 0.1)}}, {Token: "5"}}},
			85, "text", false},
		// Mostly about to refuse: too little mass on numbers, read the text.
		{"low mass", backend.Response{Content: "10", Logprobs: []backend.TokenLogprob{{Token: "10", Top: []backend.TopLogprob{lp("10", 0.1), lp("I", 0.9)}}}},
			10, "text", false},
	} {
		v, m, err := Read(&c.resp)
		if (err != nil) != c.err || math.Abs(v-c.value) > 1e-9 || m != c.method {
			t.Errorf("%s: got %g %q %v", c.name, v, m, err)
		}
	}
}

func TestReadShortAnswers(t *testing.T) {
	for _, c := range []struct {
		resp   backend.Response
		want   float64
		method string
		err    bool
	}{
		{backend.Response{Content: " 42."}, 42, "text", false},
		{backend.Response{Content: "I cannot rate this."}, 0, "", true},
		{backend.Response{Content: "250"}, 0, "", true},
		{backend.Response{Content: "85", Logprobs: []backend.TokenLogprob{{Token: "8", Top: []backend.TopLogprob{{Token: "8", Logprob: 0}}}, {Token: "5"}}}, 85, "text", false},
		{backend.Response{Content: "60", Logprobs: []backend.TokenLogprob{{Token: " "}, {Token: "60", Top: []backend.TopLogprob{{Token: "60", Logprob: math.Log(0.5)}, {Token: "40", Logprob: math.Log(0.5)}}}}}, 50, "logprobs", false},
	} {
		v, m, err := Read(&c.resp)
		if (err != nil) != c.err || v != c.want || m != c.method {
			t.Errorf("%+v: %g %q %v", c.resp, v, m, err)
		}
	}
}

type noLogprobs struct{ calls atomic.Int32 }

func (b *noLogprobs) Chat(_ context.Context, req backend.Request) (*backend.Response, error) {
	b.calls.Add(1)
	if req.Logprobs {
		return nil, backend.ErrUnsupported
	}
	return &backend.Response{Content: "7"}, nil
}

// A backend that cannot return logprobs is asked again without, and only
// once asked with them.
func TestAskerFallsBack(t *testing.T) {
	var a Asker
	b := &noLogprobs{}
	for range 3 {
		resp, err := a.Ask(context.Background(), b, backend.Request{MaxTokens: 4})
		if err != nil || resp.Content != "7" {
			t.Fatalf("%v %v", resp, err)
		}
	}
	if n := b.calls.Load(); n != 4 {
		t.Errorf("%d calls, want 4", n)
	}
	if _, _, err := Read(&backend.Response{Content: "none"}); !errors.Is(err, ErrNoRating) {
		t.Errorf("no number: %v", err)
	}
}
