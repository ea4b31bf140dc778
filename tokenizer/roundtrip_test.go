package tokenizer

import (
	"fmt"
	"strings"
	"testing"
	"time"
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

// streamDecode decodes ids one at a time through a StreamDecoder. For
// valid UTF-8 input no piece may contain U+FFFD (a half-emitted character).
func streamDecode(tk *Tokenizer, ids []int, validInput bool) string {
	d := tk.NewStreamDecoder()
	var sb strings.Builder
	for _, id := range ids {
		s := d.Add(id)
		if validInput && strings.ContainsRune(s, utf8.RuneError) {
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
			if got := streamDecode(tk, ids, true); got != whole {
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
		watchdog := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("FuzzEncode hangs on %q", s)) })
		defer watchdog.Stop()
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
		if got := streamDecode(tk, ids, utf8.ValidString(s)); got != tk.Decode(ids) {
			t.Fatalf("stream decode of %q = %q, want %q", s, got, tk.Decode(ids))
		}
	})
}

// TestNFCOffsets: Qwen3 normalizes to NFC, so decomposed input encodes like
// precomposed input and offsets still point into the decomposed text.
func TestNFCOffsets(t *testing.T) {
	tk := loadFixture(t, "qwen3")
	dec, pre := "Cafe\u0301 cre\u0300me", "Café crème"
	if a, b := tk.Encode(dec, false), tk.Encode(pre, false); !equalInts(a, b) {
		t.Errorf("NFD %v != NFC %v", a, b)
	}
	ids, offs := tk.EncodeWithOffsets(dec, false)
	if e := checkOffsets(dec, offs); e != "" {
		t.Errorf("%s: %v", e, offs)
	}
	if offs[len(offs)-1].End != len(dec) || len(ids) != len(offs) {
		t.Errorf("offsets %v", offs)
	}
}

// TestSentencePieceOffsets: Mistral rewrites spaces to "▁" and prepends one;
// offsets still index the caller's text.
func TestSentencePieceOffsets(t *testing.T) {
	tk := loadFixture(t, "mistral-7b-v0.1")
	text := "Hello world  again"
	ids, offs := tk.EncodeWithOffsets(text, true)
	if ids[0] != 1 || offs[0] != (Offset{0, 0}) {
		t.Errorf("BOS %d %v", ids[0], offs[0])
	}
	if e := checkOffsets(text, offs); e != "" {
		t.Errorf("%s: %v", e, offs)
	}
	var got []string
	for i := range ids {
		got = append(got, text[offs[i].Start:offs[i].End])
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"", "Hello", " world", " ", " again"}) {
		t.Errorf("pieces %q (tokens %v)", got, ids)
	}
}
