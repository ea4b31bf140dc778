// Package testmodel builds the small models that tests run: random weights
// of a chosen shape behind a real tokenizer and chat template, so every code
// path of a real model runs in a test that takes a second. Their outputs are
// noise; tests check machinery with them, not findings.
//
// Models are written once per test binary and shape into one temporary
// folder, which Main removes. Only tests import this package.
package testmodel

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"persona/internal/testref"
	"persona/model"
	"persona/personas"
	"persona/tokenizer"
	"persona/world"
)

// Organism returns the folder of a tiny organism: a random model of the
// organism's proportions (Llama, 4 heads, 2 KV heads, FFN 3 × hidden, tied
// embeddings, context 2,048) with a 400-token BPE tokenizer trained on the
// persona world's chats and system prompts, and the organism's chat
// template. hidden must be a multiple of 4; the model has layers blocks.
// Organism(tb, 128, 4) has the shipped organism's shape.
func Organism(tb testing.TB, hidden, layers int) string {
	tb.Helper()
	return build(tb, fmt.Sprintf("organism-h%d-l%d", hidden, layers), func(dir string) error {
		tok, err := worldTokenizer()
		if err != nil {
			return err
		}
		if err := tok.Save(dir); err != nil {
			return err
		}
		cfg := model.Config{Arch: "llama", Hidden: hidden, FFN: 3 * hidden, NumLayers: layers, Heads: 4, KVHeads: 2,
			HeadDim: hidden / 4, Vocab: tok.VocabSize(), MaxSeq: 2048, NormEps: 1e-5, RoPETheta: 1e4, TiedEmbedding: true}
		return writeRandom(dir, cfg, 7)
	})
}

// worldTokenizer is trained once per test binary: 200 pretraining chats of
// the default world and every persona's system prompts.
var worldTokenizer = sync.OnceValues(func() (*tokenizer.Tokenizer, error) {
	w, err := world.New(personas.Default())
	if err != nil {
		return nil, err
	}
	chats := w.Pretrain(200, 3, world.DefaultPretrain())
	return tokenizer.Train(func(yield func(string) bool) {
		for _, c := range chats {
			for _, m := range c.Messages {
				if !yield(m.Content) {
					return
				}
			}
		}
		for _, p := range personas.Default().Personas {
			for _, s := range append(p.SystemPrompts.Strong, p.SystemPrompts.Weak...) {
				if !yield(s) {
					return
				}
			}
		}
	}, tokenizer.TrainOptions{VocabSize: 400})
})

// Chat returns the folder of a random model of cfg's shape that carries the
// tokenizer and chat template of testdata/tokenizers/name (e.g. "qwen3"), so
// rendering, tokenization and spans run exactly as on the real model.
// cfg.Vocab is taken from the tokenizer.
func Chat(tb testing.TB, name string, cfg model.Config) string {
	tb.Helper()
	src := testref.Fixture(tb, "tokenizers/"+name)
	h := fnv.New64a()
	fmt.Fprintf(h, "%+v", cfg)
	key := fmt.Sprintf("chat-%s-%x", name, h.Sum64())
	return build(tb, key, func(dir string) error {
		for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
			data, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				return err
			}
		}
		tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			return err
		}
		cfg.Vocab = tok.VocabSize()
		return writeRandom(dir, cfg, 9)
	})
}

func writeRandom(dir string, cfg model.Config, seed uint64) error {
	m, err := model.NewRandom(cfg, seed)
	if err != nil {
		return err
	}
	return m.WriteHF(dir)
}

var (
	mu    sync.Mutex
	root  string
	built = map[string]*entry{}
)

type entry struct {
	once sync.Once
	dir  string
	err  error
}

// build writes the model named key once per test binary, by write into a
// fresh folder, and returns the folder.
func build(tb testing.TB, key string, write func(dir string) error) string {
	tb.Helper()
	mu.Lock()
	if root == "" {
		d, err := os.MkdirTemp("", "persona-testmodel-*")
		if err != nil {
			mu.Unlock()
			tb.Fatal(err)
		}
		root = d
	}
	e := built[key]
	if e == nil {
		e = &entry{dir: filepath.Join(root, key)}
		built[key] = e
	}
	mu.Unlock()
	e.once.Do(func() {
		if e.err = os.MkdirAll(e.dir, 0o755); e.err == nil {
			e.err = write(e.dir)
		}
	})
	if e.err != nil {
		tb.Fatalf("test model %s: %v", key, e.err)
	}
	return e.dir
}

// Main runs a package's tests and removes the models they built. Call it
// from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Cleanup removes the models built so far, for a TestMain that does more
// than Main.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if root != "" {
		os.RemoveAll(root)
		root, built = "", map[string]*entry{}
	}
}
