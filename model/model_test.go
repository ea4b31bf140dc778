package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/internal/testref"
	"persona/resid"
	"persona/sample"
	"persona/tensor"
)

var fixtures = testref.Dir()

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// storiesPaths are the three encodings of the same stories260K weights.
var storiesPaths = map[string]string{
	"gguf-v1": fixtures + "/stories260K/tinyllamas-stories-260k-f32.gguf",
	"gguf-v3": fixtures + "/stories260K/stories260K-f32.v3.gguf",
	"hf":      fixtures + "/stories260K/hf",
}

func load(t testing.TB, path string) *Model {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Logits at every position match llama2.c's run.c within 1e-4, whichever
// file the weights come from.
func TestStoriesLogitsMatchRunC(t *testing.T) {
	var golden struct {
		Sequences map[string]struct {
			Tokens []int       `json:"tokens"`
			Logits [][]float32 `json:"logits"`
		} `json:"sequences"`
	}
	readJSON(t, fixtures+"/stories260K/golden/logits_runc.json", &golden)
	for name, path := range storiesPaths {
		m := load(t, path)
		for seq, g := range golden.Sequences {
			// Feed the sequence in two chunks to exercise the cache across calls.
			s := m.NewState()
			half := len(g.Tokens) / 2
			logits := append(m.Forward(s, g.Tokens[:half], nil, AllLogits), m.Forward(s, g.Tokens[half:], nil, AllLogits)...)
			var worst float64
			for p := range g.Tokens {
				for v, want := range g.Logits[p] {
					worst = math.Max(worst, math.Abs(float64(logits[p*m.Vocab+v]-want)))
				}
			}
			if worst > 1e-4 {
				t.Errorf("%s %s: max |logit − run.c| = %.3g > 1e-4", name, seq, worst)
			}
		}
	}
}

// Greedy decoding from BOS reproduces the 200 ids llama2.c and llama.cpp agree on.
func TestStoriesGreedy200(t *testing.T) {
	var golden struct {
		Prompt    []int `json:"prompt_ids"`
		Generated []int `json:"generated_ids"`
	}
	readJSON(t, fixtures+"/stories260K/golden/greedy_bos_200.json", &golden)
	for name, path := range storiesPaths {
		m := load(t, path)
		got := greedy(m, golden.Prompt, len(golden.Generated), nil)
		for i := range golden.Generated {
			if got[i] != golden.Generated[i] {
				t.Fatalf("%s: step %d: id %d, want %d", name, i, got[i], golden.Generated[i])
			}
		}
	}
}

func greedy(m *Model, prompt []int, n int, iv *resid.Set) []int {
	s := m.NewState()
	s.PromptLen = len(prompt)
	logits := m.Forward(s, prompt, iv, LastLogits)
	var out []int
	for len(out) < n {
		id := sample.Argmax(logits)
		out = append(out, id)
		logits = m.Forward(s, []int{id}, iv, LastLogits)
	}
	return out
}

// F16 weights: log-softmax within tolerance of llama.cpp (F32 KV cache).
func TestOllamaF16MatchesLlamaCpp(t *testing.T) {
	var golden struct {
		Tokens []int `json:"tokens"`
	}
	readJSON(t, fixtures+"/ollama/golden/llama-2-tiny-random.golden.json", &golden)
	raw, err := os.ReadFile(fixtures + "/ollama/golden/log_softmax_llamacpp.f32")
	if err != nil {
		t.Fatal(err)
	}
	want := tensor.BytesToF32(raw)
	m := load(t, fixtures+"/ollama/llama-2-tiny-random.gguf")
	if m.Embed.DType != tensor.F16 {
		t.Fatalf("embedding dtype %v, want F16", m.Embed.DType)
	}
	logits := m.Forward(m.NewState(), golden.Tokens, nil, AllLogits)
	if len(want) != len(logits) {
		t.Fatalf("golden has %d values, we have %d", len(want), len(logits))
	}
	var worst float64
	for p := range golden.Tokens {
		row := logits[p*m.Vocab : (p+1)*m.Vocab]
		LogSoftmax(row, row)
		for v := range row {
			worst = math.Max(worst, math.Abs(float64(row[v]-want[p*m.Vocab+v])))
		}
	}
	if worst > 1e-4 {
		t.Errorf("max |log-softmax − llama.cpp| = %.3g > 1e-4", worst)
	}
	t.Logf("max |Δ log-softmax| = %.3g", worst)
}

func TestQ8FixtureRefused(t *testing.T) {
	_, err := Load(fixtures + "/stories260K/tinyllamas-stories-260k-q8_0.gguf")
	if err == nil {
		t.Fatal("Q8_0 file with 172-wide rows was accepted")
	}
	for _, want := range []string{"tinyllamas-stories-260k-q8_0.gguf", "172", "block"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestBadConfigs(t *testing.T) {
	base := `{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,
	"num_attention_heads":8,"num_key_value_heads":4,"vocab_size":512,"rms_norm_eps":1e-5%s}`
	for name, c := range map[string]struct{ json, want string }{
		"unknown arch": {`{"architectures":["GPT2LMHeadModel"]}`, `"GPT2LMHeadModel"`},
		"no arch":      {`{"hidden_size":4}`, "architectures"},
		"yarn":         {strings.Replace(base, "%s", `,"rope_scaling":{"type":"yarn","factor":4}`, 1), "yarn"},
		"gelu":         {strings.Replace(base, "%s", `,"hidden_act":"gelu"`, 1), "gelu"},
		"bad gqa":      {strings.Replace(base, `"num_key_value_heads":4`, `"num_key_value_heads":3`, 1), "multiple"},
		"not json":     {`{"architectures":`, "config.json"},
		"absurd sizes": {strings.Replace(base, `"vocab_size":512`, `"vocab_size":900000000`, 1), "implausible"},
	} {
		_, err := ParseHFConfig([]byte(strings.Replace(c.json, "%s", "", 1)), "config.json")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
		}
	}
}

// A checkpoint whose tensor shape disagrees with config.json is refused with
// the tensor's name.
func TestWrongShapeRefused(t *testing.T) {
	dir := t.TempDir()
	cfg, err := os.ReadFile(fixtures + "/stories260K/hf/config.json")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), `"intermediate_size": 172`, `"intermediate_size": 160`, 1)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(bad), 0o644)
	st, _ := os.ReadFile(fixtures + "/stories260K/hf/model.safetensors")
	os.WriteFile(filepath.Join(dir, "model.safetensors"), st, 0o644)
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "mlp.gate_proj.weight") {
		t.Fatalf("error %v, want one naming the gate projection", err)
	}
}

// The interventions' contract, on a real model.
func TestInterventions(t *testing.T) {
	m := load(t, storiesPaths["hf"])
	ids := []int{1, 403, 407, 261, 378, 432, 383, 286}
	plain := m.Forward(m.NewState(), ids, nil, AllLogits)

	t.Run("zero add is bit-identical", func(t *testing.T) {
		var ivs []resid.Intervention
		for l := 0; l < m.NumLayers; l++ {
			ivs = append(ivs, &resid.Add{At: l, Vector: make([]float32, m.Hidden), Coeff: 3})
		}
		set, err := resid.NewSet(m.NumLayers, m.Hidden, ivs...)
		if err != nil {
			t.Fatal(err)
		}
		got := m.Forward(m.NewState(), ids, set, AllLogits)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(plain[i]) {
				t.Fatalf("logit %d changed: %g vs %g", i, got[i], plain[i])
			}
		}
	})

	t.Run("capture sees the plain forward", func(t *testing.T) {
		last := m.NumLayers - 1
		c := &resid.Capture{At: last}
		set, _ := resid.NewSet(m.NumLayers, m.Hidden, c)
		s := m.NewState()
		m.Forward(s, ids, set, NoLogits)
		if len(c.Rows) != len(ids) {
			t.Fatalf("captured %d rows", len(c.Rows))
		}
		// The last block's output, normed and projected, must give the plain logits.
		flat := make([]float32, 0, len(ids)*m.Hidden)
		for _, r := range c.Rows {
			flat = append(flat, r...)
		}
		got := m.logits(flat, len(ids))
		for i := range got {
			if got[i] != plain[i] {
				t.Fatalf("logit %d from captured stream %g, plain %g", i, got[i], plain[i])
			}
		}
		// Span means equal the mean of the per-token rows.
		cs := &resid.Capture{At: last, Spans: []resid.Span{{Start: 2, End: 6}}}
		set, _ = resid.NewSet(m.NumLayers, m.Hidden, cs)
		m.Forward(m.NewState(), ids, set, NoLogits)
		for i, v := range cs.Mean(0) {
			var want float64
			for p := 2; p < 6; p++ {
				want += float64(c.Rows[p][i]) / 4
			}
			if math.Abs(float64(v)-want) > 1e-5 {
				t.Fatalf("span mean[%d] = %g, want %g", i, v, want)
			}
		}
	})

	t.Run("steering shifts the projection by c·|v|", func(t *testing.T) {
		const l, coeff = 2, 1.5
		v := make([]float32, m.Hidden)
		for i := range v {
			v[i] = float32(math.Sin(float64(i)))
		}
		u, _ := resid.Unit(v)
		var norm float64
		for _, x := range v {
			norm += float64(x) * float64(x)
		}
		norm = math.Sqrt(norm)
		before, after := &resid.Capture{At: l}, &resid.Capture{At: l}
		set, _ := resid.NewSet(m.NumLayers, m.Hidden, before, &resid.Add{At: l, Vector: v, Coeff: coeff}, after)
		m.Forward(m.NewState(), ids, set, NoLogits)
		for p := range ids {
			shift := float64(resid.Project(after.Rows[p], u) - resid.Project(before.Rows[p], u))
			if math.Abs(shift-coeff*norm) > 1e-4*coeff*norm {
				t.Fatalf("position %d: shift %g, want %g", p, shift, coeff*norm)
			}
		}
		// And it changes what the model predicts downstream.
		steered := m.Forward(m.NewState(), ids, set, AllLogits)
		if steered[len(steered)-1] == plain[len(plain)-1] {
			t.Fatal("steering did not change the logits")
		}
	})

	t.Run("cap keeps every position above the floor", func(t *testing.T) {
		u := make([]float32, m.Hidden)
		u[5] = 1
		for l := 1; l < m.NumLayers; l++ {
			floor := float32(0.75 * float64(l))
			after := &resid.Capture{At: l}
			set, _ := resid.NewSet(m.NumLayers, m.Hidden, &resid.Clamp{At: l, Direction: u, Floor: &floor}, after)
			m.Forward(m.NewState(), ids, set, NoLogits)
			for p, row := range after.Rows {
				if got := resid.Project(row, u); got < floor-1e-6 {
					t.Fatalf("layer %d position %d: projection %g below floor %g", l, p, got, floor)
				}
			}
		}
	})
}

// A random model exported to GGUF (q/k permuted to llama.cpp's layout) and
// loaded back computes the same logits as in memory.
func TestRandomGGUFRoundTrip(t *testing.T) {
	for name, cfg := range allConfigs() {
		m, err := NewRandom(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".gguf")
		if err := m.WriteGGUF(path, SyntheticVocab(cfg.Vocab)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back := load(t, path)
		ids := []int{1, 5, 9, 200, 17, 3, 250, 11}
		a := m.Forward(m.NewState(), ids, nil, AllLogits)
		b := back.Forward(back.NewState(), ids, nil, AllLogits)
		var worst float64
		for i := range a {
			worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
		}
		if worst > 1e-4 {
			t.Errorf("%s: exported model differs by %.3g", name, worst)
		}
	}
}
