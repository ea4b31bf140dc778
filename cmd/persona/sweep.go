package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"persona/backend"
	"persona/control"
	"persona/engine"
	"persona/fleet"
	"persona/internal/fileio"
	"persona/posterior"
	"persona/resid"
	"persona/vectors"
	"persona/world"
)

func newVectorsSweepCmd() *cobra.Command {
	var (
		modelPath, vecPath, specPath, bands, positions, svgPath, judgeFlag, backends string
		o                                                                            control.SweepOptions
		asJSON, distribute                                                           bool
		dbArg                                                                        string
	)
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Steering dose–response: trait expressed against competence kept, per layer, strength and position",
		Long: `Steer with a persona vector in every combination of --layers (single layers
and bands a-b), --strengths and --where, and measure per setting how often the
replies to the trait's evaluation questions express the trait (--samples per
question at --temperature, scored by the world's oracle on the organism or by
an LLM judge) and how much competence is left: held-out sums and facts from
the persona world answered greedily (checked by the world's oracle), the
scorer's coherence, and the replies' perplexity under the unsteered model.

A strength is the size of the push relative to the layers' typical residual
norm (mean ‖h‖ over the prompts' positions), split evenly over a band's
layers: c = strength / |band| × norm(ℓ) / ‖v(ℓ)‖, so 0.5 means half a typical
residual on any model. --suppress asks every question under the trait's own
positive instruction and looks for the strength that removes the trait (give
negative strengths).

Prints every setting (the frontier marked *, the recommendation →: the most
trait among settings keeping --min-accuracy of the tasks correct), and with
--svg the frontier as a plot. Prompts are read once: settings that steer only
generated positions start from the unsteered prompt, the others read each
prompt once per setting; the positions column says what was run against
reading every prompt anew.`,
		Example: `  persona vectors extract --model organism --trait vectors/traits/organism/cynical.yaml --out cynical.safetensors
  persona vectors sweep --model organism --vectors cynical.safetensors --trait vectors/traits/organism/cynical.yaml \
      --layers 0,1,2,3,1-2,0-3 --strengths 0.25,0.5,1,2 --where generated,all --svg cynical-sweep.svg
  persona vectors sweep --model organism --vectors cynical.safetensors --trait vectors/traits/organism/cynical.yaml \
      --suppress --strengths -0.5,-1,-2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || vecPath == "" || specPath == "" {
				return usageErr(errors.New("--model, --vectors and --trait are required"))
			}
			if distribute && dbArg == "" {
				return usageErr(errors.New("--distribute needs --db postgres://…, the database the workers share"))
			}
			if o.MinAccuracy < 0 || o.MinAccuracy > 1 {
				return usageErr(fmt.Errorf("--min-accuracy %g must be in [0, 1]", o.MinAccuracy))
			}
			if o.Samples < 1 || o.Tasks < 0 {
				return usageErr(errors.New("--samples must be ≥ 1 and --tasks ≥ 0"))
			}
			spec, err := vectors.LoadTraitSpec(specPath)
			if err != nil {
				return usageErr(err)
			}
			for _, p := range strings.Split(positions, ",") {
				w, err := resid.ParseWhere(strings.TrimSpace(p))
				if err != nil {
					return usageErr(fmt.Errorf("--where: %w", err))
				}
				o.Positions = append(o.Positions, w)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			if o.Vector, err = loadVectorsFor(vecPath, e); err != nil {
				return err
			}
			if bands == "" { // every layer of the vectors on its own
				ls := make([]string, len(o.Vector.Layers))
				for i, l := range o.Vector.Layers {
					ls[i] = strconv.Itoa(l)
				}
				bands = strings.Join(ls, ",")
			}
			if o.Bands, err = control.ParseBands(bands, e.Model.NumLayers); err != nil {
				return usageErr(fmt.Errorf("--layers: %w", err))
			}
			for _, band := range o.Bands {
				for _, l := range band {
					if _, err := o.Vector.Vector(l); err != nil {
						return usageErr(fmt.Errorf("--layers: %w", err))
					}
				}
			}
			var scorer string
			var closeScorer func()
			if o.Scorer, scorer, closeScorer, err = traitScorer(spec, judgeFlag, backends); err != nil {
				return err
			}
			defer closeScorer()
			if distribute {
				src, err := os.ReadFile(specPath)
				if err != nil {
					return usageErr(err)
				}
				o.Trait = spec
				st := sweepStudy{Options: o, Vector: o.Vector, Trait: src, TraitFile: specPath, Judge: scorer}
				sw, err := distributeSweep(cmd.Context(), dbArg, modelPath, e, &st)
				if err != nil {
					return err
				}
				return writeSweep(sw, scorer, svgPath, asJSON)
			}
			o.Trait = spec
			bar := newProgress("replies")
			o.Progress = bar.update
			sw, err := control.Run(cmd.Context(), e, world.Default(), o)
			bar.finish()
			if err != nil {
				return classify(err)
			}
			return writeSweep(sw, scorer, svgPath, asJSON)
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&vecPath, "vectors", "", "vector file (safetensors, or a llama.cpp control-vector .gguf)")
	f.StringVar(&specPath, "trait", "", "trait spec YAML: its evaluation questions and how replies are scored")
	f.StringVar(&bands, "layers", "", "layers and bands to steer, e.g. 1,2,1-2 (default: every layer of the vectors on its own)")
	f.Float64SliceVar(&o.Strengths, "strengths", []float64{0.25, 0.5, 1, 2}, "strengths relative to the typical residual norm (negative: against the trait)")
	f.StringVar(&positions, "where", "generated,all", "positions to steer: generated, prompt, all (comma-separated)")
	f.BoolVar(&o.Suppress, "suppress", false, "ask under the trait's positive instruction and look for the setting that removes the trait")
	f.StringVar(&o.System, "system", "", "system prompt for every question (default: none; with --suppress the trait's instruction)")
	f.IntVar(&o.Samples, "samples", 3, "replies per trait question")
	f.IntVar(&o.Tasks, "tasks", 40, "held-out sums and facts asked per setting")
	f.Float64Var(&o.MinAccuracy, "min-accuracy", 0.9, "task accuracy a recommended setting keeps")
	f.Float64Var(&o.Threshold, "threshold", 50, "trait score (0–100) that counts as expressed")
	f.StringVar(&judgeFlag, "judge", "", `"oracle" (default when the trait has an oracle_trait) or a backend name in --backends`)
	f.StringVar(&backends, "backends", "", "backends YAML for an LLM judge")
	f.StringVar(&svgPath, "svg", "", "write the frontier as SVG")
	samplingFlags(f, &o.MaxTokens, &o.Temperature, &o.Seed, sampling{MaxTokens: 48, TokensUsage: "tokens per reply", Temperature: 1, Seed: 1, SeedUsage: "sampling seed"})
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&distribute, "distribute", false, "queue the cells in the --db PostgreSQL for persona worker processes (with the same --model) and follow the sweep")
	f.StringVar(&dbArg, "db", "", "PostgreSQL DSN (postgres://...) for --distribute")
	return cmd
}

// writeSweep prints a sweep (table or JSON) and writes its SVG.
func writeSweep(sw *control.Sweep, scorer, svgPath string, asJSON bool) error {
	sw.Scorer = scorer
	if svgPath != "" {
		if err := fileio.WriteAtomic(svgPath, func(w io.Writer) error { return sw.WriteSVG(w) }); err != nil {
			return backendErr(err)
		}
	}
	if asJSON {
		return printJSON(sw)
	}
	return sw.WriteTable(os.Stdout)
}

// sweepStudy is a sweep's inputs as data: the options (strengths, bands,
// positions, sampling), the vectors, the trait spec's source and the
// scorer's name. A distributed sweep stores it as JSON for its workers.
type sweepStudy struct {
	Options   control.SweepOptions `json:"options"`
	Vector    *vectors.Set         `json:"vector"`
	Trait     []byte               `json:"trait"`
	TraitFile string               `json:"trait_file"`
	Judge     string               `json:"judge"`
}

// options rebuilds the sweep's options, scored by the worker's backends.
func (st *sweepStudy) options(backends map[string]backend.Backend) (control.SweepOptions, error) {
	o := st.Options
	spec, err := vectors.ParseTraitSpec(st.Trait, st.TraitFile)
	if err != nil {
		return o, badStudy(err)
	}
	if o.Scorer, err = studyScorer(backends, st.Judge); err != nil {
		return o, err
	}
	o.Vector, o.Trait = st.Vector, spec
	return o, nil
}

// traitScorer is the scorer --judge and --backends choose for a trait: the
// persona world's oracle ("oracle", or neither flag on a trait with an
// oracle_trait), else the judge backend, named, with its closer.
func traitScorer(spec *vectors.TraitSpec, judgeFlag, backends string) (vectors.Scorer, string, func(), error) {
	if judgeFlag == "oracle" || (judgeFlag == "" && backends == "" && spec.OracleTrait != "") {
		return vectors.OracleScorer{Oracle: world.Default().Oracle()}, "oracle", func() {}, nil
	}
	b, closer, err := judgeBackend(backends, judgeFlag, nil, "")
	if err != nil {
		return nil, "", nil, err
	}
	return posterior.NewJudge(b), b.Name(), func() { closer.Close() }, nil
}

// studyScorer is the scorer a distributed study names: "oracle" (the
// persona world's), or the worker's backend of that name as an LLM judge.
func studyScorer(backends map[string]backend.Backend, judge string) (vectors.Scorer, error) {
	if judge == "oracle" {
		return vectors.OracleScorer{Oracle: world.Default().Oracle()}, nil
	}
	b := backends[judge]
	if b == nil {
		return nil, fmt.Errorf("the study is judged by backend %q, which this worker does not have (give it --backend)", judge)
	}
	return posterior.NewJudge(b), nil
}

// sweepPlayer sets a distributed sweep up on a worker's own engine.
func sweepPlayer(ctx context.Context, env fleet.StudyEnv, study []byte) (fleet.Player, error) {
	e, err := studyEngine(env.Model)
	if err != nil {
		return nil, err
	}
	st, err := decodeStudy[sweepStudy](study)
	if err != nil {
		return nil, err
	}
	o, err := st.options(env.Backends)
	if err != nil {
		return nil, err
	}
	p, err := control.NewPlan(ctx, e, world.Default(), o)
	if err != nil {
		return nil, badStudy(err)
	}
	return fleet.PlayFunc(func(ctx context.Context, i int) (any, error) { return p.Cell(ctx, i) }), nil
}

// distributeSweep queues a sweep's cells for persona worker processes,
// follows it, and summarises the cells they stored.
func distributeSweep(ctx context.Context, dsn, modelPath string, e *engine.Engine, st *sweepStudy) (*control.Sweep, error) {
	plan, err := control.NewPlan(ctx, e, world.Default(), st.Options)
	if err != nil {
		return nil, classify(err)
	}
	cells, err := runStudy[control.CellResult](ctx, dsn, "sweep", "cells", modelPath, st, plan.Len())
	if err != nil {
		return nil, err
	}
	return plan.Report(cells)
}
