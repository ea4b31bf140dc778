package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// miniJSON synthesizes a small byte-level tokenizer.json: the 256 byte
// tokens, a few merges, two added tokens and a BOS template. edit may change
// the document before it is serialized.
func miniJSON(edit func(doc map[string]any)) []byte {
	vocab := map[string]any{}
	for b := 0; b < 256; b++ {
		vocab[byteToString[b]] = b
	}
	extra := []string{"Ġt", "he", "Ġthe", "ll", "llo", "Ġw", "or"}
	for i, s := range extra {
		vocab[s] = 256 + i
	}
	n := 256 + len(extra)
	doc := map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": n, "content": "<s>", "special": true},
			map[string]any{"id": n + 1, "content": "<tool>", "special": false},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []any{n}, "tokens": []any{"<s>"}}}},
		"decoder": map[string]any{"type": "ByteLevel"},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "ignore_merges": false,
			"merges": []any{"Ġ t", "h e", "Ġt he", "l l", []any{"ll", "o"}, "Ġ w", "o r"}},
	}
	if edit != nil {
		edit(doc)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return data
}

func model(doc map[string]any) map[string]any { return doc["model"].(map[string]any) }

func TestMiniTokenizer(t *testing.T) {
	tk, err := FromJSON(miniJSON(nil), "mini.json")
	if err != nil {
		t.Fatal(err)
	}
	text := "the hello world<tool><s>"
	ids, offs := tk.EncodeWithOffsets(text, true)
	var parts []string
	for i, id := range ids {
		parts = append(parts, fmt.Sprintf("%s@%d-%d", tk.Token(id), offs[i].Start, offs[i].End))
	}
	got := strings.Join(parts, " ")
	want := "<s>@0-0 t@0-1 he@1-3 Ġ@3-4 he@4-6 llo@6-9 Ġw@9-11 or@11-13 l@13-14 d@14-15 <tool>@15-21 <s>@21-24"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if d := tk.Decode(ids); d != "<s>"+text {
		t.Errorf("Decode = %q", d)
	}
	if d := tk.DecodeSkipSpecial(ids); d != "the hello world<tool>" {
		t.Errorf("DecodeSkipSpecial = %q", d)
	}
	if tk.BOS() != 263 || tk.EOS() != -1 || !tk.IsSpecial(263) || tk.IsSpecial(264) || tk.Kind() != "byte-level BPE" {
		t.Errorf("BOS %d EOS %d special %v %v kind %q", tk.BOS(), tk.EOS(), tk.IsSpecial(263), tk.IsSpecial(264), tk.Kind())
	}
}

// TestBadJSON checks that malformed tokenizer.json files are refused with an
// error naming the file and the offending field.
func TestBadJSON(t *testing.T) {
	cases := []struct {
		name  string
		data  []byte
		field string
	}{
		{"bad JSON", []byte(`{"model": {"type": "BPE",`), "parse JSON"},
		{"not an object", []byte(`[1,2]`), "parse JSON"},
		{"no model", []byte(`{}`), "model"},
		{"unknown model", miniJSON(func(d map[string]any) { model(d)["type"] = "WordPiece" }), "model.type"},
		{"merge unknown token", miniJSON(func(d map[string]any) { model(d)["merges"] = []any{"Ġ t", "q zz"} }), "model.merges[1]"},
		{"merge result unknown", miniJSON(func(d map[string]any) { model(d)["merges"] = []any{"a b"} }), "model.merges[0]"},
		{"merge malformed", miniJSON(func(d map[string]any) { model(d)["merges"] = []any{"abc"} }), "model.merges"},
		{"merge bad pair", miniJSON(func(d map[string]any) { model(d)["merges"] = []any{[]any{"a"}} }), "model.merges"},
		{"duplicate id", miniJSON(func(d map[string]any) { model(d)["vocab"].(map[string]any)["zzz"] = 5 }), "duplicate id"},
		{"vocab id out of range", miniJSON(func(d map[string]any) { model(d)["vocab"].(map[string]any)["zzz"] = 100000 }), "model.vocab"},
		{"negative id", miniJSON(func(d map[string]any) { model(d)["vocab"].(map[string]any)["zzz"] = -1 }), "model.vocab"},
		{"added id out of range", miniJSON(func(d map[string]any) {
			d["added_tokens"] = []any{map[string]any{"id": 99999, "content": "<x>"}}
		}), "added_tokens[0]"},
		{"added duplicate id", miniJSON(func(d map[string]any) {
			d["added_tokens"] = []any{map[string]any{"id": 3, "content": "<x>"}}
		}), "added_tokens[0]"},
		{"unknown normalizer", miniJSON(func(d map[string]any) { d["normalizer"] = map[string]any{"type": "Precompiled"} }), "normalizer.type"},
		{"unknown pre-tokenizer", miniJSON(func(d map[string]any) {
			d["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{map[string]any{"type": "Bert"}}}
		}), "pre_tokenizer.pretokenizers[0].type"},
		{"bad regex", miniJSON(func(d map[string]any) {
			d["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "(["}, "behavior": "Isolated"}
		}), "pre_tokenizer.pattern"},
		{"unknown decoder", miniJSON(func(d map[string]any) { d["decoder"] = map[string]any{"type": "CTC"} }), "decoder.type"},
		{"template unknown token", miniJSON(func(d map[string]any) {
			d["post_processor"].(map[string]any)["special_tokens"] = map[string]any{}
		}), "post_processor.single[0]"},
		{"template id out of range", miniJSON(func(d map[string]any) {
			d["post_processor"].(map[string]any)["special_tokens"] = map[string]any{"<s>": map[string]any{"ids": []any{123456}}}
		}), "post_processor.special_tokens"},
		{"unk token missing", miniJSON(func(d map[string]any) { model(d)["unk_token"] = "<unk>" }), "model.unk_token"},
		{"vocab not a map", miniJSON(func(d map[string]any) { model(d)["vocab"] = []any{1} }), "parse JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromJSON(c.data, "bad.json")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), c.field) {
				t.Errorf("error %q does not name the file and %q", err, c.field)
			}
		})
	}
}

func TestBadVocab(t *testing.T) {
	base := func() *Vocab {
		return &Vocab{Model: "gpt2", Pre: "gpt-2", Tokens: []string{"a", "b", "ab"}, Merges: []string{"a b"}, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	}
	cases := []struct {
		edit  func(v *Vocab)
		field string
	}{
		{func(v *Vocab) { v.Pre = "klingon" }, `unknown pre-tokenizer "klingon"`},
		{func(v *Vocab) { v.Model = "t5" }, "tokenizer.ggml.model"},
		{func(v *Vocab) { v.Merges = []string{"a c"} }, "tokenizer.ggml.merges[0]"},
		{func(v *Vocab) { v.BOS = 7 }, "tokenizer.ggml.bos_token_id"},
		{func(v *Vocab) { v.Types = []int32{1} }, "tokenizer.ggml.token_type"},
		{func(v *Vocab) { v.Model = "llama" }, "tokenizer.ggml.scores"},
		{func(v *Vocab) { v.Tokens = nil }, "tokenizer.ggml.tokens"},
	}
	for _, c := range cases {
		v := base()
		c.edit(v)
		_, err := FromVocab(v, "x.gguf")
		if err == nil || !strings.Contains(err.Error(), "x.gguf") || !strings.Contains(err.Error(), c.field) {
			t.Errorf("want error naming %q, got %v", c.field, err)
		}
	}
	if _, err := FromVocab(base(), "x.gguf"); err != nil {
		t.Errorf("valid vocab: %v", err)
	}
}

func FuzzFromJSON(f *testing.F) {
	f.Add(miniJSON(nil))
	f.Add(miniJSON(func(d map[string]any) {
		d["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
			map[string]any{"type": "NFC"}}}
		d["pre_tokenizer"] = nil
		d["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}}
		model(d)["byte_fallback"] = true
		model(d)["fuse_unk"] = true
	}))
	f.Add(miniJSON(func(d map[string]any) {
		d["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}
		d["decoder"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}
		d["post_processor"] = map[string]any{"type": "RobertaProcessing", "sep": []any{"<s>", 263}, "cls": []any{"<s>", 263}}
	}))
	f.Add(miniJSON(func(d map[string]any) {
		d["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Digits", "individual_digits": true},
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}}}
		model(d)["ignore_merges"] = true
	}))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]}}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"added_tokens":[{"id":1,"content":"x","lstrip":true,"rstrip":true,"single_word":true}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := FromJSON(data, "fuzz.json")
		if err != nil {
			return
		}
		for _, s := range []string{"", "the hello world<tool><s> 12345\n\n  x", "Äpfel ½ 😀 \xff"} {
			ids, offs := tk.EncodeWithOffsets(s, true)
			if len(ids) != len(offs) {
				t.Fatal("ids and offsets differ in length")
			}
			for _, id := range ids {
				if id < 0 || id >= tk.VocabSize() {
					t.Fatalf("id %d out of range", id)
				}
			}
			tk.Decode(ids)
			tk.DecodeSkipSpecial(ids)
		}
	})
}
