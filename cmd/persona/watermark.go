package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"persona/chat"
	"persona/engine"
	"persona/internal/fileio"
	"persona/sample"
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
	wm := w.wm
	wm.Scheme, wm.Key = w.scheme, key
	if err := (sample.Params{Temperature: 1, Watermark: &wm}).Validate(); err != nil {
		return nil, usageErr(err)
	}
	return &wm, nil
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
	cmd.AddCommand(newWatermarkKeygenCmd(), newWatermarkDetectCmd())
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
