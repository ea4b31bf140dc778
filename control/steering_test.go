package control

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"persona/engine"
	"persona/internal/stats"
	"persona/internal/testmodel"
	"persona/resid"
	"persona/vectors"
	"persona/world"
)

func TestParseBands(t *testing.T) {
	got, err := ParseBands("0, 2,1-3", 4)
	if err != nil || len(got) != 3 || !slices.Equal(got[2], []int{1, 2, 3}) || !slices.Equal(got[1], []int{2}) {
		t.Fatalf("%v, %v", got, err)
	}
	for _, bad := range []string{"4", "2-1", "a", "1-", "", "-1"} {
		if _, err := ParseBands(bad, 4); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseBands("0-4", 4); !errors.Is(err, engine.ErrLayer) {
		t.Errorf("band past the model: %v", err)
	}
}

// The plumbing on a random model: every cell is run, the coefficients are
// the strength in units of the layer's residual norm split over the band,
// and cells steering generated positions reuse the unsteered prompts.
func TestSweepPlumbing(t *testing.T) {
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v := &vectors.Set{Name: "random", Layers: []int{0, 1}, Vectors: randomRows(3, 2, e.Model.Hidden)}
	o := SweepOptions{Vector: v, Trait: trait(t), Scorer: vectors.OracleScorer{Oracle: world.Default().Oracle()},
		Bands: [][]int{{1}, {0, 1}}, Strengths: []float64{0, 0.5}, Positions: []resid.Where{resid.Generated, resid.All},
		Questions: []string{"What is 35 + 50?", "How do I start running?"}, Samples: 2, Tasks: 3, MaxTokens: 6}
	sw, err := Run(context.Background(), e, world.Default(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(sw.Cells) != 1+2*2 { // unsteered, then 2 bands × 2 positions at 0.5
		t.Fatalf("%d cells", len(sw.Cells))
	}
	for _, c := range sw.Cells[1:] {
		for k, l := range c.Layers {
			want := 0.5 / float64(len(c.Layers)) * sw.Norms[l] / norm(v.Vectors[l])
			if math.Abs(c.Coeffs[k]-want) > 1e-9 {
				t.Errorf("band %s layer %d: coefficient %g, want %g", c.Band(), l, c.Coeffs[k], want)
			}
		}
		if c.Trait.N != 4 || c.Accuracy.N != 3 {
			t.Errorf("cell %s %s: %d replies, %d tasks", c.Band(), c.Position, c.Trait.N, c.Accuracy.N)
		}
		// Generated-only cells read no prompt; the others read each prompt
		// once for its two samples.
		if c.Positions >= c.NaivePositions {
			t.Errorf("cell %s %s: ran %d positions of a naive %d", c.Band(), c.Position, c.Positions, c.NaivePositions)
		}
	}
	for _, n := range sw.Norms {
		if !(n > 0) {
			t.Errorf("residual norms %v", sw.Norms)
		}
	}
	var table strings.Builder
	if err := sw.WriteTable(&table); err != nil || !strings.Contains(table.String(), "0-1") {
		t.Errorf("table (%v):\n%s", err, table.String())
	}
	var svg strings.Builder
	if err := sw.WriteSVG(&svg); err != nil || strings.Count(svg.String(), "<circle") != len(sw.Cells) {
		t.Errorf("svg (%v): %d circles for %d cells", err, strings.Count(svg.String(), "<circle"), len(sw.Cells))
	}
	o.Bands = [][]int{{1}}
	o.Strengths = []float64{math.NaN()}
	if _, err := Run(context.Background(), e, world.Default(), o); !errors.Is(err, ErrSweep) {
		t.Errorf("NaN strength: %v", err)
	}
	o.Strengths, o.Vector = []float64{1}, &vectors.Set{Name: "narrow", Layers: []int{0}, Vectors: [][]float32{{1, 2}}}
	if _, err := Run(context.Background(), e, world.Default(), o); err == nil {
		t.Error("a vector of another width accepted")
	}
}

// The frontier holds the cells nothing beats on both trait and accuracy;
// the recommendation is the most trait among cells keeping the accuracy
// floor (the least when suppressing), the gentler push on ties.
func TestFrontierAndRecommendation(t *testing.T) {
	cell := func(s, trait, acc float64) CellResult {
		return CellResult{Cell: Cell{Layers: []int{1}, Strength: s}, Trait: stats.Proportion{P: trait}, Accuracy: stats.Proportion{P: acc}}
	}
	sw := &Sweep{MinAcc: 0.9, Cells: []CellResult{cell(0, 0.05, 1), cell(0.5, 0.4, 0.95), cell(1, 0.4, 0.92), cell(2, 0.8, 0.5), cell(3, 0.3, 0.4)}}
	sw.frontier()
	if !slices.Equal(sw.Frontier, []int{0, 1, 3}) || sw.Recommended != 1 {
		t.Errorf("frontier %v, recommended %d", sw.Frontier, sw.Recommended)
	}
	sup := &Sweep{MinAcc: 0.9, Suppress: true, Cells: []CellResult{cell(0, 0.9, 1), cell(-0.5, 0.5, 0.95), cell(-1, 0.1, 0.92), cell(-2, 0.0, 0.3)}}
	sup.frontier()
	if sup.Recommended != 2 || !slices.Contains(sup.Frontier, 3) {
		t.Errorf("suppressing: frontier %v, recommended %d", sup.Frontier, sup.Recommended)
	}
	none := &Sweep{MinAcc: 0.99, Cells: []CellResult{cell(0, 0, 1), cell(1, 0.5, 0.5)}}
	if none.frontier(); none.Recommended != -1 {
		t.Errorf("nothing keeps the floor, recommended %d", none.Recommended)
	}
}

// On the shipped organism, a cynical vector (extracted here on a small
// budget) pushed over all layers at half the residual norm makes the replies
// cynical far more often than unsteered, while a quarter of it keeps most
// held-out tasks right. Loose bounds: the sweep's effect, not its numbers.
func TestOrganismSteeringEffect(t *testing.T) {
	e, _ := shippedOrganism(t)
	spec := trait(t)
	sc := vectors.OracleScorer{Oracle: world.Default().Oracle()}
	v := extract(t, e, spec, 2)
	sw, err := Run(context.Background(), e, world.Default(), SweepOptions{Vector: v, Trait: spec, Scorer: sc,
		Bands: [][]int{{0, 1, 2, 3}}, Strengths: []float64{0.25, 0.5}, Positions: []resid.Where{resid.Generated}, Samples: 2, Tasks: 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	plain, quarter, half := sw.Cells[0], sw.Cells[1], sw.Cells[2]
	t.Logf("trait %v → %v → %v; tasks %v → %v → %v", plain.Trait, quarter.Trait, half.Trait, plain.Accuracy, quarter.Accuracy, half.Accuracy)
	if half.Trait.Lo <= plain.Trait.Hi {
		t.Errorf("steering at 0.5 did not raise the trait: %v against %v unsteered", half.Trait, plain.Trait)
	}
	if quarter.Accuracy.P < 0.8 || plain.Accuracy.P < 0.9 {
		t.Errorf("held-out tasks: %v unsteered, %v at 0.25", plain.Accuracy, quarter.Accuracy)
	}
}
