package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"persona/safetensors"
	"persona/tensor"
)

// Write a checkpoint and open its directory as a Set, as a model loader does.
func Example() {
	dir, _ := os.MkdirTemp("", "safetensors-example")
	defer os.RemoveAll(dir)

	w := tensor.Tensor{Name: "model.norm.weight", DType: tensor.F32, Shape: []int{3}, Data: tensor.F32ToBytes([]float32{1, 0.5, 2})}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), []tensor.Tensor{w}, map[string]string{"format": "pt"}); err != nil {
		log.Fatal(err)
	}
	s, err := safetensors.OpenSet(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	t, _ := s.Tensor("model.norm.weight")
	fmt.Println(s.Names(), t.Shape, t.F32())
	// Output: [model.norm.weight] [3] [1 0.5 2]
}
