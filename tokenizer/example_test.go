package tokenizer_test

import (
	"fmt"

	"persona/internal/testref"
	"persona/tokenizer"
)

// Encode a chat turn with Llama 3's tokenizer and map a byte span of the
// text to the tokens that cover it.
func ExampleTokenizer_EncodeWithOffsets() {
	tk, err := tokenizer.Load(testref.Dir() + "/tokenizers/llama3.1/tokenizer.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	text := "<|start_header_id|>user<|end_header_id|>\n\nHello, world!"
	ids, offs := tk.EncodeWithOffsets(text, true)
	for i, id := range ids {
		fmt.Printf("%6d %q %q\n", id, tk.Token(id), text[offs[i].Start:offs[i].End])
	}
	fmt.Println(tk.DecodeSkipSpecial(ids))
	// Output:
	// 128000 "<|begin_of_text|>" ""
	// 128006 "<|start_header_id|>" "<|start_header_id|>"
	//    882 "user" "user"
	// 128007 "<|end_header_id|>" "<|end_header_id|>"
	//    271 "ĊĊ" "\n\n"
	//   9906 "Hello" "Hello"
	//     11 "," ","
	//   1917 "Ġworld" " world"
	//      0 "!" "!"
	// user
	//
	// Hello, world!
}
