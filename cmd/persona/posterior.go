package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/personas"
	"persona/posterior"
	"persona/world"
)

func newPosteriorCmd() *cobra.Command {
	var (
		modelPath, chatFile, method, libDir, prompts, classifier, backends, judgeName string
		libPriors, withDefault, asJSON                                                bool
	)
	cmd := &cobra.Command{
		Use:   "posterior",
		Short: "Which persona is the model in? The posterior over personas after every assistant turn",
		Long: `For each conversation in a JSONL file, print the posterior over the personas
of a library after every assistant turn.

Methods:
  likelihood   Bayes' rule on the model's own log-probabilities of the assistant
               turns under each persona's system prompt (white-box, exact).
               The conversation's system message is replaced by each persona's.
  activations  response-mean activations projected on persona vectors and
               calibrated by logistic regression (--classifier, from
               'persona posterior fit').
  judge        a judge model rates how well the replies fit each persona
               (black-box; --backends and --judge, or the --model itself).

The default library is the organism's; --personas DIR reads another.`,
		Example: `  persona posterior --model models/organism/base --chat chats.jsonl
  persona posterior --model M --chat chats.jsonl --prompts all --default --json
  persona posterior --model M --chat chats.jsonl --method activations --classifier personas.json
  persona posterior --chat chats.jsonl --method judge --backends backends.yaml --judge gpt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if chatFile == "" {
				return usageErr(errors.New("--chat is required (a JSONL file of conversations)"))
			}
			if modelPath == "" && method != "judge" {
				return usageErr(fmt.Errorf("--model is required for --method %s", method))
			}
			chats, err := chat.ReadJSONLFile(chatFile)
			if err != nil {
				return usageErr(err)
			}
			lib := personas.Default()
			if libDir != "" {
				if lib, err = personas.Load(libDir); err != nil {
					return usageErr(err)
				}
			}
			hyps, err := posterior.FromLibrary(lib, posterior.LibraryOptions{Prompts: prompts, LibraryPriors: libPriors, Default: withDefault})
			if err != nil {
				return usageErr(err)
			}
			var e *engine.Engine
			if modelPath != "" {
				if e, err = loadEngine(modelPath, engine.Options{}); err != nil {
					return usageErr(err)
				}
				defer e.Close()
			}
			var run func(context.Context, []chat.Message) (*posterior.Result, error)
			switch method {
			case "likelihood":
				l, err := posterior.NewLikelihood(e, hyps)
				if err != nil {
					return usageErr(err)
				}
				run = l.Posterior
			case "activations":
				if classifier == "" {
					return usageErr(errors.New("--method activations needs --classifier (make one with 'persona posterior fit')"))
				}
				c, err := posterior.LoadClassifier(classifier)
				if err != nil {
					return usageErr(err)
				}
				ap := &posterior.ActivationPosterior{E: e, C: c}
				if err := ap.Check(); err != nil {
					return usageErr(fmt.Errorf("%s: %w", classifier, err))
				}
				run = ap.Posterior
			case "judge":
				b, closeFn, err := openJudge(backends, judgeName, e, modelPath)
				if err != nil {
					return err
				}
				defer closeFn()
				run = (&posterior.JudgePosterior{J: posterior.NewJudge(b), Hyps: hyps}).Posterior
			default:
				return usageErr(fmt.Errorf("--method %q: want likelihood, activations or judge", method))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			bar := newBar(len(chats), "conversations")
			type out struct {
				Chat   int               `json:"chat"`
				ID     json.RawMessage   `json:"id,omitempty"`
				Result *posterior.Result `json:"result"`
			}
			var results []out
			for i, c := range chats {
				res, err := run(ctx, c.Messages)
				if err != nil {
					bar.finish()
					if errors.Is(err, posterior.ErrNoAssistant) || errors.Is(err, engine.ErrNoTemplate) {
						return usageErr(fmt.Errorf("%s: conversation %d: %w", chatFile, i+1, err))
					}
					return backendErr(fmt.Errorf("%s: conversation %d: %w", chatFile, i+1, err))
				}
				results = append(results, out{Chat: i + 1, ID: c.Meta["id"], Result: res})
				bar.add()
			}
			bar.finish()
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			for _, r := range results {
				id := ""
				if r.ID != nil {
					id = " " + string(r.ID)
				}
				fmt.Printf("conversation %d%s (%s)\n%s\n", r.Chat, id, r.Result.Method, r.Result.Table())
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&chatFile, "chat", "", "JSONL file of conversations")
	f.StringVar(&method, "method", "likelihood", "likelihood, activations or judge")
	f.StringVar(&libDir, "personas", "", "persona library directory (default: the organism's)")
	f.StringVar(&prompts, "prompts", "strong", "system prompts per persona: strong, weak or all (a persona is the mixture of its prompts)")
	f.BoolVar(&libPriors, "priors", false, "use the library's priors instead of a uniform prior")
	f.BoolVar(&withDefault, "default", false, "add a 'default' hypothesis with no system prompt")
	f.StringVar(&classifier, "classifier", "", "classifier file for --method activations")
	f.StringVar(&backends, "backends", "", "backends YAML for --method judge")
	f.StringVar(&judgeName, "judge", "", "judge backend name in --backends (default: the first)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(newPosteriorFitCmd())
	return cmd
}

func newPosteriorFitCmd() *cobra.Command {
	var (
		modelPath, chatFile, out string
		layer, n                 int
		seed                     uint64
		asJSON                   bool
	)
	cmd := &cobra.Command{
		Use:   "fit",
		Short: "Fit the activations method's classifier on labelled conversations",
		Long: `Capture the response-mean activation of every labelled assistant turn at one
layer, build one persona vector per persona and fit the calibration.

Labels come from --chat (per-turn "labels" as the world writes them, or a
top-level "persona" field); without --chat, the persona world generates N
chats without system prompts, labelled by the persona that wrote each turn.`,
		Example: `  persona posterior fit --model models/organism/base --out personas.json
  persona posterior fit --model M --chat labelled.jsonl --layer 12 --out personas.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || out == "" {
				return usageErr(errors.New("--model and --out are required"))
			}
			var chats []chat.Chat
			var err error
			if chatFile != "" {
				if chats, err = chat.ReadJSONLFile(chatFile); err != nil {
					return usageErr(err)
				}
			} else {
				chats = world.Default().Pretrain(n, seed, world.PretrainOptions{MeanTurns: 3, MaxTurns: 6})
			}
			label := func(c, k int) string {
				if labels, err := world.Labels(chats[c]); err == nil && k < len(labels) {
					if labels[k].Instructed {
						return ""
					}
					return labels[k].Persona
				}
				var p string
				if raw, ok := chats[c].Meta["persona"]; ok && json.Unmarshal(raw, &p) == nil {
					return p
				}
				return ""
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return usageErr(err)
			}
			defer e.Close()
			if layer < 0 {
				layer = e.Model.NumLayers / 2
			}
			if layer >= e.Model.NumLayers {
				return usageErr(fmt.Errorf("--layer %d: the model has layers 0..%d", layer, e.Model.NumLayers-1))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			bar := newBar(len(chats), "capture")
			samples, err := posterior.LabelledSamples(ctx, e, chats, layer, label, func(int) { bar.add() })
			bar.finish()
			if err != nil {
				return backendErr(err)
			}
			seen := map[string]bool{}
			var names []string
			for _, s := range samples {
				if !seen[s.Persona] {
					seen[s.Persona] = true
					names = append(names, s.Persona)
				}
			}
			if len(names) < 2 {
				return usageErr(fmt.Errorf("labelled turns of %d personas found; need at least two (label chats with \"labels\" or \"persona\")", len(names)))
			}
			c, err := posterior.FitClassifier(sortStrings(names), layer, filepath.Base(modelPath), samples, posterior.FitOptions{})
			if err != nil {
				return usageErr(err)
			}
			if err := c.Save(out); err != nil {
				return backendErr(err)
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(c.Train)
			}
			fmt.Printf("classifier: %s (layer %d, %d personas, %.0f samples, training accuracy %.3f)\n", out, layer, len(names), c.Train["samples"], c.Train["accuracy"])
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&chatFile, "chat", "", "labelled JSONL conversations (default: generated by the persona world)")
	f.StringVar(&out, "out", "", "classifier file to write (JSON)")
	f.IntVar(&layer, "layer", -1, "layer (default: the middle one)")
	f.IntVar(&n, "n", 400, "world chats to generate without --chat")
	f.Uint64Var(&seed, "seed", 1, "seed for generated chats")
	f.BoolVar(&asJSON, "json", false, "print the fit statistics as JSON")
	return cmd
}

// openJudge opens the judge backend: an entry of a backends YAML, or the
// --model itself through the embedded engine.
func openJudge(configPath, name string, e *engine.Engine, modelPath string) (backend.Backend, func(), error) {
	if configPath == "" {
		if e == nil {
			return nil, nil, usageErr(errors.New("a judge needs --backends FILE (and --judge NAME) or --model"))
		}
		return backend.NewEngine(e, filepath.Base(modelPath), 1), func() {}, nil
	}
	cfg, err := backend.LoadConfig(configPath)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	if name == "" {
		name = cfg.Backends[0].Name
	}
	bc, err := cfg.Backend(name)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	b, c, err := bc.Open()
	if err != nil {
		var ce *backend.ConfigError
		if errors.As(err, &ce) {
			return nil, nil, usageErr(err)
		}
		return nil, nil, backendErr(err)
	}
	return b, func() { c.Close() }, nil
}

// bar is a progress bar on a terminal and nothing elsewhere.
type cliBar struct{ b *progressbar.ProgressBar }

func newBar(n int, what string) *cliBar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return &cliBar{}
	}
	return &cliBar{progressbar.NewOptions(n, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())}
}

func (b *cliBar) add() {
	if b.b != nil {
		b.b.Add(1)
	}
}

func (b *cliBar) finish() {
	if b.b != nil {
		b.b.Finish()
	}
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
