package tokenizer

import (
	"strings"
	"testing"
)

const paragraph = `The quick brown fox jumps over the lazy dog. In 1984, researchers at the
laboratory measured 3.14159 units of something they couldn't quite explain; "it's
remarkable," said Dr. O'Neil, who'd spent 27 years on the problem. Meanwhile the
committee — unconvinced — asked for more data (and more coffee). Results: 42% success,
58% failure, and a great deal of paperwork.   Tabs	and  double  spaces too.
`

// BenchmarkEncode measures Encode throughput on English prose. "cold" uses
// text that never repeats so the pre-token cache rarely hits whole words.
func BenchmarkEncode(b *testing.B) {
	for _, dir := range []string{"llama3", "qwen3", "mistral-7b-v0.1"} {
		tk := loadFixture(b, dir)
		text := strings.Repeat(paragraph, 8)
		b.Run(dir, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tk.Encode(text, true)
			}
		})
	}
	tk := loadGGUF(b, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf")
	text := strings.Repeat(paragraph, 8)
	b.Run("llama-spm-gguf", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tk.Encode(text, true)
		}
	})
}
