package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"persona/model"
	"persona/train"
)

// trainShapes are the Llama-style models `persona bench train` times: about
// 1M and 10M parameters, tied embeddings, full multi-head attention.
var trainShapes = []struct {
	Name string
	Cfg  model.Config
}{
	{"1M", model.Config{Arch: "llama", Hidden: 128, FFN: 384, NumLayers: 4, Heads: 4, KVHeads: 4, HeadDim: 32,
		Vocab: 1024, MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: true}},
	{"10M", model.Config{Arch: "llama", Hidden: 320, FFN: 864, NumLayers: 7, Heads: 5, KVHeads: 5, HeadDim: 64,
		Vocab: 4096, MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: true}},
}

// trainTiming is one implementation's best run on one shape.
type trainTiming struct {
	TokPerS      float64 `json:"tok_s"`
	GFLOPS       float64 `json:"gflops"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

type trainBenchRow struct {
	Shape         string       `json:"shape"`
	Params        int64        `json:"params"`
	FLOPsPerToken float64      `json:"flops_per_token"`
	Persona       trainTiming  `json:"persona"`
	Torch         *trainTiming `json:"pytorch,omitempty"`
	Ratio         float64      `json:"ratio_vs_pytorch,omitempty"`
}

type trainBenchReport struct {
	SeqLen   int             `json:"seq_len"`
	Rows     int             `json:"rows_per_step"`
	Steps    int             `json:"steps"`
	Threads  int             `json:"threads"`
	Formula  string          `json:"flops_formula"`
	Results  []trainBenchRow `json:"results"`
	TorchErr string          `json:"pytorch_error,omitempty"`
	Go       string          `json:"go"`
	SIMD     bool            `json:"simd"`
}

const flopsFormula = "FLOPs/token = 6·N_matmul + 6·layers·heads·head_dim·(seq_len+1); N_matmul = block linears + output head"

func newBenchTrainCmd() *cobra.Command {
	var (
		threads, seqLen, rows, steps, reps int
		python, script, worker             string
		asJSON, noTorch                    bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Time training steps on ~1M and ~10M parameter models, against PyTorch",
		Long: `Time full training steps (forward, backward, gradient clipping, AdamW) of
Llama-style models of about 1M and 10M parameters on random tokens, and print
tokens per second, effective GFLOP/s and peak resident memory. Each measurement
runs in a child process, so its peak RSS is its own.

If a Python with torch is found (python3, else /usr/bin/python3, or --python),
tools/torchref/trainref.py trains the same shapes in PyTorch on CPU with the
same thread count in the same run, and the ratio persona/PyTorch is printed.
On Debian install python3-torch and libopenblas0-pthread (without OpenBLAS
torch uses the reference BLAS and is several times slower).

Effective GFLOP/s uses the conventional count:
  ` + flopsFormula,
		Example: `  persona bench train
  persona bench train --threads 2 --steps 8 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if seqLen < 2 || rows < 1 || steps < 1 || reps < 1 || threads < 1 {
				return usageErr(errors.New("--seq-len ≥ 2, --rows, --steps, --reps and --threads ≥ 1"))
			}
			if worker != "" {
				runtime.GOMAXPROCS(threads)
				for _, s := range trainShapes {
					if s.Name == worker {
						r, err := train.Bench(s.Cfg, seqLen, rows, steps, 1)
						if err != nil {
							return backendErr(err)
						}
						return json.NewEncoder(os.Stdout).Encode(r)
					}
				}
				return usageErr(fmt.Errorf("unknown shape %q", worker))
			}
			rep := trainBenchReport{SeqLen: seqLen, Rows: rows, Steps: steps, Threads: threads, Formula: flopsFormula,
				Go: runtime.Version(), SIMD: simdBuild}
			py := ""
			if !noTorch {
				var err error
				if py, script, err = findTorch(python, script); err != nil {
					rep.TorchErr = err.Error()
				}
			}
			ctx := cmd.Context()
			for _, s := range trainShapes {
				row := trainBenchRow{Shape: s.Name, FLOPsPerToken: train.TrainFLOPsPerToken(s.Cfg, seqLen)}
				// Alternate the two implementations and keep each one's best, so
				// both see the same load on a shared machine.
				for i := 0; i < reps; i++ {
					fmt.Fprintf(os.Stderr, "%s: persona, run %d/%d …\n", s.Name, i+1, reps)
					var br train.BenchResult
					rss, err := runChild(ctx, &br, mustExe(), "bench", "train", "--worker", s.Name, "--threads", fmt.Sprint(threads),
						"--seq-len", fmt.Sprint(seqLen), "--rows", fmt.Sprint(rows), "--steps", fmt.Sprint(steps))
					if err != nil {
						return backendErr(fmt.Errorf("persona %s: %w", s.Name, err))
					}
					row.Params = br.Params
					if br.TokPerS > row.Persona.TokPerS {
						row.Persona = trainTiming{TokPerS: br.TokPerS, GFLOPS: br.GFLOPS}
					}
					row.Persona.PeakRSSBytes = max(row.Persona.PeakRSSBytes, rss)
					if py == "" || rep.TorchErr != "" {
						continue
					}
					fmt.Fprintf(os.Stderr, "%s: pytorch, run %d/%d …\n", s.Name, i+1, reps)
					c := s.Cfg
					var tr struct {
						TokPerS float64 `json:"tok_s"`
						Params  int64   `json:"params"`
					}
					targs := []string{script, "--hidden", fmt.Sprint(c.Hidden), "--ffn", fmt.Sprint(c.FFN), "--layers", fmt.Sprint(c.NumLayers),
						"--heads", fmt.Sprint(c.Heads), "--kv-heads", fmt.Sprint(c.KVHeads), "--head-dim", fmt.Sprint(c.HeadDim),
						"--vocab", fmt.Sprint(c.Vocab), "--seq-len", fmt.Sprint(seqLen), "--rows", fmt.Sprint(rows),
						"--steps", fmt.Sprint(steps), "--threads", fmt.Sprint(threads)}
					rss, err = runChild(ctx, &tr, py, targs...)
					if err != nil {
						rep.TorchErr = err.Error()
						continue
					}
					if tr.Params != br.Params {
						rep.TorchErr = fmt.Sprintf("%s: PyTorch's model has %d parameters, ours %d", s.Name, tr.Params, br.Params)
					}
					if row.Torch == nil {
						row.Torch = &trainTiming{}
					}
					if tr.TokPerS > row.Torch.TokPerS {
						row.Torch.TokPerS, row.Torch.GFLOPS = tr.TokPerS, row.FLOPsPerToken*tr.TokPerS/1e9
					}
					row.Torch.PeakRSSBytes = max(row.Torch.PeakRSSBytes, rss)
				}
				if row.Torch != nil && row.Torch.TokPerS > 0 {
					row.Ratio = row.Persona.TokPerS / row.Torch.TokPerS
				}
				rep.Results = append(rep.Results, row)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printTrainBench(rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&threads, "threads", runtime.NumCPU(), "threads (GOMAXPROCS, torch.set_num_threads)")
	f.IntVar(&seqLen, "seq-len", 256, "positions per row")
	f.IntVar(&rows, "rows", 4, "rows per optimizer step")
	f.IntVar(&steps, "steps", 6, "timed steps per run (after one warm-up step)")
	f.IntVar(&reps, "reps", 2, "runs per implementation; the best is reported")
	f.StringVar(&python, "python", "", "Python interpreter with torch (default: python3, then /usr/bin/python3)")
	f.StringVar(&script, "torchref", "", "path of tools/torchref/trainref.py (default: found from the working directory upwards)")
	f.BoolVar(&noTorch, "no-pytorch", false, "skip the PyTorch reference")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&worker, "worker", "", "time one shape in this process (used internally)")
	f.MarkHidden("worker")
	return cmd
}

func mustExe() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// runChild runs a command that prints one JSON object, decodes it into out
// and returns the child's peak RSS.
func runChild(ctx context.Context, out any, name string, args ...string) (int64, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Stderr = os.Stderr
	data, err := c.Output()
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return 0, fmt.Errorf("%s: %w: %q", name, err, data)
	}
	var rss int64
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return rss, nil
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

func printTrainBench(r trainBenchReport) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "shape\tparams\tpersona tok/s\tGFLOP/s\tpeak RSS\tPyTorch tok/s\tGFLOP/s\tpeak RSS\tratio\t\n")
	for _, x := range r.Results {
		tt, tg, trss, ratio := "n/a", "", "", ""
		if x.Torch != nil {
			tt, tg = fmt.Sprintf("%.0f", x.Torch.TokPerS), fmt.Sprintf("%.1f", x.Torch.GFLOPS)
			trss = fmt.Sprintf("%.0f MB", float64(x.Torch.PeakRSSBytes)/1e6)
			ratio = fmt.Sprintf("%.2f×", x.Ratio)
		}
		fmt.Fprintf(w, "%s\t%.2fM\t%.0f\t%.1f\t%.0f MB\t%s\t%s\t%s\t%s\t\n", x.Shape, float64(x.Params)/1e6,
			x.Persona.TokPerS, x.Persona.GFLOPS, float64(x.Persona.PeakRSSBytes)/1e6, tt, tg, trss, ratio)
	}
	w.Flush()
	fmt.Printf("seq_len %d, %d rows/step, %d steps, %d threads, %s, simd=%v\n%s\n", r.SeqLen, r.Rows, r.Steps, r.Threads, r.Go, r.SIMD, r.Formula)
	if r.TorchErr != "" {
		fmt.Println("PyTorch:", r.TorchErr)
	}
}
