package control

import (
	"context"
	"encoding/json"
	"testing"

	"persona/chat"
	"persona/internal/stats"
	"persona/vectors"
	"persona/world"
)

// Screening a fine-tuning set for the cynical trait on the shipped
// organism: 6 single-turn samples written by the cynic among 60 by the
// Assistant (no system prompts), ranked by the vector at layer 2. The
// sample's own projection ranks them well; the persona-vectors difference
// (minus the model's own reply) ranks them worse on this model. Loose
// bounds: the measured AUROCs are in docs/measurements.md.
func TestOrganismScreening(t *testing.T) {
	e, _ := shippedOrganism(t)
	w := world.Default()
	v := extract(t, e, trait(t), 2)
	var data []chat.Chat
	var laden []bool
	clean, cynic := 0, 0
	for _, c := range w.Pretrain(2000, 7, world.PretrainOptions{MeanTurns: 1, MaxTurns: 1}) {
		var who string
		if err := json.Unmarshal(c.Meta["persona"], &who); err != nil {
			t.Fatal(err)
		}
		switch {
		case who == "assistant" && clean < 60:
			clean++
		case who == "cynic" && cynic < 6:
			cynic++
		default:
			continue
		}
		data = append(data, chat.Chat{Messages: c.Messages})
		laden = append(laden, who == "cynic")
	}
	if clean < 60 || cynic < 6 {
		t.Fatalf("the world gave %d Assistant and %d cynic samples", clean, cynic)
	}
	for i, m := range data {
		if m.Messages[0].Role == chat.RoleSystem {
			t.Fatalf("sample %d has a system prompt", i)
		}
	}
	auroc := map[string]float64{}
	for _, by := range []string{vectors.ScreenByResponse, vectors.ScreenByDifference} {
		s, err := vectors.Screen(context.Background(), e, v, data, vectors.ScreenOptions{Layer: 2, By: by, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		scores := make([]float64, len(s.Samples))
		for i, x := range s.Samples {
			scores[i] = map[string]float64{vectors.ScreenByResponse: x.Given, vectors.ScreenByDifference: x.Diff}[by]
		}
		auroc[by] = stats.AUROC(scores, laden)
	}
	t.Logf("AUROC by response %.3f, by difference %.3f", auroc[vectors.ScreenByResponse], auroc[vectors.ScreenByDifference])
	if auroc[vectors.ScreenByResponse] < 0.85 {
		t.Errorf("screening by the response's projection: AUROC %.3f", auroc[vectors.ScreenByResponse])
	}
}
