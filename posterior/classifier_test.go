package posterior

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/vectors"
	"persona/world"
)

// Three personas as Gaussian clusters in 16 dimensions: the fitted
// classifier separates them, round-trips through its file, and refuses
// activations of the wrong width.
func TestClassifierFit(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c"}
	centre := [][]float32{make([]float32, 16), make([]float32, 16), make([]float32, 16)}
	centre[0][0], centre[1][1], centre[2][2] = 3, 3, 3
	draw := func(k int) []float32 {
		v := make([]float32, 16)
		for j := range v {
			v[j] = centre[k][j] + float32(r.NormFloat64())
		}
		return v
	}
	var train []Sample
	for i := 0; i < 300; i++ {
		train = append(train, Sample{Persona: names[i%3], Acts: [][]float32{draw(i % 3)}})
	}
	c, err := FitClassifier(names, []int{1}, []string{ReadResponse}, "test", train, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	for i := 0; i < 300; i++ {
		lo, _ := c.LogOdds([][]float32{draw(i % 3)})
		if argmax(lo) == i%3 {
			right++
		}
	}
	if right < 250 {
		t.Errorf("held-out accuracy %d/300", right)
	}
	path := filepath.Join(t.TempDir(), "c.json")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	c2, err := LoadClassifier(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.LogOdds(train[0].Acts)
	b, _ := c2.LogOdds(train[0].Acts)
	if a[0] != b[0] {
		t.Errorf("round trip changed log-odds %g → %g", a[0], b[0])
	}
	if _, err := c.LogOdds([][]float32{make([]float32, 5)}); !errors.Is(err, vectors.ErrWidth) {
		t.Errorf("wrong width: %v", err)
	}
	os.WriteFile(path, []byte(`{"names":["a","b"],"layers":[1],"directions":[[[1],[1,2]]],"weights":[[0,0],[0,0]],"bias":[0,0],"mu":[0,0],"sigma":[1,1]}`), 0o644)
	if _, err := LoadClassifier(path); err == nil {
		t.Error("ragged directions accepted")
	}
	if _, err := FitClassifier(names, []int{1}, []string{ReadResponse}, "test", train[:2], FitOptions{}); err == nil {
		t.Error("a persona without samples accepted")
	}
	if _, err := FitClassifier(names, []int{1}, DefaultReadings, "test", train, FitOptions{}); err == nil {
		t.Error("samples with one activation accepted for two readings")
	}
	for _, bad := range [][]string{nil, {"middle"}, {ReadResponse, ReadResponse}} {
		if _, err := FitClassifier(names, []int{1}, bad, "test", train, FitOptions{}); err == nil {
			t.Errorf("readings %q accepted", bad)
		}
	}
	// A file written before classifiers had readings reads the response.
	old := `{"names":["a","b"],"layers":[1],"directions":[[[1,0],[0,1]]],"weights":[[1,0],[0,1]],"bias":[0,0],"mu":[0,0],"sigma":[1,1]}`
	os.WriteFile(path, []byte(old), 0o644)
	if c, err := LoadClassifier(path); err != nil || !slices.Equal(c.readings(), []string{ReadResponse}) {
		t.Errorf("file without readings: %v", err)
	}
	os.WriteFile(path, []byte(strings.Replace(old, `"layers"`, `"readings":["response","last_prompt"],"layers"`, 1)), 0o644)
	if _, err := LoadClassifier(path); err == nil {
		t.Error("two readings with the directions of one accepted")
	}
}

// The activations estimator runs end to end on a model: labelled world
// chats → samples → classifier → per-turn posterior; a classifier for
// another width or layer is refused.
func TestActivationPosterior(t *testing.T) {
	e := testEngine(t)
	ctx := context.Background()
	chats := world.Default().Pretrain(40, 9, world.PretrainOptions{MeanTurns: 2, MaxTurns: 3})
	samples, err := LabelledSamples(ctx, e, chats, []int{1}, DefaultReadings, func(c, k int) string {
		labels, _ := world.Labels(chats[c])
		return labels[k].Persona
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range samples {
		seen[s.Persona] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	if len(samples) == 0 || len(samples[0].Acts) != 2 {
		t.Fatalf("samples %d, activations per sample %d: want two readings", len(samples), len(samples[0].Acts))
	}
	if last := samples[len(samples)-1]; last.Chat < 30 || samples[0].Chat != 0 {
		t.Errorf("samples name chats %d … %d of 40", samples[0].Chat, last.Chat)
	}
	c, err := FitClassifier(names, []int{1}, DefaultReadings, "test", samples, FitOptions{Steps: 50})
	if err != nil {
		t.Fatal(err)
	}
	if acc, err := c.Accuracy(samples); err != nil || acc < 0.5 {
		t.Errorf("training accuracy %.2f (%v)", acc, err)
	}
	if _, err := c.Accuracy(nil); err == nil {
		t.Error("accuracy of no samples")
	}
	ap := &ActivationPosterior{E: e, C: c}
	res, err := ap.Posterior(ctx, testChat)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Turns) != 3 || res.Turns[2].Tokens == 0 {
		t.Fatalf("%+v", res.Turns)
	}
	if _, err := ap.Posterior(ctx, []chat.Message{{Role: "user", Content: "hi"}}); !errors.Is(err, ErrNoAssistant) {
		t.Errorf("no assistant: %v", err)
	}
	bad := *c
	bad.Layers = []int{7}
	if _, err := (&ActivationPosterior{E: e, C: &bad}).Posterior(ctx, testChat); !errors.Is(err, engine.ErrLayer) {
		t.Errorf("layer 7: %v", err)
	}
}

// A classifier file is untrusted input: whatever it holds, loading either
// refuses it or gives a classifier whose log-odds can be computed for
// activations of its own shape.
func FuzzLoadClassifier(f *testing.F) {
	f.Add([]byte(`{"names":["a","b"],"layers":[1],"directions":[[[1,0],[0,1]]],"weights":[[1,0],[0,1]],"bias":[0,0],"mu":[0,0],"sigma":[1,1]}`))
	f.Add([]byte(`{"names":["a","b"],"layer":1,"directions":[[1,0],[0,1]]}`))
	f.Add([]byte(`{"names":["a","b"],"layers":[1,2],"directions":[[[1]],[[1],[2]]],"weights":[[0,0,0,0],[0,0,0,0]],"bias":[0,0],"mu":[0,0,0,0],"sigma":[1,1,1,1]}`))
	f.Add([]byte(`{"names":["a","b"],"layers":[1],"readings":["response","last_prompt"],"directions":[[[1,0],[0,1]],[[1,0],[0,1]]],"weights":[[1,0,0,1],[0,1,1,0]],"bias":[0,0],"mu":[0,0,0,0],"sigma":[1,1,1,1]}`))
	f.Add([]byte(`{"names":["a","b"],"layers":[1],"readings":["last_prompt","last_prompt"],"directions":[[[1,0],[0,1]],[[1,0],[0,1]]],"weights":[[1,0,0,1],[0,1,1,0]],"bias":[0,0],"mu":[0,0,0,0],"sigma":[1,1,1,1]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadClassifier(path)
		if err != nil {
			return
		}
		acts := make([][]float32, len(c.Dirs))
		for l := range acts {
			acts[l] = make([]float32, c.width())
		}
		if _, err := c.LogOdds(acts); err != nil {
			t.Fatalf("a loaded classifier refused activations of its own shape: %v", err)
		}
	})
}
