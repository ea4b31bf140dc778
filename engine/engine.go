// Package engine puts a model, its tokenizer and its chat template together:
// load a Hugging Face directory or a GGUF file, turn conversations into tokens
// with the span of every message, generate with sampling and residual-stream
// interventions, and score given continuations token by token.
package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"persona/chat"
	"persona/gguf"
	"persona/model"
	"persona/tokenizer"
)

// Engine is a loaded model ready for generation and scoring. It is safe for
// concurrent use: each call owns its own model.State.
type Engine struct {
	Model     *model.Model
	Tokenizer *tokenizer.Tokenizer
	// Template renders conversations; nil when the model ships none.
	Template *chat.Template
	// ChatConfig is what tokenizer_config.json (or GGUF metadata) said.
	ChatConfig *chat.Config
	// Stop holds the token ids that end generation.
	Stop map[int]bool
	Path string
}

// Options adjust how a model is loaded.
type Options struct {
	// Tokenizer overrides where the tokenizer comes from: a tokenizer.json or
	// a GGUF file whose vocabulary to use (for checkpoints shipped without
	// their tokenizer).
	Tokenizer string
}

// Load opens a model directory or GGUF file with everything needed to chat.
func Load(path string) (*Engine, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options.
func LoadWith(path string, opt Options) (*Engine, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var e *Engine
	if st.IsDir() {
		e, err = loadHF(path, opt)
	} else {
		e, err = loadGGUF(path, opt)
	}
	if err != nil {
		return nil, err
	}
	e.Path = path
	e.Stop = map[int]bool{}
	for _, id := range e.Model.EOS {
		e.Stop[id] = true
	}
	if id := e.Tokenizer.EOS(); id >= 0 {
		e.Stop[id] = true
	}
	if e.ChatConfig != nil && e.ChatConfig.EOS != "" {
		if id, ok := e.Tokenizer.ID(e.ChatConfig.EOS); ok {
			e.Stop[id] = true
		}
	}
	return e, nil
}

// Close releases the model's memory mappings.
func (e *Engine) Close() error { return e.Model.Close() }

func loadHF(dir string, opt Options) (*Engine, error) {
	m, err := model.LoadHF(dir)
	if err != nil {
		return nil, err
	}
	e := &Engine{Model: m}
	tokPath := opt.Tokenizer
	if tokPath == "" {
		tokPath = filepath.Join(dir, "tokenizer.json")
	}
	if e.Tokenizer, err = loadTokenizer(tokPath); err != nil {
		m.Close()
		return nil, err
	}
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	if _, err := os.Stat(cfgPath); err == nil {
		if e.ChatConfig, err = chat.LoadConfig(cfgPath); err != nil {
			m.Close()
			return nil, err
		}
	}
	if err := e.initTemplate(); err != nil {
		m.Close()
		return nil, err
	}
	if err := readGenerationEOS(filepath.Join(dir, "generation_config.json"), m); err != nil {
		m.Close()
		return nil, err
	}
	return e, nil
}

// readGenerationEOS adds generation_config.json's eos_token_id(s) to the model's.
func readGenerationEOS(path string, m *model.Model) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var g struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var one int
	var many []int
	if json.Unmarshal(g.EOS, &one) == nil && len(g.EOS) > 0 && string(g.EOS) != "null" {
		many = []int{one}
	} else {
		_ = json.Unmarshal(g.EOS, &many)
	}
	m.EOS = append(m.EOS, many...)
	return nil
}

// loadTokenizer reads a tokenizer.json, or the vocabulary of a GGUF file.
func loadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	if filepath.Ext(path) != ".gguf" {
		return tokenizer.Load(path)
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	return t, nil
}

func loadGGUF(path string, opt Options) (*Engine, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := model.FromGGUF(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	e := &Engine{Model: m}
	if opt.Tokenizer != "" {
		e.Tokenizer, err = loadTokenizer(opt.Tokenizer)
	} else if e.Tokenizer, err = tokenizer.FromGGUF(f); err != nil {
		err = fmt.Errorf("gguf %s: %w", path, err)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	for _, id := range endOfTurn(f, e.Tokenizer) {
		m.EOS = append(m.EOS, id)
	}
	if tmpl, ok := f.String("tokenizer.chat_template"); ok {
		e.ChatConfig = &chat.Config{Template: tmpl}
		if id := e.Tokenizer.BOS(); id >= 0 {
			e.ChatConfig.BOS = e.Tokenizer.Token(id)
		}
		if id := e.Tokenizer.EOS(); id >= 0 {
			e.ChatConfig.EOS = e.Tokenizer.Token(id)
		}
	}
	if err := e.initTemplate(); err != nil {
		m.Close()
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	return e, nil
}

// endOfTurnMarkers are the texts of the tokens chat models end a turn with
// (Llama 3, ChatML, Phi-3, Gemma): llama.cpp stops on them whatever the
// file's EOS, since converters often leave them out of the metadata.
var endOfTurnMarkers = []string{"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"}

// endOfTurn returns the ids that end a generation besides EOS: the file's
// end-of-turn and end-of-message ids and the markers above.
func endOfTurn(f *gguf.File, tok *tokenizer.Tokenizer) []int {
	var out []int
	for _, key := range []string{"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		if id, ok := f.Uint(key); ok && id < uint64(tok.VocabSize()) {
			out = append(out, int(id))
		}
	}
	for _, text := range endOfTurnMarkers {
		if id, ok := tok.ID(text); ok {
			out = append(out, id)
		}
	}
	return out
}

func (e *Engine) initTemplate() error {
	if e.ChatConfig == nil || e.ChatConfig.Template == "" {
		return nil
	}
	t, err := chat.NewTemplate(e.ChatConfig.Template, e.ChatConfig)
	if err != nil {
		return fmt.Errorf("chat template: %w", err)
	}
	e.Template = t
	return nil
}
