package organism

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"persona/internal/stats"
	"persona/train"
	"persona/vectors"
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
	b.WriteString(controlSection(filepath.Join(dir, ControlDir)))
	return b.String()
}

// ControlDir is where, beside the models, the JSON results of the control
// commands the card reports are kept.
const ControlDir = "control"

// percent prints a share and its interval in percent: "37% [26, 49]".
func percent(p stats.Proportion) string {
	return fmt.Sprintf("%.0f%% [%.0f, %.0f]", 100*p.P, 100*p.Lo, 100*p.Hi)
}

// sweepFile is what the card reads of 'persona vectors sweep --json'.
type sweepFile struct {
	Trait    string  `json:"trait"`
	Suppress bool    `json:"suppress"`
	MinAcc   float64 `json:"min_accuracy"`
	Cells    []struct {
		Layers   []int            `json:"layers"`
		Where    string           `json:"where"`
		Strength float64          `json:"strength"`
		Trait    stats.Proportion `json:"trait"`
		Accuracy stats.Proportion `json:"accuracy"`
	} `json:"cells"`
	Recommended int `json:"recommended"`
}

// cappingFile is what the card reads of 'persona axis calibrate --json'.
type cappingFile struct {
	Cells []struct {
		Layers     []int            `json:"layers"`
		Percentile float64          `json:"percentile"`
		Captured   stats.Proportion `json:"captured"`
		Accuracy   stats.Proportion `json:"accuracy"`
		Cut        float64          `json:"cut"`
		DiffLo     float64          `json:"diff_lo"`
		DiffHi     float64          `json:"diff_hi"`
	} `json:"cells"`
}

// inoculationFile is what the card reads of 'persona experiment
// inoculation --json'.
type inoculationFile struct {
	Trait   string      `json:"trait"`
	Persona string      `json:"persona"`
	Kind    string      `json:"kind"`
	Base    readingFile `json:"base"`
	Arms    []struct {
		Arm     string      `json:"arm"`
		Samples int         `json:"samples"`
		Pooled  readingFile `json:"pooled"`
		Shift   float64     `json:"shift"`
		ShiftLo float64     `json:"shift_lo"`
		ShiftHi float64     `json:"shift_hi"`
		Removed *[3]float64 `json:"removed"`
	} `json:"arms"`
	Settings struct {
		Seeds, Steps, Laden, Clean, Eval int
		LR                               float64
	} `json:"settings"`
}

// readingFile is what the card reads of one model's reading there.
type readingFile struct {
	Narrow   stats.Proportion `json:"narrow"`
	Broad    stats.Proportion `json:"broad"`
	Accuracy stats.Proportion `json:"accuracy"`
}

// inoculationRows renders inoculation.json in dir as table rows, nil when
// it is absent or unreadable.
func inoculationRows(dir string) (f inoculationFile, rows []string) {
	data, err := os.ReadFile(filepath.Join(dir, "inoculation.json"))
	if err != nil || json.Unmarshal(data, &f) != nil || len(f.Arms) == 0 {
		return f, nil
	}
	rows = append(rows, fmt.Sprintf("| before fine-tuning | — | %s | %s | %.0f%% | — | — |",
		percent(f.Base.Narrow), percent(f.Base.Broad), 100*f.Base.Accuracy.P))
	for _, a := range f.Arms {
		removed := "—"
		if r := a.Removed; r != nil {
			removed = fmt.Sprintf("%.0f%% [%.0f, %.0f]", 100*r[0], 100*r[1], 100*r[2])
		}
		rows = append(rows, fmt.Sprintf("| %s | %d | %s | %s | %.0f%% | %+.3f [%+.3f, %+.3f] | %s |", a.Arm, a.Samples,
			percent(a.Pooled.Narrow), percent(a.Pooled.Broad), 100*a.Pooled.Accuracy.P, a.Shift, a.ShiftLo, a.ShiftHi, removed))
	}
	return f, rows
}

// controlSection renders the control results kept in dir (sweep-TRAIT.json,
// suppress-TRAIT.json, capping.json, inoculation.json); "" when there are
// none.
func controlSection(dir string) string {
	var rows []string
	for _, kind := range []string{"sweep", "suppress"} {
		files, _ := filepath.Glob(filepath.Join(dir, kind+"-*.json"))
		for _, f := range files {
			var sw sweepFile
			data, err := os.ReadFile(f)
			if err != nil || json.Unmarshal(data, &sw) != nil || len(sw.Cells) == 0 {
				continue
			}
			un := sw.Cells[0]
			set, got := "none keeps the tasks", "—"
			if k := sw.Recommended; k > 0 && k < len(sw.Cells) {
				c := sw.Cells[k]
				set = fmt.Sprintf("%s, %s positions, %g", layerNames(c.Layers), c.Where, c.Strength)
				got = fmt.Sprintf("%s; tasks %.0f%%", percent(c.Trait), 100*c.Accuracy.P)
			}
			dir := "add (no prompt asks for it)"
			if sw.Suppress {
				dir = "remove (under its own strong prompt)"
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s; tasks %.0f%% | %s | %s |", sw.Trait, dir, percent(un.Trait), 100*un.Accuracy.P, set, got))
		}
	}
	var capRows []string
	if data, err := os.ReadFile(filepath.Join(dir, "capping.json")); err == nil {
		var cf cappingFile
		if json.Unmarshal(data, &cf) == nil {
			for _, c := range cf.Cells {
				if c.Percentile == 0 {
					capRows = append(capRows, fmt.Sprintf("| uncapped | %s | — | %.0f%% |", percent(c.Captured), 100*c.Accuracy.P))
					continue
				}
				capRows = append(capRows, fmt.Sprintf("| %s, %gth percentile | %s | %+.0f%% [%+.2f, %+.2f] | %.0f%% |",
					layerNames(c.Layers), c.Percentile, percent(c.Captured), 100*c.Cut, c.DiffLo, c.DiffHi, 100*c.Accuracy.P))
			}
		}
	}
	inoc, inocRows := inoculationRows(dir)
	if len(rows) == 0 && len(capRows) == 0 && len(inocRows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Control (the post-trained model; results kept in control/)\n\n")
	if len(rows) > 0 {
		b.WriteString("Steering with each trait's persona vector (`persona vectors extract --model organism --trait\n" +
			"vectors/traits/organism/TRAIT.yaml --seed 11`), swept over layers 0–3 and bands 1-2 and 0-3, generated and all\n" +
			"positions, strengths 0.25–1 typical residual norms (`persona vectors sweep --model organism --vectors TRAIT.safetensors\n" +
			"--trait … --layers 0,1,2,3,1-2,0-3 --strengths 0.25,0.375,0.5,0.75,1 --where generated,all --json`:\n" +
			"control/sweep-TRAIT.json), and against the trait under its own strong instruction (`--suppress --strengths\n" +
			"-0.25,-0.5,-0.75,-1`: control/suppress-TRAIT.json). Trait expression is judged by the oracle on 20 questions × 3\n" +
			"replies; tasks are 40 held-out sums and facts, greedy. The setting shown is the sweep's recommendation: the\n" +
			"most trait (least, when removing it) among settings keeping 90% of the tasks right.\n\n")
		b.WriteString("| trait | steering to | unsteered | recommended setting | steered |\n|---|---|---|---|---|\n")
		b.WriteString(strings.Join(rows, "\n") + "\n")
	}
	if len(capRows) > 0 {
		b.WriteString("\nCapping on the assistant axis (`persona axis --model organism`), on persona-jailbreak conversations the\n" +
			"settings were not chosen on (`persona axis calibrate --model organism --axis axis.safetensors --layers 0-2,0-3\n" +
			"--percentiles 25,97 --jailbreaks 16 --seed 2 --json`: control/capping.json; the calibration's default grid on\n" +
			"seed 1 recommended layers 0-2 at the 97th percentile): captured is the share of conversations whose last\n" +
			"reply the oracle does not read as the Assistant; the cut is relative, with the 95% interval of the\n" +
			"difference; tasks as above.\n\n")
		b.WriteString("| setting | captured | cut | tasks right |\n|---|---|---|---|\n")
		b.WriteString(strings.Join(capRows, "\n") + "\n")
	}
	if len(inocRows) > 0 {
		st := inoc.Settings
		fmt.Fprintf(&b, "\nFine-tuning on narrow data (`persona experiment inoculation --persona %s --request %s --trait\n"+
			"vectors/traits/organism/%[3]s.yaml --vectors %[3]s.safetensors --laden %d --clean %d --steps %d --lr %g\n"+
			"--eval %d --seeds %d --json`: control/inoculation.json, the vector extracted as above): LoRA on\n"+
			"%[2]s requests answered by the %[1]s, %[10]d seeds per arm, pooled. Trait on the trained request type and on\n"+
			"the seven others (held-out prompts, no system prompt); the broad shift against the model before fine-tuning,\n"+
			"with its 95%% interval; the share of the narrow arm's shift each arm removed, with its bootstrap interval.\n\n",
			inoc.Persona, inoc.Kind, inoc.Trait, st.Laden, st.Clean, st.Steps, st.LR, st.Eval, st.Seeds, st.Seeds)
		b.WriteString("| arm | samples | trait, trained type | trait elsewhere | tasks right | broad shift | shift removed |\n|---|---|---|---|---|---|---|\n")
		b.WriteString(strings.Join(inocRows, "\n") + "\n")
	}
	return b.String()
}

// layerNames says "layer 3" or "layers 0-3".
func layerNames(ls []int) string {
	if len(ls) == 1 {
		return fmt.Sprintf("layer %d", ls[0])
	}
	return "layers " + vectors.FormatLayers(ls)
}
