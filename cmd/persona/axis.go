package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"persona/axis"
	"persona/internal/fileio"
	"persona/organism"
	"persona/vectors"
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
			lib, err := loadLibrary(libDir)
			if err != nil {
				return err
			}
			e, err := loadChatEngine(modelPath, "persona axis")
			if err != nil {
				return err
			}
			defer e.Close()
			layers, err := vectors.ParseLayers(layersArg, e.Model.NumLayers)
			if err != nil {
				return usageErr(fmt.Errorf("--layers: %w", err))
			}
			opt := axis.Options{Library: lib, Layers: layers, Samples: samples, MaxTokens: maxTokens, Temperature: temperature,
				Seed: seed, MinScore: minScore, Model: modelPath}
			switch {
			case questionsPath != "":
				if opt.Questions, err = axis.LoadQuestions(questionsPath); err != nil {
					return usageErr(err)
				}
			case organismMode:
				if opt.Questions, err = organism.AxisQuestions(world.Default(), nQuestions, seed); err != nil {
					return usageErr(err)
				}
			default:
				opt.Questions = axis.DefaultQuestions()
			}
			if organismMode && !noJudge {
				opt.Judge = axis.OracleJudge{Oracle: world.Default().Oracle()}
			}
			bar := newProgress("replies")
			opt.Progress = bar.update
			res, err := axis.Build(cmd.Context(), e, opt)
			bar.finish()
			if err != nil {
				return classify(err)
			}
			if err := res.Axis.Save(out); err != nil {
				return backendErr(err)
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
				return printJSON(res)
			}
			res.WriteText(os.Stdout)
			fmt.Println("wrote", strings.TrimSpace(out+" "+svgPath))
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
	cmd.AddCommand(newAxisCalibrateCmd(), newAxisPatchCmd())
	return cmd
}
