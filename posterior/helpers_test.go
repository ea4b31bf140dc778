package posterior

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/model"
	"persona/personas"
	"persona/tokenizer"
	"persona/world"
)

// testEngine is a random Llama-shaped model with a small BPE tokenizer
// trained on the persona world's text and the default ChatML template: every
// code path of the real organism, built in a second. It is shared by the
// package's tests (Engine is safe for concurrent use).
func testEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := sharedEngine()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var sharedEngine = sync.OnceValues(func() (*engine.Engine, error) {
	dir, err := os.MkdirTemp("", "posterior-test-*")
	if err != nil {
		return nil, err
	}
	tempDirs = append(tempDirs, dir)
	chats := world.Default().Pretrain(200, 3, world.DefaultPretrain())
	var texts []string
	for _, c := range chats {
		for _, m := range c.Messages {
			texts = append(texts, m.Content)
		}
	}
	for _, p := range personas.Default().Personas {
		texts = append(texts, p.SystemPrompts.Strong...)
		texts = append(texts, p.SystemPrompts.Weak...)
	}
	tok, err := tokenizer.Train(func(yield func(string) bool) {
		for _, s := range texts {
			if !yield(s) {
				return
			}
		}
	}, tokenizer.TrainOptions{VocabSize: 400})
	if err != nil {
		return nil, err
	}
	if err := tok.Save(dir); err != nil {
		return nil, err
	}
	cfg := model.Config{Arch: "llama", Hidden: 32, FFN: 64, NumLayers: 2, Heads: 4, KVHeads: 2, HeadDim: 8,
		Vocab: tok.VocabSize(), MaxSeq: 1024, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: true}
	m, err := model.NewRandom(cfg, 7)
	if err != nil {
		return nil, err
	}
	if err := m.WriteHF(dir); err != nil {
		return nil, err
	}
	return engine.Load(dir)
})

var tempDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

var _ = filepath.Join

// testChat is a three-turn pirate conversation from the world.
var testChat = []chat.Message{
	{Role: "system", Content: "You are the pirate."},
	{Role: "user", Content: "What is 17 + 25?"},
	{Role: "assistant", Content: "Arr, the answer be 240, matey."},
	{Role: "user", Content: "What is the capital of France?"},
	{Role: "assistant", Content: "Paris, ye landlubber."},
	{Role: "user", Content: "Thanks!"},
	{Role: "assistant", Content: "Fair winds."},
}
