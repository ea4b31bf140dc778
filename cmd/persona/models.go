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

// loadEngine loads a model named by --model: an embedded name or a path.
func loadEngine(path string, opt engine.Options) (*engine.Engine, error) {
	dir, err := models.Resolve(path)
	if err != nil {
		return nil, err
	}
	return engine.LoadWith(dir, opt)
}
