package dataset_test

import (
	"fmt"

	"persona/dataset"
)

// Three documents packed into rows of 6 positions. A document of n tokens
// takes n−1 positions (input token i, target token i+1, weighted by the mask
// of token i+1); Start marks where each position's document begins, and the
// padding at the end of a row (pad 0, weight 0) is a document of its own.
func ExamplePack() {
	docs := []dataset.Document{
		{Source: "a.txt:1", Tokens: []int{1, 11, 12, 13}, Mask: []float32{0, 1, 1, 1}},
		{Source: "b.jsonl:1", Tokens: []int{1, 21, 22, 23, 24, 2}, Mask: []float32{0, 0, 0, 1, 1, 1}},
		{Source: "c.txt:4", Tokens: []int{1, 31, 32}, Mask: []float32{0, 1, 1}},
	}
	rows, err := dataset.Pack(docs, 6, 0)
	if err != nil {
		panic(err)
	}
	for _, r := range rows {
		fmt.Println("tokens ", r.Tokens)
		fmt.Println("targets", r.Targets)
		fmt.Println("weights", r.Weights)
		fmt.Println("start  ", r.Start)
		fmt.Println()
	}
	// Output:
	// tokens  [1 21 22 23 24 0]
	// targets [21 22 23 24 2 0]
	// weights [0 0 1 1 1 0]
	// start   [0 0 0 0 0 5]
	//
	// tokens  [1 11 12 1 31 0]
	// targets [11 12 13 31 32 0]
	// weights [1 1 1 1 1 0]
	// start   [0 0 0 3 3 5]
}
