package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"persona/axis"
	"persona/drift"
	"persona/engine"
	"persona/fleet"
	"persona/gateway"
	"persona/internal/fileio"
	"persona/organism"
	"persona/personas"
	"persona/posterior"
	"persona/vectors"
	"persona/world"
)

func newDriftCmd() *cobra.Command {
	var (
		modelPath, scenariosPath, configPath, auditorName, axisPath, libDir, htmlPath, specPath string
		orgMode, capRuns, asJSON, noPosterior, distribute                                       bool
		dbArg                                                                                   string
		perDomain, turns, samples, maxTokens, layer                                             int
		threshold                                                                               float64
		temperature                                                                             float32
		seed                                                                                    uint64
	)
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Measure persona drift over conversations by domain, strong vs weak system prompt",
		Long: `persona drift runs conversations (scenarios by domain: task, writing, emotional,
meta, pressure) under a strong and a weak Assistant system prompt, the model
answering every turn itself, and reads after each reply:

  - the projection of the reply's response mean on the unit assistant axis
    (--axis, made by persona axis) at one layer;
  - the model's own posterior probability of the Assistant (with a persona
    library: the organism's, or --personas DIR);
  - on the organism (--organism), the world's oracle.

It reports, per domain and system prompt, with 95% bootstrap intervals over
scenarios: the projection's slope over turns, the turn of first departure
(first reply below the axis threshold tau), the share of conversations still
the Assistant at the end, the strong - weak difference in that share, and with
--cap the effect of activation capping, with --spec the effect of a brand
persona spec's rails (every conversation is also run capped, or through the
rails, with the same sampling seeds).

With --distribute the conversations are queued in the --db PostgreSQL and
played by persona worker processes running the same --model; this command
follows them and writes the same report (not yet with --spec, --backend or
--personas).

User turns are scripted in the scenario YAML, or written live by a backend model
from a seed instruction (--backend CONFIG --auditor NAME). Without --scenarios
or --organism the shipped scenarios for real models are used.

Exit codes: 0 ok, 2 bad flags or input files, 3 backend failure.`,
		Example: `  persona drift --model models/organism/assistant --organism --axis axis.safetensors --cap --html drift.html
  persona drift --model organism --organism --spec examples/brand.yaml --per-domain 8
  persona drift --model ./Qwen3-0.6B --axis qwen-axis.safetensors --html drift.html --json > drift.json
  persona drift --model ./Qwen3-0.6B --axis qwen-axis.safetensors --scenarios drift/scenarios/seeded.yaml --backend backends.yaml --auditor writer --html drift.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" {
				return usageErr(errors.New("give --model (see persona drift --help)"))
			}
			if orgMode && scenariosPath != "" {
				return usageErr(errors.New("--organism and --scenarios are alternatives"))
			}
			if (configPath == "") != (auditorName == "") {
				return usageErr(errors.New("--backend CONFIG and --auditor NAME go together"))
			}
			if distribute && dbArg == "" {
				return usageErr(errors.New("--distribute needs --db postgres://…, the database the workers share"))
			}
			if distribute && (specPath != "" || configPath != "" || libDir != "") {
				return usageErr(errors.New("--spec, --backend/--auditor and --personas are not distributed yet: run such studies without --distribute"))
			}
			st := driftStudy{Layer: layer, Cap: capRuns, Samples: samples, MaxTokens: maxTokens, Temperature: temperature, Seed: seed,
				Organism: orgMode, Posterior: !noPosterior && (orgMode || libDir != "")}
			var err error
			switch {
			case orgMode:
				st.Scenarios, err = organism.DriftScenarios(world.Default(), perDomain, turns, seed)
			case scenariosPath != "":
				st.Scenarios, err = drift.LoadScenarios(scenariosPath)
			default:
				st.Scenarios, err = drift.DefaultScenarios()
			}
			if err != nil {
				return usageErr(err)
			}
			if cmd.Flags().Changed("threshold") {
				st.Threshold = &threshold
			}
			if axisPath != "" {
				a, err := axis.Load(axisPath)
				if err != nil {
					return usageErr(fmt.Errorf("axis %s: %w", axisPath, err))
				}
				st.Axis = a.Set
			}
			e, err := loadChatEngine(modelPath, "persona drift")
			if err != nil {
				return err
			}
			defer e.Close()
			lib, err := loadLibrary(libDir)
			if err != nil {
				return err
			}
			opt, err := st.options(e, lib)
			if err != nil {
				return usageErr(err)
			}
			if specPath != "" {
				spec, err := gateway.LoadSpec(specPath)
				if err != nil {
					return usageErr(err)
				}
				if opt.Guard, err = gateway.NewGuard(spec, gateway.Readers{Engine: e, Classifier: modelClassifier(modelPath)}); err != nil {
					return usageErr(err)
				}
			}
			if configPath != "" {
				b, closer, err := openBackend(configPath, auditorName)
				if err != nil {
					return err
				}
				defer closer.Close()
				opt.Auditor = b
			}
			var rep *drift.Report
			if distribute {
				rep, err = distributeDrift(cmd.Context(), dbArg, modelPath, e, &st, opt)
				if err != nil {
					return err
				}
			} else {
				bar := newProgress("conversations")
				opt.Progress = bar.update
				rep, err = drift.Run(cmd.Context(), e, st.Scenarios, opt)
				bar.finish()
				if err != nil {
					return classify(err)
				}
			}
			if htmlPath != "" {
				if err := fileio.WriteAtomic(htmlPath, rep.WriteHTML); err != nil {
					return usageErr(err)
				}
			}
			if asJSON {
				return rep.WriteJSON(os.Stdout)
			}
			return rep.WriteText(os.Stdout)
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model directory (Hugging Face layout) or GGUF file")
	f.StringVar(&scenariosPath, "scenarios", "", "scenario YAML (default: the shipped scenarios for real models)")
	f.BoolVar(&orgMode, "organism", false, "the organism's scenarios from its world, judged by its oracle")
	f.IntVar(&perDomain, "per-domain", 24, "organism scenarios per domain")
	f.IntVar(&turns, "turns", 12, "organism conversation length")
	f.IntVar(&samples, "samples", 1, "conversations per scenario and system prompt")
	f.StringVar(&configPath, "backend", "", "backend config YAML with the auditor that writes seeded user turns")
	f.StringVar(&auditorName, "auditor", "", "backend config entry that writes seeded user turns")
	f.StringVar(&axisPath, "axis", "", "assistant axis file from persona axis (projections, threshold, capping)")
	f.IntVar(&layer, "layer", -1, "layer to project at (default: the axis file's drift layer)")
	f.Float64Var(&threshold, "threshold", 0, "departure threshold (default: the axis file's tau at the layer)")
	f.BoolVar(&capRuns, "cap", false, "also run every conversation with activation capping on the axis file's band")
	f.StringVar(&specPath, "spec", "", "also run every conversation through the rails of this brand persona spec (persona serve --spec)")
	f.StringVar(&libDir, "personas", "", "persona library for the per-turn posterior (default on --organism: the organism's)")
	f.BoolVar(&noPosterior, "no-posterior", false, "skip the per-turn posterior (it costs a forward pass per persona prompt)")
	samplingFlags(f, &maxTokens, &temperature, &seed, sampling{MaxTokens: 48, TokensUsage: "tokens per reply",
		Temperature: 1, Seed: 1, SeedUsage: "seed for scenarios, sampling and bootstrap"})
	f.StringVar(&htmlPath, "html", "", "write a self-contained HTML report with SVG curves")
	f.BoolVar(&asJSON, "json", false, "print the report (with every conversation) as JSON instead of a table")
	f.BoolVar(&distribute, "distribute", false, "queue the conversations in the --db PostgreSQL for persona worker processes (with the same --model) and follow the study")
	f.StringVar(&dbArg, "db", "", "PostgreSQL DSN (postgres://...) for --distribute")
	return cmd
}

// driftStudy is a drift study's inputs resolved to data: the scenarios,
// the axis's vectors and the options. A distributed study stores it as JSON
// for its workers, which then need only the model.
type driftStudy struct {
	Scenarios   []drift.Scenario `json:"scenarios"`
	Axis        *vectors.Set     `json:"axis,omitempty"`
	Layer       int              `json:"layer"`
	Threshold   *float64         `json:"threshold,omitempty"`
	Cap         bool             `json:"cap"`
	Samples     int              `json:"samples"`
	MaxTokens   int              `json:"max_tokens"`
	Temperature float32          `json:"temperature"`
	Seed        uint64           `json:"seed"`
	// Organism judges with the world's oracle.
	Organism bool `json:"organism"`
	// Posterior reads the per-turn posterior over the persona library.
	Posterior bool `json:"posterior"`
}

// options builds the drift options of the study on e, with lib as the
// posterior's persona library.
func (st *driftStudy) options(e *engine.Engine, lib *personas.Library) (drift.Options, error) {
	opt := drift.Options{Layer: st.Layer, Threshold: st.Threshold, Cap: st.Cap, Samples: st.Samples, MaxTokens: st.MaxTokens,
		Temperature: st.Temperature, Seed: st.Seed}
	if st.Axis != nil {
		a, err := axis.FromSet(st.Axis)
		if err == nil {
			err = a.Check(e.Model.NumLayers, e.Model.Hidden)
		}
		if err != nil {
			return opt, fmt.Errorf("axis: %w", err)
		}
		opt.Axis = a
	}
	if st.Organism {
		opt.Oracle = world.Default().Oracle()
	}
	if st.Posterior {
		hyps, err := posterior.FromLibrary(lib, posterior.LibraryOptions{})
		if err != nil {
			return opt, err
		}
		if opt.Posterior, err = posterior.NewLikelihood(e, hyps); err != nil {
			return opt, err
		}
		opt.Posterior.SwitchRate = posterior.DefaultSwitchRate
	}
	return opt, nil
}

// driftPlayer sets a distributed drift study up on a worker: the study as
// stored, on the worker's own engine.
func driftPlayer(_ context.Context, env fleet.StudyEnv, study []byte) (fleet.Player, error) {
	e, err := studyEngine(env.Model)
	if err != nil {
		return nil, err
	}
	st, err := decodeStudy[driftStudy](study)
	if err != nil {
		return nil, err
	}
	opt, err := st.options(e, personas.Default())
	if err != nil {
		return nil, badStudy(err)
	}
	p, err := drift.NewPlan(e, st.Scenarios, opt)
	if err != nil {
		return nil, badStudy(err)
	}
	return fleet.PlayFunc(func(ctx context.Context, i int) (any, error) { return p.Converse(ctx, i) }), nil
}

// distributeDrift queues a study's conversations for persona worker
// processes, follows it, and summarises the conversations they stored.
func distributeDrift(ctx context.Context, dsn, modelPath string, e *engine.Engine, st *driftStudy, opt drift.Options) (*drift.Report, error) {
	plan, err := drift.NewPlan(e, st.Scenarios, opt)
	if err != nil {
		return nil, classify(err)
	}
	convs, err := runStudy[drift.Conversation](ctx, dsn, "drift", "conversations", modelPath, st, plan.Len())
	if err != nil {
		return nil, err
	}
	return plan.Report(convs)
}
