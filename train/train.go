// Package train fine-tunes Llama-family models, or trains them from scratch,
// on the embedded engine's own model code: one implementation of each
// architecture serves inference and training alike, so a trained model is
// exactly the model that persona then measures and steers.
//
// A run is described by a YAML Config (see config.go for every field). The
// loop is the usual supervised one — AdamW with decoupled weight decay, a
// linear warm-up then cosine decay, global-norm gradient clipping, gradient
// accumulation, a validation loss — with three properties the persona
// experiments rely on:
//
//   - Determinism. For a seed the data order (dataset.Epoch), the adapters'
//     dropout masks (seeded per (seed, step, row)) and every reduction are
//     fixed, so a run is reproducible bit for bit on the same machine and
//     GOMAXPROCS, and a run resumed from a checkpoint ends with the same
//     weights as one that was never interrupted.
//   - Safe checkpoints (checkpoint.go): atomic, with the optimizer state and
//     the data position; a NaN or Inf stops the run before it can be saved.
//   - Training-time interventions: preventative steering (add c·v at a
//     layer's output at every position) and directional ablation, applied
//     in the forward pass and differentiated through in the backward pass,
//     and not part of the saved model.
//
// Rows are processed one after another; each ForwardBackward uses all cores
// through the kernels. Running rows concurrently would need one gradient
// buffer per worker and, with LoRA, is not possible at all (the adapters
// hold their own gradients), and on the 2-core target it measured slower.
package train

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"persona/chat"
	"persona/dataset"
	"persona/engine"
	"persona/internal/fileio"
	"persona/model"
	"persona/resid"
	"persona/safetensors"
	"persona/tokenizer"
)

// InputError marks a problem with the run's inputs (model, tokenizer, data,
// vectors, an incompatible checkpoint): the user's to fix, exit code 2 in
// the CLI. A *ConfigError is one too.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, args ...any) error {
	return &InputError{fmt.Errorf(format, args...)}
}

// DivergedError reports a non-finite loss, gradient or weight. The run stops
// at that step without saving anything, so the last checkpoint is the last
// good state.
type DivergedError struct {
	Step       int    // 1-based step whose computation produced it
	What       string // "loss", "gradient norm", "weights"
	Checkpoint string // the last good checkpoint, "" if none
}

func (e *DivergedError) Error() string {
	msg := fmt.Sprintf("training diverged at step %d: the %s is not finite (lower optim.lr, raise optim.warmup, or set optim.grad_clip)", e.Step, e.What)
	if e.Checkpoint != "" {
		msg += "; the last good checkpoint is " + e.Checkpoint
	}
	return msg
}

// Options are the per-invocation settings that are not part of the run's
// identity (the config).
type Options struct {
	// Resume continues from the latest checkpoint in checkpoint.dir.
	Resume bool
	// Log receives human-readable progress lines (nil: discarded).
	Log io.Writer
	// OnStep is called after every optimizer step (for a progress bar).
	OnStep func(StepInfo)

	// afterBackward lets tests corrupt gradients or stop a run at a step.
	afterBackward func(step int, ps []model.Param) error
}

// StepInfo is one optimizer step, as logged to metrics.jsonl.
type StepInfo struct {
	Step     int      `json:"step"` // steps completed (1-based)
	Steps    int      `json:"-"`    // of the whole run
	Loss     float64  `json:"loss"` // mean loss per trained token of the step
	ValLoss  *float64 `json:"val_loss,omitempty"`
	LR       float64  `json:"lr"`
	GradNorm float64  `json:"grad_norm"` // before clipping
	Tokens   int64    `json:"tokens"`    // positions processed so far (rows·seq_len)
	TokPerS  float64  `json:"tok_s"`     // positions per second over this step
	ElapsedS float64  `json:"elapsed_s"` // wall time of the run, across resumes
}

// Summary is what a finished run reports (persona train --json).
type Summary struct {
	Steps         int      `json:"steps"`
	Tokens        int64    `json:"tokens"`         // positions processed, padding included
	TrainedTokens int64    `json:"trained_tokens"` // positions with a loss weight
	FinalLoss     float64  `json:"final_loss"`
	ValLoss       *float64 `json:"val_loss,omitempty"`
	TokPerS       float64  `json:"tok_s"`  // positions per second in this invocation
	WallS         float64  `json:"wall_s"` // wall time of this invocation
	ResumedFrom   int      `json:"resumed_from,omitempty"`
	Params        int64    `json:"params"`
	Trainable     int64    `json:"trainable_params"`
	Output        string   `json:"output"`
	Model         string   `json:"model,omitempty"`   // Hugging Face directory (full, from scratch, or merged)
	Adapter       string   `json:"adapter,omitempty"` // PEFT adapter directory
	Metrics       string   `json:"metrics"`
	Checkpoint    string   `json:"checkpoint"`
}

// WriteText prints the summary in a few lines.
func (sum *Summary) WriteText(w io.Writer) {
	val := ""
	if sum.ValLoss != nil {
		val = fmt.Sprintf(", validation loss %.4f", *sum.ValLoss)
	}
	fmt.Fprintf(w, "trained %d steps (%d tokens) in %.1f s, %.0f tok/s; final loss %.4f%s\n",
		sum.Steps, sum.Tokens, sum.WallS, sum.TokPerS, sum.FinalLoss, val)
	if sum.Model != "" {
		fmt.Fprintln(w, "model:  ", sum.Model)
	}
	if sum.Adapter != "" {
		fmt.Fprintln(w, "adapter:", sum.Adapter)
	}
	fmt.Fprintln(w, "metrics:", sum.Metrics)
}

// Trainer is a prepared run: model, data, optimizer and interventions.
type Trainer struct {
	cfg    *Config
	opt    Options
	log    io.Writer
	eng    *engine.Engine
	m      *model.Model
	tokDir string // where tokenizer files are copied from, "" if none

	train, val  *dataset.Dataset
	dataHash    string
	iv          *resid.Set
	grads       *model.Grads
	params      []model.Param
	adam        *AdamW
	rowsPerStep int
	total       int
	step        int // steps completed
	tokens      int64
	trained     int64
	elapsed     float64 // seconds of earlier invocations (resume)
	lastLoss    float64
	lastVal     *float64
	resumedFrom int
	lastCkpt    string

	epochCache map[int][]int
}

// New prepares a run: loads or builds the model, reads and packs the data,
// attaches adapters and interventions, and with opt.Resume restores the
// latest checkpoint (refusing one written with a different config or data).
func New(cfg *Config, opt Options) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, opt: opt, log: opt.Log, epochCache: map[int][]int{}}
	if t.log == nil {
		t.log = io.Discard
	}
	if err := t.loadModel(); err != nil {
		return nil, err
	}
	if err := t.loadData(); err != nil {
		t.m.Close()
		return nil, err
	}
	if err := t.setup(); err != nil {
		t.m.Close()
		return nil, err
	}
	if opt.Resume {
		if err := t.resume(); err != nil {
			t.m.Close()
			return nil, err
		}
	}
	return t, nil
}

// Close releases the base model's memory mappings.
func (t *Trainer) Close() error { return t.m.Close() }

// Model returns the model being trained.
func (t *Trainer) Model() *model.Model { return t.m }

// TotalSteps returns the number of optimizer steps of the whole run.
func (t *Trainer) TotalSteps() int { return t.total }

// Step returns the number of steps completed (after a resume, where it
// continues from).
func (t *Trainer) Step() int { return t.step }

func (t *Trainer) loadModel() error {
	c := t.cfg.Model
	if c.Base != "" {
		var eo engine.Options
		if c.Tokenizer != "" {
			eo.Tokenizer = filepath.Join(c.Tokenizer, "tokenizer.json")
			t.tokDir = c.Tokenizer
		} else if st, err := os.Stat(c.Base); err == nil && st.IsDir() {
			t.tokDir = c.Base
		}
		e, err := engine.LoadWith(c.Base, eo)
		if err != nil {
			return inputErr("model.base: %w", err)
		}
		t.eng, t.m = e, e.Model
		if t.tokDir == "" && (t.cfg.LoRA == nil || t.cfg.LoRA.Merge) {
			e.Close()
			return inputErr("model.tokenizer: the base %s is a GGUF file; give a tokenizer directory (tokenizer.json, tokenizer_config.json) to write a complete Hugging Face model", c.Base)
		}
		// Training reads and writes float32; memory-mapped or F16/BF16/Q8_0
		// weights become owned float32 (a frozen base too: the backward
		// pass multiplies by its weights).
		t.m.TrainableF32()
		fmt.Fprintf(t.log, "base model %s: %s, %d layers, hidden %d, vocab %d, %.2fM parameters\n",
			c.Base, t.m.Arch, t.m.NumLayers, t.m.Hidden, t.m.Vocab, float64(t.m.ParamCount())/1e6)
		return nil
	}
	t.tokDir = c.Tokenizer
	tok, err := tokenizer.Load(filepath.Join(c.Tokenizer, "tokenizer.json"))
	if err != nil {
		return inputErr("model.tokenizer: %w", err)
	}
	a := c.Arch
	mc := model.Config{Arch: a.Arch, HFArch: a.Arch, Hidden: a.Hidden, FFN: a.FFN, NumLayers: a.Layers, Heads: a.Heads,
		KVHeads: a.KVHeads, HeadDim: a.HeadDim, Vocab: a.Vocab, MaxSeq: a.MaxSeq, NormEps: a.NormEps,
		RoPETheta: a.RoPETheta, TiedEmbedding: *a.Tied, QKVBias: a.QKVBias, QKNorm: a.QKNorm}
	if mc.Vocab == 0 {
		mc.Vocab = tok.VocabSize()
	}
	if mc.Vocab < tok.VocabSize() {
		return &ConfigError{Field: "model.arch.vocab", Msg: fmt.Sprintf("%d is smaller than the tokenizer's %d tokens", mc.Vocab, tok.VocabSize())}
	}
	if id := tok.BOS(); id >= 0 {
		mc.BOS = []int{id}
	}
	if id := tok.EOS(); id >= 0 {
		mc.EOS = []int{id}
	}
	m, err := model.NewRandom(mc, t.cfg.Seed)
	if err != nil {
		return &ConfigError{Field: "model.arch", Msg: err.Error()}
	}
	m.Source = "scratch"
	e := &engine.Engine{Model: m, Tokenizer: tok, Path: c.Tokenizer, Stop: map[int]bool{}}
	cfgPath := filepath.Join(c.Tokenizer, "tokenizer_config.json")
	if _, err := os.Stat(cfgPath); err == nil {
		if e.ChatConfig, err = chat.LoadConfig(cfgPath); err != nil {
			return inputErr("model.tokenizer: %w", err)
		}
		if e.ChatConfig.Template != "" {
			if e.Template, err = chat.NewTemplate(e.ChatConfig.Template, e.ChatConfig); err != nil {
				return inputErr("model.tokenizer: %s: chat template: %w", cfgPath, err)
			}
		}
		if id, ok := tok.ID(e.ChatConfig.EOS); ok && e.ChatConfig.EOS != "" {
			e.Stop[id] = true
		}
	}
	for _, id := range m.EOS {
		e.Stop[id] = true
	}
	t.eng, t.m = e, m
	fmt.Fprintf(t.log, "from scratch: %s, %d layers, hidden %d, vocab %d, %.2fM parameters\n",
		mc.Arch, mc.NumLayers, mc.Hidden, mc.Vocab, float64(m.ParamCount())/1e6)
	return nil
}

func (t *Trainer) loadData() error {
	d := t.cfg.Data
	opt := dataset.Options{SeqLen: d.SeqLen, Mask: d.Mask, Format: d.Format, Truncate: d.Truncate}
	docs, err := dataset.Load(t.eng, d.Train, opt)
	if err != nil {
		return inputErr("data.train: %w", err)
	}
	var held []dataset.Document
	switch {
	case d.Validation != "":
		if held, err = dataset.Load(t.eng, d.Validation, opt); err != nil {
			return inputErr("data.validation: %w", err)
		}
	case d.ValFraction > 0:
		if docs, held, err = dataset.Split(docs, d.ValFraction, t.cfg.Seed); err != nil {
			return inputErr("data.val_fraction: %s: %w", d.Train, err)
		}
	}
	pad := dataset.PadToken(t.eng)
	if t.train, err = dataset.New(docs, d.SeqLen, pad); err != nil {
		return inputErr("data.train: %w", err)
	}
	if len(t.train.Rows) == 0 {
		return inputErr("data.train: %s: no rows to train on", d.Train)
	}
	fmt.Fprintf(t.log, "train: %v\n", t.train.Stats)
	if held != nil {
		if t.val, err = dataset.New(held, d.SeqLen, pad); err != nil {
			return inputErr("data.validation: %w", err)
		}
		fmt.Fprintf(t.log, "validation: %v\n", t.val.Stats)
	}
	t.dataHash = hashRows(t.train, t.val)
	return nil
}

// hashRows fingerprints the packed data, so a resumed run can tell that the
// files under the same names still hold the same data.
func hashRows(sets ...*dataset.Dataset) string {
	h := fnv.New64a()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	for _, d := range sets {
		if d == nil {
			put(0)
			continue
		}
		put(uint64(len(d.Rows)))
		for _, r := range d.Rows {
			for i := range r.Tokens {
				put(uint64(r.Tokens[i]))
				put(uint64(r.Targets[i]))
				put(uint64(math.Float32bits(r.Weights[i])))
				put(uint64(r.Start[i]))
			}
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

func (t *Trainer) setup() error {
	c := t.cfg
	if l := c.LoRA; l != nil {
		lc := model.LoRAConfig{Rank: l.Rank, Alpha: l.Alpha, Dropout: l.Dropout, Targets: l.Targets, RSLoRA: l.RSLoRA}
		if err := t.m.AddLoRA(lc, c.Seed); err != nil {
			return &ConfigError{Field: "lora", Msg: err.Error()}
		}
		g, err := t.m.NewLoRAGrads()
		if err != nil {
			return err
		}
		t.grads = g
	} else {
		t.grads = t.m.NewGrads()
	}
	t.params = t.m.Params(t.grads)
	if c.Model.Arch != nil {
		initScratch(t.params, c.Seed, c.Model.Arch.Layers)
	}
	var ivs []resid.Intervention
	for i, iv := range c.Interventions {
		field := fmt.Sprintf("interventions[%d]", i)
		if iv.Layer >= t.m.NumLayers {
			return &ConfigError{Field: field + ".layer", Msg: fmt.Sprintf("%d is beyond the model's %d layers (0-based: layer ℓ is block ℓ's output)", iv.Layer, t.m.NumLayers)}
		}
		v, err := readVector(iv.Vector, t.m.Hidden)
		if err != nil {
			return &InputError{fmt.Errorf("%s.vector: %w", field, err)}
		}
		switch iv.Type {
		case "add":
			ivs = append(ivs, &resid.Add{At: iv.Layer, Vector: v, Coeff: iv.Coeff})
		case "ablate":
			u, err := resid.Unit(v)
			if err != nil {
				return &InputError{fmt.Errorf("%s.vector: %w", field, err)}
			}
			ivs = append(ivs, &resid.Ablate{At: iv.Layer, Direction: u})
		}
	}
	if len(ivs) > 0 {
		set, err := resid.NewSet(t.m.NumLayers, t.m.Hidden, ivs...)
		if err != nil {
			return &InputError{fmt.Errorf("interventions: %w", err)}
		}
		t.iv = set
	}
	o := c.Optim
	t.adam = NewAdamW(t.params, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	t.rowsPerStep = o.Batch * o.GradAccum
	t.total = o.Steps
	if o.Epochs > 0 {
		t.total = max(int(math.Ceil(o.Epochs*float64(len(t.train.Rows))/float64(t.rowsPerStep))), 1)
	}
	var n int64
	for _, p := range t.params {
		n += int64(len(p.W))
	}
	fmt.Fprintf(t.log, "%d steps of %d rows × %d positions; %.3fM trainable parameters\n", t.total, t.rowsPerStep, c.Data.SeqLen, float64(n)/1e6)
	return nil
}

// initScratch replaces NewRandom's benchmark initialisation (unit-variance
// embeddings, which make a tied head's first logits huge) with GPT-2's:
// matrices N(0, 0.02²), residual output projections (o, down) scaled by
// 1/√(2·layers) so the residual stream's variance does not grow with depth,
// norms 1, biases 0.
func initScratch(ps []model.Param, seed uint64, layers int) {
	r := rand.New(rand.NewPCG(seed, 0x1417))
	for _, p := range ps {
		switch {
		case strings.HasSuffix(p.Name, "norm.weight"):
			for i := range p.W {
				p.W[i] = 1
			}
		case strings.HasSuffix(p.Name, ".bias"):
			clear(p.W)
		default:
			std := 0.02
			if strings.HasSuffix(p.Name, "o_proj.weight") || strings.HasSuffix(p.Name, "down_proj.weight") {
				std /= math.Sqrt(2 * float64(layers))
			}
			for i := range p.W {
				p.W[i] = float32(r.NormFloat64() * std)
			}
		}
	}
}

// readVector loads an intervention's vector and checks its width.
func readVector(v VectorSpec, width int) ([]float32, error) {
	if len(v.Values) > 0 {
		if len(v.Values) != width {
			return nil, fmt.Errorf("values: %d numbers, the model's width is %d", len(v.Values), width)
		}
		return append([]float32(nil), v.Values...), nil
	}
	f, err := safetensors.Open(v.File)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts, err := f.Tensor(v.Tensor)
	if err != nil {
		return nil, fmt.Errorf("%w (tensors: %s)", err, strings.Join(f.Names(), ", "))
	}
	all := ts.ToF32()
	switch {
	case v.Row != nil:
		if len(ts.Shape) != 2 || ts.Shape[1] != width || *v.Row >= ts.Shape[0] {
			return nil, fmt.Errorf("%s: tensor %q has shape %v; row %d of width %d needs [rows > %d, %d]", v.File, v.Tensor, ts.Shape, *v.Row, width, *v.Row, width)
		}
		return append([]float32(nil), all[*v.Row*width:(*v.Row+1)*width]...), nil
	case len(all) != width:
		return nil, fmt.Errorf("%s: tensor %q has shape %v, the model's width is %d (pick a row of a 2-D tensor with row)", v.File, v.Tensor, ts.Shape, width)
	}
	return append([]float32(nil), all...), nil
}

// ckptDir is where checkpoints live.
func (t *Trainer) ckptDir() string { return t.cfg.Checkpoint.Dir }

func (t *Trainer) resume() error {
	steps, err := listCheckpoints(t.ckptDir())
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		return inputErr("--resume: no checkpoint in %s", t.ckptDir())
	}
	path := filepath.Join(t.ckptDir(), ckptName(steps[len(steps)-1]))
	st, err := loadCheckpoint(path, t.params, t.adam)
	if err != nil {
		return &InputError{err}
	}
	if st.ConfigHash != t.cfg.Hash() {
		if d := diffConfig(st.Config, t.cfg); d != "" {
			return inputErr("--resume: the config changed since checkpoint %s: %s; restore it, or start a new run in another output directory", path, d)
		}
	}
	if st.DataHash != t.dataHash {
		return inputErr("--resume: the training or validation data changed since checkpoint %s (same file names, different rows)", path)
	}
	if st.TotalSteps != t.total || st.RowsSeen != int64(st.Step)*int64(t.rowsPerStep) {
		return inputErr("--resume: checkpoint %s is for a %d-step run at row %d; this run has %d steps", path, st.TotalSteps, st.RowsSeen, t.total)
	}
	if st.GOMAXPROCS != runtime.GOMAXPROCS(0) {
		fmt.Fprintf(t.log, "note: the checkpoint was written with GOMAXPROCS=%d, this process has %d; the loss curve may differ in the last bits\n", st.GOMAXPROCS, runtime.GOMAXPROCS(0))
	}
	t.step, t.tokens, t.trained, t.elapsed, t.lastLoss = st.Step, st.Tokens, st.Trained, st.ElapsedS, st.LastLoss
	t.resumedFrom, t.lastCkpt = st.Step, path
	fmt.Fprintf(t.log, "resuming from %s (step %d of %d)\n", path, st.Step, t.total)
	return nil
}

// rowAt returns the row at data position p: the stream of rows is epoch 0's
// shuffled order, then epoch 1's, and so on.
func (t *Trainer) rowAt(p int64) *model.Row {
	n := int64(len(t.train.Rows))
	ep := int(p / n)
	order, ok := t.epochCache[ep]
	if !ok {
		clear(t.epochCache) // only the current (and next) epoch are ever needed
		order = t.train.Epoch(t.cfg.Seed, ep)
		t.epochCache[ep] = order
	}
	return &t.train.Rows[order[p%n]]
}

// dropoutSeed gives row i of step s its own dropout stream.
func dropoutSeed(seed uint64, step, row int) uint64 {
	return mix(mix(seed^0x7261696e)+uint64(step)) ^ mix(uint64(row)+0x9e3779b97f4a7c15)
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// metricsPath is the metrics log.
func (t *Trainer) metricsPath() string { return filepath.Join(t.cfg.Output, "metrics.jsonl") }

// openMetrics opens the metrics log for appending. A fresh run starts it
// empty; a resumed run keeps the lines up to its checkpoint's step and drops
// the ones a killed run wrote after it, so the file is the run's one curve.
func (t *Trainer) openMetrics() (*os.File, error) {
	if err := os.MkdirAll(t.cfg.Output, 0o755); err != nil {
		return nil, err
	}
	var keep []byte
	if t.step > 0 {
		data, _ := os.ReadFile(t.metricsPath())
		for _, line := range strings.SplitAfter(string(data), "\n") {
			var s struct{ Step int }
			if !strings.HasSuffix(line, "\n") || json.Unmarshal([]byte(line), &s) != nil || s.Step > t.step {
				continue
			}
			keep = append(keep, line...)
		}
	}
	if err := fileio.WriteFileAtomic(t.metricsPath(), keep); err != nil {
		return nil, err
	}
	return os.OpenFile(t.metricsPath(), os.O_WRONLY|os.O_APPEND, 0o644)
}

// Run trains to the last step, checkpointing and evaluating as configured,
// then writes the outputs. When ctx is cancelled it saves a checkpoint after
// the current step and returns ctx's error; --resume continues from there.
func (t *Trainer) Run(ctx context.Context) (*Summary, error) {
	c := t.cfg
	mf, err := t.openMetrics()
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	enc := json.NewEncoder(mf)
	start := time.Now()
	startTokens := t.tokens
	evalEvery := c.Eval.Every
	if evalEvery == 0 {
		evalEvery = max(t.total/10, 1)
	}
	T := c.Data.SeqLen
	rows := make([]*model.Row, t.rowsPerStep)
	for t.step < t.total {
		stepStart := time.Now()
		s := t.step // 0-based index of the step being taken
		var weight float64
		for i := range rows {
			rows[i] = t.rowAt(int64(s)*int64(t.rowsPerStep) + int64(i))
			for _, w := range rows[i].Weights {
				weight += float64(w)
			}
		}
		loss, wSum, err := accumulate(t.m, t.grads, rows, weight, t.iv, c.Seed, s)
		if err != nil {
			return nil, err
		}
		if t.opt.afterBackward != nil {
			if err := t.opt.afterBackward(s+1, t.params); err != nil {
				return nil, err
			}
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, &DivergedError{Step: s + 1, What: "loss", Checkpoint: t.lastCkpt}
		}
		norm := ClipGradNorm(t.params, c.Optim.GradClip)
		if math.IsNaN(norm) || math.IsInf(norm, 0) {
			return nil, &DivergedError{Step: s + 1, What: "gradient norm", Checkpoint: t.lastCkpt}
		}
		lr := LRAt(s, t.total, c.Optim.Warmup, c.Optim.LR, c.Optim.MinLR)
		t.adam.Step(t.params, lr)
		if !finiteParams(t.params) {
			return nil, &DivergedError{Step: s + 1, What: "weights", Checkpoint: t.lastCkpt}
		}
		t.step++
		t.tokens += int64(len(rows) * T)
		t.trained += int64(wSum)
		t.lastLoss = loss
		info := StepInfo{Step: t.step, Steps: t.total, Loss: loss, LR: lr, GradNorm: norm, Tokens: t.tokens,
			TokPerS: float64(len(rows)*T) / time.Since(stepStart).Seconds()}
		if t.val != nil && (t.step%evalEvery == 0 || t.step == t.total) {
			v, err := t.evaluate()
			if err != nil {
				return nil, err
			}
			t.lastVal = &v
			info.ValLoss = &v
		}
		info.ElapsedS = t.elapsed + time.Since(start).Seconds()
		if err := enc.Encode(info); err != nil {
			return nil, err
		}
		if t.opt.OnStep != nil {
			t.opt.OnStep(info)
		}
		stop := ctx.Err() != nil
		if (c.Checkpoint.Every > 0 && t.step%c.Checkpoint.Every == 0) || t.step == t.total || stop {
			if err := t.checkpoint(start); err != nil {
				return nil, err
			}
		}
		if stop {
			return nil, fmt.Errorf("interrupted after step %d; %s holds the run, continue it with --resume: %w", t.step, t.lastCkpt, ctx.Err())
		}
	}
	if err := mf.Sync(); err != nil {
		return nil, err
	}
	wall := time.Since(start).Seconds()
	sum := &Summary{Steps: t.step, Tokens: t.tokens, TrainedTokens: t.trained, FinalLoss: t.lastLoss, ValLoss: t.lastVal,
		WallS: wall, ResumedFrom: t.resumedFrom, Params: t.m.ParamCount(), Output: c.Output, Metrics: t.metricsPath(), Checkpoint: t.lastCkpt}
	if wall > 0 {
		sum.TokPerS = float64(t.tokens-startTokens) / wall
	}
	for _, p := range t.params {
		sum.Trainable += int64(len(p.W))
	}
	if err := t.writeOutputs(sum); err != nil {
		return nil, err
	}
	return sum, nil
}

// accumulate runs the rows of step s (0-based) forward and backward into
// g (zeroed first) and returns the mean loss per trained token and the
// trained weight. weight is the rows' total loss weight: the step minimises
// the mean loss over its trained tokens, however they fall into rows and
// micro-batches, so every row's gradient is scaled by 1/weight.
func accumulate(m *model.Model, g *model.Grads, rows []*model.Row, weight float64, iv *resid.Set, seed uint64, s int) (loss, wSum float64, err error) {
	scale := float32(0)
	if weight > 0 {
		scale = float32(1 / weight)
	}
	g.Zero()
	var lossSum float64
	for i, r := range rows {
		l, w, err := m.ForwardBackward(r, g, model.TrainOptions{Interventions: iv, Scale: scale, Seed: dropoutSeed(seed, s, i)})
		if err != nil {
			return 0, 0, fmt.Errorf("step %d: %w", s+1, err)
		}
		lossSum += l
		wSum += w
	}
	return lossSum / max(wSum, 1e-30), wSum, nil
}

// checkpoint saves the current state.
func (t *Trainer) checkpoint(start time.Time) error {
	st := &ckptState{Version: 1, Step: t.step, TotalSteps: t.total, RowsSeen: int64(t.step) * int64(t.rowsPerStep),
		Epoch: t.step * t.rowsPerStep / len(t.train.Rows), AdamT: t.adam.T, ConfigHash: t.cfg.Hash(), Config: t.cfg,
		DataHash: t.dataHash, Tokens: t.tokens, Trained: t.trained, ElapsedS: t.elapsed + time.Since(start).Seconds(),
		LastLoss: t.lastLoss, GOMAXPROCS: runtime.GOMAXPROCS(0), RNG: "stateless: every draw derives from (seed, step, row)"}
	path, err := saveCheckpoint(t.ckptDir(), t.cfg.Checkpoint.Keep, st, t.params, t.adam)
	if err != nil {
		return fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	t.lastCkpt = path
	return nil
}

func finiteParams(ps []model.Param) bool {
	for _, p := range ps {
		for _, w := range p.W {
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				return false
			}
		}
	}
	return true
}

// evaluate returns the mean validation loss per trained token. Adapter
// dropout is off; the training interventions apply only if eval asks.
func (t *Trainer) evaluate() (float64, error) {
	var iv *resid.Set
	if t.cfg.Eval.Interventions {
		iv = t.iv
	}
	rows := t.val.Rows
	if n := t.cfg.Eval.MaxRows; n > 0 && n < len(rows) {
		rows = rows[:n]
	}
	var loss, weight float64
	for i := range rows {
		l, w, err := t.m.Loss(&rows[i], iv)
		if err != nil {
			return 0, fmt.Errorf("validation row %d: %w", i, err)
		}
		loss += l
		weight += w
	}
	return loss / max(weight, 1e-30), nil
}

// Evaluate returns the validation loss of the model as it stands (NaN when
// the run has no validation data).
func (t *Trainer) Evaluate() (float64, error) {
	if t.val == nil {
		return math.NaN(), nil
	}
	return t.evaluate()
}

// tokenizerFiles are copied from the tokenizer directory into every model
// or adapter directory written, so each loads on its own.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}

// writeOutputs writes the model directory (full, from scratch, or merged)
// and, with LoRA, the PEFT adapter directory. Each is built in a temporary
// sibling and renamed into place.
func (t *Trainer) writeOutputs(sum *Summary) error {
	out := t.cfg.Output
	if t.cfg.LoRA != nil {
		dir := filepath.Join(out, "adapter")
		if err := fileio.ReplaceDir(dir, func(tmp string) error {
			if err := t.m.SaveLoRA(tmp, t.cfg.Model.Base); err != nil {
				return err
			}
			return t.copyTokenizer(tmp)
		}); err != nil {
			return fmt.Errorf("writing adapters: %w", err)
		}
		sum.Adapter = dir
		fmt.Fprintf(t.log, "adapters: %s\n", dir)
		if !t.cfg.LoRA.Merge {
			return nil
		}
		// The adapters and the final checkpoint are saved: merging may
		// now change the model in place.
		t.m.MergeLoRA()
	}
	dir := filepath.Join(out, "model")
	if err := fileio.ReplaceDir(dir, func(tmp string) error {
		if err := t.m.WriteHF(tmp); err != nil {
			return err
		}
		if err := t.copyTokenizer(tmp); err != nil {
			return err
		}
		return t.writeGenerationConfig(tmp)
	}); err != nil {
		return fmt.Errorf("writing the model: %w", err)
	}
	sum.Model = dir
	fmt.Fprintf(t.log, "model: %s\n", dir)
	return nil
}

func (t *Trainer) copyTokenizer(dst string) error {
	if t.tokDir == "" {
		return nil
	}
	for _, f := range tokenizerFiles {
		data, err := os.ReadFile(filepath.Join(t.tokDir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := fileio.WriteFileAtomic(filepath.Join(dst, f), data); err != nil {
			return err
		}
	}
	return nil
}

// writeGenerationConfig records BOS and every stop token (the tokenizer's
// EOS and the chat template's end-of-turn) so generation stops where the
// trained model learned to.
func (t *Trainer) writeGenerationConfig(dir string) error {
	g := map[string]any{"_from_model_config": true}
	if len(t.m.BOS) > 0 {
		g["bos_token_id"] = t.m.BOS[0]
	}
	var stop []int
	for id := range t.eng.Stop {
		stop = append(stop, id)
	}
	slices.Sort(stop)
	if len(stop) > 0 {
		g["eos_token_id"] = stop
	}
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return fileio.WriteFileAtomic(filepath.Join(dir, "generation_config.json"), append(data, '\n'))
}
