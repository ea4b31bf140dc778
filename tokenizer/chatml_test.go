package tokenizer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/tokenizer"
)

// TestChatMLConfig saves the trained tokenizer, reads tokenizer_config.json
// back with package chat, renders a conversation with its ChatML template,
// and checks that the engine's span logic (EncodeChat) finds every message's
// content as exactly its own tokens.
func TestChatMLConfig(t *testing.T) {
	trained, _, err := tokenizer.TrainedForTest()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := trained.Save(dir); err != nil {
		t.Fatal(err)
	}
	cfg, err := chat.LoadConfig(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Template != tokenizer.ChatMLTemplate || cfg.BOS != tokenizer.BeginOfText || cfg.EOS != tokenizer.IMEnd || !cfg.AddBOS || cfg.AddEOS {
		t.Fatalf("config: template %q BOS %q EOS %q add_bos %v add_eos %v", cfg.Template, cfg.BOS, cfg.EOS, cfg.AddBOS, cfg.AddEOS)
	}
	tmpl, err := chat.NewTemplate(cfg.Template, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := tok.ID(tokenizer.IMEnd); tok.EOS() != id {
		t.Errorf("Load with the config: EOS %d, want <|im_end|> %d", tok.EOS(), id)
	}
	msgs := []chat.Message{
		{Role: "system", Content: "You are a pirate. Speak like one."},
		{Role: "user", Content: "What is 17+25?"},
		{Role: "assistant", Content: "Arr, 'tis 42, matey!"},
		{Role: "user", Content: "  And the capital of France?\n"},
		{Role: "assistant", Content: "Paris, ye landlubber. 🏴‍☠️"},
	}
	r, err := tmpl.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|begin_of_text|><|im_start|>system\nYou are a pirate. Speak like one.<|im_end|>\n" +
		"<|im_start|>user\nWhat is 17+25?<|im_end|>\n<|im_start|>assistant\nArr, 'tis 42, matey!<|im_end|>\n" +
		"<|im_start|>user\n  And the capital of France?\n<|im_end|>\n" +
		"<|im_start|>assistant\nParis, ye landlubber. 🏴‍☠️<|im_end|>\n<|im_start|>assistant\n"
	if r.Text != want {
		t.Fatalf("rendered\n%q\nwant\n%q", r.Text, want)
	}
	e := &engine.Engine{Tokenizer: tok, Template: tmpl}
	enc, err := e.EncodeChat(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc.Spans) != len(msgs) {
		t.Fatalf("%d spans for %d messages", len(enc.Spans), len(msgs))
	}
	for _, sp := range enc.Spans {
		// ChatML puts a newline before and <|im_end|> after every content,
		// and the pre-tokenizer splits there, so a span is exactly the
		// content's tokens: no token is shared with the template.
		if got := tok.Decode(enc.IDs[sp.Start:sp.End]); got != msgs[sp.Message].Content {
			t.Errorf("message %d (%s): span decodes to %q, want %q", sp.Message, sp.Role, got, msgs[sp.Message].Content)
		}
		if end, _ := tok.ID(tokenizer.IMEnd); enc.IDs[sp.End] != end {
			t.Errorf("message %d: token after the span is %d, want <|im_end|>", sp.Message, enc.IDs[sp.End])
		}
	}
	if enc.IDs[0] != tok.BOS() || tok.Decode(enc.IDs) != enc.Text {
		t.Errorf("chat tokens do not start with BOS or do not decode to the rendered text")
	}
	// The tokenizer_config.json is the standard one.
	data, _ := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	for _, k := range []string{`"pad_token": "<|pad|>"`, `"added_tokens_decoder"`, `"tokenizer_class": "PreTrainedTokenizerFast"`} {
		if !strings.Contains(string(data), k) {
			t.Errorf("tokenizer_config.json lacks %s", k)
		}
	}
}
