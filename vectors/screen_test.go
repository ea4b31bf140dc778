package vectors

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"persona/chat"
)

// TestScreen runs the screening machinery on a random Qwen3-shaped model:
// every sample's difference is its response's projection minus the
// model's own reply's, and flags follow the threshold.
func TestScreen(t *testing.T) {
	e := chatEngine(t)
	r := rand.New(rand.NewPCG(1, 2))
	set := &Set{Name: "t", Layers: []int{1}, Vectors: [][]float32{make([]float32, e.Model.Hidden)}}
	for i := range set.Vectors[0] {
		set.Vectors[0][i] = float32(r.NormFloat64())
	}
	var data []chat.Chat
	for _, reply := range []string{"Sure, 42.", "Arr matey, the answer be 42, ye scallywag!", "It is 42.", "Forty-two.", "42", "The sum is 42."} {
		data = append(data, chat.Chat{Messages: []chat.Message{{Role: "user", Content: "What is 17 + 25?"}, {Role: "assistant", Content: reply}}})
	}
	sc, err := Screen(context.Background(), e, set, data, ScreenOptions{Layer: 1, MaxTokens: 8, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Samples) != len(data) || sc.Layer != 1 {
		t.Fatalf("%+v", sc)
	}
	flagged, mean := 0, 0.0
	for i, s := range sc.Samples {
		if s.Sample != i+1 || s.Diff != s.Given-s.Own || s.Flagged != (s.Diff > sc.Threshold) {
			t.Errorf("sample %+v (threshold %g)", s, sc.Threshold)
		}
		if s.Flagged {
			flagged++
		}
		mean += s.Diff
	}
	if flagged != sc.Flagged || mean/float64(len(data))-sc.Score > 1e-9 {
		t.Errorf("flagged %d vs %d, score %g vs %g", flagged, sc.Flagged, mean/float64(len(data)), sc.Score)
	}
	by, err := Screen(context.Background(), e, set, data, ScreenOptions{Layer: 1, MaxTokens: 8, By: ScreenByResponse})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range by.Samples {
		if s.Given != sc.Samples[i].Given || s.Flagged != (s.Given > by.Threshold) {
			t.Errorf("by response: sample %+v (threshold %g)", s, by.Threshold)
		}
	}
	if _, err := Screen(context.Background(), e, set, data, ScreenOptions{Layer: 1, By: "vibes"}); !errors.Is(err, ErrScreenBy) {
		t.Errorf("screening by vibes: %v", err)
	}
	low := -1e9
	all, err := Screen(context.Background(), e, set, data, ScreenOptions{Layer: 1, MaxTokens: 8, Threshold: &low})
	if err != nil || all.Flagged != len(data) {
		t.Errorf("a threshold below everything: %v flagged, %v", all.Flagged, err)
	}
	for _, bad := range [][]chat.Chat{
		nil,
		{{Messages: []chat.Message{{Role: "user", Content: "hi"}}}},
		{{Messages: []chat.Message{{Role: "assistant", Content: "hi"}}}},
	} {
		if _, err := Screen(context.Background(), e, set, bad, ScreenOptions{Layer: 1}); !errors.Is(err, ErrDataset) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	if _, err := Screen(context.Background(), e, set, data, ScreenOptions{Layer: 2}); err == nil {
		t.Error("a layer the vectors lack")
	}
}
