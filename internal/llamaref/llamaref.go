// Package llamaref runs llama.cpp as a live reference for persona's tests and benchmarks.
//
// persona's forward pass is checked against an implementation nobody on the project wrote: llama.cpp, as
// shipped prebuilt in npm node-llama-cpp 3.21.1. This package drives the small Node scripts in tools/llamaref
// (logprobs.mjs, bench.mjs) as subprocesses, so no cgo or C toolchain is needed and `go build` stays pure Go.
// The Node side is installed by `bash tools/llamaref/install.sh` (pinned by tools/llamaref/package-lock.json).
package llamaref

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// InstallCommand is the command that installs the reference, quoted in every "not installed" error so the
// fix is one copy-paste away. It is relative to the module root.
const InstallCommand = "bash tools/llamaref/install.sh"

// toolsRel is where the Node scripts live, relative to the module root.
const toolsRel = "tools/llamaref"

// Dir returns the absolute path of tools/llamaref. It walks up from the working directory to the first
// go.mod (so tests in any package, whose working directory is their own package directory, find it); when
// the working directory is outside the module it falls back to this source file's location.
func Dir() (string, error) {
	var tried []string
	if wd, err := os.Getwd(); err == nil {
		if root, ok := findModuleRoot(wd); ok {
			d := filepath.Join(root, toolsRel)
			if isDir(d) {
				return d, nil
			}
			tried = append(tried, d)
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		d := filepath.Join(filepath.Dir(file), "..", "..", toolsRel)
		if isDir(d) {
			return filepath.Clean(d), nil
		}
		tried = append(tried, filepath.Clean(d))
	}
	return "", fmt.Errorf("llamaref: cannot find %s (looked at %s); run from inside the persona module",
		toolsRel, strings.Join(tried, ", "))
}

// findModuleRoot returns the nearest directory at or above dir that holds a go.mod.
func findModuleRoot(dir string) (string, bool) {
	dir = filepath.Clean(dir)
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Available reports whether the reference can run: node on PATH and the pinned npm packages present in
// tools/llamaref/node_modules. The error says what is missing and how to install it, so callers can pass it
// straight to testref.Require in tests.
func Available() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("llamaref: llama.cpp reference not available: node is not on PATH (need Node >= 20, then run %q)", InstallCommand)
	}
	dir, err := Dir()
	if err != nil {
		return err
	}
	for _, pkg := range []string{"node-llama-cpp", "@node-llama-cpp/linux-x64"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			return fmt.Errorf("llamaref: llama.cpp reference not installed (%s missing from %s/node_modules); install it with: %s",
				pkg, dir, InstallCommand)
		}
	}
	return nil
}

// Result is llama.cpp's view of a token sequence.
type Result struct {
	// Vocab is the vocabulary size: the length of every LogSoftmax row.
	Vocab int
	// LogSoftmax[i] is the log-softmax over the vocabulary of the next-token distribution after ids[0..i].
	// Computed in float32 by llama.cpp's side; a probability that underflows float32 appears as -Inf.
	LogSoftmax [][]float32
	// Greedy holds the nGreedy argmax continuations, each fed back one at a time after the input ids.
	Greedy []int
}

// Run evaluates ids exactly as given (no tokenization, no BOS added) with llama.cpp on the CPU, flash
// attention off and an F32 KV cache — the settings under which its outputs are reproducible to ~1e-6 — and
// returns the log-softmax at every position plus nGreedy greedy continuation ids. threads < 1 means 1.
func Run(ctx context.Context, modelPath string, ids []int, nGreedy, threads int) (*Result, error) {
	if len(ids) == 0 {
		return nil, errors.New("llamaref: Run needs at least one token id")
	}
	if nGreedy < 0 {
		return nil, fmt.Errorf("llamaref: negative nGreedy %d", nGreedy)
	}
	if threads < 1 {
		threads = 1
	}
	model, err := absModel(modelPath)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "llamaref-*")
	if err != nil {
		return nil, fmt.Errorf("llamaref: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "log_softmax.f32")
	in, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("llamaref: %w", err)
	}

	stdout, err := runScript(ctx, "logprobs.mjs", in,
		"--model", model, "--out", out, "--threads", strconv.Itoa(threads), "--n-greedy", strconv.Itoa(nGreedy))
	if err != nil {
		return nil, err
	}
	var meta struct {
		Vocab      int   `json:"vocab"`
		NPositions int   `json:"n_positions"`
		Greedy     []int `json:"greedy"`
	}
	if err := json.Unmarshal(stdout, &meta); err != nil {
		return nil, fmt.Errorf("llamaref: logprobs.mjs printed unreadable JSON (%v): %q", err, truncate(string(stdout), 500))
	}
	if meta.NPositions != len(ids) || meta.Vocab <= 0 || len(meta.Greedy) != nGreedy {
		return nil, fmt.Errorf("llamaref: logprobs.mjs returned %d positions, vocab %d, %d greedy ids; want %d positions, %d greedy",
			meta.NPositions, meta.Vocab, len(meta.Greedy), len(ids), nGreedy)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("llamaref: %w", err)
	}
	if len(raw) != 4*meta.NPositions*meta.Vocab {
		return nil, fmt.Errorf("llamaref: log-softmax file has %d bytes, want %d×%d float32", len(raw), meta.NPositions, meta.Vocab)
	}
	flat := DecodeF32(raw)
	res := &Result{Vocab: meta.Vocab, Greedy: meta.Greedy, LogSoftmax: make([][]float32, meta.NPositions)}
	for i := range res.LogSoftmax {
		res.LogSoftmax[i] = flat[i*meta.Vocab : (i+1)*meta.Vocab : (i+1)*meta.Vocab]
	}
	return res, nil
}

// DecodeF32 reads little-endian float32s, the layout of logprobs.mjs's output and of the fixture goldens.
func DecodeF32(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

// BenchResult is llama.cpp's speed on one model: best of several repetitions, in tokens per second.
type BenchResult struct {
	PrefillTokS, DecodeTokS  float64
	Threads, Prefill, Decode int
	// BaseRSSBytes is the node process's resident memory before the model
	// was loaded (node and the llama.cpp library), PeakRSSBytes its
	// high-water mark at the end; 0 without /proc.
	BaseRSSBytes, PeakRSSBytes int64
}

// BenchConfig sets every knob of a llama.cpp timing run; Bench fills in the defaults.
type BenchConfig struct {
	Model                    string
	Prefill, Decode, Threads int
	// Reps is the number of timed repetitions (best is reported); 0 means 3.
	Reps int
	// KVType is the KV cache element type, "F32" (default, as persona uses) or "F16" (llama.cpp's default).
	KVType string
	// FlashAttention turns on llama.cpp's flash-attention kernels (off by default, matching Run).
	FlashAttention bool
}

// Bench times llama.cpp on the CPU: a batched prefill of `prefill` tokens, then `decode` tokens one at a time,
// after a warm-up, best of 3 — the reference figure persona's own benchmark is compared with in the same run.
// It uses an F32 KV cache and no flash attention; see BenchWith for other settings.
func Bench(ctx context.Context, modelPath string, prefill, decode, threads int) (*BenchResult, error) {
	return BenchWith(ctx, BenchConfig{Model: modelPath, Prefill: prefill, Decode: decode, Threads: threads})
}

// BenchWith is Bench with every setting explicit.
func BenchWith(ctx context.Context, c BenchConfig) (*BenchResult, error) {
	if c.Prefill < 1 || c.Decode < 0 {
		return nil, fmt.Errorf("llamaref: bench needs prefill >= 1 and decode >= 0, got %d and %d", c.Prefill, c.Decode)
	}
	if c.Threads < 1 {
		c.Threads = 1
	}
	if c.Reps < 1 {
		c.Reps = 3
	}
	if c.KVType == "" {
		c.KVType = "F32"
	}
	model, err := absModel(c.Model)
	if err != nil {
		return nil, err
	}
	fa := "0"
	if c.FlashAttention {
		fa = "1"
	}
	stdout, err := runScript(ctx, "bench.mjs", nil,
		"--model", model, "--threads", strconv.Itoa(c.Threads), "--prefill", strconv.Itoa(c.Prefill),
		"--decode", strconv.Itoa(c.Decode), "--reps", strconv.Itoa(c.Reps), "--kv-type", c.KVType, "--flash-attention", fa)
	if err != nil {
		return nil, err
	}
	var r struct {
		PrefillTokS float64 `json:"prefill_tok_s"`
		DecodeTokS  float64 `json:"decode_tok_s"`
		Threads     int     `json:"threads"`
		Prefill     int     `json:"prefill"`
		Decode      int     `json:"decode"`
		BaseRSS     int64   `json:"rss_before_model_bytes"`
		PeakRSS     int64   `json:"peak_rss_bytes"`
	}
	if err := json.Unmarshal(stdout, &r); err != nil {
		return nil, fmt.Errorf("llamaref: bench.mjs printed unreadable JSON (%v): %q", err, truncate(string(stdout), 500))
	}
	return &BenchResult{PrefillTokS: r.PrefillTokS, DecodeTokS: r.DecodeTokS, Threads: r.Threads, Prefill: r.Prefill, Decode: r.Decode,
		BaseRSSBytes: r.BaseRSS, PeakRSSBytes: r.PeakRSS}, nil
}

// absModel makes the model path absolute (the script runs in tools/llamaref) and checks it exists, so a typo
// reads as a Go error rather than a Node stack trace.
func absModel(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("llamaref: %w", err)
	}
	if _, err := os.Stat(a); err != nil {
		return "", fmt.Errorf("llamaref: model: %w", err)
	}
	return a, nil
}

// runScript runs `node <script> args...` in tools/llamaref with stdin, returning stdout. Failures carry node's
// stderr (the llama.cpp log and the JS stack), which is where the actual cause is.
func runScript(ctx context.Context, script string, stdin []byte, args ...string) ([]byte, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	// Never let node-llama-cpp try to download or build llama.cpp: only the pinned prebuilt binaries are used.
	cmd.Env = append(os.Environ(), "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("llamaref: node %s: %v; stderr:\n%s", script, err, truncate(strings.TrimSpace(stderr.String()), 4000))
	}
	return stdout.Bytes(), nil
}

// truncate keeps the end of s, where errors usually are.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// HarnessesAvailable reports what is missing to build the C++ harnesses of
// tools/llamaref/cvec: the npm reference, g++ or git (nil: nothing).
func HarnessesAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	for _, tool := range []string{"g++", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("llamaref: %s is not on PATH (the llama.cpp harnesses in tools/llamaref/cvec are compiled with g++ against headers cloned with git)", tool)
		}
	}
	return nil
}

// Harnesses builds the C++ harnesses (bash tools/llamaref/cvec/build.sh;
// a no-op when they are up to date) and returns their directory and the
// directory of the llama.cpp libraries they load.
func Harnesses() (dir, bins string, err error) {
	root, err := Dir()
	if err != nil {
		return "", "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "cvec", "build.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("bash tools/llamaref/cvec/build.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return filepath.Dir(lines[len(lines)-1]), filepath.Join(root, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64"), nil
}
