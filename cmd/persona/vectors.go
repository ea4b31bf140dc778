package main

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"persona/chat"
	"persona/engine"
	"persona/fleet"
	"persona/internal/fileio"
	"persona/pytorch"
	"persona/resid"
	"persona/sample"
	"persona/vectors"
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
	cmd.AddCommand(newVectorsExtractCmd(), newVectorsProjectCmd(), newVectorsSteerCmd(), newVectorsSweepCmd(), newVectorsScreenCmd(), newVectorsLensCmd(), newVectorsImportCmd())
	return cmd
}

func newVectorsExtractCmd() *cobra.Command {
	var (
		modelPath, specPath, out, gguf, layersFlag, judgeFlag, backends, responses string
		o                                                                          vectors.ExtractOptions
		asJSON, distribute                                                         bool
		dbArg                                                                      string
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
			if distribute && dbArg == "" {
				return usageErr(errors.New("--distribute needs --db postgres://…, the database the workers share"))
			}
			spec, err := vectors.LoadTraitSpec(specPath)
			if err != nil {
				return usageErr(err)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			if o.Layers, err = vectors.ParseLayers(layersFlag, e.Model.NumLayers); err != nil {
				return usageErr(fmt.Errorf("--layers: %w", err))
			}
			sc, judgeName, closeScorer, err := traitScorer(spec, judgeFlag, backends)
			if err != nil {
				return err
			}
			defer closeScorer()
			o.Judge = judgeName
			o.Model = modelPath
			var set *vectors.Set
			var rs []vectors.Response
			if distribute {
				src, rerr := os.ReadFile(specPath)
				if rerr != nil {
					return usageErr(rerr)
				}
				set, rs, err = distributeExtract(cmd.Context(), dbArg, modelPath, e, &extractStudy{Options: o, Trait: src, TraitFile: specPath})
			} else {
				bar := newProgress("answers")
				o.Progress = bar.update
				set, rs, err = vectors.Extract(cmd.Context(), e, spec, sc, o)
				bar.finish()
			}
			if responses != "" && rs != nil {
				if err := writeJSONL(responses, rs); err != nil {
					return backendErr(err)
				}
			}
			switch {
			case errors.Is(err, vectors.ErrTooFewKept):
				return &exitError{exitFailed, err}
			case err != nil:
				return classify(err)
			}
			if err := set.Save(out); err != nil {
				return backendErr(err)
			}
			if gguf != "" {
				if err := set.WriteControlVector(gguf, vectors.ControlVectorOptions{SkipLayer0: true}); err != nil {
					return backendErr(err)
				}
			}
			if asJSON {
				return printJSON(map[string]any{"out": out, "gguf": gguf, "layers": set.Layers, "meta": set.Meta})
			}
			fmt.Printf("%s: %s vector on layers %s from %s positive and %s negative answers (of %s and %s; mean scores kept %s vs %s), judged by %s\n",
				out, spec.Name, vectors.FormatLayers(set.Layers), set.Meta["count_pos"], set.Meta["count_neg"], set.Meta["generated_pos"], set.Meta["generated_neg"],
				set.Meta["score_mean_kept_pos"], set.Meta["score_mean_kept_neg"], o.Judge)
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
	f.IntVar(&o.Samples, "samples", 10, "answers per question and instruction")
	samplingFlags(f, &o.MaxTokens, &o.Temperature, &o.Seed, sampling{MaxTokens: 64, TokensUsage: "tokens per answer",
		Temperature: 1, Seed: 1, SeedUsage: "sampling seed"})
	f.Float64Var(&o.Filter.Threshold, "threshold", 50, "positive answers need a score ≥ this, negative ones below it")
	f.Float64Var(&o.Filter.MinCoherence, "min-coherence", 50, "drop answers less coherent than this (when coherence is scored)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	f.BoolVar(&distribute, "distribute", false, "queue the answers, one batch per question, in the --db PostgreSQL for persona worker processes (with the same --model)")
	f.StringVar(&dbArg, "db", "", "PostgreSQL DSN (postgres://...) for --distribute")
	return cmd
}

func newVectorsImportCmd() *cobra.Command {
	var modelPath, out, key, convention, name string
	cmd := &cobra.Command{
		Use:   "import FILE.pt",
		Short: "Convert published PyTorch vectors (persona-vectors, assistant-axis .pt files) to a vector file",
		Long: `Read per-layer vectors that other tools saved with torch.save — the
persona-vectors code's *_response_avg_diff.pt (one row per hidden_states
entry: the embeddings, then every layer) or an assistant-axis release's
axis .pt (one row per layer) — and write them as this project's vector file,
checked against --model. The file is read without running its pickle:
anything but tensors and plain containers is refused.

Rows map to layers by --convention: hidden-states (row ℓ+1 is our layer ℓ;
row 0, the embeddings, is dropped) or layers (row ℓ is layer ℓ); by default
the row count decides (layers+1 rows: hidden-states; layers rows: layers).
Rows of zeros (layers the source did not compute) are left out.`,
		Example: `  persona vectors import evil_response_avg_diff.pt --model ./Qwen2.5-7B-Instruct --out evil.safetensors
  persona vectors import assistant_axis.pt --model ./Llama-3.3-70B-Instruct --convention layers --out axis-vectors.safetensors`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("--out is required"))
			}
			v, err := pytorch.Open(args[0])
			if err != nil {
				return usageErr(err)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			set, err := vectors.FromTorch(v, key, e.Model.NumLayers, e.Model.Hidden, convention)
			if err != nil {
				return usageErr(fmt.Errorf("%s: %w", args[0], err))
			}
			set.Name, set.Model = cmp.Or(name, strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))), modelPath
			set.Meta["source"] = filepath.Base(args[0])
			if err := set.Save(out); err != nil {
				return backendErr(err)
			}
			fmt.Printf("%s: %s on layers %s (%s rows of %s)\n", out, set.Name, vectors.FormatLayers(set.Layers), set.Meta["convention"], set.Meta["source_dtype"])
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "the model the vectors belong to (its layers and width are checked)")
	f.StringVar(&out, "out", "", "vector file to write (safetensors)")
	f.StringVar(&key, "key", "", "the dict entry holding the vectors, when the file holds a dict")
	f.StringVar(&convention, "convention", "", "how rows map to layers: hidden-states or layers (default: from the row count)")
	f.StringVar(&name, "name", "", "the vectors' name (default: the file's)")
	return cmd
}

// extractStudy is an extraction's inputs as data: the options (with the
// scorer's name in Judge) and the trait spec's source. A distributed
// extraction stores it as JSON for its workers.
type extractStudy struct {
	Options   vectors.ExtractOptions `json:"options"`
	Trait     []byte                 `json:"trait"`
	TraitFile string                 `json:"trait_file"`
}

// extractAnswer is an answer as a worker returns it: with its response
// means (layers × width floats, which the answer's own JSON leaves out).
type extractAnswer struct {
	vectors.Response
	Mean [][]float32 `json:"mean"`
}

// extractPlayer sets a distributed extraction up on a worker's own engine:
// item q is the answers to extraction question q.
func extractPlayer(_ context.Context, env fleet.StudyEnv, study []byte) (fleet.Player, error) {
	e, err := studyEngine(env.Model)
	if err != nil {
		return nil, err
	}
	st, err := decodeStudy[extractStudy](study)
	if err != nil {
		return nil, err
	}
	spec, err := vectors.ParseTraitSpec(st.Trait, st.TraitFile)
	if err != nil {
		return nil, badStudy(err)
	}
	sc, err := studyScorer(env.Backends, st.Options.Judge)
	if err != nil {
		return nil, err
	}
	return fleet.PlayFunc(func(ctx context.Context, q int) (any, error) {
		rs, err := vectors.GenerateBatch(ctx, e, spec, spec.Questions.Extraction, q, sc, st.Options.GenerateOptions)
		if errors.Is(err, vectors.ErrNoQuestion) || errors.Is(err, engine.ErrLayer) {
			return nil, badStudy(err)
		}
		out := make([]extractAnswer, len(rs))
		for i, r := range rs {
			out[i] = extractAnswer{r, r.Mean}
		}
		return out, err
	}), nil
}

// distributeExtract queues an extraction's answers for persona worker
// processes, one batch per question, and makes the vector from them.
func distributeExtract(ctx context.Context, dsn, modelPath string, e *engine.Engine, st *extractStudy) (*vectors.Set, []vectors.Response, error) {
	spec, err := vectors.ParseTraitSpec(st.Trait, st.TraitFile)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	batches, err := runStudy[[]extractAnswer](ctx, dsn, "extract", "questions", modelPath, st, len(spec.Questions.Extraction))
	if err != nil {
		return nil, nil, err
	}
	var rs []vectors.Response
	for _, batch := range batches {
		for _, a := range batch {
			a.Response.Mean = a.Mean
			rs = append(rs, a.Response)
		}
	}
	set, err := vectors.ExtractFrom(e, spec, rs, st.Options)
	return set, rs, err
}

// loadVectorsFor reads a vector file and checks it against the model.
func loadVectorsFor(path string, e *engine.Engine) (*vectors.Set, error) {
	s, err := vectors.Open(path)
	if err == nil {
		err = s.Check(e.Model.NumLayers, e.Model.Hidden)
	}
	if err != nil {
		return nil, usageErr(fmt.Errorf("%s: %w", path, err))
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
			chats, err := readChats(chatFile)
			if err != nil {
				return err
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			set, err := loadVectorsFor(vecPath, e)
			if err != nil {
				return err
			}
			layers, err := vectors.ParseLayers(layersFlag, e.Model.NumLayers)
			if err != nil {
				return usageErr(fmt.Errorf("--layers: %w", err))
			}
			bar := newProgress("conversations")
			rows, err := vectors.ProjectChats(cmd.Context(), e, set, chats, layers, bar.update)
			bar.finish()
			if err != nil {
				return classify(fmt.Errorf("%s: %w", chatFile, err))
			}
			if asJSON {
				return printJSON(rows)
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
			w, err := resid.ParseWhere(where)
			if err != nil {
				return usageErr(fmt.Errorf("--where: %w", err))
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			set, err := loadVectorsFor(vecPath, e)
			if err != nil {
				return err
			}
			if layer < 0 {
				layer = set.Layers[len(set.Layers)/2]
			}
			var msgs []chat.Message
			if system != "" {
				msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: system})
			}
			msgs = append(msgs, chat.Message{Role: chat.RoleUser, Content: prompt})
			gens, err := set.SteerReplies(cmd.Context(), e, msgs, layer, coeffs, w, engine.ReplyOptions{MaxTokens: maxTokens, Sampling: p})
			if err != nil {
				return classify(err)
			}
			if asJSON {
				return printJSON(gens)
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

func newVectorsScreenCmd() *cobra.Command {
	var (
		modelPath, vecPath, out string
		o                       vectors.ScreenOptions
		threshold               float64
		asJSON                  bool
	)
	cmd := &cobra.Command{
		Use:   "screen DATA.jsonl",
		Short: "Flag fine-tuning samples that would push the model along a persona vector",
		Long: `For every sample of a fine-tuning dataset (a conversation ending with the
assistant response to train on), project the response on the vector at --layer
and subtract the projection of the model's own greedy reply to the same
conversation: a sample far above zero would teach the model more of the trait
than it shows now (the persona-vectors paper's projection difference). Samples
above the threshold (default: median + 3 robust standard deviations of the
dataset) are flagged; the mean difference scores the dataset as a whole.
--out writes every sample's numbers as JSONL (or CSV for a .csv name).`,
		Example: `  persona vectors screen data.jsonl --vectors cynical.safetensors --layer 2
  persona vectors screen data.jsonl --model M --vectors evil.safetensors --layer 12 --out screen.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if vecPath == "" {
				return usageErr(errors.New("--vectors is required"))
			}
			if cmd.Flags().Changed("threshold") {
				o.Threshold = &threshold
			}
			if o.By != vectors.ScreenByDifference && o.By != vectors.ScreenByResponse {
				return usageErr(fmt.Errorf("--by %q: want %s or %s", o.By, vectors.ScreenByDifference, vectors.ScreenByResponse))
			}
			chats, err := readChats(args[0])
			if err != nil {
				return err
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			set, err := loadVectorsFor(vecPath, e)
			if err != nil {
				return err
			}
			if o.Layer < 0 || o.Layer >= e.Model.NumLayers {
				return usageErr(fmt.Errorf("--layer %d: the model has layers 0–%d", o.Layer, e.Model.NumLayers-1))
			}
			bar := newProgress("samples")
			o.Progress = bar.update
			sc, err := vectors.Screen(cmd.Context(), e, set, chats, o)
			bar.finish()
			if errors.Is(err, vectors.ErrDataset) {
				return usageErr(fmt.Errorf("%s: %w", args[0], err))
			} else if err != nil {
				return classify(fmt.Errorf("%s: %w", args[0], err))
			}
			if out != "" {
				if err := writeScreening(out, sc); err != nil {
					return backendErr(err)
				}
			}
			if asJSON {
				return printJSON(sc)
			}
			fmt.Printf("%s at layer %d, by %s: %d of %d samples above %.3f; dataset score (mean) %.3f\n",
				sc.Vectors, sc.Layer, sc.By, sc.Flagged, len(sc.Samples), sc.Threshold, sc.Score)
			for _, s := range sc.Samples {
				if s.Flagged {
					fmt.Printf("  sample %d: %+.3f (response %.3f, model's own %.3f)\n", s.Sample, s.Diff, s.Given, s.Own)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model the dataset would fine-tune")
	f.StringVar(&vecPath, "vectors", "", "vector file (safetensors, or a llama.cpp control-vector .gguf)")
	f.IntVar(&o.Layer, "layer", 0, "layer to project at")
	f.StringVar(&o.By, "by", vectors.ScreenByDifference, "score to flag by: difference (the sample's projection minus the model's own reply's) or response (the sample's projection alone)")
	f.Float64Var(&threshold, "threshold", 0, "flag samples whose score exceeds this (default: median + 3 robust SD)")
	f.IntVar(&o.MaxTokens, "max-tokens", 64, "length of the model's own reply")
	f.IntVar(&o.Workers, "workers", 2, "samples screened in parallel")
	f.StringVar(&out, "out", "", "write every sample's numbers to this JSONL or .csv file")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// writeScreening writes a screening's samples as JSONL, or CSV for a .csv
// path.
func writeScreening(path string, sc *vectors.Screening) error {
	if strings.HasSuffix(path, ".csv") {
		return fileio.WriteAtomic(path, func(w io.Writer) error {
			cw := csv.NewWriter(w)
			cw.Write([]string{"sample", "given", "own", "diff", "flagged"})
			for _, s := range sc.Samples {
				cw.Write([]string{strconv.Itoa(s.Sample), fmt.Sprint(s.Given), fmt.Sprint(s.Own), fmt.Sprint(s.Diff), strconv.FormatBool(s.Flagged)})
			}
			cw.Flush()
			return cw.Error()
		})
	}
	return writeJSONL(path, sc.Samples)
}
