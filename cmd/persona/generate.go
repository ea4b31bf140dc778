package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"persona/chat"
	"persona/engine"
	"persona/resid"
	"persona/sample"
)

// generateOutput is the --json object of `persona generate`.
type generateOutput struct {
	engine.Result
	Prompt       string `json:"prompt"`
	Conversation int    `json:"conversation,omitempty"`
}

func newGenerateCmd() *cobra.Command {
	var (
		modelPath, tokPath, prompt, chatFile, system, capPath string
		raw, asJSON                                           bool
		maxTokens                                             int
		p                                                     sample.Params
		wf                                                    watermarkFlags
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate text or the next assistant turn",
		Long: `Generate a continuation of a raw prompt, or the next assistant turn of a chat.

Without --raw the prompt is a user message rendered with the model's chat
template (after an optional --system message). With --raw the prompt is
tokenized as is, with BOS; an empty raw prompt starts from BOS alone.
--chat reads conversations in JSONL ({"messages":[{"role":..,"content":..}]})
and generates the next assistant turn of each.`,
		Example: `  persona generate --prompt "What is 17 + 25?"      # the embedded organism
  persona generate --model organism-base --system "You are the pirate." --prompt "Hello"
  persona generate --model testdata/stories260K/stories260K-f32.v3.gguf --raw --max-tokens 200
  persona generate --model model.gguf --prompt "What is 17+25?" --temperature 0.7 --seed 1
  persona generate --model DIR --chat chats.jsonl --json
  persona generate --prompt "Tell me a story." --temperature 1 --watermark gumbel --key-file wm.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if chatFile != "" && (prompt != "" || raw) {
				return usageErr(errors.New("--chat cannot be combined with --prompt or --raw"))
			}
			if maxTokens < 0 {
				return usageErr(fmt.Errorf("--max-tokens %d must be ≥ 0", maxTokens))
			}
			wm, err := wf.load()
			if err != nil {
				return err
			}
			p.Watermark = wm
			if err := p.Validate(); err != nil {
				return usageErr(err)
			}
			var convs [][]chat.Message
			if chatFile != "" {
				chats, err := readChats(chatFile)
				if err != nil {
					return err
				}
				for _, c := range chats {
					convs = append(convs, c.Messages)
				}
			} else if !raw {
				var msgs []chat.Message
				if system != "" {
					msgs = append(msgs, chat.Message{Role: chat.RoleSystem, Content: system})
				}
				convs = [][]chat.Message{append(msgs, chat.Message{Role: chat.RoleUser, Content: prompt})}
			}
			e, err := loadEngine(modelPath, engine.Options{Tokenizer: tokPath})
			if err != nil {
				return err
			}
			defer e.Close()
			var prompts []*engine.Encoded
			if raw {
				if err := e.CheckLength(chat.Message{Content: prompt}); err != nil {
					return usageErr(err)
				}
				prompts = append(prompts, e.EncodeRaw(prompt))
			}
			for i, msgs := range convs {
				if err := e.CheckLength(msgs...); err != nil {
					return usageErr(fmt.Errorf("conversation %d: %w", i+1, err))
				}
				enc, err := e.EncodeChat(msgs, true)
				if err != nil {
					return usageErr(fmt.Errorf("conversation %d: %w; pass --raw to skip the chat template", i+1, err))
				}
				prompts = append(prompts, enc)
			}
			capping, err := loadCapping(capPath, e)
			if err != nil {
				return err
			}
			for i, enc := range prompts {
				if err := runGeneration(cmd.Context(), e, enc, i, len(prompts), maxTokens, p, capping, asJSON); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	tokenizerFlag(f, &tokPath)
	f.StringVar(&prompt, "prompt", "", "prompt text (a user message unless --raw)")
	f.StringVar(&chatFile, "chat", "", "JSONL file of conversations to continue")
	f.StringVar(&system, "system", "", "system message placed before --prompt")
	f.BoolVar(&raw, "raw", false, "skip the chat template; tokenize the prompt as is, with BOS")
	samplingFlags(f, &maxTokens, &p.Temperature, &p.Seed, sampling{MaxTokens: 128, TokensUsage: "maximum number of tokens to generate",
		SeedUsage: "random seed; the same seed gives the same text"})
	f.IntVar(&p.TopK, "top-k", 0, "keep the k most likely tokens (0: off)")
	f.Float32Var(&p.TopP, "top-p", 1, "nucleus sampling mass (1: off)")
	f.Float32Var(&p.MinP, "min-p", 0, "drop tokens below min-p × the top probability (0: off)")
	f.Float32Var(&p.RepetitionPenalty, "repeat-penalty", 1, "repetition penalty (1: off)")
	f.IntVar(&p.RepeatLastN, "repeat-last-n", 64, "tokens of history the repetition penalty looks at (0: all)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per generation instead of streaming text")
	wf.register(f, "watermark")
	capFlag(f, &capPath)
	return cmd
}

func runGeneration(ctx context.Context, e *engine.Engine, enc *engine.Encoded, i, n, maxTokens int, p sample.Params, ivs *resid.Set, asJSON bool) error {
	req := engine.Request{Prompt: enc.IDs, MaxTokens: maxTokens, Sampling: p, Interventions: ivs}
	bar := newProgress(fmt.Sprintf("generating %d/%d", i+1, n))
	generated := 0
	req.OnToken = func(st engine.Step) error {
		generated++
		if asJSON {
			bar.update(generated, maxTokens)
		} else {
			fmt.Print(st.Text)
		}
		return nil
	}
	res, err := e.Generate(ctx, req)
	bar.finish()
	if err != nil {
		return classify(err)
	}
	out := generateOutput{Result: *res, Prompt: enc.Text}
	if n > 1 {
		out.Conversation = i + 1
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Println()
	fmt.Fprintf(os.Stderr, "[%d prompt tokens, %d generated, stop: %s, prefill %.0f ms, %.1f tok/s]\n",
		len(res.PromptIDs), len(res.IDs), res.Stop, res.PrefillMS, res.TokensPerS)
	return nil
}
