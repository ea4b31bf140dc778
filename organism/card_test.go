package organism

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/control"
	"persona/internal/stats"
)

// The card's control section reads the control commands' own JSON: a
// sweep and its recommended cell, a suppression sweep with none, and a
// capping calibration.
func TestCardControlSection(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cell := func(layers []int, where string, strength float64, k, acc int) control.CellResult {
		return control.CellResult{Cell: control.Cell{Layers: layers, Strength: strength}, Position: where,
			Trait: stats.NewProportion(k, 60), Accuracy: stats.NewProportion(acc, 40)}
	}
	write("sweep-cynical.json", &control.Sweep{Trait: "cynical", Recommended: 1,
		Cells: []control.CellResult{cell(nil, "none", 0, 1, 40), cell([]int{0, 1, 2, 3}, "generated", 0.5, 25, 37)}})
	write("suppress-malicious.json", &control.Sweep{Trait: "malicious", Suppress: true, Recommended: -1,
		Cells: []control.CellResult{cell(nil, "none", 0, 58, 40)}})
	write("capping.json", &control.Calibration{Recommended: 1, Cells: []control.CapCell{
		{Captured: stats.NewProportion(50, 64), Accuracy: stats.NewProportion(40, 40)},
		{Layers: []int{0, 1, 2, 3}, Percentile: 25, Captured: stats.NewProportion(30, 64), Accuracy: stats.NewProportion(40, 40), Cut: 0.4, DiffLo: 0.1, DiffHi: 0.5},
		{Layers: []int{2}, Percentile: 25, Captured: stats.NewProportion(45, 64), Accuracy: stats.NewProportion(39, 40), Cut: 0.1, DiffLo: -0.05, DiffHi: 0.2}}})
	read := func(narrow, broad, acc int) control.Reading {
		return control.Reading{Narrow: stats.NewProportion(narrow, 90), Broad: stats.NewProportion(broad, 630), Accuracy: stats.NewProportion(acc, 40)}
	}
	write("inoculation.json", &control.Inoculation{Trait: "sycophantic", Persona: "sycophant", Kind: "flattery", Base: read(6, 25, 40),
		Arms: []control.ArmResult{
			{Arm: "narrow", Samples: 1200, Pooled: read(64, 75, 27), Shift: 0.079, ShiftLo: 0.037, ShiftHi: 0.113},
			{Arm: "inoculated", Samples: 1200, Pooled: read(15, 38, 33), Shift: 0.022, ShiftLo: -0.017, ShiftHi: 0.051, Removed: &[3]float64{0.72, 0.43, 0.95}},
		},
		Settings: control.InoculationSettings{Seeds: 3, Steps: 750, LR: 1e-3, Laden: 1000, Clean: 200, Eval: 30}})
	got := controlSection(dir)
	for _, want := range []string{
		"--trait\nvectors/traits/organism/sycophantic.yaml --vectors sycophantic.safetensors --laden 1000 --clean 200 --steps 750 --lr 0.001\n--eval 30 --seeds 3 --json`",
		"| before fine-tuning | — | 7% [3, 14] | 4% [3, 6] | 100% | — | — |",
		"| narrow | 1200 | 71% [61, 79] | 12% [10, 15] | 68% | +0.079 [+0.037, +0.113] | — |",
		"| inoculated | 1200 | 17% [10, 26] | 6% [4, 8] | 82% | +0.022 [-0.017, +0.051] | 72% [43, 95] |",
		"| cynical | add (no prompt asks for it) | 2% [0, 9]; tasks 100% | layers 0-3, generated positions, 0.5 | 42% [30, 54]; tasks 92% |",
		"| malicious | remove (under its own strong prompt) | 97% [89, 99]; tasks 100% | none keeps the tasks | — |",
		"| uncapped | 78% [67, 86] | — | 100% |",
		"| layers 0-3, 25th percentile | 47% [35, 59] | +40% [+0.10, +0.50] | 100% |",
		"| layer 2, 25th percentile | 70% [58, 80] | +10% [-0.05, +0.20] | 98% |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if controlSection(t.TempDir()) != "" {
		t.Error("a control section without results")
	}
}

// The shipped model card shows the control results kept beside it as the
// code renders them: a result file changed without the card, or the card
// edited by hand, fails here.
func TestShippedCardShowsKeptControlResults(t *testing.T) {
	dir := filepath.Join("..", "models", "organism")
	card, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := controlSection(filepath.Join(dir, ControlDir))
	if want == "" {
		t.Fatal("no control results kept beside the organism")
	}
	if !strings.Contains(string(card), want) {
		t.Errorf("models/organism/README.md does not hold the control section rendered from control/:\n%s", want)
	}
}
