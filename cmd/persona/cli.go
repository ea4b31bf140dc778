package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"persona/audit"
	"persona/axis"
	"persona/backend"
	"persona/chat"
	"persona/control"
	"persona/drift"
	"persona/engine"
	"persona/internal/fileio"
	"persona/model"
	"persona/models"
	"persona/personas"
	"persona/posterior"
	"persona/resid"
	"persona/train"
	"persona/vectors"
)

// Exit codes, shared by every verb.
const (
	exitOK      = 0
	exitFailed  = 1 // a threshold or audit failed
	exitUsage   = 2 // usage or input error
	exitBackend = 3 // backend or infrastructure error
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks bad flags or bad input files (exit 2).
func usageErr(err error) error { return &exitError{exitUsage, err} }

// backendErr marks failures of the model or infrastructure (exit 3).
func backendErr(err error) error { return &exitError{exitBackend, err} }

// inputErrors are the package errors that mean the user's input was wrong,
// not the machinery.
var inputErrors = []error{os.ErrNotExist, model.ErrContext, engine.ErrNoTemplate, engine.ErrNoTurn, engine.ErrLayer,
	audit.ErrInput, drift.ErrInput, posterior.ErrNoAssistant, posterior.ErrTooFewLabels, posterior.ErrHypotheses, personas.ErrUnknown, chat.ErrEmpty, vectors.ErrWidth, resid.ErrWhere, control.ErrNothingToPatch, control.ErrInoculation}

// classify gives err the exit code its kind asks for: 2 for bad input, 3
// for anything else; an error that already has a code keeps it.
func classify(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	for _, in := range inputErrors {
		if errors.Is(err, in) {
			return usageErr(err)
		}
	}
	return backendErr(err)
}

// printJSON writes v to standard output as indented JSON.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress is a progress bar on a terminal and nothing elsewhere. Its
// update method is the progress callback the packages take.
type progress struct {
	what string
	bar  *progressbar.ProgressBar
}

func newProgress(what string) *progress { return &progress{what: what} }

func (p *progress) update(done, total int) {
	if p.bar == nil {
		if !term.IsTerminal(int(os.Stderr.Fd())) {
			return
		}
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(p.what),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
	}
	p.bar.Set(done)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

// trainSteps reports training steps: a bar per stage on a terminal, else a
// log line at every tenth of the run.
type trainSteps struct {
	stage string
	bar   *progress
}

func (t *trainSteps) step(stage string, s train.StepInfo) {
	line := fmt.Sprintf("%s loss %.4f · %.0f tok/s", stage, s.Loss, s.TokPerS)
	if s.ValLoss != nil {
		line += fmt.Sprintf(" · val %.4f", *s.ValLoss)
	}
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		if s.Step%max(s.Steps/10, 1) == 0 || s.Step == s.Steps {
			fmt.Fprintf(os.Stderr, "step %d/%d  %s  lr %.3g  grad norm %.3g\n", s.Step, s.Steps, line, s.LR, s.GradNorm)
		}
		return
	}
	if t.bar == nil || stage != t.stage {
		t.finish()
		t.stage, t.bar = stage, newProgress(stage)
	}
	t.bar.update(s.Step, s.Steps)
	t.bar.bar.Describe(line)
}

func (t *trainSteps) finish() {
	if t.bar != nil {
		t.bar.finish()
	}
}

// trainErr maps the trainer's errors to exit codes: the user's inputs (2),
// divergence and infrastructure (3).
func trainErr(err error) error {
	var ce *train.ConfigError
	var ie *train.InputError
	if errors.As(err, &ce) || errors.As(err, &ie) {
		return usageErr(err)
	}
	return classify(err)
}

// modelFlag registers --model with the embedded organism as its default, so
// every verb runs out of the box.
func modelFlag(f *pflag.FlagSet, p *string, usage string) {
	f.StringVar(p, "model", models.Default, usage+`; "organism" is the embedded post-trained organism, "organism-base" its base`)
}

// tokenizerFlag registers --tokenizer, for verbs that can take the tokenizer
// from another file than the model's.
func tokenizerFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "tokenizer", "", "tokenizer.json or GGUF file to take the tokenizer from (default: the model's own)")
}

// sampling is the sampling block of the verbs that generate text: the
// defaults of --max-tokens, --temperature and --seed, and what each verb's
// tokens and seed are for.
type sampling struct {
	MaxTokens   int
	TokensUsage string // e.g. "tokens per reply"
	Temperature float32
	Seed        uint64
	SeedUsage   string // e.g. "seed for questions and sampling"
}

// samplingFlags registers --max-tokens, --temperature and --seed with d's
// defaults. A greedy default temperature says so in its help.
func samplingFlags(f *pflag.FlagSet, maxTokens *int, temperature *float32, seed *uint64, d sampling) {
	f.IntVar(maxTokens, "max-tokens", d.MaxTokens, d.TokensUsage)
	usage := "sampling temperature"
	if d.Temperature == 0 {
		usage += "; 0 is greedy"
	}
	f.Float32Var(temperature, "temperature", d.Temperature, usage)
	f.Uint64Var(seed, "seed", d.Seed, d.SeedUsage)
}

// loadEngine loads a model named by --model: an embedded name or a path.
// A model that cannot be loaded is bad input.
func loadEngine(path string, opt engine.Options) (*engine.Engine, error) {
	dir, err := models.Resolve(path)
	if err != nil {
		return nil, usageErr(err)
	}
	e, err := engine.LoadWith(dir, opt)
	if err != nil {
		return nil, usageErr(err)
	}
	return e, nil
}

// modelClassifier is the posterior classifier a model named by --model
// carries in its directory, or "".
func modelClassifier(path string) string {
	dir, err := models.Resolve(path)
	if err != nil {
		return ""
	}
	return posterior.ModelClassifier(dir)
}

// loadChatEngine is loadEngine for verbs that hold conversations.
func loadChatEngine(path, verb string) (*engine.Engine, error) {
	e, err := loadEngine(path, engine.Options{})
	if err != nil {
		return nil, err
	}
	if e.Template == nil {
		e.Close()
		return nil, usageErr(fmt.Errorf("%s has no chat template; %s needs one to hold conversations", path, verb))
	}
	return e, nil
}

// openBackends opens entries of a backend config file by name ("" is the
// first entry), each once. A bad file or entry is a usage error, a backend
// that cannot start an infrastructure one.
func openBackends(configPath string, names ...string) ([]backend.Backend, io.Closer, error) {
	cfg, err := backend.LoadConfig(configPath)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	bs, closer, err := cfg.OpenNamed(names...)
	var ce *backend.ConfigError
	switch {
	case errors.As(err, &ce):
		return nil, nil, usageErr(err)
	case err != nil:
		return nil, nil, backendErr(err)
	}
	return bs, closer, nil
}

// openBackend is openBackends for one entry.
func openBackend(configPath, name string) (backend.Backend, io.Closer, error) {
	bs, closer, err := openBackends(configPath, name)
	if err != nil {
		return nil, nil, err
	}
	return bs[0], closer, nil
}

// judgeBackend opens a judge: an entry of a backend config, or the --model
// itself through the embedded engine.
func judgeBackend(configPath, name string, e *engine.Engine, modelName string) (backend.Backend, io.Closer, error) {
	if configPath != "" {
		return openBackend(configPath, name)
	}
	if e == nil {
		return nil, nil, usageErr(errors.New("a judge needs --backends FILE (and --judge NAME) or --model"))
	}
	return backend.NewEngine(e, filepath.Base(modelName), 1), io.NopCloser(nil), nil
}

// writeJSONL writes one JSON object per element of xs, atomically.
func writeJSONL[T any](path string, xs []T) error {
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for _, x := range xs {
			if err := enc.Encode(x); err != nil {
				return err
			}
		}
		return nil
	})
}

// loadLibrary reads a persona library directory; "" is the organism's.
func loadLibrary(dir string) (*personas.Library, error) {
	if dir == "" {
		return personas.Default(), nil
	}
	lib, err := personas.Load(dir)
	if err != nil {
		return nil, usageErr(err)
	}
	return lib, nil
}

// readChats reads a JSONL file of conversations; an empty file is an error.
func readChats(path string) ([]chat.Chat, error) {
	chats, err := chat.ReadJSONLFile(path)
	if err != nil {
		return nil, usageErr(err)
	}
	return chats, nil
}

// capFlag registers --cap: activation capping for the embedded engine.
func capFlag(f *pflag.FlagSet, path *string) {
	f.StringVar(path, "cap", "", "cap activations on an assistant axis file (persona axis, or the setting persona axis calibrate --out wrote): its band at its floors")
}

// loadCapping reads --cap for e: nil without one.
func loadCapping(path string, e *engine.Engine) (*resid.Set, error) {
	if path == "" {
		return nil, nil
	}
	a, err := axis.Load(path)
	if err == nil {
		err = a.Check(e.Model.NumLayers, e.Model.Hidden)
	}
	if err != nil {
		return nil, usageErr(fmt.Errorf("--cap: %w", err))
	}
	ivs, err := a.Cap(nil)
	if err != nil {
		return nil, usageErr(fmt.Errorf("--cap: %w", err))
	}
	return resid.NewSet(e.Model.NumLayers, e.Model.Hidden, ivs...)
}
