package main

import (
	"github.com/spf13/pflag"

	"persona/engine"
	"persona/models"
)

// modelFlag registers --model with the embedded organism as its default, so
// every verb runs out of the box.
func modelFlag(f *pflag.FlagSet, p *string, usage string) {
	f.StringVar(p, "model", models.Default, usage+`; "organism" is the embedded post-trained organism, "organism-base" its base`)
}

// tokenizerFlag registers --tokenizer, for verbs that can take the tokenizer
// from another file than the model's.
func tokenizerFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "tokenizer", "", "tokenizer.json or GGUF file to take the tokenizer from (default: the model's own)")
}

// sampling is the sampling block of the verbs that generate text: the
// defaults of --max-tokens, --temperature and --seed, and what each verb's
// tokens and seed are for.
type sampling struct {
	MaxTokens   int
	TokensUsage string // e.g. "tokens per reply"
	Temperature float32
	Seed        uint64
	SeedUsage   string // e.g. "seed for questions and sampling"
}

// samplingFlags registers --max-tokens, --temperature and --seed with d's
// defaults. A greedy default temperature says so in its help.
func samplingFlags(f *pflag.FlagSet, maxTokens *int, temperature *float32, seed *uint64, d sampling) {
	f.IntVar(maxTokens, "max-tokens", d.MaxTokens, d.TokensUsage)
	usage := "sampling temperature"
	if d.Temperature == 0 {
		usage += "; 0 is greedy"
	}
	f.Float32Var(temperature, "temperature", d.Temperature, usage)
	f.Uint64Var(seed, "seed", d.Seed, d.SeedUsage)
}

// loadEngine loads a model named by --model: an embedded name or a path.
func loadEngine(path string, opt engine.Options) (*engine.Engine, error) {
	dir, err := models.Resolve(path)
	if err != nil {
		return nil, err
	}
	return engine.LoadWith(dir, opt)
}
