package tokenizer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"persona/gguf"
)

// loadGGUF loads (once per test binary) the tokenizer of a fixture GGUF.
func loadGGUF(t testing.TB, rel string) *Tokenizer {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if tk, ok := loaded[rel]; ok {
		return tk
	}
	path := fixtures + rel
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	tk := readGGUFTokenizer(t, path)
	loaded[rel] = tk
	return tk
}

// readGGUFTokenizer opens a GGUF file and builds its tokenizer.
func readGGUFTokenizer(t testing.TB, path string) *Tokenizer {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tk, err := FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// writeVocabGGUF writes tokenizer metadata into a vocabulary-only GGUF
// file and returns its path. llama.cpp reads the architecture's
// hyper-parameters even for a vocabulary-only load, so a minimal Llama set
// is written too.
func writeVocabGGUF(t testing.TB, kvs []gguf.KV) string {
	t.Helper()
	w := gguf.NewWriter()
	w.AddKV("general.architecture", "llama")
	w.AddKV("general.name", "tokenizer-test")
	for k, v := range map[string]uint32{"context_length": 512, "embedding_length": 64, "block_count": 1,
		"feed_forward_length": 128, "attention.head_count": 4, "attention.head_count_kv": 4, "rope.dimension_count": 16} {
		w.AddKV("llama."+k, v)
	}
	w.AddKV("llama.attention.layer_norm_rms_epsilon", float32(1e-5))
	for _, kv := range kvs {
		w.AddKV(kv.Key, kv.Value)
	}
	path := filepath.Join(t.TempDir(), "vocab.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// readVocabTest reads llama.cpp's test-tokenizer-0 files: strings separated
// by "\n__ggml_vocab_test__\n" (the file ends with a separator, so the last
// piece is empty and dropped; newlines inside a string are kept as they are),
// and one line of space-separated ids per string.
func readVocabTest(t *testing.T, set string) ([]string, [][]int) {
	t.Helper()
	inp, err := os.ReadFile(fixtures + "llama.cpp-vocab/ggml-vocab-" + set + ".gguf.inp")
	if err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	out, err := os.ReadFile(fixtures + "llama.cpp-vocab/ggml-vocab-" + set + ".gguf.out")
	if err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	if texts[len(texts)-1] != "" {
		t.Fatalf("%s.inp does not end with a separator", set)
	}
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d strings but %d id lines", set, len(texts), len(lines))
	}
	ids := make([][]int, len(lines))
	for i, l := range lines {
		ids[i] = []int{}
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", set, i+1, err)
			}
			ids[i] = append(ids[i], n)
		}
	}
	return texts, ids
}

// TestLlamaCppVocab runs llama.cpp's tokenizer test strings. llama-bpe and
// qwen2 have no vocab GGUF here; they are Llama 3's and Qwen3's
// tokenizer.json. phi-3's expected ids and strings are identical to
// llama-spm's (Phi-3 uses the Llama 2 SentencePiece vocabulary), so phi-3
// runs on the llama-spm vocab.
func TestLlamaCppVocab(t *testing.T) {
	sets := []struct {
		set string
		tok func(t testing.TB) *Tokenizer
	}{
		{"llama-spm", func(t testing.TB) *Tokenizer { return loadGGUF(t, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf") }},
		{"phi-3", func(t testing.TB) *Tokenizer { return loadGGUF(t, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf") }},
		{"gpt-2", func(t testing.TB) *Tokenizer { return loadGGUF(t, "llama.cpp-vocab/ggml-vocab-gpt-2.gguf") }},
		{"llama-bpe", func(t testing.TB) *Tokenizer { return loadFixture(t, "llama3") }},
		{"qwen2", func(t testing.TB) *Tokenizer { return loadFixture(t, "qwen3") }},
	}
	for _, s := range sets {
		t.Run(s.set, func(t *testing.T) {
			texts, want := readVocabTest(t, s.set)
			tk := s.tok(t)
			pass := 0
			for i, text := range texts {
				got := tk.Encode(text, false)
				if !equalInts(got, want[i]) {
					t.Errorf("Encode(%q) = %v, want %v", text, got, want[i])
					continue
				}
				if tk.Kind() == "byte-level BPE" {
					if d := tk.Decode(got); d != text {
						t.Errorf("Decode(Encode(%q)) = %q", text, d)
						continue
					}
				}
				ids, offs := tk.EncodeWithOffsets(text, false)
				if !equalInts(ids, got) {
					t.Errorf("EncodeWithOffsets(%q) ids differ", text)
					continue
				}
				if e := checkOffsets(text, offs); e != "" {
					t.Errorf("EncodeWithOffsets(%q): %s: %v", text, e, offs)
					continue
				}
				pass++
			}
			t.Logf("%s: %d/%d strings pass", s.set, pass, len(texts))
		})
	}
}

// TestPhi3SameAsLlamaSPM documents why phi-3 runs on the llama-spm vocab.
func TestPhi3SameAsLlamaSPM(t *testing.T) {
	for _, ext := range []string{".inp", ".out"} {
		a, err1 := os.ReadFile(fixtures + "llama.cpp-vocab/ggml-vocab-phi-3.gguf" + ext)
		b, err2 := os.ReadFile(fixtures + "llama.cpp-vocab/ggml-vocab-llama-spm.gguf" + ext)
		if err1 != nil || err2 != nil {
			t.Fatal("fixtures missing")
		}
		if string(a) != string(b) {
			t.Errorf("phi-3%s differs from llama-spm%s", ext, ext)
		}
	}
}

// TestLlama2SentencePiece checks the Llama 2 vocabulary (as llama.cpp stores
// it) against SentencePiece itself and against llama2.c's test vectors.
func TestLlama2SentencePiece(t *testing.T) {
	tk := loadGGUF(t, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf")
	var sp struct {
		Cases []struct {
			Text    string `json:"text"`
			IDs     []int  `json:"ids"`
			Decoded string `json:"decoded"`
		}
	}
	readJSON(t, fixtures+"tokenizers/llama2/vectors.sentencepiece.json", &sp)
	pass := 0
	for _, c := range sp.Cases {
		got := tk.Encode(c.Text, false)
		if !equalInts(got, c.IDs) {
			t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.IDs)
			continue
		}
		if d := tk.Decode(got); d != c.Decoded {
			t.Errorf("Decode(%v) = %q, want %q", got, d, c.Decoded)
			continue
		}
		pass++
	}
	t.Logf("sentencepiece: %d/%d vectors pass", pass, len(sp.Cases))

	var l2c struct {
		Cases []struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		}
	}
	readJSON(t, fixtures+"tokenizers/llama2/llama2c_test_c_vectors.json", &l2c)
	pass = 0
	for _, c := range l2c.Cases {
		if got := tk.Encode(c.Text, true); !equalInts(got, c.IDs) {
			t.Errorf("Encode(%q, BOS) = %v, want %v", c.Text, got, c.IDs)
			continue
		}
		pass++
	}
	t.Logf("llama2.c: %d/%d vectors pass", pass, len(l2c.Cases))
}

// TestStories260K checks the 512-token SentencePiece vocabulary of the
// tinyllamas model against llama2.c and llama.cpp (no BOS).
func TestStories260K(t *testing.T) {
	tk := loadGGUF(t, "stories260K/stories260K-f32.v3.gguf")
	var g struct {
		Cases []struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		}
	}
	readJSON(t, fixtures+"stories260K/golden/tokenizer_tok512.json", &g)
	pass := 0
	for _, c := range g.Cases {
		if got := tk.Encode(c.Text, false); !equalInts(got, c.IDs) {
			t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.IDs)
			continue
		}
		pass++
	}
	t.Logf("tok512: %d/%d vectors pass", pass, len(g.Cases))
	if tk.BOS() != 1 || tk.EOS() != 2 || tk.VocabSize() != 512 {
		t.Errorf("BOS %d EOS %d vocab %d, want 1 2 512", tk.BOS(), tk.EOS(), tk.VocabSize())
	}
	if got := tk.Encode("Once", true); len(got) == 0 || got[0] != 1 {
		t.Errorf("Encode with special = %v, want BOS first (llama default)", got)
	}
}
