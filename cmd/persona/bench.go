package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"

	"github.com/spf13/cobra"

	"persona/bench"
	"persona/model"
)

func newBenchCmd() *cobra.Command {
	var (
		o           bench.EngineOptions
		asJSON      bool
		worker      bool
		shape, kind string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time the engine against llama.cpp on the same model and threads",
		Long: `Time prefill and decode of the embedded engine and of llama.cpp (npm
node-llama-cpp, installed by tools/llamaref/install.sh) on the same GGUF file
and thread count, one run of each in turn, and print the medians with their
range, the ratios, the engine's peak resident memory against the weight bytes,
and the cost of interventions (steering at every layer plus a cap) on decode.

Without --model it builds a random-weight model of --shape (SmolLM2-135M's by
default, or TinyLlama-1.1B's) stored as --type (F32 by default, or a mix of
persona quantize) once and caches it in the user cache directory.`,
		Example: `  persona bench
  persona bench --threads 2 --prefill 128 --decode 64 --runs 5 --json
  persona bench --shape tinyllama-1.1b --type Q4_K_M --runs 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Model == "" {
				if _, ok := bench.Shapes[shape]; !ok {
					return usageErr(fmt.Errorf("--shape %q: want smollm2-135m or tinyllama-1.1b", shape))
				}
				if kind != "F32" && !slices.Contains(model.Mixes, kind) {
					return usageErr(fmt.Errorf("--type %q: want F32 or one of %v", kind, model.Mixes))
				}
				p, err := bench.DefaultModel(shape, kind, os.Stderr)
				if err != nil {
					return classify(err)
				}
				o.Model = p
			}
			if worker {
				t, err := bench.TimeEngine(o.Model, o.Threads, o.Prefill, o.Decode)
				if err != nil {
					return classify(err)
				}
				return json.NewEncoder(os.Stdout).Encode(t)
			}
			o.Worker = []string{executable(), "bench", "--engine-only", "--model", o.Model, "--threads", fmt.Sprint(o.Threads),
				"--prefill", fmt.Sprint(o.Prefill), "--decode", fmt.Sprint(o.Decode)}
			o.Log = os.Stderr
			rep, err := bench.CompareEngine(cmd.Context(), o)
			if err != nil {
				return classify(err)
			}
			if asJSON {
				return printJSON(rep)
			}
			rep.WriteText(os.Stdout)
			if rep.LlamaCppError != "" {
				return backendErr(fmt.Errorf("llama.cpp reference: %s", rep.LlamaCppError))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Model, "model", "", "GGUF model to time (default: a random model of --shape and --type)")
	f.StringVar(&shape, "shape", "smollm2-135m", "shape of the random model: smollm2-135m or tinyllama-1.1b")
	f.StringVar(&kind, "type", "F32", "storage of the random model: F32, Q8_0, Q4_0, Q4_K_M, Q5_K_M or Q6_K")
	f.IntVar(&o.Threads, "threads", runtime.NumCPU(), "threads for both engines")
	f.IntVar(&o.Prefill, "prefill", 128, "prompt tokens processed in one batch")
	f.IntVar(&o.Decode, "decode", 64, "tokens decoded one at a time")
	f.IntVar(&o.Runs, "runs", 5, "runs of each engine, taken in turn")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&worker, "engine-only", false, "time only the engine, in this process (used internally)")
	f.MarkHidden("engine-only")
	cmd.AddCommand(newBenchTrainCmd())
	return cmd
}

func newBenchTrainCmd() *cobra.Command {
	var (
		o      bench.TrainOptions
		worker string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Time training steps on ~1M and ~10M parameter models, against PyTorch",
		Long: `Time full training steps (forward, backward, gradient clipping, AdamW) of
Llama-style models of about 1M and 10M parameters on random tokens, and print
tokens per second (median and range), effective GFLOP/s and peak resident
memory. Each run is a child process, so its peak RSS is its own.

If a Python with torch is found (python3, else /usr/bin/python3, or --python),
tools/torchref/trainref.py trains the same shapes in PyTorch on CPU with the
same thread count, one run of each implementation in turn, and the ratio
persona/PyTorch is printed. On Debian install python3-torch and
libopenblas0-pthread (without OpenBLAS torch uses the reference BLAS and is
several times slower).

Effective GFLOP/s uses the conventional count:
  ` + bench.FLOPsFormula,
		Example: `  persona bench train
  persona bench train --threads 2 --steps 8 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if worker != "" {
				r, err := bench.TrainShape(worker, o.Threads, o.SeqLen, o.Rows, o.Steps)
				if err != nil {
					return classify(err)
				}
				return json.NewEncoder(os.Stdout).Encode(r)
			}
			o.Worker = func(shape string) []string {
				return []string{executable(), "bench", "train", "--worker", shape, "--threads", fmt.Sprint(o.Threads),
					"--seq-len", fmt.Sprint(o.SeqLen), "--rows", fmt.Sprint(o.Rows), "--steps", fmt.Sprint(o.Steps)}
			}
			o.Log = os.Stderr
			rep, err := bench.CompareTrain(cmd.Context(), o)
			if err != nil {
				return classify(err)
			}
			if asJSON {
				return printJSON(rep)
			}
			rep.WriteText(os.Stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Threads, "threads", runtime.NumCPU(), "threads (GOMAXPROCS, torch.set_num_threads)")
	f.IntVar(&o.SeqLen, "seq-len", 256, "positions per row")
	f.IntVar(&o.Rows, "rows", 4, "rows per optimizer step")
	f.IntVar(&o.Steps, "steps", 6, "timed steps per run (after one warm-up step)")
	f.IntVar(&o.Runs, "runs", 3, "runs per implementation, taken in turn")
	f.StringVar(&o.Python, "python", "", "Python interpreter with torch (default: python3, then /usr/bin/python3)")
	f.StringVar(&o.Script, "torchref", "", "path of tools/torchref/trainref.py (default: found from the working directory upwards)")
	f.BoolVar(&o.NoTorch, "no-pytorch", false, "skip the PyTorch reference")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&worker, "worker", "", "time one shape in this process (used internally)")
	f.MarkHidden("worker")
	return cmd
}

// executable is this binary, which the benchmarks re-run as their workers.
func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}
