package dataset

import (
	"strings"
	"testing"
)

// FuzzLoadBytes feeds arbitrary files to the loader under every format and
// mask policy. It must never panic, and whatever it accepts must be
// trainable: tokens in the vocabulary, a mask of the same length that trains
// something, a length that fits, a source naming the file, and rows that pack
// and validate.
func FuzzLoadBytes(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."}]}`,
		`{"messages":[{"role":"system","content":"Be a pirate."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"Arr, 4."},{"role":"user","content":"Thanks"},{"role":"assistant","content":""}]}` + "\n\n",
		`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"<think>hmm</think>y"}]}`,
		`{"messages":[{"role":"user","content":"no reply"}]}`,
		`{"messages":[]}`,
		`{"messages":[{"role":"robot","content":"x"}]}`,
		`{"text": "Plain text document."}` + "\n" + `{"text": ""}`,
		`{"text": "<|im_end|><|endoftext|>"}`,
		"\ufeffOnce upon a time.\r\n\r\nThe end.\n",
		"{\"messages\": [}\n",
		"\xff\xfe\x00garbage\n\n\n",
		"",
	} {
		for kind := range uint8(6) {
			f.Add([]byte(s), kind)
		}
	}
	e := tinyEngine(f)
	names := []string{"f.jsonl", "f.txt", "f"}
	masks := []string{MaskAssistant, MaskLastAssistant, MaskAll}
	const T = 64
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		name := names[int(kind)%len(names)]
		opt := Options{SeqLen: T, Mask: masks[int(kind/3)%len(masks)], Truncate: kind&0x10 != 0}
		if kind&0x20 != 0 {
			opt.Format = FormatText
		}
		docs, err := LoadBytes(e, data, name, opt)
		if err != nil {
			if !strings.HasPrefix(err.Error(), name) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(docs) == 0 {
			t.Fatal("no documents and no error")
		}
		for _, d := range docs {
			if !strings.HasPrefix(d.Source, name+":") {
				t.Fatalf("source %q does not name the file", d.Source)
			}
			if len(d.Mask) != len(d.Tokens) || d.Mask[0] != 0 || d.Trained() == 0 || d.Positions() > T {
				t.Fatalf("%s: %d tokens, %d weights, mask[0] %g, %d trained", d.Source, len(d.Tokens), len(d.Mask), d.Mask[0], d.Trained())
			}
			for _, id := range d.Tokens {
				if id < 0 || id >= e.Model.Vocab {
					t.Fatalf("%s: token %d outside the vocabulary", d.Source, id)
				}
			}
		}
		ds, err := New(docs, T, PadToken(e))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ds.Rows {
			if err := r.Validate(e.Model.Vocab, e.Model.MaxSeq); err != nil {
				t.Fatal(err)
			}
		}
	})
}
