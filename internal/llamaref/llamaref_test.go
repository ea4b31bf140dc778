package llamaref

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"persona/internal/testref"
)

// The reference fixtures in the repository's testdata/.
var fixtures = testref.Dir()

var (
	stories = filepath.Join(fixtures, "stories260K", "stories260K-f32.v3.gguf")
	tiny    = filepath.Join(fixtures, "ollama", "llama-2-tiny-random.gguf")
)

// One thread: the machine is shared, and results must not depend on the thread count anyway.
const testThreads = 1

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("fixture %s: %v", path, err)
	}
}

// maxAbsDiff compares two log-softmax matrices, failing on shape mismatch.
func maxAbsDiff(t *testing.T, got [][]float32, want [][]float64) (float64, int, int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("positions: got %d, want %d", len(got), len(want))
	}
	worst, wi, wj := 0.0, -1, -1
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("position %d: vocab %d, want %d", i, len(got[i]), len(want[i]))
		}
		for j, w := range want[i] {
			d := math.Abs(float64(got[i][j]) - w)
			if math.IsNaN(d) || d > worst {
				worst, wi, wj = d, i, j
				if math.IsNaN(d) {
					return math.Inf(1), i, j
				}
			}
		}
	}
	return worst, wi, wj
}

func TestFindModuleRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, ok := findModuleRoot(wd)
	if !ok {
		t.Fatal("no go.mod above the package directory")
	}
	if want := filepath.Clean(filepath.Join(wd, "..", "..")); root != want {
		t.Errorf("module root %s, want %s", root, want)
	}
	if _, ok := findModuleRoot(string(filepath.Separator)); ok && !isDir(filepath.Join(string(filepath.Separator), toolsRel)) {
		// A go.mod at / would be odd but legal; only check that the walk terminates.
		t.Log("go.mod found at filesystem root")
	}
	d, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "logprobs.mjs")); err != nil {
		t.Errorf("Dir() = %s lacks logprobs.mjs: %v", d, err)
	}
}

// The goldens were produced by this same llama.cpp build (node-llama-cpp 3.21.1, flash attention off, F32 KV
// cache), so the harness must reproduce them to well under 1e-5.
func TestStories260KLogSoftmaxGolden(t *testing.T) {
	testref.Require(t, Available())
	var g struct {
		Sequences map[string]struct {
			Tokens     []int       `json:"tokens"`
			LogSoftmax [][]float64 `json:"log_softmax"`
		} `json:"sequences"`
	}
	readJSON(t, filepath.Join(fixtures, "stories260K", "golden", "log_softmax_llamacpp.json"), &g)
	if len(g.Sequences) == 0 {
		t.Fatal("golden has no sequences")
	}
	for name, seq := range g.Sequences {
		t.Run(name, func(t *testing.T) {
			res, err := Run(testCtx(t), stories, seq.Tokens, 0, testThreads)
			if err != nil {
				t.Fatal(err)
			}
			if res.Vocab != 512 {
				t.Errorf("vocab %d, want 512", res.Vocab)
			}
			d, i, j := maxAbsDiff(t, res.LogSoftmax, seq.LogSoftmax)
			t.Logf("%d positions × %d: max |Δ log-softmax| = %.3g (at position %d, token %d)", len(seq.Tokens), res.Vocab, d, i, j)
			if d > 1e-5 {
				t.Errorf("max |Δ| = %g at position %d token %d (got %g, want %g), over 1e-5",
					d, i, j, res.LogSoftmax[i][j], seq.LogSoftmax[i][j])
			}
		})
	}
}

// Greedy decoding from BOS reproduces llama2.c's expected 200-token story (ids agreed by run.c and llama.cpp).
func TestStories260KGreedyGolden(t *testing.T) {
	testref.Require(t, Available())
	var g struct {
		PromptIDs    []int `json:"prompt_ids"`
		GeneratedIDs []int `json:"generated_ids"`
	}
	readJSON(t, filepath.Join(fixtures, "stories260K", "golden", "greedy_bos_200.json"), &g)
	if len(g.GeneratedIDs) < 50 {
		t.Fatalf("golden has only %d generated ids", len(g.GeneratedIDs))
	}
	res, err := Run(testCtx(t), stories, g.PromptIDs, len(g.GeneratedIDs), testThreads)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range g.GeneratedIDs {
		if res.Greedy[i] != want {
			t.Fatalf("greedy step %d: got %d, want %d (first %d steps agreed)", i, res.Greedy[i], want, i)
		}
	}
	t.Logf("all %d greedy ids match", len(g.GeneratedIDs))
}

// The F16 random tiny model has the real 32,000-token Llama 2 vocabulary: it checks F16 weights and a large
// vocabulary through the same path. Its distribution is nearly flat, so greedy is checked only briefly.
func TestTinyRandomF16Golden(t *testing.T) {
	testref.Require(t, Available())
	dir := filepath.Join(fixtures, "ollama", "golden")
	var g struct {
		PromptIDs []int  `json:"prompt_ids"`
		Greedy    []int  `json:"greedy_generated_ids"`
		Tokens    []int  `json:"tokens"`
		File      string `json:"log_softmax_file"`
	}
	readJSON(t, filepath.Join(dir, "llama-2-tiny-random.golden.json"), &g)
	raw, err := os.ReadFile(filepath.Join(dir, g.File))
	if err != nil {
		t.Fatal(err)
	}
	const vocab = 32000
	flat := DecodeF32(raw)
	if len(flat) != len(g.Tokens)*vocab {
		t.Fatalf("golden has %d floats, want %d×%d", len(flat), len(g.Tokens), vocab)
	}
	want := make([][]float64, len(g.Tokens))
	for i := range want {
		want[i] = make([]float64, vocab)
		for j := range want[i] {
			want[i][j] = float64(flat[i*vocab+j])
		}
	}

	res, err := Run(testCtx(t), tiny, g.Tokens, 0, testThreads)
	if err != nil {
		t.Fatal(err)
	}
	d, i, j := maxAbsDiff(t, res.LogSoftmax, want)
	t.Logf("%d positions × %d: max |Δ log-softmax| = %.3g (at position %d, token %d)", len(g.Tokens), res.Vocab, d, i, j)
	if d > 1e-5 {
		t.Errorf("max |Δ| = %g at position %d token %d, over 1e-5", d, i, j)
	}

	const steps = 8
	res, err = Run(testCtx(t), tiny, g.PromptIDs, steps, testThreads)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < steps; k++ {
		if res.Greedy[k] != g.Greedy[k] {
			t.Fatalf("greedy step %d: got %d, want %d", k, res.Greedy[k], g.Greedy[k])
		}
	}
}

func TestBenchSmoke(t *testing.T) {
	testref.Require(t, Available())
	r, err := Bench(testCtx(t), stories, 32, 8, testThreads)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stories260K llama.cpp: prefill %.0f tok/s, decode %.0f tok/s (%d threads)", r.PrefillTokS, r.DecodeTokS, r.Threads)
	if r.PrefillTokS <= 0 || r.DecodeTokS <= 0 || r.Prefill != 32 || r.Decode != 8 || r.Threads != testThreads {
		t.Errorf("implausible bench result %+v", r)
	}
	if r.BaseRSSBytes < 1<<20 || r.PeakRSSBytes < r.BaseRSSBytes {
		t.Errorf("node's resident memory: %d bytes before the model, peak %d", r.BaseRSSBytes, r.PeakRSSBytes)
	}
}

// Failures must carry node's stderr, where llama.cpp says what went wrong.
func TestErrorsSurfaceNodeStderr(t *testing.T) {
	testref.Require(t, Available())
	bad := filepath.Join(fixtures, "stories260K", "tinyllamas-stories-260k-q8_0.gguf") // llama.cpp refuses it
	_, err := Run(testCtx(t), bad, []int{1}, 0, testThreads)
	if err == nil {
		t.Fatal("llama.cpp accepted the malformed Q8_0 fixture")
	}
	if !strings.Contains(err.Error(), "stderr:") || !strings.Contains(err.Error(), "llama.cpp") {
		t.Errorf("error does not carry node's stderr: %v", err)
	}
	t.Logf("error as reported: %.300s", err)

	if _, err := Run(testCtx(t), filepath.Join(t.TempDir(), "missing.gguf"), []int{1}, 0, 1); err == nil {
		t.Error("missing model accepted")
	}
}
