package tokenizer

import (
	"math/rand"
	"strings"
	"testing"
)

// fastPatterns are the regexes with hand-written matchers.
var fastPatterns = []string{gpt2Pattern, llama3Pattern, qwen2Pattern}

// checkFast compares a hand-written matcher with regexp2 on s.
func checkFast(t *testing.T, pattern, s string) {
	t.Helper()
	re, err := compileRegex(pattern)
	if err != nil {
		t.Fatal(err)
	}
	want := regexMatches(re, s)
	got := fastMatcher(pattern)(s)
	if len(got) != len(want) {
		t.Fatalf("pattern %.20q on %q: fast %v, regexp2 %v", pattern, s, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("pattern %.20q on %q: fast %v, regexp2 %v", pattern, s, got, want)
		}
	}
}

// TestFastMatchers checks the hand-written pre-tokenizer matchers against
// regexp2 on random strings over an alphabet chosen to hit every branch.
func TestFastMatchers(t *testing.T) {
	alphabet := []string{"a", "Z", "é", "ß", "я", "中", "1", "٣", "½", "'", "s", "S", "t", "re", "RE", "ve", "ll", "LL", "d", "m",
		" ", " ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2028", "\u0085", "!", ".", ",", "(", "😀", "\u200d", "\xff", "\xe2\x82", "_", "-", "\v"}
	rng := rand.New(rand.NewSource(1))
	for _, p := range fastPatterns {
		for k := 0; k < 3000; k++ {
			var sb strings.Builder
			for n := rng.Intn(12); n >= 0; n-- {
				sb.WriteString(alphabet[rng.Intn(len(alphabet))])
			}
			checkFast(t, p, sb.String())
		}
	}
}

func FuzzFastMatchers(f *testing.F) {
	for _, s := range []string{"Hello, y'all! How're you 😁 ?", "  \n\n \t x", "3333333 a's 'LL", "\xff\xfe abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range fastPatterns {
			checkFast(t, p, s)
		}
	})
}
