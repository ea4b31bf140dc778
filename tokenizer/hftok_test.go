package tokenizer

// The trained tokenizer.json checked against Hugging Face tokenizers itself
// (the Rust library via npm @anush008/tokenizers 0.6.0), run by
// tools/hftok/encode.mjs. Install: bash tools/hftok/install.sh.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"persona/internal/testref"
)

const hftokInstall = "bash tools/hftok/install.sh"

// hftokDir finds tools/hftok from the module root (the first go.mod above
// the working directory) and checks node and the pinned package are there.
func hftokDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	dir := wd
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("hftok: no go.mod above %s", wd)
		}
		dir = parent
	}
	tools := filepath.Join(dir, "tools", "hftok")
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("hftok: node is not on PATH (install Node >= 18, then %s)", hftokInstall)
	}
	pkg := filepath.Join(tools, "node_modules", "@anush008", "tokenizers", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		return "", fmt.Errorf("hftok: Hugging Face tokenizers (npm @anush008/tokenizers) is not installed; run %s", hftokInstall)
	}
	return tools, nil
}

// requireHFTok skips the test when the reference is missing, except under
// CI=true, where a missing reference is a broken setup and fails.
func requireHFTok(t *testing.T) string {
	t.Helper()
	dir, err := hftokDir()
	testref.Require(t, err)
	return dir
}

type hfResult struct {
	IDs                []int  `json:"ids"`
	IDsWithSpecial     []int  `json:"ids_with_special"`
	Decoded            string `json:"decoded"`
	DecodedSkipSpecial string `json:"decoded_skip_special"`
}

// hfEncode runs Hugging Face tokenizers on texts with the tokenizer.json at path.
func hfEncode(t *testing.T, dir, path string, texts []string) (int, []hfResult) {
	t.Helper()
	req, err := json.Marshal(map[string]any{"tokenizer": path, "texts": texts})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(dir, "encode.mjs"))
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node encode.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		VocabSize int        `json:"vocab_size"`
		Results   []hfResult `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node encode.mjs output: %v", err)
	}
	if len(res.Results) != len(texts) {
		t.Fatalf("%d results for %d texts", len(res.Results), len(texts))
	}
	return res.VocabSize, res.Results
}

// randomTexts are strings of random runes from scripts, digits, punctuation,
// whitespace and the special tokens, the cases where pre-tokenizers differ.
func randomTexts(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	parts := []string{"a", "Z", "é", "ß", "Ω", "ж", "中", "の", "ا", "🙂", "1", "٣", "½", "²", " ", "  ", "\n", "\r\n",
		"\t", "\u00a0", "\u200b", "'s", "'LL", "'re", "!", "?", ".", "...", "-", "_", "<", "|>", "<|", "$", "€",
		"the", " capital", "user", "assistant", IMStart, IMEnd, BeginOfText, Pad}
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for range 1 + r.IntN(30) {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		out[i] = b.String()
	}
	return out
}

func TestHFTokenizersAgree(t *testing.T) {
	dir := requireHFTok(t)
	tk, c := mustTrained(t)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tk.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	texts := slices.Concat(heldOut, syntheticCorpus(400, 77), randomTexts(600, 5), c[:100])
	compareHF(t, dir, path, tk, texts)
}

// TestHFTokenizersAgreeGPT2Pattern covers a trained tokenizer with another
// regex and no BOS (no post-processor).
func TestHFTokenizersAgreeGPT2Pattern(t *testing.T) {
	dir := requireHFTok(t)
	texts := syntheticCorpus(1500, 11)
	tk, err := Train(slices.Values(texts), TrainOptions{VocabSize: 700, SpecialTokens: []string{"<|endoftext|>"},
		EOS: "<|endoftext|>", Pattern: gpt2Pattern})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tk.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	compareHF(t, dir, path, tk, slices.Concat(heldOut, randomTexts(300, 6), texts[:100]))
}

func compareHF(t *testing.T, dir, path string, tk *Tokenizer, texts []string) {
	t.Helper()
	vocab, res := hfEncode(t, dir, path, texts)
	if vocab != tk.VocabSize() {
		t.Errorf("HF vocab size %d, ours %d", vocab, tk.VocabSize())
	}
	bad := 0
	for i, s := range texts {
		ours, oursSpecial := tk.Encode(s, false), tk.Encode(s, true)
		h := res[i]
		ok := slices.Equal(ours, h.IDs) && slices.Equal(oursSpecial, h.IDsWithSpecial) &&
			(!utf8.ValidString(s) || (tk.Decode(oursSpecial) == h.Decoded && tk.DecodeSkipSpecial(oursSpecial) == h.DecodedSkipSpecial))
		if !ok {
			bad++
			if bad <= 5 {
				t.Errorf("%q:\n ours %v / %v %q\n   HF %v / %v %q", s, ours, oursSpecial, tk.Decode(oursSpecial),
					h.IDs, h.IDsWithSpecial, h.Decoded)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d strings differ from Hugging Face tokenizers", bad, len(texts))
	}
	t.Logf("%d strings: ids (with and without special tokens) and decoding identical to Hugging Face tokenizers", len(texts))
}
