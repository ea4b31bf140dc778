package tokenizer

// Test helpers shared with the external tokenizer_test package.

// TrainedForTest returns the tokenizer trained on the synthetic corpus (once
// per test binary) and the corpus.
func TrainedForTest() (*Tokenizer, []string, error) { return trained() }
