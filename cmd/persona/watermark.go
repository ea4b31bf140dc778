package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"persona/chat"
	"persona/engine"
	"persona/internal/fileio"
	"persona/sample"
	"persona/watermark"
	"persona/world"
)

// watermarkFlags are the flags that select a watermark and its key.
type watermarkFlags struct {
	scheme, keyFile, keyEnv string
	wm                      sample.Watermark
}

func (w *watermarkFlags) register(f *pflag.FlagSet, schemeFlag string) {
	f.StringVar(&w.scheme, schemeFlag, "", "watermark scheme: green (biased green list) or gumbel (distortion-free)")
	f.StringVar(&w.keyFile, "key-file", "", "file holding the watermark key (persona watermark keygen writes one)")
	f.StringVar(&w.keyEnv, "key-env", "", "environment variable holding the watermark key")
	f.Float64Var(&w.wm.Gamma, "gamma", 0.25, "green share of the vocabulary (green)")
	f.Float32Var(&w.wm.Delta, "delta", 2, "bias added to green logits (green)")
	f.IntVar(&w.wm.Context, "context", 1, "previous tokens that key each step")
}

// load returns the watermark, or nil when no scheme was asked for. The key
// comes from a file or the environment and never appears in output.
func (w *watermarkFlags) load() (*sample.Watermark, error) {
	if w.scheme == "" {
		if w.keyFile != "" || w.keyEnv != "" {
			return nil, usageErr(errors.New("a watermark key was given without a scheme"))
		}
		return nil, nil
	}
	key, err := w.key()
	if err != nil {
		return nil, err
	}
	wm := w.wm
	wm.Scheme, wm.Key = w.scheme, key
	if err := (sample.Params{Temperature: 1, Watermark: &wm}).Validate(); err != nil {
		return nil, usageErr(err)
	}
	return &wm, nil
}

// key reads the key from --key-file or --key-env.
func (w *watermarkFlags) key() ([]byte, error) {
	var key []byte
	switch {
	case w.keyFile != "" && w.keyEnv != "":
		return nil, usageErr(errors.New("give the watermark key with --key-file or --key-env, not both"))
	case w.keyFile != "":
		data, err := os.ReadFile(w.keyFile)
		if err != nil {
			return nil, usageErr(fmt.Errorf("watermark key: %w", err))
		}
		key = []byte(strings.TrimSpace(string(data)))
	case w.keyEnv != "":
		key = []byte(strings.TrimSpace(os.Getenv(w.keyEnv)))
	}
	if len(key) == 0 {
		return nil, usageErr(fmt.Errorf("%w: the watermark needs a key (--key-file or --key-env, not empty)", sample.ErrWatermark))
	}
	return key, nil
}

func newWatermarkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watermark",
		Short: "Make keys for watermarked generation and detect the watermark in text",
		Long: `A watermark is a keyed statistical signal in the tokens a model samples
(persona generate --watermark): whoever holds the key can show that a text came
from the model; without the key it cannot be seen or forged. "green" adds a bias
to a keyed share of the vocabulary at every step (Kirchenbauer et al.); "gumbel"
chooses each token by a keyed exponential-minimum draw, which leaves the
distribution of every generation unchanged (Aaronson).`,
	}
	cmd.AddCommand(newWatermarkKeygenCmd(), newWatermarkDetectCmd(), newWatermarkEvalCmd())
	return cmd
}

func newWatermarkKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:     "keygen",
		Short:   "Write a new random watermark key (32 bytes, hex) to a file only you can read",
		Example: "  persona watermark keygen --out wm.key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("--out is required"))
			}
			if _, err := os.Stat(out); err == nil {
				return usageErr(fmt.Errorf("%s exists; a new key would orphan every text marked with the old one", out))
			}
			var b [32]byte
			if _, err := rand.Read(b[:]); err != nil {
				return backendErr(err)
			}
			key := []byte(hex.EncodeToString(b[:]))
			if err := fileio.WriteFileAtomic(out, append(key, '\n')); err != nil {
				return backendErr(err)
			}
			if err := os.Chmod(out, 0o600); err != nil {
				return backendErr(err)
			}
			fmt.Printf("wrote %s (key id %s)\n", out, sample.KeyID(key))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "key file to write")
	return cmd
}

func newWatermarkDetectCmd() *cobra.Command {
	var (
		modelPath, text, file, ids string
		wf                         watermarkFlags
		window                     int
		alpha                      float64
		asJSON                     bool
	)
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Test a text (or token ids) for a watermark",
		Long: `Test a text for the watermark of a key: the text is tokenized with the model's
tokenizer (the one that generated it), each (context, token) pair is counted
once, and the result is a z-score and an exact p-value: the probability of a
score this high in text without the watermark. With --window the test also
slides over the text to find the watermarked stretches inside a longer one.`,
		Example: `  persona watermark detect --scheme gumbel --key-file wm.key --file reply.txt
  persona watermark detect --scheme green --key-env WM_KEY --text "..." --window 50 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wf.scheme == "" {
				return usageErr(fmt.Errorf("--scheme is required (%s)", strings.Join(sample.Schemes, " or ")))
			}
			wm, err := wf.load()
			if err != nil {
				return err
			}
			var tokens []int
			if ids != "" {
				for _, f := range strings.Split(ids, ",") {
					id, err := strconv.Atoi(strings.TrimSpace(f))
					if err != nil {
						return usageErr(fmt.Errorf("--ids: %q is not a token id", f))
					}
					tokens = append(tokens, id)
				}
			} else {
				if file != "" {
					data, err := os.ReadFile(file)
					if err != nil {
						return usageErr(err)
					}
					text = string(data)
				}
				if text == "" {
					return usageErr(errors.New("give the text with --text, --file or --ids"))
				}
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			if tokens == nil {
				if err := e.CheckLength(chat.Message{Role: chat.RoleUser, Content: text}); err != nil {
					return usageErr(err)
				}
				tokens = e.Tokenizer.Encode(text, false)
				// Text this tokenizer cannot spell back came from elsewhere:
				// a score on its tokens would say nothing.
				if back := e.Tokenizer.DecodeSkipSpecial(tokens); back != text {
					return usageErr(fmt.Errorf("the text does not survive this model's tokenizer (%d tokens decode to a different text): it was not written with %s's vocabulary", len(tokens), modelPath))
				}
			} else if err := e.Model.CheckIDs(tokens); err != nil {
				return usageErr(fmt.Errorf("--ids: %w: were they made by another tokenizer?", err))
			}
			d, err := wm.Detect(tokens)
			if err != nil {
				return usageErr(err)
			}
			var spans []sample.Span
			if window > 0 {
				if spans, err = wm.DetectSpans(tokens, window, alpha); err != nil {
					return usageErr(err)
				}
			}
			if asJSON {
				return printJSON(map[string]any{"key_id": sample.KeyID(wm.Key), "detection": d, "spans": spans})
			}
			fmt.Printf("%s watermark, key %s: %d tokens scored, z %.2f, p %.3g\n", d.Scheme, sample.KeyID(wm.Key), d.Tokens, d.Z, d.PValue)
			for _, s := range spans {
				fmt.Printf("  tokens %d–%d: z %.2f, p %.3g\n", s.Start, s.End, s.Z, s.PValue)
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model whose tokenizer generated the text")
	f.StringVar(&text, "text", "", "text to test")
	f.StringVar(&file, "file", "", "file holding the text to test")
	f.StringVar(&ids, "ids", "", "token ids to test, comma-separated (instead of text)")
	wf.register(f, "scheme")
	f.IntVar(&window, "window", 0, "also test windows of this many tokens and report the watermarked stretches")
	f.Float64Var(&alpha, "alpha", 1e-4, "p-value below which a window counts as watermarked")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newWatermarkEvalCmd() *cobra.Command {
	var (
		modelPath, source, chatFile, prompt, schemes string
		human                                        []string
		wf                                           watermarkFlags
		o                                            watermark.Options
		g                                            watermark.Generation
		turns                                        int
		domains                                      []string
		asJSON                                       bool
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure the watermarks: detection by length, false positives, robustness to edits, quality cost",
		Long: `Generate unmarked texts and marked texts for every scheme from the same
requests, and report: the share of marked texts detected at p < --alpha from
their first 25, 50, 100 and 200 tokens; the share of unmarked texts and of
human-written text (--human files, and for the world source the world's own
chats) flagged at the same threshold; detection after 10/20/30% of the tokens
are substituted, inserted or deleted; task accuracy and perplexity under the
unmarked model; and per reply kind the entropy and the evidence a token
carries, which is why short low-entropy replies (sums) cannot be marked.

Sources: "world" (default) runs world conversations with the Assistant, every
turn's reply part of one text, graded by the oracle; "chat" continues each
conversation of --chat; "raw" continues --prompt (default: empty, BOS only)
past end-of-sequence tokens, for any model. Without a key a random one is
made for the run.`,
		Example: `  persona watermark eval --texts 200 --nulls 10000         # the organism, both schemes
  persona watermark eval --domains task --turns 2 --texts 1000 --nulls 1000   # quality: sums and facts
  persona watermark eval --model DIR --source raw --max-tokens 200 --texts 100 --nulls 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key := make([]byte, 32)
			rand.Read(key)
			if wf.keyFile != "" || wf.keyEnv != "" {
				var err error
				if key, err = wf.key(); err != nil {
					return err
				}
			}
			for _, name := range strings.Split(schemes, ",") {
				wm := wf.wm
				wm.Scheme, wm.Key = strings.TrimSpace(name), key
				o.Schemes = append(o.Schemes, wm)
			}
			if turns < 1 || g.MaxTokens < 1 {
				return usageErr(fmt.Errorf("--turns %d and --max-tokens %d must be ≥ 1", turns, g.MaxTokens))
			}
			e, err := loadEngine(modelPath, engine.Options{})
			if err != nil {
				return err
			}
			defer e.Close()
			o.Vocab = e.Model.Vocab
			var src watermark.Source
			switch source {
			case "world":
				w := world.Default()
				wo := watermark.WorldOptions{Generation: g, Turns: turns}
				for _, d := range domains {
					if !slices.Contains(world.Domains, world.Domain(d)) {
						return usageErr(fmt.Errorf("--domains: unknown domain %q (want %v)", d, world.Domains))
					}
					wo.Domains = append(wo.Domains, world.Domain(d))
				}
				if src, err = watermark.WorldSource(w, e, o.Nulls, wo); err != nil {
					return usageErr(err)
				}
				// The world's own text: the assistant turns of its chats.
				var b strings.Builder
				for _, c := range w.Pretrain(200, g.Seed+1, world.DefaultPretrain()) {
					for _, m := range c.Messages {
						if m.Role == chat.RoleAssistant {
							b.WriteString(m.Content + "\n")
						}
					}
				}
				o.Human = append(o.Human, chunks(e.Tokenizer.Encode(b.String(), false), slices.Max(append(o.Lengths, 200)))...)
			case "chat", "raw":
				var prompts [][]int
				if source == "chat" {
					chats, err := readChats(chatFile)
					if err != nil {
						return err
					}
					for i, c := range chats {
						if err := e.CheckLength(c.Messages...); err != nil {
							return usageErr(fmt.Errorf("conversation %d: %w", i+1, err))
						}
						enc, err := e.EncodeChat(c.Messages, true)
						if err != nil {
							return usageErr(fmt.Errorf("conversation %d: %w", i+1, err))
						}
						prompts = append(prompts, enc.IDs)
					}
				} else {
					prompts = [][]int{e.EncodeRaw(prompt).IDs}
				}
				if src, err = watermark.PromptSource(e, prompts, g, source == "raw"); err != nil {
					return usageErr(err)
				}
			default:
				return usageErr(fmt.Errorf("--source %q: want world, chat or raw", source))
			}
			for _, f := range human {
				data, err := os.ReadFile(f)
				if err != nil {
					return usageErr(err)
				}
				o.Human = append(o.Human, chunks(e.Tokenizer.Encode(string(data), false), slices.Max(append(o.Lengths, 200)))...)
			}
			bar := newProgress("generating")
			o.Progress = bar.update
			rep, err := watermark.Evaluate(cmd.Context(), src, o)
			bar.finish()
			if err != nil {
				if errors.Is(err, watermark.ErrOptions) || errors.Is(err, sample.ErrWatermark) {
					return usageErr(err)
				}
				return classify(err)
			}
			if asJSON {
				return printJSON(rep)
			}
			fmt.Printf("key %s; %d unmarked texts, %d marked per scheme\n\n", sample.KeyID(key), rep.Nulls, rep.Texts)
			return rep.WriteTable(os.Stdout)
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model to measure")
	f.StringVar(&source, "source", "world", "where the texts come from: world, chat or raw")
	f.StringVar(&chatFile, "chat", "", "JSONL conversations to continue (--source chat)")
	f.StringVar(&prompt, "prompt", "", "raw prompt to continue (--source raw)")
	f.StringVar(&schemes, "schemes", "green,gumbel", "schemes to compare, comma-separated")
	f.StringSliceVar(&human, "human", nil, "text files written by people, tested for false positives (repeatable)")
	f.StringVar(&wf.keyFile, "key-file", "", "watermark key file (default: a random key for this run)")
	f.StringVar(&wf.keyEnv, "key-env", "", "environment variable holding the watermark key")
	f.Float64Var(&wf.wm.Gamma, "gamma", 0.25, "green share of the vocabulary (green)")
	f.Float32Var(&wf.wm.Delta, "delta", 2, "bias added to green logits (green)")
	f.IntVar(&wf.wm.Context, "context", 1, "previous tokens that key each step")
	f.IntVar(&o.Texts, "texts", 200, "marked texts per scheme")
	f.IntVar(&o.Nulls, "nulls", 10000, "unmarked texts (false-positive rate)")
	f.IntSliceVar(&o.Lengths, "lengths", []int{25, 50, 100, 200}, "prefix lengths at which detection is tested")
	f.Float64Var(&o.Alpha, "alpha", 1e-4, "p-value threshold of a detection")
	f.IntVar(&turns, "turns", 10, "user turns per world conversation")
	f.StringSliceVar(&domains, "domains", nil, "world domains of the conversations (default all: task, writing, emotional, meta, pressure)")
	f.IntVar(&g.MaxTokens, "max-tokens", 64, "tokens per reply (world, chat) or per text (raw)")
	f.IntVar(&g.Opening, "opening", 0, "chat and raw: tokens sampled unmarked before each text, so texts from one prompt start apart")
	f.Float32Var(&g.Temperature, "temperature", 1, "sampling temperature")
	f.Uint64Var(&g.Seed, "seed", 1, "random seed of requests and sampling")
	f.IntVar(&o.Workers, "workers", 2, "texts generated in parallel")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// chunks cuts ids into pieces of n tokens (the last may be shorter).
func chunks(ids []int, n int) [][]int {
	var out [][]int
	for len(ids) > n {
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}
