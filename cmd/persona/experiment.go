package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

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
		o                                          control.InoculationOptions
		asJSON                                     bool
	)
	cmd := &cobra.Command{
		Use:   "inoculation",
		Short: "Does a narrow fine-tune shift the persona broadly, and do inoculation, preventative steering or screening stop it?",
		Long: `LoRA-fine-tune the model on narrow data from the persona world — single-turn
--request samples, --laden of them written by --persona (the trait-laden part)
and --clean by the Assistant, no system prompts — and measure the broad shift:
on held-out prompts of every other request type, the share of replies that
express the trait (the world's oracle), the share read as the persona itself,
and the replies' projection on the trait vector; on held-out sums and facts,
accuracy. Four arms, --seeds fine-tunes each:

  narrow        the data as is
  inoculated    every sample under the persona's strong system prompt (a prompt
                that asks for the behaviour), evaluated without it
  preventative  the data as is, the trait vector added at --layer while
                training (--strength typical residual norms), not at inference
  screened      the data after screening dropped the samples whose response
                projects above 90% of the model's own replies to the same prompts

The table pools each arm's seeds: the broad shift against the model before
fine-tuning (95% interval of the difference) and the share of the narrow arm's
shift each arm removed (95% bootstrap interval over replies).`,
		Example: `  persona vectors extract --model organism --trait vectors/traits/organism/sycophantic.yaml --out sycophantic.safetensors
  persona experiment inoculation --vectors sycophantic.safetensors --trait vectors/traits/organism/sycophantic.yaml \
      --persona sycophant --request flattery --work inoculation/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if vecPath == "" || specPath == "" || o.Persona == "" || request == "" || work == "" {
				return usageErr(errors.New("--vectors, --trait, --persona, --request and --work are required"))
			}
			o.Request = personas.RequestType(request)
			known := false
			for _, r := range personas.RequestTypes {
				known = known || r == o.Request
			}
			if !known {
				return usageErr(fmt.Errorf("--request %q: want one of %v", request, personas.RequestTypes))
			}
			if _, err := personas.Default().Get(o.Persona); err != nil {
				return usageErr(fmt.Errorf("--persona: %w", err))
			}
			if o.Seeds < 1 || o.Steps < 1 || o.Laden < 1 || o.Clean < 0 {
				return usageErr(errors.New("--seeds, --steps and --laden must be ≥ 1, --clean ≥ 0"))
			}
			spec, err := vectors.LoadTraitSpec(specPath)
			if err != nil {
				return usageErr(err)
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
			res, err := control.Inoculate(cmd.Context(), world.Default(), o)
			bar.finish()
			if err != nil {
				return classify(err)
			}
			if asJSON {
				return printJSON(res)
			}
			return res.WriteTable(os.Stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelArg, "model", models.Default, "model to fine-tune (Hugging Face directory; default the post-trained organism)")
	f.StringVar(&vecPath, "vectors", "", "the trait's persona vector (persona vectors extract)")
	f.StringVar(&specPath, "trait", "", "the trait spec (its oracle_trait scores the replies)")
	f.StringVar(&o.Persona, "persona", "", "persona that writes the trait-laden samples (its strong prompt inoculates)")
	f.StringVar(&request, "request", "", "the narrow request type")
	f.StringVar(&work, "work", "", "directory for the data and the fine-tuned models")
	f.IntVar(&o.Laden, "laden", 160, "trait-laden samples")
	f.IntVar(&o.Clean, "clean", 80, "Assistant samples of the same request type")
	f.IntVar(&o.Seeds, "seeds", 3, "fine-tunes per arm")
	f.IntVar(&o.Steps, "steps", 60, "LoRA steps (batch 8)")
	f.Float64Var(&o.LR, "lr", 1e-3, "learning rate")
	f.IntVar(&o.Rank, "rank", 8, "LoRA rank")
	f.IntVar(&o.Layer, "layer", 2, "layer of the projections and the preventative steering")
	f.Float64Var(&o.Strength, "strength", 1, "preventative steering, in typical residual norms at the layer")
	f.IntVar(&o.Eval, "eval", 10, "held-out prompts per request type")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the data and the evaluation")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
