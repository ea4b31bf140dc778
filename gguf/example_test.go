package gguf_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"persona/gguf"
	"persona/tensor"
)

// Write a small GGUF file and read it back: metadata keeps its GGUF type,
// and shapes are outermost-first on both sides.
func Example() {
	dir, _ := os.MkdirTemp("", "gguf-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")

	w := gguf.NewWriter()
	w.AddKV("general.architecture", "llama")
	w.AddKV("llama.block_count", uint32(2))
	data, _ := tensor.Encode(tensor.F16, []float32{1, 2, 3, 4, 5, 6})
	if err := w.AddTensor(tensor.Tensor{Name: "w", DType: tensor.F16, Shape: []int{2, 3}, Data: data}); err != nil {
		log.Fatal(err)
	}
	if err := w.WriteFile(path); err != nil {
		log.Fatal(err)
	}

	f, err := gguf.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	arch, _ := f.String("general.architecture")
	blocks, _ := f.Uint("llama.block_count")
	t, _ := f.Tensor("w")
	fmt.Println(arch, blocks, t.DType, t.Shape, f.Tensors[0].Dims, t.ToF32())
	// Output: llama 2 F16 [2 3] [3 2] [1 2 3 4 5 6]
}
