package organism

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"persona/audit"
	"persona/chat"
	"persona/personas"
	"persona/posterior"
	"persona/world"
)

func TestOrganismSuite(t *testing.T) {
	s, err := audit.OpenSuite("organism")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Probes) < 40 || s.Scorers[0].Type != "oracle" {
		t.Fatalf("%d probes, scorers %+v", len(s.Probes), s.Scorers)
	}
	none := 0
	for _, p := range s.Probes {
		if len(p.Turns) != 8 || p.SystemPrompt == nil {
			t.Errorf("probe %s: %d turns, system prompt %v", p.ID, len(p.Turns), p.SystemPrompt)
		}
		if p.SystemPrompt != nil && *p.SystemPrompt == "" {
			none++
		}
	}
	if none == 0 {
		t.Error("no probe runs without a system prompt")
	}
}

// The audit's oracle scorer, given the world's oracle, rates the world's own replies: low departure for the
// Assistant's, high for other personas' (post-training chats are labelled).
func TestOracleScorer(t *testing.T) {
	w := world.Default()
	env := audit.ScorerEnv{Oracle: w.Oracle()}
	sc, err := audit.NewScorer(audit.ScorerSpec{Name: "oracle", Type: "oracle"}, env)
	if err != nil {
		t.Fatal(err)
	}
	s := &audit.Suite{Name: "o"}
	p := &audit.Probe{ID: "x", Category: audit.RolePlayCapture}
	var asst, other, nA, nO float64
	for _, c := range w.Posttrain(300, 1, world.DefaultPosttrain()) {
		var persona string
		json.Unmarshal(c.Meta["persona"], &persona)
		for i, m := range c.Messages {
			if m.Role != chat.RoleAssistant {
				continue
			}
			got, err := sc.Score(context.Background(), audit.ScoreInput{Suite: s, Probe: p, Messages: c.Messages[:i+1]})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Personas) == 0 {
				t.Fatal("no posterior")
			}
			if persona == personas.AssistantName {
				asst += got.Value
				nA++
			} else {
				other += got.Value
				nO++
			}
		}
	}
	asst, other = asst/nA, other/nO
	t.Logf("mean departure: Assistant replies %.1f (%v), other personas %.1f (%v)", asst, nA, other, nO)
	if asst > 30 || other < 60 {
		t.Errorf("oracle scorer does not separate personas: %.1f vs %.1f", asst, other)
	}
	if _, err := audit.NewScorer(audit.ScorerSpec{Name: "o", Type: "oracle", Options: map[string]any{"persona": "nobody"}}, env); !errors.Is(err, audit.ErrInput) {
		t.Errorf("unknown persona: %v", err)
	}
	if _, err := audit.NewScorer(audit.ScorerSpec{Name: "o", Type: "oracle"}, audit.ScorerEnv{}); !errors.Is(err, audit.ErrInput) {
		t.Errorf("no oracle: %v", err)
	}
}

// TestDefaultSwitchRateFitsTheWorld keeps posterior.DefaultSwitchRate the
// switch rate of the world the organism learned from: fitted on its
// pretraining chats with a uniform prior over the library, as the
// posterior uses by default.
func TestDefaultSwitchRateFitsTheWorld(t *testing.T) {
	w := world.Default()
	hyps, err := posterior.FromLibrary(w.Lib, posterior.LibraryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fit := posterior.FitSwitchRate(w.Pretrain(4000, 17, world.DefaultPretrain()), hyps)
	t.Logf("fitted ε = %.4f (%d changes in %d transitions); DefaultSwitchRate %.4f", fit.Rate, fit.Changes, fit.Transitions, posterior.DefaultSwitchRate)
	if fit.Transitions < 5000 || math.Abs(fit.Rate-posterior.DefaultSwitchRate) > 0.005 {
		t.Errorf("fitted ε = %.4f on %d transitions; DefaultSwitchRate is %.4f: refit it", fit.Rate, fit.Transitions, posterior.DefaultSwitchRate)
	}
}
