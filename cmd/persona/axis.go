package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"persona/axis"
	"persona/engine"
	"persona/internal/fileio"
	"persona/organism"
	"persona/personas"
	"persona/world"
)

func newAxisCmd() *cobra.Command {
	var (
		modelPath, libDir, out, svgPath, questionsPath, layersArg string
		nQuestions, samples, maxTokens, minScore, mapLayer        int
		temperature                                               float32
		seed                                                      uint64
		noJudge, asJSON                                           bool
	)
	cmd := &cobra.Command{
		Use:   "axis",
		Short: "Find the assistant axis: role vectors for every persona, PCA of persona space, capping thresholds",
		Long: `persona axis asks every persona of a library (each of its strong and weak system
prompts) and the default Assistant (no system prompt, and the Assistant persona's
own prompts) the same questions, averages the residual stream over each reply,
and computes per layer

  axis = mean(default replies) - mean(role vectors)      (points toward the Assistant)

with a PCA of the mean-centred role vectors (explained variance, each role's
loading, where the Assistant falls on PC1, cos(axis, PC1)) and the capping
threshold tau = 25th percentile of the default replies' projections.

Without --personas the organism's library is used, questions are drawn from its
world and the world's oracle keeps only fully played replies (judge score 3 of
0-3). With --personas DIR the shipped question list is used (or --questions)
and every reply is kept.

The axis is saved like persona vectors (safetensors with metadata, our layer
convention); persona drift --axis and --cap read it.`,
		Example: `  persona axis --model models/organism/assistant --out axis.safetensors --svg axis.svg
  persona axis --model ./Qwen3-0.6B --personas my-personas/ --questions questions.txt --out qwen-axis.safetensors`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || out == "" {
				return usageErr(errors.New("give --model and --out (see persona axis --help)"))
			}
			organismMode := libDir == ""
			lib := personas.Default()
			if !organismMode {
				var err error
				if lib, err = personas.Load(libDir); err != nil {
					return usageErr(err)
				}
			}
			layers, err := parseLayers(layersArg)
			if err != nil {
				return usageErr(err)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return usageErr(err)
			}
			defer e.Close()
			if e.Template == nil {
				return usageErr(fmt.Errorf("%s has no chat template; persona axis needs one to ask questions", modelPath))
			}
			opt := axis.Options{Library: lib, Layers: layers, Samples: samples, MaxTokens: maxTokens, Temperature: temperature,
				Seed: seed, MinScore: minScore, Model: modelPath}
			switch {
			case questionsPath != "":
				if opt.Questions, err = axis.LoadQuestions(questionsPath); err != nil {
					return usageErr(err)
				}
			case organismMode:
				w, err := world.New(lib)
				if err != nil {
					return err
				}
				if opt.Questions, err = organism.AxisQuestions(w, nQuestions, seed); err != nil {
					return usageErr(err)
				}
			default:
				opt.Questions = axis.DefaultQuestions()
			}
			if organismMode && !noJudge {
				w, err := world.New(lib)
				if err != nil {
					return err
				}
				opt.Judge = axis.OracleJudge{Oracle: w.Oracle()}
			}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				var bar *progressbar.ProgressBar
				opt.Progress = func(done, total int) {
					if bar == nil {
						bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("replies"),
							progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionClearOnFinish())
					}
					bar.Set(done)
				}
			}
			res, err := axis.Build(cmd.Context(), e, opt)
			if err != nil {
				return err
			}
			if err := res.Axis.Save(out); err != nil {
				return err
			}
			if mapLayer < 0 {
				mapLayer = res.DriftLayer
			}
			if svgPath != "" {
				if err := fileio.WriteAtomic(svgPath, func(w io.Writer) error { return res.WriteMap(w, mapLayer) }); err != nil {
					return usageErr(err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printAxis(os.Stdout, res, out, svgPath)
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model directory (Hugging Face layout) or GGUF file")
	f.StringVar(&libDir, "personas", "", "persona library directory (default: the organism's library, with world questions and the oracle as judge)")
	f.StringVar(&out, "out", "", "where to write the axis (.safetensors)")
	f.StringVar(&svgPath, "svg", "", "also draw persona space (PC1 × PC2) as an SVG")
	f.IntVar(&mapLayer, "map-layer", -1, "layer of the SVG map (default: the drift layer)")
	f.StringVar(&questionsPath, "questions", "", "question file, one per line (default: world questions on the organism, the shipped list otherwise)")
	f.IntVar(&nQuestions, "n-questions", 40, "questions drawn from the world (organism)")
	f.IntVar(&samples, "samples", 1, "replies per system prompt and question")
	samplingFlags(f, &maxTokens, &temperature, &seed, sampling{MaxTokens: 48, TokensUsage: "tokens per reply",
		Temperature: 1, Seed: 1, SeedUsage: "seed for questions and sampling"})
	f.IntVar(&minScore, "min-score", 3, "judge score (0-3) a role reply needs to count")
	f.BoolVar(&noJudge, "no-judge", false, "keep every reply (no oracle filter on the organism)")
	f.StringVar(&layersArg, "layers", "", "layers to compute, e.g. 8-20 or 4,8,12 (default: all)")
	f.BoolVar(&asJSON, "json", false, "print the full result as JSON")
	return cmd
}

// parseLayers reads "3", "1,4,7" or "8-20" (empty: nil, all layers).
func parseLayers(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, fmt.Errorf("--layers %q: want layers such as 3, 1,4,7 or 8-20", s)
		}
		for l := a; l <= b; l++ {
			if len(out) > 0 && l <= out[len(out)-1] {
				return nil, fmt.Errorf("--layers %q: layers must be ascending without repeats", s)
			}
			out = append(out, l)
		}
	}
	return out, nil
}

func printAxis(w io.Writer, res *axis.Result, out, svg string) {
	fmt.Fprintf(w, "assistant axis over %d questions, %d roles; default Assistant: %d of %d replies kept\n", res.Questions, len(res.Roles), res.Default.Kept, res.Default.Generated)
	fmt.Fprintf(w, "\n%-16s %9s %6s\n", "role", "kept", "score")
	for _, r := range res.Roles {
		fmt.Fprintf(w, "%-16s %4d/%-4d %6.2f\n", r.Name, r.Kept, r.Generated, r.MeanScore)
	}
	fmt.Fprintf(w, "\n%5s %8s %8s %8s %10s %10s %12s %10s\n", "layer", "PC1 var", "PC2 var", "cos", "asst PC1", "rank", "separation", "tau")
	for _, ls := range res.Layers {
		pc2 := 0.0
		if len(ls.Explained) > 1 {
			pc2 = ls.Explained[1]
		}
		fmt.Fprintf(w, "%5d %7.1f%% %7.1f%% %8.3f %10.4g %10.2f %12.2f %10.4g\n", ls.Layer, 100*ls.Explained[0], 100*pc2, ls.CosAxisPC1, ls.Assistant[0], ls.AssistantRank, ls.Separation, ls.Tau)
	}
	fmt.Fprintf(w, "\ndrift layer %d, capping band %v\n", res.DriftLayer, res.CapLayers)
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintf(w, "wrote %s", out)
	if svg != "" {
		fmt.Fprintf(w, " and %s", filepath.Clean(svg))
	}
	fmt.Fprintln(w)
}
