package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/chat"
	"persona/internal/testmodel"
	"persona/posterior"
	"persona/vectors"
	"persona/world"
)

func pvFixture(t *testing.T) (modelDir, chats string) {
	t.Helper()
	dir := testmodel.Organism(t, 32, 2)
	chats = filepath.Join(t.TempDir(), "chats.jsonl")
	f, err := os.Create(chats)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.WriteJSONL(f, world.Default().Pretrain(2, 5, world.PretrainOptions{MeanTurns: 2, MaxTurns: 3})); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dir, chats
}

func TestPosteriorCLI(t *testing.T) {
	m, chats := pvFixture(t)
	out, stderr, code := run(t, "posterior", "--model", m, "--chat", chats, "--default", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res []struct {
		Chat   int `json:"chat"`
		Result struct {
			Names []string `json:"names"`
			Turns []struct {
				Posterior []float64 `json:"posterior"`
				Top       string    `json:"top"`
			} `json:"turns"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if len(res) != 2 || len(res[0].Result.Names) != 11 || len(res[0].Result.Turns) == 0 || res[0].Result.Turns[0].Top == "" {
		t.Fatalf("unexpected result: %+v", res)
	}
	// Table output and the activations method with a fitted classifier.
	out, stderr, code = run(t, "posterior", "--model", m, "--chat", chats)
	if code != 0 || !strings.Contains(out, "turn  filtered") || !strings.Contains(out, "smoothed") {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	cls := filepath.Join(t.TempDir(), "c.json")
	if out, stderr, code = run(t, "posterior", "fit", "--model", m, "--out", cls, "--n", "40", "--layers", "1"); code != 0 {
		t.Fatalf("fit: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "held out: ") { // a first fit's accuracy on every fifth conversation
		t.Errorf("fit does not report held-out accuracy: %s", out)
	}
	if out, stderr, code = run(t, "posterior", "--model", m, "--chat", chats, "--method", "activations", "--classifier", cls); code != 0 || !strings.Contains(out, "activations") {
		t.Fatalf("activations: exit %d: %s %s", code, out, stderr)
	}
	// A classifier saved in the model directory makes activations the
	// default method (on a copy: the model is shared by the test binary).
	own := filepath.Join(t.TempDir(), "model")
	if err := os.CopyFS(own, os.DirFS(m)); err != nil {
		t.Fatal(err)
	}
	m = own
	data, err := os.ReadFile(cls)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m, posterior.ClassifierFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code = run(t, "posterior", "--model", m, "--chat", chats); code != 0 || !strings.Contains(out, "(activations)") {
		t.Fatalf("default with the model's classifier: exit %d: %s %s", code, out, stderr)
	}
	if out, stderr, code = run(t, "posterior", "--model", m, "--chat", chats, "--method", "likelihood"); code != 0 || !strings.Contains(out, "(likelihood)") {
		t.Fatalf("likelihood asked for: exit %d: %s %s", code, out, stderr)
	}
	// A score split by the words of a text: the chats' own words are all
	// seen.
	out, stderr, code = run(t, "posterior", "--model", m, "--chat", chats, "--score", "--seen-in", chats, "--json")
	var sc posterior.Score
	if code != 0 || json.Unmarshal([]byte(out), &sc) != nil {
		t.Fatalf("score: exit %d: %s %s", code, out, stderr)
	}
	if seen := sc.ByWords["every word seen"]; sc.Turns == 0 || seen == nil || seen.Turns != sc.Turns || len(sc.ByWords) != 1 || len(sc.ByContext) == 0 {
		t.Errorf("score split by words %+v, by context %+v, of %d turns", sc.ByWords, sc.ByContext, sc.Turns)
	}
}

func TestPosteriorVectorsBadInput(t *testing.T) {
	m, chats := pvFixture(t)
	dir := t.TempDir()
	noAssistant := filepath.Join(dir, "user.jsonl")
	os.WriteFile(noAssistant, []byte(`{"messages":[{"role":"user","content":"hi"}]}`+"\n"), 0o644)
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o644)
	wide := filepath.Join(dir, "wide.safetensors")
	(&vectors.Set{Name: "x", Layers: []int{1}, Vectors: [][]float32{make([]float32, 64)}}).Save(wide)
	deep := filepath.Join(dir, "deep.safetensors")
	v := make([]float32, 32)
	v[0] = 1
	(&vectors.Set{Name: "x", Layers: []int{5}, Vectors: [][]float32{v}}).Save(deep)
	good := filepath.Join(dir, "good.safetensors")
	(&vectors.Set{Name: "x", Layers: []int{0, 1}, Vectors: [][]float32{v, v}}).Save(good)
	nan := filepath.Join(dir, "nan.safetensors")
	os.WriteFile(nan, []byte("not a safetensors file"), 0o644)
	// A library of one persona, an empty one, and labels naming a persona
	// the library lacks.
	one := libraryOf(t, "pirate")
	two := libraryOf(t, "pirate", "poet")
	emptyLib := filepath.Join(dir, "none")
	os.MkdirAll(emptyLib, 0o755)
	unknown := filepath.Join(dir, "unknown.jsonl")
	os.WriteFile(unknown, []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Arr!"}],"labels":[{"persona":"kraken"}]}`+"\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"posterior", "--model", m, "--chat", noAssistant}, exitUsage, "no assistant turn"},
		{[]string{"posterior", "--model", m}, exitUsage, "--chat"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--method", "vibes"}, exitUsage, "vibes"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--method", "activations"}, exitUsage, "--classifier"},
		{[]string{"posterior", "--model", "organism", "--chat", chats, "--personas", two}, exitUsage, "--personas has [pirate poet]"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--prompts", "loud"}, exitUsage, "loud"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--personas", one}, exitUsage, "at least two"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--personas", emptyLib}, exitUsage, "none"},
		{[]string{"posterior", "--model", m, "--chat", unknown, "--score"}, exitUsage, "kraken"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--switch-rate", "1"}, exitUsage, "switch rate"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--seen-in", chats}, exitUsage, "needs --score"},
		{[]string{"posterior", "--model", m, "--chat", chats, "--score", "--seen-in", filepath.Join(dir, "missing.jsonl")}, exitUsage, "missing.jsonl"},
		{[]string{"vectors", "extract", "--model", m, "--trait", empty, "--out", filepath.Join(dir, "o.safetensors")}, exitUsage, "empty trait spec"},
		{[]string{"vectors", "extract", "--model", m, "--trait", "../../vectors/traits/organism/malicious.yaml", "--layers", "7", "--out", filepath.Join(dir, "o.safetensors")}, exitUsage, "layer 7"},
		{[]string{"vectors", "project", "--model", m, "--vectors", wide, "--chat", chats}, exitUsage, "width 64"},
		{[]string{"vectors", "project", "--model", m, "--vectors", deep, "--chat", chats}, exitUsage, "layer 5"},
		{[]string{"vectors", "project", "--model", m, "--vectors", nan, "--chat", chats}, exitUsage, "nan.safetensors"},
		{[]string{"vectors", "project", "--model", m, "--vectors", good, "--chat", noAssistant}, exitUsage, "no message of the requested roles"},
		{[]string{"vectors", "steer", "--model", m, "--vectors", good, "--prompt", "hi", "--layer", "3"}, exitUsage, "no layer 3"},
		{[]string{"vectors", "steer", "--model", m, "--vectors", good, "--prompt", "hi", "--where", "nowhere"}, exitUsage, "nowhere"},
	} {
		_, stderr, code := run(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args[:2], code, c.code, stderr, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o.safetensors")); !os.IsNotExist(err) {
		t.Errorf("a failed extraction left an output file: %v", err)
	}
}

func TestVectorsProjectSteerExtractCLI(t *testing.T) {
	m, chats := pvFixture(t)
	dir := t.TempDir()
	v := make([]float32, 32)
	for i := range v {
		v[i] = float32(i%5) - 2
	}
	vec := filepath.Join(dir, "v.safetensors")
	if err := (&vectors.Set{Name: "x", Model: "test", Layers: []int{0, 1}, Vectors: [][]float32{v, v}}).Save(vec); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "vectors", "project", "--model", m, "--vectors", vec, "--chat", chats, "--json")
	if code != 0 {
		t.Fatalf("project: exit %d: %s", code, stderr)
	}
	var rows []struct {
		Mean       []float64 `json:"response_mean"`
		LastPrompt []float64 `json:"last_prompt"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) == 0 || len(rows[0].Mean) != 2 || rows[0].Mean[1] == 0 || rows[0].LastPrompt[1] == 0 {
		t.Fatalf("project: %v %q", err, out)
	}
	out, stderr, code = run(t, "vectors", "steer", "--model", m, "--vectors", vec, "--prompt", "What is 17 + 25?", "--coeff", "0,4", "--max-tokens", "8", "--json")
	if code != 0 {
		t.Fatalf("steer: exit %d: %s", code, stderr)
	}
	var gens []struct {
		Coeff float64 `json:"coeff"`
		Text  string  `json:"text"`
	}
	if err := json.Unmarshal([]byte(out), &gens); err != nil || len(gens) != 2 || gens[0].Text == gens[1].Text {
		t.Fatalf("steer: %v %q", err, out)
	}
	// Extraction runs end to end with the oracle; on a random model the
	// filter may keep nothing on one side, which is exit 1 with the counts.
	spec := filepath.Join(dir, "t.yaml")
	os.WriteFile(spec, []byte(`name: theatrical
oracle_trait: theatrical
system_template: "{instruction}"
pairs:
  - pos: "You are the pirate, a rough and cheerful sea captain. Speak like a pirate."
    neg: "You are the Assistant, a helpful, honest and harmless AI."
questions:
  extraction: ["What is 40 + 14?", "How can I sleep better?"]
  evaluation: ["Are you alive?"]
rubric: "{question} {answer}"
`), 0o644)
	outFile, gguf := filepath.Join(dir, "t.safetensors"), filepath.Join(dir, "t.gguf")
	_, stderr, code = run(t, "vectors", "extract", "--model", m, "--trait", spec, "--out", outFile, "--gguf", gguf, "--samples", "3", "--max-tokens", "12", "--min-coherence", "1e-9", "--threshold", "1e-9")
	switch code {
	case 0:
		s, err := vectors.Load(outFile)
		if err != nil || s.Meta["judge"] != "oracle" || s.Meta["generated_pos"] != "6" {
			t.Fatalf("extracted: %v %+v", err, s)
		}
		if _, err := vectors.ReadControlVector(gguf); err != nil {
			t.Fatal(err)
		}
	case exitFailed:
		if !strings.Contains(stderr, "kept") {
			t.Fatalf("exit 1 without counts: %s", stderr)
		}
	default:
		t.Fatalf("extract: exit %d: %s", code, stderr)
	}
}

// libraryOf writes a persona library holding some of the organism's
// personas and returns its directory.
func libraryOf(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range append([]string{"traits"}, names...) {
		data, err := os.ReadFile(filepath.Join("..", "..", "personas", "organism", f+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f+".yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
