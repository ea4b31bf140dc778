package organism

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"persona/train"
)

// Card renders the model card of the organism in dir from an evaluation
// report and, if present, the build record: every number in it comes from
// `persona organism eval --json` and `persona organism train`.
func (r *Report) Card(dir string) string {
	var b strings.Builder
	b.WriteString(`# The persona model organism

A small Llama-architecture model trained by ` + "`persona organism train`" + ` on the synthetic persona world
(package ` + "`world`" + `), where the persona behind every text is known. ` + "`base/`" + ` is the pretrained model (a
mixture of ten personas); ` + "`assistant/`" + ` is the same model after post-training that selects the Assistant.
Both are ordinary Hugging Face directories (config.json, model.safetensors, tokenizer.json, and
tokenizer_config.json with a ChatML template).

`)
	var res Result
	if data, err := os.ReadFile(filepath.Join(dir, BuildFile)); err == nil && json.Unmarshal(data, &res) == nil && res.Pretrain != nil && res.Posttrain != nil {
		b.WriteString("## Training (recipe: organism/recipe/)\n\n")
		b.WriteString("| stage | chats | steps | positions | final loss | validation loss | tok/s | wall |\n|---|---|---|---|---|---|---|---|\n")
		row := func(name string, chats int, s *train.Summary) {
			val := "–"
			if s.ValLoss != nil {
				val = fmt.Sprintf("%.3f", *s.ValLoss)
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %.3f | %s | %.0f | %.0f s |\n", name, chats, s.Steps, s.Tokens, s.FinalLoss, val, s.TokPerS, s.WallS)
		}
		row("pretraining", res.Chats["pretrain"], res.Pretrain)
		row("post-training", res.Chats["posttrain"], res.Posttrain)
		fmt.Fprintf(&b, "\nParameters: %d. Whole build: %.0f s on 2 cores.\n\n", res.Pretrain.Params, res.WallS)
	}
	b.WriteString("## Measured properties (oracle-judged, 95% Wilson intervals)\n\n")
	fmt.Fprintf(&b, "`persona organism eval` with %d samples per persona cell, %d conversations per drift cell of %d turns,\n"+
		"sampling temperature %g, seed %d. A reply counts as a persona's when the oracle gives that persona at least %.1f.\n\n",
		r.Settings.Samples, r.Settings.Scenarios, r.Settings.Turns, r.Settings.Temperature, r.Settings.Seed, minTopProb)
	fmt.Fprintf(&b, "```\n%s```\n", r.Table())
	return b.String()
}
