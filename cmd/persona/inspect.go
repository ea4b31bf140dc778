package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"persona/engine"
	"persona/models"
)

// modelInfo is what `persona inspect` reports.
type modelInfo struct {
	Path          string  `json:"path"`
	Source        string  `json:"source"`
	Architecture  string  `json:"architecture"`
	Layers        int     `json:"layers"`
	Hidden        int     `json:"hidden"`
	FFN           int     `json:"ffn"`
	Heads         int     `json:"heads"`
	KVHeads       int     `json:"kv_heads"`
	HeadDim       int     `json:"head_dim"`
	Vocab         int     `json:"vocab"`
	Context       int     `json:"context"`
	Params        int64   `json:"params"`
	WeightBytes   int64   `json:"weight_bytes"`
	RoPE          string  `json:"rope"`
	RoPETheta     float64 `json:"rope_theta"`
	TiedEmbedding bool    `json:"tied_embedding"`
	Tokenizer     string  `json:"tokenizer"`
	BOS           string  `json:"bos,omitempty"`
	EOS           string  `json:"eos,omitempty"`
	ChatTemplate  bool    `json:"chat_template"`
}

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [MODEL]",
		Short: "Show a model's architecture, size, tokenizer and chat template",
		Example: `  persona inspect                       # the embedded organism
  persona inspect organism-base
  persona inspect model.gguf --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{models.Default}
			}
			e, err := loadEngine(args[0], engine.Options{})
			if err != nil {
				return usageErr(err)
			}
			defer e.Close()
			m := e.Model
			info := modelInfo{
				Path: args[0], Source: m.Source, Architecture: m.HFArch,
				Layers: m.NumLayers, Hidden: m.Hidden, FFN: m.FFN, Heads: m.Heads, KVHeads: m.KVHeads,
				HeadDim: m.HeadDim, Vocab: m.Vocab, Context: m.MaxSeq, Params: m.ParamCount(), WeightBytes: m.WeightBytes(),
				RoPE: m.RoPEStyle.String(), RoPETheta: m.RoPETheta, TiedEmbedding: m.TiedEmbedding,
				Tokenizer:    fmt.Sprintf("%s, %d tokens", e.Tokenizer.Kind(), e.Tokenizer.VocabSize()),
				ChatTemplate: e.Template != nil,
			}
			if m.RoPEScaling != "" {
				info.RoPE += " (" + m.RoPEScaling + " scaling)"
			}
			if id := e.Tokenizer.BOS(); id >= 0 {
				info.BOS = e.Tokenizer.Token(id)
			}
			if id := e.Tokenizer.EOS(); id >= 0 {
				info.EOS = e.Tokenizer.Token(id)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
			row("model", info.Source)
			row("architecture", info.Architecture)
			row("parameters", fmt.Sprintf("%d (%.1f MB of weights)", info.Params, float64(info.WeightBytes)/1e6))
			row("layers", info.Layers)
			row("hidden / ffn", fmt.Sprintf("%d / %d", info.Hidden, info.FFN))
			row("heads (kv) × dim", fmt.Sprintf("%d (%d) × %d", info.Heads, info.KVHeads, info.HeadDim))
			row("vocabulary", info.Vocab)
			row("context", info.Context)
			row("rope", fmt.Sprintf("%s, theta %g", info.RoPE, info.RoPETheta))
			row("tied embeddings", info.TiedEmbedding)
			row("tokenizer", info.Tokenizer)
			row("bos / eos", fmt.Sprintf("%q / %q", info.BOS, info.EOS))
			row("chat template", info.ChatTemplate)
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
