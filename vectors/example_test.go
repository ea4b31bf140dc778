package vectors_test

import (
	"fmt"

	"persona/resid"
	"persona/vectors"
)

// A persona vector is the difference of per-response mean activations
// between responses that express a trait and responses that do not; new
// activations are scored by projecting onto it, and the model is steered by
// adding a multiple of it.
func Example() {
	layers := []int{4}
	pos, neg := vectors.NewAccumulator(layers), vectors.NewAccumulator(layers)
	// Each Add is one response's mean activation at the layers (from Capture).
	pos.Add([][]float32{{3, 1}})
	pos.Add([][]float32{{5, 1}})
	neg.Add([][]float32{{1, 1}})
	v, err := vectors.Difference("evil", "demo-model", pos, neg)
	if err != nil {
		panic(err)
	}
	fmt.Println("vector:", v.Vectors[0], v.Meta["count_pos"], "vs", v.Meta["count_neg"])

	score, _ := v.Project(4, []float32{2, 7})
	fmt.Println("projection:", score)

	steer, _ := v.Steer(4, 1.5, resid.Generated)
	fmt.Printf("steer: layer %d, %g·v on %s tokens\n", steer.Layer(), steer.Coeff, steer.Where)
	// Output:
	// vector: [3 0] 2 vs 1
	// projection: 2
	// steer: layer 4, 1.5·v on generated tokens
}
