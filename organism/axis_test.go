package organism

import (
	"context"
	"os"
	"testing"

	"persona/axis"
	"persona/engine"
	"persona/personas"
	"persona/world"
)

// shippedOrganism is where the trained organism lands; tests that need a
// trained model skip until it does. PERSONA_ORGANISM points them at another
// organism directory (a checkpoint under study).
var shippedOrganism = func() string {
	if d := os.Getenv("PERSONA_ORGANISM"); d != "" {
		return d
	}
	return "../models/organism/assistant"
}()

// On the trained organism the axis recovers what the world built in: the
// Assistant lies toward the upper end of PC1 of persona space (above most
// roles; the liar, which shares the Assistant's words, may sit beyond it)
// and PC1 is aligned with the axis. The bounds are loose on
// purpose (docs/measurements.md has the measured values): they check the
// finding, not the decimals.
func TestOrganismAxis(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the trained organism")
	}
	if _, err := os.Stat(shippedOrganism + "/config.json"); err != nil {
		t.Skip("the trained organism is not in models/organism yet")
	}
	e, err := engine.Load(shippedOrganism)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	w := world.Default()
	qs, err := AxisQuestions(w, 24, 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := axis.Build(context.Background(), e, axis.Options{Library: personas.Default(), Questions: qs, Seed: 1,
		Judge: axis.OracleJudge{Oracle: w.Oracle()}, Model: shippedOrganism})
	if err != nil {
		t.Fatal(err)
	}
	// The finding is checked at the last layer, where both builds measured
	// it (the Assistant above 8 of 9 roles); at the capping layer the
	// retrained build puts two roles' PC1 loadings above it as well, so
	// there the test asks only for a majority of roles below.
	last, capping := res.Layers[len(res.Layers)-1], res.Layers[0]
	for _, l := range res.Layers {
		if l.Layer == res.CapLayers[0] {
			capping = l
		}
	}
	for _, c := range []struct {
		ls        axis.LayerStats
		rank      float64
		minCosine float64
	}{{last, 0.75, 0.15}, {capping, 0.5, 0.15}} {
		t.Logf("layer %d: explained %.3v, cos(axis, PC1) %.3f, Assistant rank %.2f", c.ls.Layer, c.ls.Explained, c.ls.CosAxisPC1, c.ls.AssistantRank)
		if c.ls.AssistantRank < c.rank {
			t.Errorf("layer %d: the Assistant is above only %.0f%% of roles on PC1", c.ls.Layer, 100*c.ls.AssistantRank)
		}
		// The alignment varies between trainings of the organism (0.27 and up
		// measured); the test asks only that the axis is not orthogonal to PC1.
		if c.ls.CosAxisPC1 < c.minCosine {
			t.Errorf("layer %d: cos(axis, PC1) = %.3f", c.ls.Layer, c.ls.CosAxisPC1)
		}
	}
}
