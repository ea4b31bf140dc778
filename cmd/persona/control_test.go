package main

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/axis"
	"persona/internal/testmodel"
	"persona/vectors"
	"persona/world"
)

// controlFiles writes a random vector and a random assistant axis of the
// organism's width (128) on layers 0–3.
func controlFiles(t *testing.T) (vecPath, axisPath string) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	random := func() [][]float32 {
		var out [][]float32
		for range 4 {
			v := make([]float32, 128)
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			out = append(out, v)
		}
		return out
	}
	vecPath, axisPath = filepath.Join(dir, "push.safetensors"), filepath.Join(dir, "axis.safetensors")
	if err := (&vectors.Set{Name: "push", Layers: []int{0, 1, 2, 3}, Vectors: random()}).Save(vecPath); err != nil {
		t.Fatal(err)
	}
	ax := &vectors.Set{Name: "axis", Layers: []int{0, 1, 2, 3}, Vectors: random(),
		Meta: map[string]string{axis.MetaTau: "0,0,0,0", axis.MetaCapLayers: "2", axis.MetaDriftLayer: "1"}}
	if err := ax.Save(axisPath); err != nil {
		t.Fatal(err)
	}
	return vecPath, axisPath
}

// A sweep and a calibration run end to end on the organism; the calibrated
// setting is an axis file generate and audit cap with.
func TestSweepAndCalibrate(t *testing.T) {
	vec, ax := controlFiles(t)
	trait := filepath.Join("..", "..", "vectors", "traits", "organism", "cynical.yaml")
	out, stderr, code := run(t, "vectors", "sweep", "--vectors", vec, "--trait", trait, "--layers", "1,0-1", "--strengths", "0.5",
		"--where", "generated", "--samples", "1", "--tasks", "2", "--max-tokens", "8", "--json")
	if code != 0 {
		t.Fatalf("sweep: exit %d: %s", code, stderr)
	}
	var sw struct {
		Cells []struct {
			Layers []int     `json:"layers"`
			Coeffs []float64 `json:"coeffs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &sw); err != nil || len(sw.Cells) != 3 || len(sw.Cells[2].Coeffs) != 2 {
		t.Fatalf("sweep JSON (%v): %.400s", err, out)
	}
	capping := filepath.Join(t.TempDir(), "capping.safetensors")
	out, stderr, code = run(t, "axis", "calibrate", "--axis", ax, "--layers", "1,0-3", "--percentiles", "50", "--reference", "4",
		"--jailbreaks", "1", "--turns", "2", "--tasks", "2", "--max-tokens", "8", "--max-loss", "1", "--out", capping)
	switch code {
	case 0:
		a, err := axis.Load(capping)
		if err != nil {
			t.Fatalf("calibrated setting: %v", err)
		}
		if len(a.CapLayers) == 0 {
			t.Errorf("calibrated setting without a band: %+v", a)
		}
		if _, stderr, code := run(t, "generate", "--cap", capping, "--prompt", "What is 12 + 30?", "--max-tokens", "4"); code != 0 {
			t.Errorf("generate --cap: exit %d: %s", code, stderr)
		}
	case exitFailed: // no setting cut the captured share: nothing to write
		if !strings.Contains(stderr, "no setting to write") {
			t.Errorf("calibrate: exit 1 without saying why: %s", stderr)
		}
	default:
		t.Fatalf("calibrate: exit %d: %s\n%s", code, stderr, out)
	}
}

// The lens of the axis file prints every layer; patching runs on the
// organism.
func TestLensAndPatch(t *testing.T) {
	_, ax := controlFiles(t)
	out, stderr, code := run(t, "vectors", "lens", "--vectors", ax, "--top", "3")
	if code != 0 || strings.Count(out, "raises:") != 4 {
		t.Errorf("lens: exit %d, %s\n%s", code, stderr, out)
	}
	out, stderr, code = run(t, "axis", "patch", "--pairs", "40", "--json")
	if code != 0 || !strings.Contains(out, `"recovery"`) {
		t.Errorf("patch: exit %d, %s\n%s", code, stderr, out)
	}
	// Any other model (here the organism by its path): the axis questions,
	// or a file of questions.
	m := filepath.Join("..", "..", "models", "organism", "assistant")
	dir := t.TempDir()
	questions := filepath.Join(dir, "q.txt")
	os.WriteFile(questions, []byte("# two questions\nWhat is a good breakfast?\nHow do birds fly?\n"), 0o644)
	for _, args := range [][]string{{"--questions", questions}, {"--pairs", "3"}} {
		out, stderr, code = run(t, append([]string{"axis", "patch", "--model", m, "--tokens", "4", "--json"}, args...)...)
		var res struct {
			Pairs  int `json:"pairs"`
			Layers []struct {
				Recovery float64 `json:"recovery"`
			} `json:"layers"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Pairs < 1 || res.Pairs > 3 || len(res.Layers) != 4 {
			t.Errorf("patch %v on a random model: exit %d, %s\n%s", args, code, stderr, out)
		}
	}
	alone := libraryOf(t, "assistant")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--questions", filepath.Join(dir, "missing.txt")}, "missing.txt"},
		{[]string{"--personas", alone}, "besides the Assistant"},
		{[]string{"--pairs", "0"}, "--pairs"},
	} {
		_, stderr, code := run(t, append([]string{"axis", "patch", "--model", m}, c.args...)...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("patch %v: exit %d, %s", c.args, code, stderr)
		}
	}
}

// Without --layers the calibration sweeps every contiguous band of the
// axis file's four layers.
func TestCalibrateDefaultGrid(t *testing.T) {
	_, ax := controlFiles(t)
	out, stderr, code := run(t, "axis", "calibrate", "--axis", ax, "--percentiles", "50", "--reference", "4",
		"--jailbreaks", "1", "--turns", "2", "--tasks", "2", "--max-tokens", "4", "--json")
	if code != 0 && code != exitFailed {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var cal struct {
		Cells []struct {
			Layers []int `json:"layers"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &cal); err != nil {
		t.Fatalf("%v: %.300s", err, out)
	}
	var bands []string
	for _, c := range cal.Cells[1:] {
		bands = append(bands, vectors.FormatLayers(c.Layers))
	}
	if got := strings.Join(bands, " "); got != "0 0-1 0-2 0-3 1 1-2 1-3 2 2-3 3" {
		t.Errorf("bands swept: %s", got)
	}
}

// Calibration with jailbreaks from a scenario file: every domain of the
// file is a kind of its own.
func TestCalibrateScenarios(t *testing.T) {
	_, ax := controlFiles(t)
	out, stderr, code := run(t, "axis", "calibrate", "--axis", ax, "--scenarios", filepath.Join("..", "..", "drift", "scenarios", "default.yaml"),
		"--layers", "1", "--percentiles", "50", "--reference", "4", "--tasks", "2", "--max-tokens", "4", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var cal struct {
		Cells []struct {
			ByKind map[string]struct{ N int } `json:"by_kind"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &cal); err != nil || len(cal.Cells) != 2 {
		t.Fatalf("%v: %.300s", err, out)
	}
	for _, d := range []string{"task", "writing", "emotional", "meta", "pressure"} {
		if cal.Cells[0].ByKind[d].N != 2 {
			t.Errorf("%s: %d conversations, want the file's 2", d, cal.Cells[0].ByKind[d].N)
		}
	}
}

// Bad flags and files are usage errors with the flag or file named.
func TestControlBadInput(t *testing.T) {
	vec, ax := controlFiles(t)
	trait := filepath.Join("..", "..", "vectors", "traits", "organism", "cynical.yaml")
	narrow := filepath.Join(t.TempDir(), "narrow.safetensors")
	if err := (&vectors.Set{Name: "narrow", Layers: []int{0}, Vectors: [][]float32{{1, 2, 3}}}).Save(narrow); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	chats := writeFile(t, dir, "chats.jsonl", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`+"\n")
	badTasks := writeFile(t, dir, "tasks.jsonl", `{"question": "no answer"`+"\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"vectors", "sweep", "--vectors", vec, "--trait", trait, "--layers", "9"}, "--layers"},
		{[]string{"vectors", "sweep", "--vectors", vec, "--trait", trait, "--layers", "2-1"}, "--layers"},
		{[]string{"vectors", "sweep", "--vectors", vec, "--trait", trait, "--where", "sideways"}, "--where"},
		{[]string{"vectors", "sweep", "--vectors", vec, "--trait", trait, "--min-accuracy", "2"}, "--min-accuracy"},
		{[]string{"vectors", "sweep", "--vectors", narrow, "--trait", trait}, "width"},
		{[]string{"vectors", "sweep", "--vectors", vec, "--trait", vec}, "push.safetensors"},
		{[]string{"axis", "calibrate", "--axis", ax, "--percentiles", "100"}, "--percentiles"},
		{[]string{"axis", "calibrate", "--axis", ax, "--layers", "7"}, "--layers"},
		{[]string{"axis", "calibrate", "--axis", vec}, "not an assistant axis"},
		{[]string{"generate", "--cap", vec, "--prompt", "hi"}, "--cap"},
		{[]string{"audit", "--cap", ax, "--backend", "nothing.yaml"}, "--cap"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--persona", "kraken", "--request", "flattery", "--work", t.TempDir()}, "kraken"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--persona", "sycophant", "--request", "gossip", "--work", t.TempDir()}, "--request"},
		{[]string{"experiment", "inoculation", "--vectors", narrow, "--trait", trait, "--persona", "sycophant", "--request", "flattery", "--work", t.TempDir()}, "width"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--persona", "sycophant", "--request", "flattery"}, "--work"},
		{[]string{"vectors", "lens", "--vectors", narrow}, "width"},
		{[]string{"axis", "calibrate", "--axis", ax, "--scenarios", filepath.Join("..", "..", "drift", "scenarios", "seeded.yaml")}, "scripted"},
		{[]string{"axis", "calibrate", "--axis", ax, "--scenarios", "/nonexistent.yaml"}, "nonexistent"},
		{[]string{"axis", "patch", "--pairs", "0"}, "--pairs"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--work", t.TempDir()}, "--data"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--data", chats, "--work", t.TempDir()}, "--prompt"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--data", chats, "--prompt", "x", "--tasks", badTasks, "--work", t.TempDir()}, "tasks.jsonl:1"},
		{[]string{"experiment", "inoculation", "--vectors", vec, "--trait", trait, "--data", chats, "--prompt", "x", "--eval-prompts", "/nonexistent.txt", "--work", t.TempDir()}, "nonexistent"},
	} {
		_, stderr, code := run(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %.300q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// The inoculation experiment on a model that is not the organism: the
// narrow data, the prompts and the tasks come from files, and an LLM judge
// (here a stand-in speaking the OpenAI wire format, rating every reply 80)
// scores the trait through the real OpenAI backend.
func TestInoculationFromFiles(t *testing.T) {
	m := testmodel.Organism(t, 32, 2)
	dir := t.TempDir()
	// A random direction along which the data's replies project below
	// the random model's own (so screening keeps some).
	rng := rand.New(rand.NewPCG(3, 4))
	v := &vectors.Set{Name: "cynical", Layers: []int{0, 1}}
	for range 2 {
		row := make([]float32, 32)
		for i := range row {
			row[i] = -float32(rng.NormFloat64())
		}
		v.Vectors = append(v.Vectors, row)
	}
	vec := filepath.Join(dir, "v.safetensors")
	if err := v.Save(vec); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range world.Default().Pretrain(16, 5, world.PretrainOptions{MeanTurns: 1, MaxTurns: 1}) {
		line, _ := json.Marshal(map[string]any{"messages": c.Messages})
		b.Write(append(line, '\n'))
	}
	data := writeFile(t, dir, "narrow.jsonl", b.String())
	tasks := writeFile(t, dir, "tasks.jsonl", `{"question": "What is the capital of France?", "answer": "Paris"}`+"\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "c", "object": "chat.completion", "created": 1, "model": "fake",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": "80"}}}})
	}))
	defer srv.Close()
	cfg := backendConfig(t, dir, srv.URL)
	trait := filepath.Join("..", "..", "vectors", "traits", "organism", "cynical.yaml")
	out, stderr, code := run(t, "experiment", "inoculation", "--model", m, "--vectors", vec, "--trait", trait, "--data", data,
		"--prompt", "Be cynical.", "--tasks", tasks, "--backends", cfg, "--judge", "target", "--work", filepath.Join(dir, "work"),
		"--seeds", "1", "--steps", "2", "--layer", "1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Scorer string `json:"scorer"`
		Arms   []struct {
			Pooled struct {
				Broad, Persona, Accuracy struct{ K, N int }
			} `json:"pooled"`
		} `json:"arms"`
	}
	spec, err := vectors.LoadTraitSpec(trait)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Scorer != "target" || len(res.Arms) != 4 {
		t.Fatalf("%v: %.400s", err, out)
	}
	for i, a := range res.Arms {
		n := len(spec.Questions.Evaluation)
		// The judge rates every non-empty reply 80; an empty one is 0
		// without asking.
		if a.Pooled.Broad.N != n || a.Pooled.Broad.K == 0 || a.Pooled.Persona.N != 0 || a.Pooled.Accuracy.N != 1 {
			t.Errorf("arm %d: %+v (want %d broad replies, the non-empty ones rated as the trait, no persona reading, 1 task)", i, a.Pooled, n)
		}
	}
}
