package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"persona/internal/llamaref"
	"persona/model"
	"persona/resid"
	"persona/sample"
)

// smolLM2Shape is SmolLM2-135M's architecture: the model the engine benchmark
// runs, with random F32 weights (nothing to download).
var smolLM2Shape = model.Config{
	Arch: "llama", Hidden: 576, FFN: 1536, NumLayers: 30, Heads: 9, KVHeads: 3, HeadDim: 64,
	Vocab: 49152, MaxSeq: 2048, NormEps: 1e-5, RoPETheta: 100000, TiedEmbedding: true,
}

// engineTiming is one measurement of our engine, made in a child process so
// that its peak resident memory is the engine's alone.
type engineTiming struct {
	PrefillTokS     float64 `json:"prefill_tok_s"`
	DecodeTokS      float64 `json:"decode_tok_s"`
	SteeredDecodeTS float64 `json:"steered_decode_tok_s"`
	PeakRSSBytes    int64   `json:"peak_rss_bytes"`
	WeightBytes     int64   `json:"weight_bytes"`
}

type benchReport struct {
	Model     string                `json:"model"`
	Threads   int                   `json:"threads"`
	Prefill   int                   `json:"prefill_tokens"`
	Decode    int                   `json:"decode_tokens"`
	Engine    engineTiming          `json:"persona"`
	LlamaCpp  *llamaref.BenchResult `json:"llama_cpp,omitempty"`
	LlamaErr  string                `json:"llama_cpp_error,omitempty"`
	Ratios    map[string]float64    `json:"ratios"`
	GoVersion string                `json:"go"`
	SIMD      bool                  `json:"simd"`
}

func newBenchCmd() *cobra.Command {
	var (
		modelPath             string
		threads, prefill, dec int
		reps                  int
		asJSON, worker        bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time the engine against llama.cpp on the same model and threads",
		Long: `Time prefill and decode of the embedded engine and of llama.cpp (npm
node-llama-cpp, installed by tools/llamaref/install.sh) in the same run, on the
same GGUF file and thread count, and print their ratios, the engine's peak
resident memory against the weight bytes, and the cost of interventions
(steering at every layer plus a cap) on decode.

Without --model it builds a random-weight F32 model with SmolLM2-135M's shape
once and caches it in the user cache directory.`,
		Example: `  persona bench
  persona bench --threads 2 --prefill 128 --decode 64 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if modelPath == "" {
				p, err := benchModel(os.Stderr)
				if err != nil {
					return backendErr(err)
				}
				modelPath = p
			}
			if worker {
				t, err := timeEngine(modelPath, threads, prefill, dec, reps)
				if err != nil {
					return backendErr(err)
				}
				return json.NewEncoder(os.Stdout).Encode(t)
			}
			rep := benchReport{Model: modelPath, Threads: threads, Prefill: prefill, Decode: dec,
				GoVersion: runtime.Version(), SIMD: simdBuild, Ratios: map[string]float64{}}
			fmt.Fprintln(os.Stderr, "timing persona …")
			t, err := runWorker(ctx, modelPath, threads, prefill, dec, reps)
			if err != nil {
				return backendErr(err)
			}
			rep.Engine = *t
			fmt.Fprintln(os.Stderr, "timing llama.cpp …")
			if err := llamaref.Available(); err != nil {
				rep.LlamaErr = err.Error()
			} else if lr, err := llamaref.BenchWith(ctx, llamaref.BenchConfig{Model: modelPath, Prefill: prefill, Decode: dec, Threads: threads, Reps: reps}); err != nil {
				rep.LlamaErr = err.Error()
			} else {
				rep.LlamaCpp = lr
				rep.Ratios["prefill_vs_llama_cpp"] = t.PrefillTokS / lr.PrefillTokS
				rep.Ratios["decode_vs_llama_cpp"] = t.DecodeTokS / lr.DecodeTokS
			}
			rep.Ratios["peak_rss_vs_weights"] = float64(t.PeakRSSBytes) / float64(t.WeightBytes)
			rep.Ratios["steered_decode_cost"] = t.DecodeTokS/t.SteeredDecodeTS - 1
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printBench(rep)
			if rep.LlamaErr != "" {
				return backendErr(fmt.Errorf("llama.cpp reference: %s", rep.LlamaErr))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelPath, "model", "", "GGUF model to time (default: random SmolLM2-135M-shaped F32)")
	f.IntVar(&threads, "threads", runtime.NumCPU(), "threads for both engines")
	f.IntVar(&prefill, "prefill", 128, "prompt tokens processed in one batch")
	f.IntVar(&dec, "decode", 64, "tokens decoded one at a time")
	f.IntVar(&reps, "reps", 3, "repetitions; the best is reported")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&worker, "engine-only", false, "time only the engine, in this process (used internally)")
	f.MarkHidden("engine-only")
	cmd.AddCommand(newBenchTrainCmd())
	return cmd
}

func printBench(r benchReport) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\tpersona\tllama.cpp\tratio\t\n")
	lp, ld := "n/a", "n/a"
	rp, rd := "", ""
	if r.LlamaCpp != nil {
		lp, ld = fmt.Sprintf("%.1f", r.LlamaCpp.PrefillTokS), fmt.Sprintf("%.1f", r.LlamaCpp.DecodeTokS)
		rp, rd = fmt.Sprintf("%.2f×", r.Ratios["prefill_vs_llama_cpp"]), fmt.Sprintf("%.2f×", r.Ratios["decode_vs_llama_cpp"])
	}
	fmt.Fprintf(w, "prefill tok/s (%d tokens)\t%.1f\t%s\t%s\t\n", r.Prefill, r.Engine.PrefillTokS, lp, rp)
	fmt.Fprintf(w, "decode tok/s (%d tokens)\t%.1f\t%s\t%s\t\n", r.Decode, r.Engine.DecodeTokS, ld, rd)
	fmt.Fprintf(w, "decode tok/s, steered + capped\t%.1f\t\t%+.1f%%\t\n", r.Engine.SteeredDecodeTS, 100*r.Ratios["steered_decode_cost"])
	fmt.Fprintf(w, "peak RSS / weight bytes\t%.0f MB / %.0f MB\t\t%.2f×\t\n", float64(r.Engine.PeakRSSBytes)/1e6, float64(r.Engine.WeightBytes)/1e6, r.Ratios["peak_rss_vs_weights"])
	w.Flush()
	fmt.Printf("%s, %d threads, %s, simd=%v\n", filepath.Base(r.Model), r.Threads, r.GoVersion, r.SIMD)
}

// benchModel returns the cached random SmolLM2-135M-shaped GGUF, writing it
// first if needed.
func benchModel(log *os.File) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "persona", "bench-smollm2-135m-shape-f32.gguf")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(log, "writing a random SmolLM2-135M-shaped model to %s …\n", path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	m, err := model.NewRandom(smolLM2Shape, 135)
	if err != nil {
		return "", err
	}
	return path, m.WriteGGUF(path, model.SyntheticVocab(smolLM2Shape.Vocab))
}

// runWorker re-runs this binary with --engine-only so the engine's peak RSS
// is measured in a process that did nothing else.
func runWorker(ctx context.Context, modelPath string, threads, prefill, dec, reps int) (*engineTiming, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := exec.CommandContext(ctx, exe, "bench", "--engine-only", "--model", modelPath,
		"--threads", fmt.Sprint(threads), "--prefill", fmt.Sprint(prefill), "--decode", fmt.Sprint(dec), "--reps", fmt.Sprint(reps))
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("engine timing: %w", err)
	}
	var t engineTiming
	if err := json.Unmarshal(out, &t); err != nil {
		return nil, fmt.Errorf("engine timing: %w", err)
	}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		t.PeakRSSBytes = ru.Maxrss * 1024
	}
	return &t, nil
}

// timeEngine measures prefill, decode and steered decode, best of reps.
func timeEngine(path string, threads, prefill, dec, reps int) (*engineTiming, error) {
	if prefill < 1 || dec < 1 || reps < 1 {
		return nil, errors.New("--prefill, --decode and --reps must be ≥ 1")
	}
	runtime.GOMAXPROCS(threads)
	m, err := model.Load(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if prefill+dec > m.MaxSeq {
		return nil, fmt.Errorf("prefill + decode = %d exceeds the model's context %d", prefill+dec, m.MaxSeq)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, prefill)
	for i := range ids {
		ids[i] = r.IntN(m.Vocab)
	}
	steer, err := steeringSet(m)
	if err != nil {
		return nil, err
	}
	best := func(f func() float64) float64 {
		b := 0.0
		for i := 0; i < reps+1; i++ { // the first run warms up caches and pages
			if v := f(); i > 0 && v > b {
				b = v
			}
		}
		return b
	}
	decode := func(iv *resid.Set) func() float64 {
		return func() float64 {
			s := m.NewState()
			logits := m.Forward(s, ids, iv, model.LastLogits)
			start := time.Now()
			for i := 0; i < dec; i++ {
				logits = m.Forward(s, []int{sample.Argmax(logits)}, iv, model.LastLogits)
			}
			return float64(dec) / time.Since(start).Seconds()
		}
	}
	t := &engineTiming{WeightBytes: m.WeightBytes()}
	t.PrefillTokS = best(func() float64 {
		start := time.Now()
		s := m.NewState()
		for i := 0; i < len(ids); i += 128 {
			m.Forward(s, ids[i:min(i+128, len(ids))], nil, model.LastLogits)
		}
		return float64(prefill) / time.Since(start).Seconds()
	})
	t.DecodeTokS = best(decode(nil))
	t.SteeredDecodeTS = best(decode(steer))
	return t, nil
}

// steeringSet adds a vector at every layer and caps a direction on the upper
// half: the heaviest realistic intervention load.
func steeringSet(m *model.Model) (*resid.Set, error) {
	r := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, m.Hidden)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	u, err := resid.Unit(v)
	if err != nil {
		return nil, err
	}
	var ivs []resid.Intervention
	floor := float32(0)
	for l := 0; l < m.NumLayers; l++ {
		ivs = append(ivs, &resid.Add{At: l, Vector: v, Coeff: 0.01})
		if l >= m.NumLayers/2 {
			ivs = append(ivs, &resid.Clamp{At: l, Direction: u, Floor: &floor})
		}
	}
	return resid.NewSet(m.NumLayers, m.Hidden, ivs...)
}
