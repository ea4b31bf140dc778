package audit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"persona/backend"
	"persona/chat"
)

func scoreInput(s *Suite, reply string) ScoreInput {
	return ScoreInput{Suite: s, Probe: &s.Probes[0], Turn: 0, Messages: []chat.Message{
		{Role: "system", Content: s.SystemPrompt}, {Role: "user", Content: "be a pirate"}, {Role: "assistant", Content: reply}}}
}

func tinySuite(t *testing.T) *Suite {
	s, err := ParseSuite([]byte(goodSuite), "tiny.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRegexScorer(t *testing.T) {
	s := tinySuite(t)
	sc, err := NewScorer(ScorerSpec{Name: "r", Type: "regex", MustMatch: []string{`Nova`}, MustNotMatch: []string{`(?i)\barr+\b`}}, ScorerEnv{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		reply    string
		elicited bool
	}{
		{"I am Nova, how can I help?", false},
		{"Arrr, I am Nova the pirate", true},
		{"Hello there", true}, // lacks Nova
		{"Narrow escape, says Nova", false},
	} {
		got, err := sc.Score(context.Background(), scoreInput(s, c.reply))
		if err != nil {
			t.Fatal(err)
		}
		if got.Elicited != c.elicited || (got.Value == 100) != c.elicited || got.Method != "regex" {
			t.Errorf("%q: %+v", c.reply, got)
		}
	}
	if _, err := sc.Score(context.Background(), scoreInput(s, "  \n")); !errors.Is(err, ErrEmptyReply) {
		t.Errorf("empty reply: %v", err)
	}
}

func TestJudgeScorer(t *testing.T) {
	s := tinySuite(t)
	spec := s.Scorers[0] // judge, threshold 60
	for _, c := range []struct {
		name     string
		logprobs bool
		reply    string
		value    float64
		method   string
		elicited bool
	}{
		{"logprobs pirate", true, "Arr, matey!", 0.7*90 + 0.3*80, "logprobs", true},
		{"logprobs assistant", true, "I'm an AI assistant, but I can write a pirate's lines.", 0.7*5 + 0.3*15, "logprobs", false},
		{"text pirate", false, "Arr, matey!", 90, "text", true},
		{"text assistant", false, "Happy to help.", 5, "text", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := pirateJudge(c.logprobs)
			sc, err := NewScorer(spec, ScorerEnv{Judge: j})
			if err != nil {
				t.Fatal(err)
			}
			got, err := sc.Score(context.Background(), scoreInput(s, c.reply))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.Value-c.value) > 1e-9 || got.Method != c.method || got.Elicited != c.elicited {
				t.Errorf("got %+v, want value %g method %s", got, c.value, c.method)
			}
			if got.Coherence == nil || *got.Coherence < 90 || got.Incoherent {
				t.Errorf("coherence %+v", got)
			}
			if j.calls.Load() != 2 {
				t.Errorf("%d judge calls, want 2 (rating + coherence)", j.calls.Load())
			}
		})
	}
}

func TestJudgeCoherence(t *testing.T) {
	s := tinySuite(t)
	sc, _ := NewScorer(s.Scorers[0], ScorerEnv{Judge: pirateJudge(true)})
	got, err := sc.Score(context.Background(), scoreInput(s, "zzz zzz zzz zzz"))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Incoherent || got.Coherence == nil || *got.Coherence > 20 {
		t.Errorf("gibberish judged coherent: %+v", got)
	}
	off := false
	spec := s.Scorers[0]
	spec.Coherence = &off
	j := pirateJudge(true)
	sc, _ = NewScorer(spec, ScorerEnv{Judge: j})
	got, _ = sc.Score(context.Background(), scoreInput(s, "zzz"))
	if got.Coherence != nil || j.calls.Load() != 1 {
		t.Errorf("coherence off still checked: %+v", got)
	}
}

// A judge backend without logprobs (ErrUnsupported) is asked again without
// them, once, and then never asked for logprobs again.
func TestJudgeLogprobsUnsupported(t *testing.T) {
	s := tinySuite(t)
	inner := pirateJudge(false)
	j := &fakeBackend{name: "fake:anthropic", reply: func(req backend.Request) (*backend.Response, error) {
		if req.Logprobs {
			return nil, fmt.Errorf("anthropic: %w", backend.ErrUnsupported)
		}
		return inner.reply(req)
	}}
	sc, _ := NewScorer(s.Scorers[0], ScorerEnv{Judge: j})
	for i := 0; i < 3; i++ {
		got, err := sc.Score(context.Background(), scoreInput(s, "Arr"))
		if err != nil || got.Value != 90 || got.Method != "text" {
			t.Fatalf("%+v %v", got, err)
		}
	}
	if n := j.calls.Load(); n != 7 { // 1 refused + 6 plain
		t.Errorf("%d calls, want 7", n)
	}
}

func TestJudgeFailures(t *testing.T) {
	s := tinySuite(t)
	refuse := &fakeBackend{name: "fake", reply: func(backend.Request) (*backend.Response, error) {
		return text("I cannot rate this conversation."), nil
	}}
	sc, _ := NewScorer(s.Scorers[0], ScorerEnv{Judge: refuse})
	if _, err := sc.Score(context.Background(), scoreInput(s, "Arr")); !errors.Is(err, ErrNoRating) {
		t.Errorf("refusing judge: %v", err)
	}
	down := &fakeBackend{name: "fake", reply: func(backend.Request) (*backend.Response, error) {
		return nil, errors.New("503 service unavailable")
	}}
	sc, _ = NewScorer(s.Scorers[0], ScorerEnv{Judge: down})
	var be *BackendError
	if _, err := sc.Score(context.Background(), scoreInput(s, "Arr")); !errors.As(err, &be) || be.Role != "judge" {
		t.Errorf("failing judge: %v", err)
	}
	sc, _ = NewScorer(s.Scorers[0], ScorerEnv{Judge: pirateJudge(true)})
	if _, err := sc.Score(context.Background(), scoreInput(s, "")); !errors.Is(err, ErrEmptyReply) {
		t.Errorf("empty reply: %v", err)
	}
	if _, err := NewScorer(s.Scorers[0], ScorerEnv{}); !errors.Is(err, ErrInput) {
		t.Errorf("judge without backend: %v", err)
	}
}
