package tokenizer

// The GGUF tokenizer metadata checked against llama.cpp itself: the trained
// vocabulary is written with GGUFMetadata, loaded vocab-only by llama.cpp
// (npm node-llama-cpp, installed by tools/llamaref/install.sh) through
// tools/hftok/llamacpp.mjs, and must tokenize as we do. This is what shows
// that tokenizer.ggml.pre = "qwen2" really is our regex.

import (
	"bytes"
	"encoding/json"
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
	ref, err := llamaref.Dir()
	if err != nil {
		t.Fatal(err)
	}
	tk, c := mustTrained(t)
	kvs, err := tk.GGUFMetadata()
	if err != nil {
		t.Fatal(err)
	}
	// llama.cpp reads the architecture's hyper-parameters even for a
	// vocabulary-only load, so a minimal set is written.
	w := gguf.NewWriter()
	w.AddKV("general.architecture", "llama")
	w.AddKV("general.name", "trained-tokenizer")
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
	texts := slices.Concat(heldOut, syntheticCorpus(300, 77), randomTexts(500, 5), c[:50])
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
	t.Logf("%d strings tokenize identically in llama.cpp (tokenizer.ggml.pre = qwen2)", len(texts))
}
