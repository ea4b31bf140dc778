package chat_test

import (
	"fmt"
	"log"

	"persona/chat"
)

// Render a conversation with a ChatML template and find each message's
// content in the result: the span of the assistant's reply is exactly the
// text whose activations are averaged.
func Example() {
	const chatML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}" +
		"{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
	tmpl, err := chat.NewTemplate(chatML, nil)
	if err != nil {
		log.Fatal(err)
	}
	r, err := tmpl.Render([]chat.Message{
		{Role: "system", Content: "You are a pirate."},
		{Role: "user", Content: "Hello! "},
		{Role: "assistant", Content: "Ahoy, matey."},
	}, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(r.Text)
	for _, s := range r.Spans {
		fmt.Printf("%d %-9s [%2d,%2d) %q\n", s.Message, s.Role, s.Start, s.End, r.Text[s.Start:s.End])
	}
	// Output:
	// <|im_start|>system
	// You are a pirate.<|im_end|>
	// <|im_start|>user
	// Hello!<|im_end|>
	// <|im_start|>assistant
	// Ahoy, matey.<|im_end|>
	// 0 system    [19,36) "You are a pirate."
	// 1 user      [64,70) "Hello!"
	// 2 assistant [103,115) "Ahoy, matey."
}
