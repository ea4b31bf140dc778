package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"persona/kernel"
	"persona/model"
	"persona/train"
)

// TrainShapes are the Llama-style models the trainer benchmark times: about
// 1M and 10M parameters, tied embeddings, full multi-head attention.
var TrainShapes = []struct {
	Name string
	Cfg  model.Config
}{
	{"1M", model.Config{Arch: "llama", Hidden: 128, FFN: 384, NumLayers: 4, Heads: 4, KVHeads: 4, HeadDim: 32,
		Vocab: 1024, MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: true}},
	{"10M", model.Config{Arch: "llama", Hidden: 320, FFN: 864, NumLayers: 7, Heads: 5, KVHeads: 5, HeadDim: 64,
		Vocab: 4096, MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: true}},
}

// FLOPsFormula is how effective GFLOP/s are counted (train.TrainFLOPsPerToken).
const FLOPsFormula = "FLOPs/token = 6·N_matmul + 6·layers·heads·head_dim·(seq_len+1); N_matmul = block linears + output head"

// TrainOptions say what the trainer benchmark times.
type TrainOptions struct {
	Threads, SeqLen, Rows, Steps int
	// Runs is how many times each implementation is timed, taking turns.
	Runs int
	// Worker returns the command that runs TrainShape for a shape in a fresh
	// process and prints its train.BenchResult as JSON.
	Worker func(shape string) []string
	// Python and Script locate the PyTorch reference (tools/torchref); empty
	// finds them. NoTorch skips it.
	Python, Script string
	NoTorch        bool
	Log            io.Writer
}

// TrainTiming is one implementation's runs on one shape.
type TrainTiming struct {
	TokPerS      Stat    `json:"tok_s"`
	GFLOPS       float64 `json:"gflops"` // at the median
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

// TrainRow compares the implementations on one shape.
type TrainRow struct {
	Shape         string       `json:"shape"`
	Params        int64        `json:"params"`
	FLOPsPerToken float64      `json:"flops_per_token"`
	Persona       TrainTiming  `json:"persona"`
	Torch         *TrainTiming `json:"pytorch,omitempty"`
	Ratio         *Stat        `json:"ratio_vs_pytorch,omitempty"`
}

// TrainReport is the trainer benchmark's result.
type TrainReport struct {
	SeqLen   int        `json:"seq_len"`
	Rows     int        `json:"rows_per_step"`
	Steps    int        `json:"steps"`
	Threads  int        `json:"threads"`
	Formula  string     `json:"flops_formula"`
	Results  []TrainRow `json:"results"`
	TorchErr string     `json:"pytorch_error,omitempty"`
	CPU      string     `json:"cpu"`
	// PeakGFLOPS is the machine's float32 multiply-add ceiling on Threads
	// cores (kernel.FMAPeak), measured before the runs.
	PeakGFLOPS float64 `json:"peak_gflops"`
	Go         string  `json:"go"`
	SIMD       bool    `json:"simd"`
}

// TrainShape times one of TrainShapes in this process.
func TrainShape(name string, threads, seqLen, rows, steps int) (*train.BenchResult, error) {
	runtime.GOMAXPROCS(threads)
	for _, s := range TrainShapes {
		if s.Name == name {
			return train.Bench(s.Cfg, seqLen, rows, steps, 1)
		}
	}
	return nil, fmt.Errorf("unknown shape %q", name)
}

// CompareTrain times our trainer (in Worker processes) and PyTorch on every
// shape, one run of each in turn.
func CompareTrain(ctx context.Context, o TrainOptions) (*TrainReport, error) {
	if o.SeqLen < 2 || o.Rows < 1 || o.Steps < 1 || o.Runs < 1 || o.Threads < 1 {
		return nil, errors.New("seq-len ≥ 2; rows, steps, runs and threads ≥ 1")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	rep := &TrainReport{SeqLen: o.SeqLen, Rows: o.Rows, Steps: o.Steps, Threads: o.Threads, Formula: FLOPsFormula,
		CPU: CPUName(), Go: runtime.Version(), SIMD: kernel.SIMD(), PeakGFLOPS: kernel.FMAPeak(o.Threads, 500*time.Millisecond)}
	py, script := "", ""
	if !o.NoTorch {
		var err error
		if py, script, err = findTorch(o.Python, o.Script); err != nil {
			rep.TorchErr = err.Error()
		}
	}
	for _, s := range TrainShapes {
		row := TrainRow{Shape: s.Name, FLOPsPerToken: train.TrainFLOPsPerToken(s.Cfg, o.SeqLen)}
		var ours, theirs []float64
		var torchRSS int64
		for i := range o.Runs {
			fmt.Fprintf(o.Log, "%s: persona, run %d/%d …\n", s.Name, i+1, o.Runs)
			var br train.BenchResult
			rss, err := runChild(ctx, &br, o.Worker(s.Name))
			if err != nil {
				return nil, fmt.Errorf("persona %s: %w", s.Name, err)
			}
			row.Params = br.Params
			ours = append(ours, br.TokPerS)
			row.Persona.PeakRSSBytes = max(row.Persona.PeakRSSBytes, rss)
			if py == "" || rep.TorchErr != "" {
				continue
			}
			fmt.Fprintf(o.Log, "%s: pytorch, run %d/%d …\n", s.Name, i+1, o.Runs)
			c := s.Cfg
			var tr struct {
				TokPerS float64 `json:"tok_s"`
				Params  int64   `json:"params"`
			}
			argv := []string{py, script, "--hidden", fmt.Sprint(c.Hidden), "--ffn", fmt.Sprint(c.FFN), "--layers", fmt.Sprint(c.NumLayers),
				"--heads", fmt.Sprint(c.Heads), "--kv-heads", fmt.Sprint(c.KVHeads), "--head-dim", fmt.Sprint(c.HeadDim),
				"--vocab", fmt.Sprint(c.Vocab), "--seq-len", fmt.Sprint(o.SeqLen), "--rows", fmt.Sprint(o.Rows),
				"--steps", fmt.Sprint(o.Steps), "--threads", fmt.Sprint(o.Threads)}
			rss, err = runChild(ctx, &tr, argv)
			if err != nil {
				rep.TorchErr = err.Error()
				continue
			}
			if tr.Params != br.Params {
				rep.TorchErr = fmt.Sprintf("%s: PyTorch's model has %d parameters, ours %d", s.Name, tr.Params, br.Params)
				continue
			}
			theirs = append(theirs, tr.TokPerS)
			torchRSS = max(torchRSS, rss)
		}
		row.Persona.TokPerS = NewStat(ours)
		row.Persona.GFLOPS = row.FLOPsPerToken * row.Persona.TokPerS.Median / 1e9
		if len(theirs) == len(ours) {
			t := TrainTiming{TokPerS: NewStat(theirs), PeakRSSBytes: torchRSS}
			t.GFLOPS = row.FLOPsPerToken * t.TokPerS.Median / 1e9
			ratio := Ratio(row.Persona.TokPerS, t.TokPerS)
			row.Torch, row.Ratio = &t, &ratio
		}
		rep.Results = append(rep.Results, row)
	}
	return rep, nil
}

// findTorch picks a Python that imports torch and the reference script.
func findTorch(python, script string) (string, string, error) {
	if script == "" {
		dir, _ := os.Getwd()
		for {
			p := filepath.Join(dir, "tools", "torchref", "trainref.py")
			if _, err := os.Stat(p); err == nil {
				script = p
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return "", "", errors.New("tools/torchref/trainref.py not found from the working directory; pass --torchref")
			}
			dir = parent
		}
	}
	cands := []string{"python3", "/usr/bin/python3"}
	if python != "" {
		cands = []string{python}
	}
	for _, p := range cands {
		if exec.Command(p, "-c", "import torch").Run() == nil {
			return p, script, nil
		}
	}
	return "", "", fmt.Errorf("no Python with torch among %v (Debian: apt-get install python3-torch libopenblas0-pthread)", cands)
}

// WriteText prints the report as a table.
func (r *TrainReport) WriteText(out io.Writer) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "shape\tparams\tpersona tok/s\tGFLOP/s (of peak)\tpeak RSS\tPyTorch tok/s\tGFLOP/s\tpeak RSS\tratio\n")
	for _, x := range r.Results {
		tt, tg, trss, ratio := "n/a", "", "", ""
		if x.Torch != nil {
			tt, tg = x.Torch.TokPerS.String(), fmt.Sprintf("%.1f", x.Torch.GFLOPS)
			trss = fmt.Sprintf("%.0f MB", float64(x.Torch.PeakRSSBytes)/1e6)
			ratio = fmt.Sprintf("%.2f× (%.2f–%.2f)", x.Ratio.Median, x.Ratio.Min, x.Ratio.Max)
		}
		fmt.Fprintf(w, "%s\t%.2fM\t%s\t%.1f (%.0f%%)\t%.0f MB\t%s\t%s\t%s\t%s\n", x.Shape, float64(x.Params)/1e6,
			x.Persona.TokPerS, x.Persona.GFLOPS, 100*x.Persona.GFLOPS/r.PeakGFLOPS, float64(x.Persona.PeakRSSBytes)/1e6, tt, tg, trss, ratio)
	}
	w.Flush()
	fmt.Fprintf(out, "median (range) of runs taken in turn; seq_len %d, %d rows/step, %d steps, %d threads, %s, %s, simd=%v\n%s\nfloat32 FMA peak on %d threads: %.0f GFLOP/s (kernel.FMAPeak)\n",
		r.SeqLen, r.Rows, r.Steps, r.Threads, r.CPU, r.Go, r.SIMD, r.Formula, r.Threads, r.PeakGFLOPS)
	if r.TorchErr != "" {
		fmt.Fprintln(out, "PyTorch:", r.TorchErr)
	}
}
