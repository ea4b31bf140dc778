package control

import (
	"context"
	"math/rand/v2"
	"testing"

	"persona/engine"
	"persona/internal/testmodel"
	"persona/models"
	"persona/vectors"
	"persona/world"
)

func TestMain(m *testing.M) { testmodel.Main(m) }

// shippedOrganism loads the shipped post-trained organism (closed after the test)
// and returns it with its directory.
func shippedOrganism(t *testing.T) (*engine.Engine, string) {
	t.Helper()
	path, err := models.Path("organism")
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, path
}

// traitSpec loads one of the organism's trait specs.
func traitSpec(t *testing.T, name string) *vectors.TraitSpec {
	t.Helper()
	spec, err := vectors.LoadTraitSpec("../vectors/traits/organism/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// trait is the cynical trait, the one most of these tests steer.
func trait(t *testing.T) *vectors.TraitSpec { return traitSpec(t, "cynical") }

// extract is a persona vector on a small budget (samples answers per
// question and instruction), scored by the world's oracle.
func extract(t *testing.T, e *engine.Engine, spec *vectors.TraitSpec, samples int) *vectors.Set {
	t.Helper()
	v, _, err := vectors.Extract(context.Background(), e, spec, vectors.OracleScorer{Oracle: world.Default().Oracle()},
		vectors.ExtractOptions{GenerateOptions: vectors.GenerateOptions{Samples: samples, Seed: 11}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// randomRows are n standard-normal vectors of a width.
func randomRows(seed uint64, n, width int) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, width)
		for j := range out[i] {
			out[i][j] = float32(rng.NormFloat64())
		}
	}
	return out
}
