package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/chat"
	"persona/gguf"
	"persona/model"
)

// gemmaTemplate is the shape of Gemma's chat template: turns between
// <start_of_turn> and <end_of_turn>, the assistant called "model".
const gemmaTemplate = `{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}
{{ m['content'] | trim }}<end_of_turn>
{% endfor %}{% if add_generation_prompt %}<start_of_turn>model
{% endif %}`

// A Gemma 3 GGUF (random weights, a Gemma-style vocabulary and template)
// chats end to end: the template comes from the file, <end_of_turn> ends a
// reply though the file's EOS is <eos>, and the engine's greedy reply is the
// model's own argmax continuation.
func TestGemmaGGUFChats(t *testing.T) {
	cfg, err := model.ParseHFConfig([]byte(`{"architectures": ["Gemma3ForCausalLM"], "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1,
		"head_dim": 16, "vocab_size": 400, "max_position_embeddings": 512, "query_pre_attn_scalar": 16,
		"sliding_window": 8, "sliding_window_pattern": 3, "rope_theta": 1000000.0}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.NewRandom(*cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	toks := []string{"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"}
	types := []int32{3, 3, 3, 2, 3, 3}
	for b := range 256 {
		toks, types = append(toks, fmt.Sprintf("<0x%02X>", b)), append(types, 6)
	}
	for _, p := range []string{"user", "model", "\n", "▁", "▁Hello", "▁there"} {
		toks, types = append(toks, p), append(types, 1)
	}
	for len(toks) < cfg.Vocab {
		toks, types = append(toks, fmt.Sprintf("▁w%d", len(toks))), append(types, 1)
	}
	scores := make([]float32, len(toks))
	for i := range scores {
		scores[i] = -float32(i)
	}
	path := filepath.Join(t.TempDir(), "gemma3.gguf")
	if err := m.WriteGGUF(path, []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.add_space_prefix", Value: false},
		{Key: "tokenizer.chat_template", Value: gemmaTemplate},
	}); err != nil {
		t.Fatal(err)
	}
	e := load(t, path)
	if e.Model.Arch != "gemma3" || !e.Model.GELU || e.Model.SlidingPattern != 3 {
		t.Fatalf("loaded %s: %+v", e.Model.Arch, e.Model.Config)
	}
	if !e.Stop[5] || !e.Stop[1] {
		t.Errorf("stop tokens %v: want <eos> (1) and <end_of_turn> (5)", e.Stop)
	}
	msgs := []chat.Message{{Role: "user", Content: "Hello there"}}
	r, err := e.Template.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<bos><start_of_turn>user\nHello there<end_of_turn>\n<start_of_turn>model\n"; r.Text != want {
		t.Fatalf("rendered %q, want %q", r.Text, want)
	}
	rep, err := e.Reply(context.Background(), msgs, ReplyOptions{MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.IDs) == 0 {
		t.Fatalf("empty reply (stop %s): nothing to check", rep.Stop)
	}
	t.Logf("%d reply tokens, stop %s", len(rep.IDs), rep.Stop)
	prompt := rep.PromptIDs
	ids := append(slices.Clone(prompt), rep.IDs...)
	logits := e.Model.Forward(e.Model.NewState(), ids[:len(ids)-1], nil, model.AllLogits)
	for i := len(prompt) - 1; i < len(ids)-1; i++ {
		row := logits[i*cfg.Vocab : (i+1)*cfg.Vocab]
		best := 0
		for v := range row {
			if row[v] > row[best] {
				best = v
			}
		}
		if best != ids[i+1] {
			t.Fatalf("reply token %d is %d, the argmax is %d", i+1-len(prompt), ids[i+1], best)
		}
	}
	if strings.Contains(rep.Text, "<end_of_turn>") {
		t.Errorf("reply %q carries the end-of-turn marker", rep.Text)
	}
}
