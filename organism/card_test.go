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
	got := controlSection(dir)
	for _, want := range []string{
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
