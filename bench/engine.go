package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"persona/internal/llamaref"
	"persona/kernel"
	"persona/model"
	"persona/resid"
	"persona/sample"
)

// SmolLM2Shape is SmolLM2-135M's architecture: the model the engine
// benchmark runs by default, with random weights (nothing to download).
var SmolLM2Shape = model.Config{
	Arch: "llama", Hidden: 576, FFN: 1536, NumLayers: 30, Heads: 9, KVHeads: 3, HeadDim: 64,
	Vocab: 49152, MaxSeq: 2048, NormEps: 1e-5, RoPETheta: 100000, TiedEmbedding: true,
}

// TinyLlamaShape is TinyLlama-1.1B's architecture: a ~1B Llama whose rows
// (2,048 and 5,632 wide) are whole K-quant super-blocks, so its Q4_K_M file is
// made of Q4_K and Q6_K as the files people download are.
var TinyLlamaShape = model.Config{
	Arch: "llama", Hidden: 2048, FFN: 5632, NumLayers: 22, Heads: 32, KVHeads: 4, HeadDim: 64,
	Vocab: 32000, MaxSeq: 2048, NormEps: 1e-5, RoPETheta: 10000,
}

// Shapes are the random-weight models the engine benchmark builds.
var Shapes = map[string]model.Config{"smollm2-135m": SmolLM2Shape, "tinyllama-1.1b": TinyLlamaShape}

// DefaultModel returns the cached random model of the named shape stored
// as typ ("F32" or a persona quantize mix), writing it to the user cache
// directory first if needed.
func DefaultModel(shape, typ string, log io.Writer) (string, error) {
	cfg, ok := Shapes[shape]
	if !ok {
		return "", fmt.Errorf("bench: shape %q: want smollm2-135m or tinyllama-1.1b", shape)
	}
	if typ != "F32" && !slices.Contains(model.Mixes, typ) {
		return "", fmt.Errorf("bench: type %q: want F32 or one of %v", typ, model.Mixes)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "persona", fmt.Sprintf("bench-%s-shape-%s.gguf", shape, strings.ToLower(typ)))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(log, "writing a random %s-shaped %s model to %s …\n", shape, typ, path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	m, err := model.NewRandom(cfg, 135)
	if err != nil {
		return "", err
	}
	if typ != "F32" {
		if _, err := m.Quantize(typ); err != nil {
			return "", err
		}
	}
	return path, m.WriteGGUF(path, model.SyntheticVocab(cfg.Vocab))
}

// EngineOptions say what the engine benchmark times.
type EngineOptions struct {
	Model                    string // GGUF file
	Threads, Prefill, Decode int
	// Runs is how many times each engine is timed, taking turns.
	Runs int
	// Worker is the command that runs TimeEngine for these options in a
	// fresh process and prints its EngineTiming as JSON (the persona binary
	// re-running itself).
	Worker []string
	// Log receives progress lines.
	Log io.Writer
}

func (o *EngineOptions) check() error {
	if o.Prefill < 1 || o.Decode < 1 || o.Runs < 1 || o.Threads < 1 {
		return errors.New("prefill, decode, runs and threads must be ≥ 1")
	}
	return nil
}

// EngineTiming is one timing of our engine.
type EngineTiming struct {
	PrefillTokS     float64 `json:"prefill_tok_s"`
	DecodeTokS      float64 `json:"decode_tok_s"`
	SteeredDecodeTS float64 `json:"steered_decode_tok_s"`
	WeightBytes     int64   `json:"weight_bytes"`
	// PeakRSSBytes is the process's own high-water mark (VmHWM), 0 where
	// /proc is missing; BaseRSSBytes its resident memory before the model
	// was loaded (the binary's touched pages and the runtime).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	BaseRSSBytes int64 `json:"base_rss_bytes"`
}

// EngineReport compares the engine with llama.cpp.
type EngineReport struct {
	Model   string `json:"model"`
	Threads int    `json:"threads"`
	Prefill int    `json:"prefill_tokens"`
	Decode  int    `json:"decode_tokens"`
	CPU     string `json:"cpu"`
	Go      string `json:"go"`
	SIMD    bool   `json:"simd"`

	PrefillTokS Stat  `json:"prefill_tok_s"`
	DecodeTokS  Stat  `json:"decode_tok_s"`
	SteeredTokS Stat  `json:"steered_decode_tok_s"`
	WeightBytes int64 `json:"weight_bytes"`
	// Peak and pre-load resident memory of each engine's process, from the
	// run with the highest peak: the process as a whole, and what loading
	// and running the model added to it.
	PeakRSSBytes  int64  `json:"peak_rss_bytes"`
	BaseRSSBytes  int64  `json:"base_rss_bytes"`
	LlamaPeakRSS  int64  `json:"llama_cpp_peak_rss_bytes,omitempty"`
	LlamaBaseRSS  int64  `json:"llama_cpp_base_rss_bytes,omitempty"`
	LlamaPrefill  *Stat  `json:"llama_cpp_prefill_tok_s,omitempty"`
	LlamaDecode   *Stat  `json:"llama_cpp_decode_tok_s,omitempty"`
	PrefillRatio  *Stat  `json:"prefill_vs_llama_cpp,omitempty"`
	DecodeRatio   *Stat  `json:"decode_vs_llama_cpp,omitempty"`
	LlamaCppError string `json:"llama_cpp_error,omitempty"`
}

// CompareEngine times the engine (in Worker processes) and llama.cpp on the
// same file and thread count, one run of each in turn.
func CompareEngine(ctx context.Context, o EngineOptions) (*EngineReport, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &EngineReport{Model: o.Model, Threads: o.Threads, Prefill: o.Prefill, Decode: o.Decode, CPU: CPUName(), Go: runtime.Version(), SIMD: kernel.SIMD()}
	llamaErr := llamaref.Available()
	var pre, dec, steer, lpre, ldec []float64
	for i := range o.Runs {
		fmt.Fprintf(o.Log, "run %d/%d: persona …\n", i+1, o.Runs)
		var t EngineTiming
		rss, err := runChild(ctx, &t, o.Worker)
		if err != nil {
			return nil, fmt.Errorf("engine timing: %w", err)
		}
		pre, dec, steer = append(pre, t.PrefillTokS), append(dec, t.DecodeTokS), append(steer, t.SteeredDecodeTS)
		if t.PeakRSSBytes > 0 {
			rss = t.PeakRSSBytes
		}
		if rss > r.PeakRSSBytes {
			r.PeakRSSBytes, r.BaseRSSBytes = rss, t.BaseRSSBytes
		}
		r.WeightBytes = t.WeightBytes
		if llamaErr != nil {
			continue
		}
		fmt.Fprintf(o.Log, "run %d/%d: llama.cpp …\n", i+1, o.Runs)
		lr, err := llamaref.BenchWith(ctx, llamaref.BenchConfig{Model: o.Model, Prefill: o.Prefill, Decode: o.Decode, Threads: o.Threads, Reps: 1})
		if err != nil {
			llamaErr = err
			continue
		}
		lpre, ldec = append(lpre, lr.PrefillTokS), append(ldec, lr.DecodeTokS)
		if lr.PeakRSSBytes > r.LlamaPeakRSS {
			r.LlamaPeakRSS, r.LlamaBaseRSS = lr.PeakRSSBytes, lr.BaseRSSBytes
		}
	}
	r.PrefillTokS, r.DecodeTokS, r.SteeredTokS = NewStat(pre), NewStat(dec), NewStat(steer)
	if llamaErr != nil {
		r.LlamaCppError = llamaErr.Error()
		return r, nil
	}
	lp, ld := NewStat(lpre), NewStat(ldec)
	pr, dr := Ratio(r.PrefillTokS, lp), Ratio(r.DecodeTokS, ld)
	r.LlamaPrefill, r.LlamaDecode, r.PrefillRatio, r.DecodeRatio = &lp, &ld, &pr, &dr
	return r, nil
}

// WriteText prints the report as a table.
func (r *EngineReport) WriteText(out io.Writer) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "median (range) of %d runs\tpersona\tllama.cpp\tratio\n", len(r.PrefillTokS.Runs))
	row := func(name string, ours Stat, ref, ratio *Stat) {
		rs, rr := "n/a", ""
		if ref != nil {
			rs, rr = ref.String(), fmt.Sprintf("%.2f× (%.2f–%.2f)", ratio.Median, ratio.Min, ratio.Max)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", name, ours, rs, rr)
	}
	row(fmt.Sprintf("prefill tok/s (%d tokens)", r.Prefill), r.PrefillTokS, r.LlamaPrefill, r.PrefillRatio)
	row(fmt.Sprintf("decode tok/s (%d tokens)", r.Decode), r.DecodeTokS, r.LlamaDecode, r.DecodeRatio)
	fmt.Fprintf(w, "decode tok/s, steered + capped\t%s\t\t%+.1f%%\n", r.SteeredTokS, 100*(r.SteeredTokS.Median/r.DecodeTokS.Median-1))
	rss := func(peak, base int64) (string, string) {
		if peak == 0 {
			return "n/a", "n/a"
		}
		return fmt.Sprintf("%.0f MB = %.2f×", float64(peak)/1e6, float64(peak)/float64(r.WeightBytes)),
			fmt.Sprintf("%.0f MB = %.2f×", float64(peak-base)/1e6, float64(peak-base)/float64(r.WeightBytes))
	}
	ourPeak, ourAdded := rss(r.PeakRSSBytes, r.BaseRSSBytes)
	llamaPeak, llamaAdded := rss(r.LlamaPeakRSS, r.LlamaBaseRSS)
	fmt.Fprintf(w, "peak RSS / weights (%.0f MB)\t%s\t%s\t\n", float64(r.WeightBytes)/1e6, ourPeak, llamaPeak)
	fmt.Fprintf(w, "  added by the model / weights\t%s\t%s\t\n", ourAdded, llamaAdded)
	w.Flush()
	fmt.Fprintf(out, "%s, %d threads, %s, %s, simd=%v\n", filepath.Base(r.Model), r.Threads, r.CPU, r.Go, r.SIMD)
	if r.LlamaCppError != "" {
		fmt.Fprintln(out, "llama.cpp:", r.LlamaCppError)
	}
}

// TimeEngine measures prefill, decode and steered decode of the model at
// path in this process, after one warm-up run of each.
func TimeEngine(path string, threads, prefill, dec int) (*EngineTiming, error) {
	runtime.GOMAXPROCS(threads)
	base := selfRSS()
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
	timed := func(f func() float64) float64 {
		f() // warms up caches and pages
		return f()
	}
	decode := func(iv *resid.Set) func() float64 {
		return func() float64 {
			s := m.NewState()
			logits := m.Forward(s, ids, iv, model.LastLogits)
			start := time.Now()
			for range dec {
				logits = m.Forward(s, []int{sample.Argmax(logits)}, iv, model.LastLogits)
			}
			return float64(dec) / time.Since(start).Seconds()
		}
	}
	t := &EngineTiming{WeightBytes: m.WeightBytes(), BaseRSSBytes: base}
	t.PrefillTokS = timed(func() float64 {
		start := time.Now()
		m.Feed(context.Background(), m.NewState(), ids, nil, model.LastLogits, nil)
		return float64(prefill) / time.Since(start).Seconds()
	})
	t.DecodeTokS = timed(decode(nil))
	t.SteeredDecodeTS = timed(decode(steer))
	t.PeakRSSBytes = selfPeakRSS()
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
	for l := range m.NumLayers {
		ivs = append(ivs, &resid.Add{At: l, Vector: v, Coeff: 0.01})
		if l >= m.NumLayers/2 {
			ivs = append(ivs, &resid.Clamp{At: l, Direction: u, Floor: &floor})
		}
	}
	return resid.NewSet(m.NumLayers, m.Hidden, ivs...)
}

// CPUName is the processor's model name and family from /proc/cpuinfo with
// the core count, "" when unknown: every speed figure is stated beside the
// machine it was taken on.
func CPUName() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			break // the first processor is enough
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if fields["model name"] == "" {
		return ""
	}
	return fmt.Sprintf("%s (family %s model %s) × %d", fields["model name"], fields["cpu family"], fields["model"], runtime.NumCPU())
}
