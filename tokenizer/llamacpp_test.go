package tokenizer

// The GGUF tokenizer metadata checked against llama.cpp itself: the trained
// vocabulary is written with GGUFMetadata, loaded vocab-only by llama.cpp
// (npm node-llama-cpp, installed by tools/llamaref/install.sh) through
// tools/hftok/llamacpp.mjs, and must tokenize as we do. This is what shows
// that tokenizer.ggml.pre = "qwen2" really is our regex.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"persona/gguf"
	"persona/internal/llamaref"
	"persona/internal/testref"
)

func TestLlamaCppAgrees(t *testing.T) {
	testref.Require(t, llamaref.Available())
	tk, c := mustTrained(t)
	kvs, err := tk.GGUFMetadata()
	if err != nil {
		t.Fatal(err)
	}
	texts := slices.Concat(heldOut, syntheticCorpus(300, 77), randomTexts(500, 5), c[:50])
	checkWithLlamaCpp(t, tk, writeVocabGGUF(t, kvs), texts)
	t.Logf("%d strings tokenize identically in llama.cpp (tokenizer.ggml.pre = qwen2)", len(texts))
}

// A SentencePiece vocabulary laid out as Gemma's is (pad, eos, bos, unk,
// turn markers as control tokens, byte fallback, whitespace runs as pieces,
// no space prefix added) tokenizes as llama.cpp tokenizes it, including text
// the pieces cannot spell (bytes) and the turn markers inside text.
func TestGemmaStyleVocabAgreesWithLlamaCpp(t *testing.T) {
	testref.Require(t, llamaref.Available())
	toks := []string{"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"}
	types := []int32{3, 3, 3, 2, 3, 3}
	for b := 0; b < 256; b++ {
		toks = append(toks, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6)
	}
	pieces := []string{"\n", "\n\n", "▁", "▁▁", "▁▁▁▁", "user", "model", "▁the", "▁persona", "▁is", "▁a", "▁model",
		"▁of", "▁per", "sona", "▁Hello", "▁world", "Hello", "world", "▁capital", "▁France", "?", ".", ",", "▁What",
		"What", "▁Paris", "e", "t", "h", "a", "s", "o", "n", "r", "i", "l", "d", "▁p", "▁w", "▁c", "er", "on", "▁th",
		"he", "▁you", "▁are", "▁helpful", "▁assistant", "You", "▁You"}
	for _, p := range pieces {
		toks = append(toks, p)
		types = append(types, 1)
	}
	scores := make([]float32, len(toks))
	for i := range scores {
		scores[i] = -float32(i)
	}
	kvs := []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.pre", Value: "default"},
		{Key: "tokenizer.ggml.tokens", Value: toks},
		{Key: "tokenizer.ggml.scores", Value: scores},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(3)},
		{Key: "tokenizer.ggml.padding_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: true},
		{Key: "tokenizer.ggml.add_space_prefix", Value: false},
	}
	path := writeVocabGGUF(t, kvs)
	tk := readGGUFTokenizer(t, path)
	texts := []string{"Hello world", " Hello world", "Hello  world", "What is the capital of France?",
		"<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\nParis.",
		"You are a helpful assistant.\n\nWhat is a persona?", "    indented\n\n\nnewlines", "naïve café",
		"日本語のテキスト", "emoji 🙂 and tabs\t!", "", " ", "persona", "the persona of the model",
		"<start_of_turn>", "<end_of_turn>x<bos>", "ÿ\x00\x7f"}
	texts = append(texts, randomTexts(200, 9)...)
	checkWithLlamaCpp(t, tk, path, texts)
}

// checkWithLlamaCpp has llama.cpp tokenize texts from the vocabulary GGUF
// at path (special tokens parsed, no BOS added) through
// tools/hftok/llamacpp.mjs, and compares with tk.
func checkWithLlamaCpp(t *testing.T, tk *Tokenizer, path string, texts []string) {
	t.Helper()
	ref, err := llamaref.Dir()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"gguf": path, "texts": texts})
	cmd := exec.Command("node", filepath.Join(ref, "..", "hftok", "llamacpp.mjs"))
	cmd.Env = append(cmd.Environ(), "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true")
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node llamacpp.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		BOS, EOS int
		IDs      [][]int `json:"ids"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IDs) != len(texts) {
		t.Fatalf("llamacpp.mjs output: %v (%d results for %d texts)", err, len(res.IDs), len(texts))
	}
	if res.BOS != tk.BOS() || res.EOS != tk.EOS() {
		t.Errorf("llama.cpp BOS %d EOS %d, ours %d %d", res.BOS, res.EOS, tk.BOS(), tk.EOS())
	}
	bad := 0
	for i, s := range texts {
		if ours := tk.Encode(s, false); !slices.Equal(ours, res.IDs[i]) {
			bad++
			if bad <= 5 {
				t.Errorf("%q:\n     ours %v\nllama.cpp %v", s, ours, res.IDs[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d strings tokenize differently in llama.cpp", bad, len(texts))
	}
}
