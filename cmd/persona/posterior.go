package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"persona/chat"
	"persona/engine"
	"persona/posterior"
	"persona/vectors"
	"persona/world"
)

func newPosteriorCmd() *cobra.Command {
	var (
		modelPath, chatFile, method, libDir, prompts, classifier, backends, judgeName, seenIn string
		libPriors, withDefault, asJSON, score                                                 bool
		switchRate                                                                            float64
		wholeConversation                                                                     bool
	)
	cmd := &cobra.Command{
		Use:   "posterior",
		Short: "Which persona is the model in? The posterior over personas after every assistant turn",
		Long: `For each conversation in a JSONL file, print the posterior over the personas
of a library after every assistant turn.

The persona may change during a conversation (a user asks for a pirate, the
model drifts), so the posterior is a hidden Markov model over which persona
wrote each turn, with a switch rate --switch-rate between turns. Each row
shows the filtered posterior (what a live monitor knows after that turn), the
smoothed persona (what the whole conversation says), the most likely path and
the switches on it; --json has the full distributions.

Methods:
  likelihood   Bayes' rule on the model's own log-probabilities of the assistant
               turns under each persona's system prompt (white-box, exact).
               The conversation's system message is replaced by each persona's;
               each reply is scored after its own user turn, so earlier turns
               do not vouch for it (--whole-conversation reads them all).
  activations  response-mean activations of every layer projected on persona
               vectors and calibrated by logistic regression (--classifier,
               from 'persona posterior fit'; a model directory may carry its
               own as posterior-classifier.json, as the organism does). One
               forward pass per conversation, and on the organism it reads
               wording it was not trained on far better than the likelihood.
The default method is activations when the model carries a classifier, else
likelihood.
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
			if !(switchRate >= 0 && switchRate < 1) {
				return usageErr(fmt.Errorf("--switch-rate %g: the switch rate must be in [0, 1)", switchRate))
			}
			if modelPath == "" && method != "judge" {
				return usageErr(fmt.Errorf("--model is required for --method %s", method))
			}
			chats, err := readChats(chatFile)
			if err != nil {
				return err
			}
			var known posterior.Vocabulary
			if seenIn != "" {
				if !score {
					return usageErr(errors.New("--seen-in splits a score: it needs --score"))
				}
				seen, err := readChats(seenIn)
				if err != nil {
					return err
				}
				known = posterior.NewVocabulary(seen)
			}
			lib, err := loadLibrary(libDir)
			if err != nil {
				return err
			}
			hyps, err := posterior.FromLibrary(lib, posterior.LibraryOptions{Prompts: prompts, LibraryPriors: libPriors, Default: withDefault})
			if err != nil {
				return usageErr(err)
			}
			var e *engine.Engine
			if modelPath != "" {
				if e, err = loadEngine(modelPath, engine.Options{}); err != nil {
					return err
				}
				defer e.Close()
			}
			if classifier == "" && method != "likelihood" && modelPath != "" {
				classifier = modelClassifier(modelPath)
			}
			if method == "" {
				method = "likelihood"
				if classifier != "" {
					method = "activations"
				}
			}
			var m posterior.Method
			switch method {
			case "likelihood":
				l, err := posterior.NewLikelihood(e, hyps)
				if err != nil {
					return usageErr(err)
				}
				l.SwitchRate, l.WholeConversation, m = switchRate, wholeConversation, l
			case "activations":
				if classifier == "" {
					return usageErr(fmt.Errorf("--method activations needs --classifier (make one with 'persona posterior fit', or save it in the model directory as %s)", posterior.ClassifierFile))
				}
				ap, err := posterior.LoadActivationPosterior(e, classifier)
				if err != nil {
					return usageErr(err)
				}
				if names := lib.Names(); libDir != "" && !slices.Equal(slices.Sorted(slices.Values(ap.C.Names)), slices.Sorted(slices.Values(names))) {
					return usageErr(fmt.Errorf("the classifier %s reads personas %v, --personas has %v (fit one on this library with 'persona posterior fit')", classifier, ap.C.Names, names))
				}
				ap.SwitchRate, m = switchRate, ap
			case "judge":
				b, closer, err := judgeBackend(backends, judgeName, e, modelPath)
				if err != nil {
					return err
				}
				defer closer.Close()
				m = &posterior.JudgePosterior{J: posterior.NewJudge(b), Hyps: hyps, SwitchRate: switchRate}
			default:
				return usageErr(fmt.Errorf("--method %q: want likelihood, activations or judge", method))
			}
			bar := newProgress("conversations")
			results, err := posterior.Chats(cmd.Context(), m, chats, bar.update)
			bar.finish()
			if err != nil {
				return classify(fmt.Errorf("%s: %w", chatFile, err))
			}
			if score {
				sc, err := posterior.ScoreLabelled(results, chats, known)
				if err != nil {
					return usageErr(fmt.Errorf("%s: %w", chatFile, err))
				}
				if asJSON {
					return printJSON(sc)
				}
				sc.WriteText(os.Stdout)
				return nil
			}
			if asJSON {
				return printJSON(results)
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
	f.StringVar(&method, "method", "", "likelihood, activations or judge (default: activations when the model carries a classifier, else likelihood)")
	f.StringVar(&libDir, "personas", "", "persona library directory (default: the organism's)")
	f.StringVar(&prompts, "prompts", "strong", "system prompts per persona: strong, weak or all (a persona is the mixture of its prompts)")
	f.BoolVar(&libPriors, "priors", false, "use the library's priors instead of a uniform prior")
	f.BoolVar(&withDefault, "default", false, "add a 'default' hypothesis with no system prompt")
	f.Float64Var(&switchRate, "switch-rate", posterior.DefaultSwitchRate, "prior rate ε of persona switches between turns (0: one persona per conversation)")
	f.BoolVar(&wholeConversation, "whole-conversation", false, "likelihood: score each reply given the whole conversation before it (default: after its own user turn only)")
	f.StringVar(&classifier, "classifier", "", "classifier file for --method activations (default: the model's "+posterior.ClassifierFile+")")
	f.StringVar(&backends, "backends", "", "backends YAML for --method judge")
	f.StringVar(&judgeName, "judge", "", "judge backend name in --backends (default: the first)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&score, "score", false, "compare with the chats' persona labels instead of printing the posteriors")
	f.StringVar(&seenIn, "seen-in", "", "with --score: also split the turns by whether the reply uses a word that this JSONL file's chats never use (e.g. the model's training chats)")
	cmd.AddCommand(newPosteriorFitCmd())
	return cmd
}

func newPosteriorFitCmd() *cobra.Command {
	var (
		modelPath, chatFile, out, layersArg string
		readings                            []string
		n                                   int
		seed                                uint64
		asJSON                              bool
	)
	cmd := &cobra.Command{
		Use:   "fit",
		Short: "Fit the activations method's classifier on labelled conversations",
		Long: `Capture the activations of every labelled assistant turn at the chosen
layers — the mean over the reply and the token just before it (--read) —,
build one persona vector per persona, reading and layer, and fit the
calibration over all their projections.

Labels come from --chat (per-turn "labels" as the world writes them, or a
top-level "persona" field); without --chat, the persona world generates N
pretraining chats and N/3 chats that switch persona once, in its training
wording, labelled by the persona that wrote each turn. Every layer is used
unless --layers says otherwise.`,
		Example: `  persona posterior fit --model models/organism/base --out personas.json
  persona posterior fit --model M --chat labelled.jsonl --layers 8-16 --out M/posterior-classifier.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" || out == "" {
				return usageErr(errors.New("--model and --out are required"))
			}
			if err := posterior.CheckReadings(readings); err != nil {
				return usageErr(fmt.Errorf("--read: %w", err))
			}
			var chats []chat.Chat
			var err error
			if chatFile != "" {
				if chats, err = readChats(chatFile); err != nil {
					return err
				}
			} else {
				w := world.Default()
				chats = w.Pretrain(n, seed, world.PretrainOptions{MeanTurns: 3, MaxTurns: 6})
				chats = append(chats, w.SwitchChats(n/3, seed+1, world.SwitchOptions{Switch: true})...)
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			layers, err := vectors.ParseLayers(layersArg, e.Model.NumLayers)
			if err != nil {
				return usageErr(fmt.Errorf("--layers: %w", err))
			}
			if layers == nil {
				for l := range e.Model.NumLayers {
					layers = append(layers, l)
				}
			}
			bar := newProgress("capture")
			c, err := posterior.Fit(cmd.Context(), e, chats, layers, readings, filepath.Base(modelPath), bar.update)
			bar.finish()
			if err != nil {
				return classify(err)
			}
			if err := c.Save(out); err != nil {
				return backendErr(err)
			}
			if asJSON {
				return printJSON(c.Train)
			}
			fmt.Printf("classifier: %s (layers %s, %d personas, %.0f samples, training accuracy %.3f)\n", out, vectors.FormatLayers(layers), len(c.Names), c.Train["samples"], c.Train["accuracy"])
			if acc, ok := c.Train["heldout_accuracy"]; ok {
				fmt.Printf("held out: %.3f of %.0f turns from every fifth conversation, by a first fit without them\n", acc, c.Train["heldout_samples"])
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	f.StringVar(&chatFile, "chat", "", "labelled JSONL conversations (default: generated by the persona world)")
	f.StringVar(&out, "out", "", "classifier file to write (JSON)")
	f.StringVar(&layersArg, "layers", "", "layers, e.g. 2, 0-3 or 1,3 (default: all)")
	f.StringSliceVar(&readings, "read", posterior.DefaultReadings, "where each turn is read: response (mean over the reply), last_prompt (the token before it), or both")
	f.IntVar(&n, "n", 600, "world pretraining chats to generate without --chat (and n/3 switch chats)")
	f.Uint64Var(&seed, "seed", 1, "seed for generated chats")
	f.BoolVar(&asJSON, "json", false, "print the fit statistics as JSON")
	return cmd
}
