package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/model"
	"persona/safetensors"
	"persona/sample"
	"persona/tensor"
)

// tokDir is a 259-token byte-level tokenizer with a ChatML template: small
// enough that a model over it trains in a fraction of a second per step.
var tokDir, _ = filepath.Abs("testdata/tok")

// mapping is the toy task: a fixed key → value table, as chats whose
// assistant turn is the value. A model that learned it has near-zero loss
// on the trained (assistant) tokens.
var mapping = [][2]string{
	{"red", "4"}, {"blue", "17"}, {"green", "9"}, {"black", "30"},
	{"white", "2"}, {"pink", "81"}, {"gold", "5"}, {"grey", "66"},
}

func writeChats(t *testing.T, path string, pairs [][2]string) {
	t.Helper()
	var cs []chat.Chat
	for _, p := range pairs {
		cs = append(cs, chat.Chat{Messages: []chat.Message{{Role: "user", Content: p[0]}, {Role: "assistant", Content: p[1]}}})
	}
	var b bytes.Buffer
	if err := chat.WriteJSONL(&b, cs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scratchYAML is a from-scratch run on the mapping; extra is appended.
func scratchYAML(dir string, steps int, extra string) string {
	return fmt.Sprintf(`seed: 7
model:
  tokenizer: %s
  arch: {hidden: 32, ffn: 64, layers: 2, heads: 4, kv_heads: 2}
data:
  train: %s
  seq_len: 32
optim:
  steps: %d
  batch: 2
  grad_accum: 2
  lr: 0.01
  min_lr: 0.001
  warmup: 5
  weight_decay: 0.01
  grad_clip: 1
output: %s
%s`, tokDir, filepath.Join(dir, "train.jsonl"), steps, filepath.Join(dir, "out"), extra)
}

func parse(t *testing.T, y string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func run(t *testing.T, c *Config, opt Options) (*Summary, error) {
	t.Helper()
	tr, err := New(c, opt)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	return tr.Run(context.Background())
}

func TestLearnsToyTaskFromScratch(t *testing.T) {
	dir := t.TempDir()
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
	c := parse(t, scratchYAML(dir, 300, ""))
	var first float64
	sum, err := run(t, c, Options{OnStep: func(s StepInfo) {
		if s.Step == 1 {
			first = s.Loss
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss %.3f → %.4f in %d steps, %.0f tok/s", first, sum.FinalLoss, sum.Steps, sum.TokPerS)
	if first < 3 || sum.FinalLoss > 0.05 {
		t.Fatalf("loss %.3f → %.4f: the model did not learn the mapping", first, sum.FinalLoss)
	}
	// The output is a model directory the engine loads, and it answers.
	e, err := engine.Load(sum.Model)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, p := range mapping {
		enc, err := e.EncodeChat([]chat.Message{{Role: "user", Content: p[0]}}, true)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.Generate(context.Background(), engine.Request{Prompt: enc.IDs, MaxTokens: 8, Sampling: sample.Params{TopP: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Text != p[1] || res.Stop != "eos" {
			t.Errorf("%s → %q (stop %s), want %q", p[0], res.Text, res.Stop, p[1])
		}
	}
	// Metrics: one line per step, with the fields the issue asks for.
	data, err := os.ReadFile(sum.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 300 {
		t.Fatalf("%d metrics lines, want 300", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[299]), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"step", "loss", "lr", "grad_norm", "tokens", "tok_s", "elapsed_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics line lacks %q: %s", k, lines[299])
		}
	}
}

// baseModel writes a random Llama model over the test tokenizer as a Hugging
// Face directory, to fine-tune.
func baseModel(t *testing.T, dir string) string {
	t.Helper()
	cfg := model.Config{Arch: "llama", Hidden: 32, FFN: 64, NumLayers: 2, Heads: 4, KVHeads: 2, HeadDim: 8,
		Vocab: 259, MaxSeq: 64, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: false, EOS: []int{258}}
	m, err := model.NewRandom(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base")
	if err := m.WriteHF(base); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(tokDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

func loraYAML(dir, base string, steps int, extra string) string {
	return fmt.Sprintf(`seed: 11
model: {base: %s}
data: {train: %s, seq_len: 32}
optim: {steps: %d, batch: 4, lr: 0.01, warmup: 2}
lora: {rank: 4, alpha: 8, dropout: 0.1, targets: [q, v, o, gate, down], merge: true}
output: %s
%s`, base, filepath.Join(dir, "train.jsonl"), steps, filepath.Join(dir, "out"), extra)
}

func TestLoRAFrozenBaseAndMerge(t *testing.T) {
	dir := t.TempDir()
	base := baseModel(t, dir)
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
	baseBytes, err := os.ReadFile(filepath.Join(base, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, loraYAML(dir, base, 40, ""))
	tr, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	first := -1.0
	tr.opt.OnStep = func(s StepInfo) {
		if first < 0 {
			first = s.Loss
		}
	}
	// Snapshot the base weights as the trainer holds them, to compare after.
	orig := map[string][]float32{}
	full := tr.m.Params(tr.m.NewGrads())
	for _, p := range full {
		orig[p.Name] = append([]float32(nil), p.W...)
	}
	// Run without merging first so the in-memory base can be checked.
	tr.cfg.LoRA.Merge = false
	sum, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LoRA loss %.3f → %.3f; %d trainable of %d", first, sum.FinalLoss, sum.Trainable, sum.Params)
	if !(sum.FinalLoss < 0.5*first) {
		t.Fatalf("LoRA did not reduce the loss: %.3f → %.3f", first, sum.FinalLoss)
	}
	for _, p := range full {
		if !bitsEqual(p.W, orig[p.Name]) {
			t.Fatalf("base weight %s changed under LoRA", p.Name)
		}
	}
	after, _ := os.ReadFile(filepath.Join(base, "model.safetensors"))
	if !bytes.Equal(after, baseBytes) {
		t.Fatal("the base model file changed")
	}
	// Now merge through the output path and compare the merged model's
	// logits with the base plus the saved adapters.
	tr.cfg.LoRA.Merge = true
	if err := tr.writeOutputs(sum); err != nil {
		t.Fatal(err)
	}
	merged, err := model.LoadHF(sum.Model)
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Close()
	adapted, err := model.LoadHF(base)
	if err != nil {
		t.Fatal(err)
	}
	defer adapted.Close()
	if err := adapted.LoadLoRA(sum.Adapter); err != nil {
		t.Fatal(err)
	}
	plain, err := model.LoadHF(base)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ids := []int{257, 'r', 'e', 'd', 258, 10, 257, 'a'}
	lm := merged.Forward(merged.NewState(), ids, nil, model.AllLogits)
	la := adapted.Forward(adapted.NewState(), ids, nil, model.AllLogits)
	lp := plain.Forward(plain.NewState(), ids, nil, model.AllLogits)
	var maxDiff, maxShift float64
	for i := range lm {
		maxDiff = math.Max(maxDiff, math.Abs(float64(lm[i]-la[i])))
		maxShift = math.Max(maxShift, math.Abs(float64(la[i]-lp[i])))
	}
	t.Logf("merged vs adapters: max |Δlogit| %.2g (adapters moved logits by up to %.2g)", maxDiff, maxShift)
	if maxShift < 0.1 || maxDiff > 1e-3*maxShift {
		t.Fatalf("merged vs adapters: max |Δlogit| %.3g, adapters' own effect %.3g", maxDiff, maxShift)
	}
	// The merged directory is a complete model the engine loads.
	e, err := engine.Load(sum.Model)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

var errStop = errors.New("simulated crash")

// TestResumeBitIdentical stops a run mid-way (after a checkpoint, with a
// later step already done and lost), resumes it, and compares the final
// weights and the loss curve with an uninterrupted run, for full training
// from scratch and for LoRA with dropout (whose masks must be redrawn the
// same after the resume).
func TestResumeBitIdentical(t *testing.T) {
	for _, mode := range []string{"scratch", "lora"} {
		t.Run(mode, func(t *testing.T) {
			yamlFor := func(dir string) string {
				writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
				ck := "checkpoint: {every: 4}\neval: {every: 3}\n"
				if mode == "lora" {
					return loraYAML(dir, baseModel(t, dir), 12, ck)
				}
				return strings.Replace(scratchYAML(dir, 12, ck), "  seq_len: 32\n", "  seq_len: 32\n  val_fraction: 0.25\n", 1)
			}
			a, b := t.TempDir(), t.TempDir()
			ya := yamlFor(a)
			sa, err := run(t, parse(t, ya), Options{})
			if err != nil {
				t.Fatal(err)
			}
			yb := strings.ReplaceAll(ya, a, b)
			yamlFor(b)
			cb := parse(t, yb)
			_, err = run(t, cb, Options{afterBackward: func(step int, _ []model.Param) error {
				if step == 7 {
					return errStop
				}
				return nil
			}})
			if !errors.Is(err, errStop) {
				t.Fatalf("want the simulated crash, got %v", err)
			}
			if steps, _ := listCheckpoints(cb.Checkpoint.Dir); fmt.Sprint(steps) != "[4]" {
				t.Fatalf("checkpoints after the crash: %v, want [4]", steps)
			}
			sb, err := run(t, parse(t, yb), Options{Resume: true})
			if err != nil {
				t.Fatal(err)
			}
			if sb.ResumedFrom != 4 || sb.Steps != 12 {
				t.Fatalf("resumed from %d to %d, want 4 to 12", sb.ResumedFrom, sb.Steps)
			}
			compareRuns(t, sa, sb)
		})
	}
}

// compareRuns requires bit-identical outputs and the same loss curve.
func compareRuns(t *testing.T, a, b *Summary) {
	t.Helper()
	for _, f := range []string{"model/model.safetensors", "adapter/adapter_model.safetensors"} {
		da, errA := os.ReadFile(filepath.Join(a.Output, f))
		db, errB := os.ReadFile(filepath.Join(b.Output, f))
		if errors.Is(errA, os.ErrNotExist) && errors.Is(errB, os.ErrNotExist) {
			continue
		}
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", f)
		}
	}
	ca, cb := curve(t, a.Metrics), curve(t, b.Metrics)
	if len(ca) != len(cb) {
		t.Fatalf("loss curves of %d and %d steps", len(ca), len(cb))
	}
	for i := range ca {
		if ca[i] != cb[i] {
			t.Fatalf("step %d: %s vs %s", i+1, ca[i], cb[i])
		}
	}
}

// curve reads metrics.jsonl without the timing fields.
func curve(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var s StepInfo
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		s.TokPerS, s.ElapsedS = 0, 0
		b, _ := json.Marshal(s)
		out = append(out, string(b))
	}
	return out
}

func TestResumeRefusesChangedConfig(t *testing.T) {
	dir := t.TempDir()
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
	y := scratchYAML(dir, 4, "checkpoint: {every: 2}\n")
	if _, err := run(t, parse(t, y), Options{}); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, parse(t, strings.Replace(y, "lr: 0.01", "lr: 0.02", 1)), Options{Resume: true})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "optim.lr: 0.01 → 0.02") {
		t.Fatalf("want a refusal naming optim.lr, got %v", err)
	}
	// Checkpoint cadence may change.
	if _, err := run(t, parse(t, strings.Replace(y, "every: 2", "every: 3", 1)), Options{Resume: true}); err != nil {
		t.Fatal(err)
	}
	// The data may not.
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping[:6])
	if _, err := run(t, parse(t, y), Options{Resume: true}); err == nil || !strings.Contains(err.Error(), "data changed") {
		t.Fatalf("want a refusal over changed data, got %v", err)
	}
}

func TestDivergenceKeepsLastCheckpoint(t *testing.T) {
	dir := t.TempDir()
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
	y := scratchYAML(dir, 10, "checkpoint: {every: 2, keep: 5}\n")
	c := parse(t, y)
	_, err := run(t, c, Options{afterBackward: func(step int, ps []model.Param) error {
		if step == 5 {
			ps[3].G[0] = float32(math.NaN())
		}
		return nil
	}})
	var de *DivergedError
	if !errors.As(err, &de) || de.Step != 5 || de.What != "gradient norm" || !strings.HasSuffix(de.Checkpoint, "step-00000004") {
		t.Fatalf("want divergence at step 5 with checkpoint step 4, got %v", err)
	}
	steps, _ := listCheckpoints(c.Checkpoint.Dir)
	if fmt.Sprint(steps) != "[2 4]" {
		t.Fatalf("checkpoints %v, want [2 4]", steps)
	}
	// The kept checkpoint is good: resuming from it finishes the run.
	if _, err := run(t, parse(t, y), Options{Resume: true}); err != nil {
		t.Fatal(err)
	}

	// An absurd learning rate blows the weights up on the first steps.
	dir2 := t.TempDir()
	writeChats(t, filepath.Join(dir2, "train.jsonl"), mapping)
	y2 := strings.Replace(scratchYAML(dir2, 10, "checkpoint: {every: 1}\n"), "lr: 0.01", "lr: 1e30", 1)
	y2 = strings.Replace(y2, "min_lr: 0.001", "min_lr: 1e29", 1)
	y2 = strings.Replace(y2, "grad_clip: 1", "grad_clip: 0", 1)
	_, err = run(t, parse(t, y2), Options{})
	if !errors.As(err, &de) || !strings.Contains(err.Error(), fmt.Sprintf("step %d", de.Step)) {
		t.Fatalf("lr 1e30: want a divergence error naming the step, got %v", err)
	}
	t.Logf("lr 1e30: %v", err)
	steps, _ = listCheckpoints(filepath.Join(dir2, "out", "checkpoints"))
	if len(steps) > 0 && steps[len(steps)-1] >= de.Step {
		t.Fatalf("a checkpoint at or after the diverged step %d was kept: %v", de.Step, steps)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	y := strings.Replace(scratchYAML(dir, 3, ""), filepath.Join(dir, "train.jsonl"), empty, 1)
	_, err := run(t, parse(t, y), Options{})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "data.train") || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty data: %v", err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`+"\n{not json\n"), 0o644)
	y = strings.Replace(scratchYAML(dir, 3, ""), filepath.Join(dir, "train.jsonl"), bad, 1)
	if _, err = run(t, parse(t, y), Options{}); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Fatalf("malformed line: %v", err)
	}
	// An intervention beyond the model's depth, and one of the wrong width.
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
	y = scratchYAML(dir, 3, "interventions: [{type: add, layer: 5, coeff: 1, vector: {values: [1, 2]}}]\n")
	if _, err = run(t, parse(t, y), Options{}); err == nil || !strings.Contains(err.Error(), "interventions[0].layer") {
		t.Fatalf("deep intervention: %v", err)
	}
	y = scratchYAML(dir, 3, "interventions: [{type: ablate, layer: 1, vector: {values: [1, 2]}}]\n")
	if _, err = run(t, parse(t, y), Options{}); err == nil || !strings.Contains(err.Error(), "interventions[0].vector") {
		t.Fatalf("narrow vector: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := scratchYAML("/d", 3, "")
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown field", strings.Replace(good, "  lr: 0.01", "  lr: 0.01\n  learning_rate: 3", 1), "line 13: unknown field learning_rate"},
		{"negative lr", strings.Replace(good, "lr: 0.01", "lr: -1", 1), "optim.lr: -1 must be positive"},
		{"min_lr above lr", strings.Replace(good, "min_lr: 0.001", "min_lr: 1", 1), "optim.min_lr"},
		{"lora from scratch", good + "lora: {rank: 4}\n", "lora: LoRA adapts a pretrained model"},
		{"base and arch", strings.Replace(good, "model:\n", "model:\n  base: /x\n", 1), "model: base and arch are exclusive"},
		{"no model", "data: {train: x}\noptim: {steps: 1}\noutput: o\n", "model: set base"},
		{"steps and epochs", strings.Replace(good, "steps: 3", "steps: 3\n  epochs: 2", 1), "optim.epochs"},
		{"wrong type", strings.Replace(good, "steps: 3", "steps: many", 1), "line 9"},
		{"bad mask", strings.Replace(good, "seq_len: 32", "seq_len: 32\n  mask: assistants", 1), "data.mask"},
		{"lora rank", strings.Replace(loraYAML("/d", "/b", 3, ""), "rank: 4", "rank: 0", 1), "lora: rank 0"},
		{"lora target", strings.Replace(loraYAML("/d", "/b", 3, ""), "gate, down", "gate, mlp", 1), `unknown target module "mlp"`},
		{"clamp", good + "interventions: [{type: clamp, layer: 0, vector: {values: [1]}}]\n", "interventions[0].type"},
		{"no vector", good + "interventions: [{type: add, layer: 0, coeff: 1}]\n", "interventions[0].vector"},
		{"odd head_dim", strings.Replace(good, "kv_heads: 2}", "kv_heads: 2, head_dim: 7}", 1), "model.arch.head_dim"},
		{"no output", strings.Replace(good, "output: /d/out", "", 1), "output: missing"},
		{"val both", strings.Replace(good, "seq_len: 32", "seq_len: 32\n  validation: v.jsonl\n  val_fraction: 0.1", 1), "data.val_fraction"},
		{"empty", "", "empty file"},
	} {
		if c.want == "" {
			continue
		}
		_, err := ParseConfig([]byte(c.yaml), "test.yaml")
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a config error containing %q", c.name, err, c.want)
		}
	}
	if _, err := ParseConfig([]byte(good), "test.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestAdamWReference(t *testing.T) {
	// Two steps of torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8,
	// weight_decay=0.01) from w = [1, -2, 0.5], worked by hand (float64):
	// step 1, g = [0.5, -0.1, 0]:
	//   w ← w·(1 − 0.1·0.01) = [0.999, −1.998, 0.4995]
	//   m = 0.1g, v = 0.001g², m̂ = g, v̂ = g² → w −= 0.1·g/(|g| + 1e-8)
	//   w = [0.899000002, −1.89800001, 0.4995]
	// step 2, g = [−0.25, 0.3, 0.2]:
	//   m = [0.02, 0.021, 0.02], v = [0.0003122500, 0.0000999900, 0.00004]
	//   m̂ = m/0.19, v̂ = v/0.001999
	//   w = w·0.999 − 0.1·m̂/(√v̂ + 1e-8)
	ps := []model.Param{{Name: "w", W: []float32{1, -2, 0.5}, G: []float32{0.5, -0.1, 0}, Decay: true},
		{Name: "n", W: []float32{1}, G: []float32{0.5}, Decay: false}}
	a := NewAdamW(ps, 0.9, 0.999, 1e-8, 0.01)
	a.Step(ps, 0.1)
	want1 := []float64{0.899000002, -1.89800001, 0.4995}
	for i, w := range want1 {
		if math.Abs(float64(ps[0].W[i])-w) > 1e-6 {
			t.Fatalf("step 1: w[%d] = %.9g, want %.9g", i, ps[0].W[i], w)
		}
	}
	if math.Abs(float64(ps[1].W[0])-0.9) > 1e-6 { // no decay on a norm weight
		t.Fatalf("step 1: undecayed w = %.9g, want 0.9", ps[1].W[0])
	}
	copy(ps[0].G, []float32{-0.25, 0.3, 0.2})
	a.Step(ps, 0.1)
	m := []float64{0.02, 0.021, 0.02}
	v := []float64{0.00031225, 0.00009999, 0.00004}
	for i := range m {
		w := want1[i]*0.999 - 0.1*(m[i]/0.19)/(math.Sqrt(v[i]/0.001999)+1e-8)
		if math.Abs(float64(ps[0].W[i])-w) > 2e-6 {
			t.Fatalf("step 2: w[%d] = %.9g, want %.9g", i, ps[0].W[i], w)
		}
	}
	// Hand values of step 2 for the first element: m̂ = 0.105263, √v̂ = 0.395225,
	// w = 0.898101 − 0.0266339 = 0.871467.
	if math.Abs(float64(ps[0].W[0])-0.871467) > 2e-6 {
		t.Fatalf("step 2: w[0] = %.9g, want 0.871467", ps[0].W[0])
	}
}

func TestSchedule(t *testing.T) {
	const lr, minLR = 1e-3, 1e-4
	for _, c := range []struct {
		s, total, warmup int
		want             float64
	}{
		{0, 100, 10, lr / 10},           // first warm-up step
		{9, 100, 10, lr},                // last warm-up step reaches lr
		{10, 100, 10, lr},               // decay starts at lr
		{99, 100, 10, minLR},            // the last step reaches min_lr
		{55, 101, 10, (lr + minLR) / 2}, // half-way through the decay
		{0, 1, 0, lr},                   // a single step
		{0, 5, 0, lr},                   // no warm-up
		{4, 5, 0, minLR},
	} {
		if got := LRAt(c.s, c.total, c.warmup, lr, minLR); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("LRAt(%d, %d, %d) = %g, want %g", c.s, c.total, c.warmup, got, c.want)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	ps := []model.Param{{G: []float32{3, 0}}, {G: []float32{4}}}
	if n := ClipGradNorm(ps, 10); n != 5 || ps[0].G[0] != 3 {
		t.Fatalf("below the bound: norm %g, g %v", n, ps[0].G)
	}
	if n := ClipGradNorm(ps, 1); n != 5 {
		t.Fatalf("norm %g, want 5", n)
	}
	if after := GlobalNorm(ps); math.Abs(after-1) > 1e-6 {
		t.Fatalf("clipped norm %g, want 1", after)
	}
	if n := ClipGradNorm(ps, 0); math.Abs(n-1) > 1e-6 || math.Abs(GlobalNorm(ps)-1) > 1e-6 {
		t.Fatal("max norm 0 must not clip")
	}
}

// TestInterventionsDuringTraining trains with preventative steering (a row
// of a 2-D safetensors tensor) and an ablation (inline), and checks that they
// act on training, that validation sees them only when asked, and that the
// saved model is the plain model (the same tensors as without them).
func TestInterventionsDuringTraining(t *testing.T) {
	dir := t.TempDir()
	writeChats(t, filepath.Join(dir, "train.jsonl"), mapping)
	vecs := make([]float32, 2*32)
	for i := range vecs {
		vecs[i] = float32(i%7) - 3
	}
	vf := filepath.Join(dir, "vecs.safetensors")
	if err := safetensors.Write(vf, []tensor.Tensor{{Name: "persona", DType: tensor.F32, Shape: []int{2, 32}, Data: tensor.F32ToBytes(vecs)}}, nil); err != nil {
		t.Fatal(err)
	}
	abl := make([]string, 32)
	for i := range abl {
		abl[i] = fmt.Sprint(i % 3)
	}
	ivs := fmt.Sprintf(`interventions:
  - {type: add, layer: 1, coeff: 2, vector: {file: %s, tensor: persona, row: 1}}
  - {type: ablate, layer: 0, vector: {values: [%s]}}
`, vf, strings.Join(abl, ", "))
	val := func(y string) string {
		return strings.Replace(y, "  seq_len: 32\n", "  seq_len: 32\n  val_fraction: 0.25\n", 1)
	}
	plain, err := run(t, parse(t, val(scratchYAML(dir, 20, ""))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	plainW, _ := os.ReadFile(filepath.Join(plain.Model, "model.safetensors"))
	steered, err := run(t, parse(t, val(scratchYAML(dir, 20, ivs))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if steered.FinalLoss == plain.FinalLoss {
		t.Fatal("the interventions did not change training")
	}
	steeredW, _ := os.ReadFile(filepath.Join(steered.Model, "model.safetensors"))
	if len(steeredW) != len(plainW) || bytes.Equal(steeredW, plainW) {
		t.Fatalf("saved models: %d and %d bytes, equal %v: want the same tensors, different values", len(plainW), len(steeredW), bytes.Equal(steeredW, plainW))
	}
	withIv, err := run(t, parse(t, val(scratchYAML(dir, 20, ivs+"eval: {interventions: true}\n"))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if withIv.FinalLoss != steered.FinalLoss || *withIv.ValLoss == *steered.ValLoss {
		t.Fatalf("eval.interventions: train loss %g vs %g (want equal), val %g vs %g (want different)",
			withIv.FinalLoss, steered.FinalLoss, *withIv.ValLoss, *steered.ValLoss)
	}
}

// ExampleParseConfig shows a complete config: fine-tuning with LoRA and
// preventative steering.
func ExampleParseConfig() {
	c, err := ParseConfig([]byte(`
seed: 1
model: {base: models/organism}
data: {train: narrow.jsonl, val_fraction: 0.05, seq_len: 512}
optim: {epochs: 2, batch: 8, grad_accum: 2, lr: 1e-4, min_lr: 1e-5, warmup: 20, weight_decay: 0.01, grad_clip: 1}
lora: {rank: 8, alpha: 16, dropout: 0.05, targets: [q, k, v, o, gate, up, down], merge: true}
interventions:
  - {type: add, layer: 3, coeff: 1.5, vector: {file: vectors/evil.safetensors, tensor: evil, row: 3}}
checkpoint: {every: 50}
output: runs/inoculated
`), "example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Optim.Beta2, c.Data.Mask, c.Checkpoint.Dir, c.Checkpoint.Keep)
	// Output: 0.999 assistant runs/inoculated/checkpoints 2
}
