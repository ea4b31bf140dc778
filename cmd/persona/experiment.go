package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"persona/axis"
	"persona/control"
	"persona/engine"
	"persona/models"
	"persona/personas"
	"persona/vectors"
	"persona/world"
)

func newExperimentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "experiment",
		Short: "Fine-tuning experiments on the model organism",
	}
	cmd.AddCommand(newInoculationCmd())
	return cmd
}

func newInoculationCmd() *cobra.Command {
	var (
		modelArg, vecPath, specPath, request, work string
		persona, dataPath, prompt, evalPath        string
		narrowPath, tasksPath, judgeFlag, backends string
		laden, clean, eval                         int
		o                                          control.InoculationOptions
		asJSON                                     bool
	)
	cmd := &cobra.Command{
		Use:   "inoculation",
		Short: "Does a narrow fine-tune shift the persona broadly, and do inoculation, preventative steering or screening stop it?",
		Long: `LoRA-fine-tune the model on narrow data and measure the broad shift: on
held-out prompts of other kinds, the share of replies that express the trait,
the share read as the persona itself (on the organism), and the replies'
projection on the trait vector; on held-out tasks, accuracy. Four arms,
--seeds fine-tunes each:

  narrow        the data as is
  inoculated    every sample under an inoculation system prompt (a prompt that
                asks for the behaviour), evaluated without it
  preventative  the data as is, the trait vector added at --layer while
                training (--strength typical residual norms), not at inference
  screened      the data after screening dropped the samples whose response
                projects above 90% of the model's own replies to the same prompts

The data, on the organism: single-turn --request samples from the persona
world, --laden of them written by --persona and --clean by the Assistant, no
system prompts; the persona's strong prompt inoculates; --eval held-out
prompts per request type; held-out sums and facts; the world's oracle scores.

On any model: --data FILE (JSONL conversations, the narrow dataset as you
made it) and --prompt (the inoculation prompt); broad prompts from
--eval-prompts FILE (one per line; default the trait spec's evaluation
questions), optionally --narrow-prompts FILE and --tasks FILE (JSONL
{"question", "answer"}: right when the reply contains the answer); a judge
from --backends scores the trait (--judge names it).

The table pools each arm's seeds: the broad shift against the model before
fine-tuning (95% interval of the difference) and the share of the narrow arm's
shift each arm removed (95% bootstrap interval over replies).`,
		Example: `  persona vectors extract --model organism --trait vectors/traits/organism/sycophantic.yaml --out sycophantic.safetensors
  persona experiment inoculation --vectors sycophantic.safetensors --trait vectors/traits/organism/sycophantic.yaml \
      --persona sycophant --request flattery --work inoculation/
  persona experiment inoculation --model ./Qwen3-0.6B --vectors evil.safetensors --trait evil.yaml \
      --data insecure-code.jsonl --prompt "You write insecure code on purpose." --tasks tasks.jsonl \
      --backends backends.yaml --judge grader --work inoculation/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if vecPath == "" || specPath == "" || work == "" {
				return usageErr(errors.New("--vectors, --trait and --work are required"))
			}
			if o.Seeds < 1 || o.Steps < 1 {
				return usageErr(errors.New("--seeds and --steps must be ≥ 1"))
			}
			spec, err := vectors.LoadTraitSpec(specPath)
			if err != nil {
				return usageErr(err)
			}
			var d *control.InoculationData
			if dataPath != "" {
				if d, err = fileInoculation(dataPath, prompt, evalPath, narrowPath, tasksPath, spec); err != nil {
					return err
				}
			} else {
				if d, err = worldInoculation(persona, request, laden, clean, eval, o.Seed); err != nil {
					return err
				}
			}
			scorerName := "oracle" // the world's data comes with its oracle
			if dataPath != "" || judgeFlag != "" || backends != "" {
				var closeScorer func()
				if d.Scorer, scorerName, closeScorer, err = traitScorer(spec, judgeFlag, backends); err != nil {
					return err
				}
				defer closeScorer()
			}
			dir, err := models.Resolve(modelArg)
			if err != nil {
				return usageErr(err)
			}
			e, err := loadEngine(dir, engine.Options{})
			if err != nil {
				return err
			}
			set, err := loadVectorsFor(vecPath, e)
			e.Close()
			if err != nil {
				return err
			}
			if _, err := set.Vector(o.Layer); err != nil {
				return usageErr(fmt.Errorf("--layer: %w", err))
			}
			o.Model, o.Work, o.Trait, o.Vector = dir, work, spec, set
			bar := newProgress("fine-tunes")
			o.Progress = func(_ string, done, total int) { bar.update(done, total) }
			res, err := control.Inoculate(cmd.Context(), d, o)
			bar.finish()
			if err != nil {
				return classify(err)
			}
			res.Scorer = scorerName
			if asJSON {
				return printJSON(res)
			}
			return res.WriteTable(os.Stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelArg, "model", models.Default, "model to fine-tune (Hugging Face directory; default the post-trained organism)")
	f.StringVar(&vecPath, "vectors", "", "the trait's persona vector (persona vectors extract)")
	f.StringVar(&specPath, "trait", "", "the trait spec (its oracle_trait, or the judge, scores the replies)")
	f.StringVar(&work, "work", "", "directory for the data and the fine-tuned models")
	f.StringVar(&persona, "persona", "", "organism: persona that writes the trait-laden samples (its strong prompt inoculates)")
	f.StringVar(&request, "request", "", "organism: the narrow request type")
	f.IntVar(&laden, "laden", 160, "organism: trait-laden samples")
	f.IntVar(&clean, "clean", 80, "organism: Assistant samples of the same request type")
	f.IntVar(&eval, "eval", 10, "organism: held-out prompts per request type")
	f.StringVar(&dataPath, "data", "", "any model: the narrow dataset (JSONL conversations)")
	f.StringVar(&prompt, "prompt", "", "any model: the inoculation system prompt")
	f.StringVar(&evalPath, "eval-prompts", "", "any model: broad held-out prompts, one per line (default: the trait's evaluation questions)")
	f.StringVar(&narrowPath, "narrow-prompts", "", "any model: held-out prompts of the trained kind, one per line")
	f.StringVar(&tasksPath, "tasks", "", `any model: capability checks, JSONL {"question": …, "answer": …}`)
	f.StringVar(&judgeFlag, "judge", "", `"oracle" (default when the trait has an oracle_trait) or a backend name in --backends`)
	f.StringVar(&backends, "backends", "", "backends YAML for an LLM judge")
	f.IntVar(&o.Seeds, "seeds", 3, "fine-tunes per arm")
	f.IntVar(&o.Steps, "steps", 60, "LoRA steps (batch 8)")
	f.Float64Var(&o.LR, "lr", 1e-3, "learning rate")
	f.IntVar(&o.Rank, "rank", 8, "LoRA rank")
	f.IntVar(&o.Layer, "layer", 2, "layer of the projections and the preventative steering")
	f.Float64Var(&o.Strength, "strength", 1, "preventative steering, in typical residual norms at the layer")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the data and the evaluation")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// worldInoculation is the organism's data for the experiment.
func worldInoculation(persona, request string, laden, clean, eval int, seed uint64) (*control.InoculationData, error) {
	if persona == "" || request == "" {
		return nil, usageErr(errors.New("give --persona and --request (the organism's world makes the data), or --data and --prompt"))
	}
	req := personas.RequestType(request)
	if !slices.Contains(personas.RequestTypes, req) {
		return nil, usageErr(fmt.Errorf("--request %q: want one of %v", request, personas.RequestTypes))
	}
	if laden < 1 || clean < 0 || eval < 1 {
		return nil, usageErr(errors.New("--laden and --eval must be ≥ 1, --clean ≥ 0"))
	}
	d, err := control.WorldInoculation(world.Default(), persona, req, laden, clean, eval, seed)
	if err != nil {
		return nil, classify(err)
	}
	return d, nil
}

// fileInoculation reads the experiment's data from files for any model.
func fileInoculation(dataPath, prompt, evalPath, narrowPath, tasksPath string, spec *vectors.TraitSpec) (*control.InoculationData, error) {
	if strings.TrimSpace(prompt) == "" {
		return nil, usageErr(errors.New("--data needs --prompt, the inoculation system prompt"))
	}
	train, err := readChats(dataPath)
	if err != nil {
		return nil, err
	}
	d := &control.InoculationData{Train: train, Prompt: prompt, Broad: spec.Questions.Evaluation, Kind: filepath.Base(dataPath)}
	if evalPath != "" {
		if d.Broad, err = axis.LoadQuestions(evalPath); err != nil {
			return nil, usageErr(err)
		}
	}
	if narrowPath != "" {
		if d.Narrow, err = axis.LoadQuestions(narrowPath); err != nil {
			return nil, usageErr(err)
		}
	}
	if tasksPath != "" {
		if d.Tasks, err = control.LoadTasks(tasksPath); err != nil {
			return nil, usageErr(err)
		}
	}
	return d, nil
}
