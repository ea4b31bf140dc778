package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"persona/axis"
	"persona/drift"
	"persona/gateway"
	"persona/internal/fileio"
	"persona/organism"
	"persona/posterior"
	"persona/world"
)

func newDriftCmd() *cobra.Command {
	var (
		modelPath, scenariosPath, configPath, auditorName, axisPath, libDir, htmlPath, specPath string
		orgMode, capRuns, asJSON, noPosterior                                                   bool
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
			lib, err := loadLibrary(libDir)
			if err != nil {
				return err
			}
			var scen []drift.Scenario
			switch {
			case orgMode:
				scen, err = organism.DriftScenarios(world.Default(), perDomain, turns, seed)
			case scenariosPath != "":
				scen, err = drift.LoadScenarios(scenariosPath)
			default:
				scen, err = drift.DefaultScenarios()
			}
			if err != nil {
				return usageErr(err)
			}
			opt := drift.Options{Layer: layer, Cap: capRuns, Samples: samples, MaxTokens: maxTokens, Temperature: temperature, Seed: seed}
			if cmd.Flags().Changed("threshold") {
				opt.Threshold = &threshold
			}
			e, err := loadChatEngine(modelPath, "persona drift")
			if err != nil {
				return err
			}
			defer e.Close()
			if axisPath != "" {
				if opt.Axis, err = axis.Load(axisPath); err == nil {
					err = opt.Axis.Check(e.Model.NumLayers, e.Model.Hidden)
				}
				if err != nil {
					return usageErr(fmt.Errorf("axis %s: %w", axisPath, err))
				}
			}
			if orgMode {
				opt.Oracle = world.Default().Oracle()
			}
			if !noPosterior && (orgMode || libDir != "") {
				hyps, err := posterior.FromLibrary(lib, posterior.LibraryOptions{})
				if err != nil {
					return usageErr(err)
				}
				if opt.Posterior, err = posterior.NewLikelihood(e, hyps); err != nil {
					return usageErr(err)
				}
				opt.Posterior.SwitchRate = posterior.DefaultSwitchRate
			}
			if specPath != "" {
				spec, err := gateway.LoadSpec(specPath)
				if err != nil {
					return usageErr(err)
				}
				if opt.Guard, err = gateway.NewGuard(spec, gateway.Readers{Engine: e}); err != nil {
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
			bar := newProgress("conversations")
			opt.Progress = bar.update
			rep, err := drift.Run(cmd.Context(), e, scen, opt)
			bar.finish()
			if err != nil {
				return classify(err)
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
	return cmd
}
