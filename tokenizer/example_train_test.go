package tokenizer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"persona/tokenizer"
)

// Train a small vocabulary, save it as a Hugging Face tokenizer, and load it
// back.
func ExampleTrain() {
	var texts []string
	for i := range 200 {
		texts = append(texts, fmt.Sprintf("user: What is %d+%d?\nassistant: The answer is %d.", i, 2*i, 3*i))
	}
	tok, err := tokenizer.Train(slices.Values(texts), tokenizer.TrainOptions{VocabSize: 300})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "tok")
	defer os.RemoveAll(dir)
	if err := tok.Save(dir); err != nil { // tokenizer.json + tokenizer_config.json
		panic(err)
	}
	back, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		panic(err)
	}
	ids := back.Encode("user: What is 12+7?", true)
	// Fewer than 300 tokens: training stops when no pair occurs twice.
	fmt.Println(back.VocabSize(), len(ids))
	for _, id := range ids {
		fmt.Printf("%q ", back.Decode([]int{id}))
	}
	fmt.Println()
	// Output:
	// 285 11
	// "<|begin_of_text|>" "user" ":" " What" " is" " " "1" "2" "+" "7" "?"
}
