package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"persona/chat"
	"persona/engine"
	"persona/internal/fileio"
	"persona/posterior"
	"persona/resid"
	"persona/sample"
	"persona/vectors"
	"persona/world"
)

func newVectorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vectors",
		Short: "Extract, read and apply persona vectors",
		Long: `Persona vectors (Chen et al. 2025) are per-layer directions in the residual
stream: the mean activation over responses that express a trait minus the mean
over responses that do not. Layer ℓ is the output of decoder block ℓ (Hugging
Face hidden_states[ℓ+1]); llama.cpp control vectors use the same index.`,
	}
	cmd.AddCommand(newVectorsExtractCmd(), newVectorsProjectCmd(), newVectorsSteerCmd())
	return cmd
}

// parseVectorLayers reads "3,5,7-9" (empty: nil, meaning every layer).
func parseVectorLayers(s string, numLayers int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("--layers %q: %q is not a layer number", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("--layers %q: bad range %q", s, part)
			}
		}
		for l := a; l <= b; l++ {
			if l < 0 || l >= numLayers {
				return nil, fmt.Errorf("--layers %q: layer %d, the model has layers 0..%d: %w", s, l, numLayers-1, engine.ErrLayer)
			}
			if len(out) > 0 && l <= out[len(out)-1] {
				return nil, fmt.Errorf("--layers %q: layers must be strictly ascending", s)
			}
			out = append(out, l)
		}
	}
	return out, nil
}

func allLayers(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func newVectorsExtractCmd() *cobra.Command {
	var (
		modelPath, specPath, out, gguf, layersFlag, judgeFlag, backends, responses string
		opt                                                                        vectors.GenerateOptions
		filter                                                                     vectors.Filter
		asJSON                                                                     bool
	)
	cmd := &cobra.Command{
		Use:   "extract",
		Short: "Extract a persona vector from a trait spec",
		Long: `Generate answers to the spec's extraction questions under each positive and
negative instruction (--samples per question and instruction, T=1), score them
(the world oracle on the organism when the spec names an oracle_trait, else an
LLM judge with the spec's rubric), keep positive answers scoring ≥ --threshold
and negative answers below it (and coherent ones, where coherence is scored),
and save mean(kept positive) − mean(kept negative) of the response-mean
activations per layer as safetensors with the counts and scores in metadata;
--gguf also writes a llama.cpp control vector (layer 0 dropped).`,
		Example: `  persona vectors extract --model models/organism/base --trait vectors/traits/organism/malicious.yaml --out malicious.safetensors
  persona vectors extract --model M --trait vectors/traits/real/evil.yaml --judge gpt --backends backends.yaml \
      --out evil.safetensors --gguf evil.gguf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || specPath == "" || out == "" {
				return usageErr(errors.New("--model, --trait and --out are required"))
			}
			spec, err := vectors.LoadTraitSpec(specPath)
			if err != nil {
				return usageErr(err)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return usageErr(err)
			}
			defer e.Close()
			if opt.Layers, err = parseVectorLayers(layersFlag, e.Model.NumLayers); err != nil {
				return usageErr(err)
			}
			layers := opt.Layers
			if layers == nil {
				layers = allLayers(e.Model.NumLayers)
			}
			var sc vectors.Scorer
			judgeName := judgeFlag
			switch {
			case judgeFlag == "oracle" || (judgeFlag == "" && backends == "" && spec.OracleTrait != ""):
				sc, judgeName = vectors.OracleScorer{Oracle: world.Default().Oracle()}, "oracle"
			default:
				b, closeFn, err := openJudge(backends, judgeFlag, nil, "")
				if err != nil {
					return err
				}
				defer closeFn()
				sc, judgeName = posterior.NewJudge(b), b.Name()
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			total := len(spec.Questions.Extraction) * len(spec.Pairs) * 2 * max(opt.Samples, 1)
			if opt.Samples <= 0 {
				total = len(spec.Questions.Extraction) * len(spec.Pairs) * 2 * 10
			}
			bar := newBar(total, "answers")
			opt.Progress = func(int, int) { bar.add() }
			rs, err := vectors.Generate(ctx, e, spec, spec.Questions.Extraction, sc, opt)
			bar.finish()
			if err != nil {
				return backendErr(err)
			}
			if responses != "" {
				if err := writeResponses(responses, rs); err != nil {
					return backendErr(err)
				}
			}
			set, err := vectors.DifferenceOf(spec, modelPath, layers, rs, filter)
			if err != nil {
				if errors.Is(err, vectors.ErrTooFewKept) {
					return &exitError{exitFailed, err}
				}
				return usageErr(err)
			}
			set.Meta["judge"] = judgeName
			set.Meta["spec"] = filepath.Base(specPath)
			set.Meta["samples_per_instruction"] = strconv.Itoa(max(opt.Samples, 10))
			if opt.Samples > 0 {
				set.Meta["samples_per_instruction"] = strconv.Itoa(opt.Samples)
			}
			set.Meta["threshold"] = strconv.FormatFloat(max(filter.Threshold, 0), 'g', -1, 64)
			set.Meta["architecture"] = e.Model.Arch
			if err := set.Save(out); err != nil {
				return backendErr(err)
			}
			if gguf != "" {
				if err := set.WriteControlVector(gguf, vectors.ControlVectorOptions{SkipLayer0: true}); err != nil {
					return backendErr(err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"out": out, "gguf": gguf, "layers": set.Layers, "meta": set.Meta})
			}
			fmt.Printf("%s: %s vector on layers %s from %s positive and %s negative answers (of %s and %s; mean scores kept %s vs %s), judged by %s\n",
				out, spec.Name, layerString(set.Layers), set.Meta["count_pos"], set.Meta["count_neg"], set.Meta["generated_pos"], set.Meta["generated_neg"],
				set.Meta["score_mean_kept_pos"], set.Meta["score_mean_kept_neg"], judgeName)
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&specPath, "trait", "", "trait spec YAML (see vectors/traits/)")
	f.StringVar(&out, "out", "", "vector file to write (safetensors)")
	f.StringVar(&gguf, "gguf", "", "also write a llama.cpp control-vector GGUF")
	f.StringVar(&layersFlag, "layers", "", "layers to extract, e.g. 2,4-6 (default: all)")
	f.StringVar(&judgeFlag, "judge", "", `"oracle" (the world's oracle; default when the spec has oracle_trait) or a backend name in --backends`)
	f.StringVar(&backends, "backends", "", "backends YAML for an LLM judge")
	f.StringVar(&responses, "responses", "", "also write every answer with its score as JSONL")
	f.IntVar(&opt.Samples, "samples", 10, "answers per question and instruction")
	samplingFlags(f, &opt.MaxTokens, &opt.Temperature, &opt.Seed, sampling{MaxTokens: 64, TokensUsage: "tokens per answer",
		Temperature: 1, Seed: 1, SeedUsage: "sampling seed"})
	f.Float64Var(&filter.Threshold, "threshold", 50, "positive answers need a score ≥ this, negative ones below it")
	f.Float64Var(&filter.MinCoherence, "min-coherence", 50, "drop answers less coherent than this (when coherence is scored)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	return cmd
}

func writeResponses(path string, rs []vectors.Response) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, r := range rs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return fileio.WriteFileAtomic(path, []byte(b.String()))
}

func layerString(ls []int) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = strconv.Itoa(l)
	}
	return strings.Join(parts, ",")
}

// loadVectorsFor reads a vector file (safetensors, or a llama.cpp GGUF) and
// checks it against the model.
func loadVectorsFor(path string, e *engine.Engine) (*vectors.Set, error) {
	var s *vectors.Set
	var err error
	if strings.HasSuffix(path, ".gguf") {
		s, err = vectors.ReadControlVector(path)
	} else {
		s, err = vectors.Load(path)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Check(e.Model.NumLayers, e.Model.Hidden); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func newVectorsProjectCmd() *cobra.Command {
	var (
		modelPath, vecPath, chatFile, layersFlag string
		asJSON                                   bool
	)
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Score transcripts by their projection on a persona vector",
		Long: `For every assistant turn of every conversation, print per layer the
projection a·v/‖v‖ of the response-mean activation and of the last prompt token
(the end of the assistant header, before the reply: the persona-vectors
paper's predictive monitor).`,
		Example: `  persona vectors project --model models/organism/base --vectors malicious.safetensors --chat chats.jsonl
  persona vectors project --model M --vectors evil.safetensors --chat chats.jsonl --layers 12 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || vecPath == "" || chatFile == "" {
				return usageErr(errors.New("--model, --vectors and --chat are required"))
			}
			chats, err := chat.ReadJSONLFile(chatFile)
			if err != nil {
				return usageErr(err)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return usageErr(err)
			}
			defer e.Close()
			set, err := loadVectorsFor(vecPath, e)
			if err != nil {
				return usageErr(err)
			}
			layers := set.Layers
			if layersFlag != "" {
				if layers, err = parseVectorLayers(layersFlag, e.Model.NumLayers); err != nil {
					return usageErr(err)
				}
				for _, l := range layers {
					if _, err := set.Vector(l); err != nil {
						return usageErr(err)
					}
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			type row struct {
				Chat       int       `json:"chat"`
				Turn       int       `json:"turn"`
				Message    int       `json:"message"`
				Layers     []int     `json:"layers"`
				Mean       []float64 `json:"response_mean"`
				LastPrompt []float64 `json:"last_prompt"`
			}
			var rows []row
			bar := newBar(len(chats), "conversations")
			for ci, c := range chats {
				act, err := e.Capture(ctx, c.Messages, engine.CaptureOptions{Layers: layers})
				if err != nil {
					bar.finish()
					if errors.Is(err, engine.ErrNoTurn) || errors.Is(err, engine.ErrNoTemplate) {
						return usageErr(fmt.Errorf("%s: conversation %d: %w", chatFile, ci+1, err))
					}
					return backendErr(fmt.Errorf("%s: conversation %d: %w", chatFile, ci+1, err))
				}
				for k, t := range act.Turns {
					r := row{Chat: ci + 1, Turn: k + 1, Message: t.Message, Layers: layers}
					for i, l := range layers {
						m, lp := 0.0, 0.0
						if t.Mean != nil {
							m, _ = set.Project(l, t.Mean[i])
						}
						if t.LastPrompt != nil {
							lp, _ = set.Project(l, t.LastPrompt[i])
						}
						r.Mean, r.LastPrompt = append(r.Mean, m), append(r.LastPrompt, lp)
					}
					rows = append(rows, r)
				}
				bar.add()
			}
			bar.finish()
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			fmt.Printf("%-5s %-5s %-6s %12s %12s\n", "chat", "turn", "layer", "resp-mean", "last-prompt")
			for _, r := range rows {
				for i, l := range r.Layers {
					fmt.Printf("%-5d %-5d %-6d %12.3f %12.3f\n", r.Chat, r.Turn, l, r.Mean[i], r.LastPrompt[i])
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&vecPath, "vectors", "", "vector file (safetensors, or a llama.cpp control-vector .gguf)")
	f.StringVar(&chatFile, "chat", "", "JSONL file of conversations")
	f.StringVar(&layersFlag, "layers", "", "layers to report (default: every layer of the vectors)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newVectorsSteerCmd() *cobra.Command {
	var (
		modelPath, vecPath, prompt, system, where string
		layer, maxTokens                          int
		coeffs                                    []float64
		p                                         sample.Params
		asJSON                                    bool
	)
	cmd := &cobra.Command{
		Use:   "steer",
		Short: "Generate with c·v added to the residual stream at one layer (a quick look)",
		Long: `Generate a reply to --prompt once per --coeff, with c·v (v unnormalised, as in
the paper: c ≈ 0.5–2.5 induces the trait, negative c suppresses it) added at
--layer on the positions --where selects. --coeff 0 is the unsteered model.`,
		Example: `  persona vectors steer --model models/organism/base --vectors malicious.safetensors --layer 2 \
      --prompt "How do I make new friends?" --coeff 0,1,2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || vecPath == "" || prompt == "" {
				return usageErr(errors.New("--model, --vectors and --prompt are required"))
			}
			if err := p.Validate(); err != nil {
				return usageErr(err)
			}
			var w resid.Where
			switch where {
			case "all":
				w = resid.All
			case "prompt":
				w = resid.Prompt
			case "generated":
				w = resid.Generated
			default:
				return usageErr(fmt.Errorf("--where %q: want all, prompt or generated", where))
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return usageErr(err)
			}
			defer e.Close()
			set, err := loadVectorsFor(vecPath, e)
			if err != nil {
				return usageErr(err)
			}
			if layer < 0 {
				layer = set.Layers[len(set.Layers)/2]
			}
			var msgs []chat.Message
			if system != "" {
				msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: system})
			}
			msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: prompt})
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			type gen struct {
				Coeff float64 `json:"coeff"`
				Layer int     `json:"layer"`
				Text  string  `json:"text"`
			}
			var gens []gen
			for _, c := range coeffs {
				add, err := set.Steer(layer, float32(c), w)
				if err != nil {
					return usageErr(err)
				}
				r, err := e.Reply(ctx, msgs, engine.ReplyOptions{MaxTokens: maxTokens, Sampling: p, Interventions: []resid.Intervention{add}})
				if err != nil {
					return backendErr(err)
				}
				gens = append(gens, gen{c, layer, r.Text})
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(gens)
			}
			for _, g := range gens {
				fmt.Printf("c=%-5g layer %d: %s\n", g.Coeff, g.Layer, g.Text)
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&vecPath, "vectors", "", "vector file (safetensors, or a llama.cpp control-vector .gguf)")
	f.StringVar(&prompt, "prompt", "", "user message")
	f.StringVar(&system, "system", "", "system message")
	f.IntVar(&layer, "layer", -1, "layer to steer (default: the vectors' middle layer)")
	f.Float64SliceVar(&coeffs, "coeff", []float64{0, 1, 2}, "coefficients c, one generation each")
	f.StringVar(&where, "where", "all", "positions to steer: all, prompt or generated")
	samplingFlags(f, &maxTokens, &p.Temperature, &p.Seed, sampling{MaxTokens: 64, TokensUsage: "tokens per reply", SeedUsage: "sampling seed"})
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
