package control

import (
	"context"
	"errors"
	"math"
	"testing"

	"persona/engine"
	"persona/internal/testmodel"
	"persona/world"
)

// The logit lens is linear in the vector and lists the largest raises and
// lowers in order.
func TestLens(t *testing.T) {
	e, err := engine.Load(testmodel.Organism(t, 32, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v := make([]float32, e.Model.Hidden)
	for i := range v {
		v[i] = float32(math.Sin(float64(i) + 1))
	}
	up, down, err := Lens(e, v, 5)
	if err != nil || len(up) != 5 || len(down) != 5 {
		t.Fatalf("%v: %d up, %d down", err, len(up), len(down))
	}
	for i := 1; i < 5; i++ {
		if up[i].Logit > up[i-1].Logit || down[i].Logit < down[i-1].Logit {
			t.Fatalf("not in order: %v / %v", up, down)
		}
	}
	if !(up[0].Logit > 0 && down[0].Logit < 0) {
		t.Errorf("top raise %g, top lower %g", up[0].Logit, down[0].Logit)
	}
	double := make([]float32, len(v))
	for i := range v {
		double[i] = 2 * v[i]
	}
	a, b := e.Model.DirectionLogits(v), e.Model.DirectionLogits(double)
	for i := range a {
		if math.Abs(float64(b[i]-2*a[i])) > 1e-4 {
			t.Fatalf("token %d: %g for 2v, %g for v", i, b[i], a[i])
		}
	}
	if _, _, err := Lens(e, v[:3], 5); err == nil {
		t.Error("a vector of another width accepted")
	}
}

// Patching on the shipped organism: every layer gets a recovery, each
// bounded by what patching one position can plausibly do, and the
// clean and role-play replies are apart.
func TestOrganismPatching(t *testing.T) {
	e, _ := shippedOrganism(t)
	pairs, err := WorldPatchPairs(world.Default(), 60, 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Patch(context.Background(), e, pairs, PatchOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pairs < 5 || len(res.Layers) != e.Model.NumLayers || !(res.Gap > 0) {
		t.Fatalf("%d pairs, %d layers, gap %g", res.Pairs, len(res.Layers), res.Gap)
	}
	// Pairs asked the same way both times leave nothing to patch.
	same := RolePlayPairs([]string{"What is 12 + 30?"}, nil, []string{"pirate"})
	same[0].RolePlay = same[0].Clean
	if _, err := Patch(context.Background(), e, same, PatchOptions{}); !errors.Is(err, ErrNothingToPatch) {
		t.Errorf("identical pair: %v", err)
	}
	for _, l := range res.Layers {
		t.Logf("layer %d: recovery %.2f [%.2f, %.2f]", l.Layer, l.Recovery, l.Lo, l.Hi)
		if math.IsNaN(l.Recovery) || l.Recovery < -1 || l.Recovery > 2 || l.Lo > l.Hi {
			t.Errorf("layer %d: %+v", l.Layer, l)
		}
	}
}
