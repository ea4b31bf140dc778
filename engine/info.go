package engine

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Info describes a loaded model: what `persona inspect` prints.
type Info struct {
	Source       string `json:"source"`
	Architecture string `json:"architecture"`
	Layers       int    `json:"layers"`
	Hidden       int    `json:"hidden"`
	FFN          int    `json:"ffn"`
	Heads        int    `json:"heads"`
	KVHeads      int    `json:"kv_heads"`
	HeadDim      int    `json:"head_dim"`
	Vocab        int    `json:"vocab"`
	Context      int    `json:"context"`
	Params       int64  `json:"params"`
	WeightBytes  int64  `json:"weight_bytes"`
	// Storage counts the weight tensors by storage type (F32, Q4_K, …).
	Storage       map[string]int `json:"storage"`
	RoPE          string         `json:"rope"`
	RoPETheta     float64        `json:"rope_theta"`
	TiedEmbedding bool           `json:"tied_embedding"`
	Tokenizer     string         `json:"tokenizer"`
	BOS           string         `json:"bos,omitempty"`
	EOS           string         `json:"eos,omitempty"`
	ChatTemplate  bool           `json:"chat_template"`
}

// Info describes the model.
func (e *Engine) Info() Info {
	m := e.Model
	info := Info{
		Source: m.Source, Architecture: m.HFArch,
		Layers: m.NumLayers, Hidden: m.Hidden, FFN: m.FFN, Heads: m.Heads, KVHeads: m.KVHeads,
		HeadDim: m.HeadDim, Vocab: m.Vocab, Context: m.MaxSeq, Params: m.ParamCount(), WeightBytes: m.WeightBytes(), Storage: m.StorageTypes(),
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
	return info
}

// WriteText prints the description as a two-column table.
func (i Info) WriteText(out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("model", i.Source)
	row("architecture", i.Architecture)
	row("parameters", fmt.Sprintf("%d (%.1f MB of weights)", i.Params, float64(i.WeightBytes)/1e6))
	var types []string
	for _, t := range slices.Sorted(maps.Keys(i.Storage)) {
		types = append(types, fmt.Sprintf("%s ×%d", t, i.Storage[t]))
	}
	row("weight storage", strings.Join(types, ", "))
	row("layers", i.Layers)
	row("hidden / ffn", fmt.Sprintf("%d / %d", i.Hidden, i.FFN))
	row("heads (kv) × dim", fmt.Sprintf("%d (%d) × %d", i.Heads, i.KVHeads, i.HeadDim))
	row("vocabulary", i.Vocab)
	row("context", i.Context)
	row("rope", fmt.Sprintf("%s, theta %g", i.RoPE, i.RoPETheta))
	row("tied embeddings", i.TiedEmbedding)
	row("tokenizer", i.Tokenizer)
	row("bos / eos", fmt.Sprintf("%q / %q", i.BOS, i.EOS))
	row("chat template", i.ChatTemplate)
	return w.Flush()
}
