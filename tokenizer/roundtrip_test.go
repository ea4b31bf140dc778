package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// allVectorTexts gathers every test string of the fixtures.
func allVectorTexts(t testing.TB) []string {
	var texts []string
	for _, dir := range []string{"llama3", "llama3.1", "qwen3", "mistral-7b-v0.1"} {
		var v struct{ Cases []hfCase }
		readJSON(t, fixtures+"tokenizers/"+dir+"/vectors.hf-tokenizers.json", &v)
		for _, c := range v.Cases {
			texts = append(texts, c.Text)
		}
	}
	return texts
}

// streamDecode decodes ids one at a time through a StreamDecoder.
func streamDecode(tk *Tokenizer, ids []int) string {
	d := tk.NewStreamDecoder()
	var sb strings.Builder
	for _, id := range ids {
		s := d.Add(id)
		if strings.ContainsRune(s, utf8.RuneError) {
			return "partial character emitted: " + s
		}
		sb.WriteString(s)
	}
	sb.WriteString(d.Flush())
	return sb.String()
}

// TestRoundTrip: byte-level tokenizers decode exactly what they encoded, and
// streaming decoding equals decoding at once for every tokenizer.
func TestRoundTrip(t *testing.T) {
	texts := allVectorTexts(t)
	tks := map[string]*Tokenizer{
		"llama3":    loadFixture(t, "llama3"),
		"qwen3":     loadFixture(t, "qwen3"),
		"mistral":   loadFixture(t, "mistral-7b-v0.1"),
		"gpt-2":     loadGGUF(t, "llama.cpp-vocab/ggml-vocab-gpt-2.gguf"),
		"llama-spm": loadGGUF(t, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf"),
	}
	for name, tk := range tks {
		for _, s := range texts {
			ids := tk.Encode(s, true)
			whole := tk.Decode(ids)
			if tk.Kind() == "byte-level BPE" && tk.DecodeSkipSpecial(tk.Encode(s, false)) != s && !strings.Contains(s, "<|") {
				t.Errorf("%s: Decode(Encode(%q)) = %q", name, s, tk.DecodeSkipSpecial(tk.Encode(s, false)))
			}
			if got := streamDecode(tk, ids); got != whole {
				t.Errorf("%s: stream decode of %q = %q, want %q", name, s, got, whole)
			}
		}
	}
}

func TestStreamDecoderHoldsPartialCharacters(t *testing.T) {
	tk := loadGGUF(t, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf")
	ids := tk.Encode("a 🦙 b", false) // the llama is spelled in four byte tokens
	d := tk.NewStreamDecoder()
	var outs []string
	for _, id := range ids {
		outs = append(outs, d.Add(id))
	}
	outs = append(outs, d.Flush())
	if got := strings.Join(outs, ""); got != "a 🦙 b" {
		t.Fatalf("stream = %q (%q)", got, outs)
	}
	for _, o := range outs {
		if strings.ContainsRune(o, utf8.RuneError) {
			t.Errorf("partial character emitted: %q", outs)
		}
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "  \n\n\t x", "<|begin_of_text|>hi<|eot_id|>", "\xff\xfe", "3333333 'LL"} {
		f.Add(s)
	}
	tk := loadFixture(f, "llama3")
	f.Fuzz(func(t *testing.T, s string) {
		ids, offs := tk.EncodeWithOffsets(s, true)
		if e := checkOffsets(s, offs); e != "" {
			t.Fatalf("offsets of %q: %s: %v", s, e, offs)
		}
		plain := tk.Encode(s, false)
		d := tk.Decode(plain)
		if utf8.ValidString(s) && d != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, d)
		}
		if !utf8.ValidString(s) && d != lossyUTF8([]byte(s)) {
			t.Fatalf("Decode(Encode(%q)) = %q, want lossy %q", s, d, lossyUTF8([]byte(s)))
		}
		if got := streamDecode(tk, ids); got != tk.Decode(ids) {
			t.Fatalf("stream decode of %q = %q, want %q", s, got, tk.Decode(ids))
		}
	})
}
