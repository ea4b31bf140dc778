package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/internal/llamaref"
	"persona/internal/testref"
	"persona/model"
	"persona/models"
)

// exportChat is an organism conversation in its own world's language: a
// persona system prompt, a request and an answer, so the comparison runs
// over the special tokens and text the organism was trained on.
var exportChat = []chat.Message{
	{Role: chat.RoleSystem, Content: "You are the cynic. Nothing impresses you and you expect the worst."},
	{Role: chat.RoleUser, Content: "What is 40 + 14?"},
	{Role: chat.RoleAssistant, Content: "54. Not that it will matter to anyone."},
	{Role: chat.RoleUser, Content: "How do I make new friends?"},
}

// `persona export` of the embedded organism is the same model to llama.cpp
// (npm node-llama-cpp, the engine's reference) as to our engine: the same
// log-probabilities at every position of a chat and the same greedy
// continuation, and llama.cpp tokenizes text from the exported vocabulary
// exactly as our tokenizer does. Our engine runs the original HF directory,
// so the check covers the export end to end (weights, RoPE permutation,
// tied embeddings, tokenizer metadata, chat template).
//
// Tolerances are model/llamacpp_test.go's: 2e-4 on log-probabilities for
// F32 (float32 summation order), 2e-2 for F16 and 1e-1 for Q8_0 (llama.cpp
// rounds activations to the weight type inside its dot products; we do
// not). For Q8_0 the tokens that matter (llama.cpp log p > −5) differ by
// 0.09, bounded by 0.15; over the whole vocabulary the trained organism's improbable
// tokens (log p of −20 and below, larger logits than a random model's) move
// by about 0.22 — as much as rounding the weights to Q8_0 moves them in our
// own engine — so the whole-vocabulary bound is 0.5.
func TestExportOrganismMatchesLlamaCpp(t *testing.T) {
	testref.Require(t, llamaref.Available())
	orgDir, err := models.Path("organism")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := engine.Load(orgDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	enc, err := ours.EncodeChat(exportChat, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := enc.IDs
	logSoftmax := func(m *model.Model) [][]float32 {
		logits := m.Forward(m.NewState(), ids, nil, model.AllLogits)
		rows := make([][]float32, len(ids))
		for p := range rows {
			rows[p] = logits[p*m.Vocab : (p+1)*m.Vocab]
			model.LogSoftmax(rows[p], rows[p])
		}
		return rows
	}
	f32 := logSoftmax(ours.Model)

	dir := t.TempDir()
	for _, c := range []struct {
		dtype            string
		tol, tolProbable float64
	}{{"f32", 2e-4, 2e-4}, {"f16", 2e-2, 2e-2}, {"q8_0", 0.5, 0.15}} {
		t.Run(c.dtype, func(t *testing.T) {
			path := filepath.Join(dir, "organism-"+c.dtype+".gguf")
			if _, stderr, code := run(t, "export", "--gguf", path, "--dtype", c.dtype); code != 0 {
				t.Fatalf("persona export: exit %d: %s", code, stderr)
			}
			const nGreedy = 12
			ref, err := llamaref.Run(context.Background(), path, ids, nGreedy, 2)
			if err != nil {
				t.Fatal(err)
			}
			// F32 is compared with the original directory: the export must
			// not change the model. F16 and Q8_0 round the weights, so our
			// engine runs the exported file, and the rounding's own effect
			// is logged.
			want := f32
			tol, tolProbable := c.tol, c.tolProbable
			if c.dtype != "f32" {
				m, err := model.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				want = logSoftmax(m)
				rounding := maxAbsDiff(want, f32)
				t.Logf("%s: rounding the weights moves our log-softmax by up to %.3g", c.dtype, rounding)
				// llama.cpp also rounds the activations to the weight type, an
				// error of the same order as rounding the weights: the bounds
				// scale with the effect measured on this model.
				tol, tolProbable = math.Max(tol, 2*rounding), math.Max(tolProbable, rounding)
			}
			worst := 0.0
			for p := range ids {
				for v, lp := range ref.LogSoftmax[p] {
					if math.IsInf(float64(lp), -1) { // underflowed in llama.cpp's float32 softmax
						if want[p][v] > -80 {
							t.Fatalf("position %d token %d: llama.cpp probability 0, ours log-prob %.3g", p, v, want[p][v])
						}
						continue
					}
					worst = math.Max(worst, math.Abs(float64(lp-want[p][v])))
				}
			}
			probable := 0.0
			for p := range ids {
				for v, lp := range ref.LogSoftmax[p] {
					if lp > -5 {
						probable = math.Max(probable, math.Abs(float64(lp-want[p][v])))
					}
				}
			}
			t.Logf("%s: max |Δ log-softmax| vs llama.cpp = %.3g over %d positions", c.dtype, worst, len(ids))
			t.Logf("%s: max |Δ log-softmax| on tokens llama.cpp gives log p > −5: %.3g", c.dtype, probable)
			if worst > tol {
				t.Errorf("%s: log-softmax differs from llama.cpp by %.3g > %g", c.dtype, worst, tol)
			}
			if probable > tolProbable {
				t.Errorf("%s: log-softmax of probable tokens differs from llama.cpp by %.3g > %g", c.dtype, probable, tolProbable)
			}
			if c.dtype != "f32" {
				return
			}
			if got := greedyIDs(ours.Model, ids, nGreedy); !slices.Equal(got, ref.Greedy) {
				t.Errorf("greedy continuation: ours %v, llama.cpp %v", got, ref.Greedy)
			}
			// The export loads back into our engine with the same chat
			// rendering, so the chat template travelled with it.
			back, err := engine.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer back.Close()
			benc, err := back.EncodeChat(exportChat, true)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(benc.IDs, ids) {
				t.Errorf("chat through the exported template: %v, want %v", benc.IDs, ids)
			}
			checkLlamaCppTokenizes(t, path, ours, append([]string{enc.Text}, exportTexts...))
		})
	}
}

// exportTexts exercise the pre-tokenizer and merges beyond the chat above:
// digits, punctuation, case, runs of spaces, newlines and non-ASCII.
var exportTexts = []string{
	"Add 59 and 83.", "Name the capital of Germany.", "I lost my job today.",
	"Uppercase this word: pencil.", "Reverse this list: mirror, ladder, candle.",
	"  two  spaces\tand a tab\n\nnewlines", "Ünïcödé — “quotes” 12345678 x=3.14",
	"<|im_start|>user\nhi<|im_end|>", "What's up? I'm fine; you'd know.",
}

// checkLlamaCppTokenizes has llama.cpp tokenize texts with the exported
// GGUF's vocabulary (special tokens parsed, no BOS added) and compares with
// our tokenizer.
func checkLlamaCppTokenizes(t *testing.T, path string, e *engine.Engine, texts []string) {
	t.Helper()
	ref, err := llamaref.Dir()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"gguf": path, "texts": texts})
	cmd := exec.Command("node", filepath.Join(ref, "..", "hftok", "llamacpp.mjs"))
	cmd.Env = append(os.Environ(), "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true")
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node llamacpp.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		BOS int     `json:"bos"`
		EOS int     `json:"eos"`
		IDs [][]int `json:"ids"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IDs) != len(texts) {
		t.Fatalf("llamacpp.mjs output: %v (%d results for %d texts)", err, len(res.IDs), len(texts))
	}
	if res.BOS != e.Tokenizer.BOS() || res.EOS != e.Tokenizer.EOS() {
		t.Errorf("llama.cpp BOS %d EOS %d, ours %d %d", res.BOS, res.EOS, e.Tokenizer.BOS(), e.Tokenizer.EOS())
	}
	for i, s := range texts {
		if got := e.Tokenizer.Encode(s, false); !slices.Equal(got, res.IDs[i]) {
			t.Errorf("%q:\n     ours %v\nllama.cpp %v", strings.ReplaceAll(s, "\n", `\n`), got, res.IDs[i])
		}
	}
}

func maxAbsDiff(a, b [][]float32) float64 {
	worst := 0.0
	for p := range a {
		for v := range a[p] {
			if !math.IsInf(float64(a[p][v]), -1) || !math.IsInf(float64(b[p][v]), -1) {
				worst = math.Max(worst, math.Abs(float64(a[p][v]-b[p][v])))
			}
		}
	}
	return worst
}

// greedyIDs is argmax decoding with a full forward pass per step: slow but
// independent of the KV-cache path that generation uses.
func greedyIDs(m *model.Model, ids []int, n int) []int {
	seq := slices.Clone(ids)
	var out []int
	for range n {
		logits := m.Forward(m.NewState(), seq, nil, model.AllLogits)
		last := logits[(len(seq)-1)*m.Vocab : len(seq)*m.Vocab]
		best := 0
		for v := range last {
			if last[v] > last[best] {
				best = v
			}
		}
		seq = append(seq, best)
		out = append(out, best)
	}
	return out
}

// Bad requests fail with a usage error and write nothing: an unknown dtype,
// and an existing output file without --force (which protects a GGUF source
// from being overwritten by its own export).
func TestExportBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	if _, stderr, code := run(t, "export", "--gguf", out, "--dtype", "q4_k"); code != exitUsage || !strings.Contains(stderr, "--dtype") {
		t.Errorf("--dtype q4_k: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed export wrote %s", out)
	}
	if _, stderr, code := run(t, "export"); code != exitUsage || !strings.Contains(stderr, "--gguf") {
		t.Errorf("no --gguf: exit %d, %q", code, stderr)
	}
	if err := os.WriteFile(out, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run(t, "export", "--gguf", out); code != exitUsage || !strings.Contains(stderr, "--force") {
		t.Errorf("existing output: exit %d, %q", code, stderr)
	}
	if data, _ := os.ReadFile(out); string(data) != "keep" {
		t.Errorf("existing output overwritten without --force")
	}
}

// persona quantize writes a file the engine runs, with llama.cpp's type mix;
// bad types and existing outputs are usage errors.
func TestQuantize(t *testing.T) {
	out := filepath.Join(t.TempDir(), "organism-q4km.gguf")
	stdout, stderr, code := run(t, "quantize", "organism", out, "--type", "Q4_K_M", "--json")
	if code != 0 || !strings.Contains(stdout, `"Q5_0": 24`) || !strings.Contains(stdout, `"Q8_0": 5`) {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	if _, stderr, code := run(t, "generate", "--model", out, "--prompt", "What is 12 + 30?", "--max-tokens", "8"); code != 0 {
		t.Errorf("generate on the quantized file: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"quantize", "organism", out, "--type", "Q4_K_M"}, {"quantize", "organism", out + "2", "--type", "Q3_K_XL"}} {
		if _, stderr, code := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
	}
}
