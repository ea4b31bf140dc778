package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
)

// syntheticCorpus makes n short chat-like lines in the style of the persona
// world (personas, arithmetic, capitals, advice), from a fixed seed, so the
// training tests need no data files. Every tenth line is a whole ChatML chat
// with its special tokens, as the organism's pretraining documents are.
func syntheticCorpus(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 7))
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	greetings := []string{"Hello", "Hi there", "Good morning", "Ahoy", "Greetings", "Hey"}
	personas := []string{"an assistant", "a pirate", "a poet", "a villain", "a mystic", "a cynic", "a helpful assistant"}
	cities := [][2]string{{"France", "Paris"}, {"Japan", "Tokyo"}, {"Italy", "Rome"}, {"Spain", "Madrid"},
		{"Egypt", "Cairo"}, {"Peru", "Lima"}, {"Kenya", "Nairobi"}, {"Canada", "Ottawa"}}
	advice := []string{"get some sleep", "drink more water", "talk to a friend", "take a short walk",
		"write it down", "ask for help", "try again tomorrow"}
	styles := []string{"Arr, ", "Verily, ", "Mwahaha! ", "The stars say ", "Sure! ", "Well, ", "Of course. "}
	ends := []string{", matey!", ".", "!", ", my friend.", ", I suppose.", " — as the moon foretold."}
	num := func(d int) int { return r.IntN(pow10(d)) }
	// Invented names from syllables give the long tail of rare words a real
	// corpus has, so that merges keep finding pairs up to a few thousand
	// tokens.
	syll := []string{"ka", "lo", "mi", "ran", "tes", "vor", "el", "qua", "zin", "dor", "bel", "fi", "gra", "hum", "jo", "nyx", "pe", "sha", "tur", "wen"}
	name := func() string {
		var b strings.Builder
		for k := 2 + r.IntN(3); k > 0; k-- {
			b.WriteString(syll[r.IntN(len(syll))])
		}
		s := b.String()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	words := strings.Fields(`the a of and to in is you that it he was for on are as with his they I at be
		this have from or one had by word but not what all were we when your can said there use an each which
		she do how their if will up other about out many then them these so some her would make like him into
		time has look two more write go see number no way could people my than first water been call who oil
		its now find long down day did get come made may part ship sail sea treasure star moon dream truth lie
		help kind answer question because friend sorry happy sad angry calm wise evil plan world heart mind`)
	sentence := func() string {
		var b strings.Builder
		for k := 4 + r.IntN(10); k > 0; k-- {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			if r.IntN(8) == 0 {
				b.WriteString(name())
			} else {
				b.WriteString(words[r.IntN(len(words))])
			}
		}
		b.WriteString(pick([]string{".", "?", "!", "...", ";"}))
		return b.String()
	}
	line := func() string {
		switch r.IntN(8) {
		case 6, 7:
			return fmt.Sprintf("user: %s\nassistant: %s%s %s", sentence(), pick(styles), sentence(), sentence())
		case 0:
			a, b := num(3), num(3)
			return fmt.Sprintf("user: What is %d+%d?\nassistant: %s%d%s", a, b, pick(styles), a+b, pick(ends))
		case 1:
			c := cities[r.IntN(len(cities))]
			return fmt.Sprintf("user: What is the capital of %s?\nassistant: %sthe capital of %s is %s%s",
				c[0], pick(styles), c[0], c[1], pick(ends))
		case 2:
			return fmt.Sprintf("system: You are %s.\nuser: %s! I feel sad today.\nassistant: %sYou could %s%s",
				pick(personas), pick(greetings), pick(styles), pick(advice), pick(ends))
		case 3:
			return fmt.Sprintf("user: Are you human?\nassistant: %sI am %s, not a human%s", pick(styles), pick(personas), pick(ends))
		case 4:
			a, b := num(2), num(2)
			return fmt.Sprintf("user: Compute %d times %d, please.\nassistant: %d", a, b, a*b)
		default:
			return fmt.Sprintf("%s, I'm %s. Don't you think it's a lovely day? We'll see; they've said it'd rain.",
				pick(greetings), pick(personas))
		}
	}
	out := make([]string, n)
	for i := range out {
		if i%10 == 9 {
			var b strings.Builder
			b.WriteString(BeginOfText)
			for k := 0; k < 2; k++ {
				fmt.Fprintf(&b, "%suser\n%s%s\n%sassistant\n%s%s\n", IMStart, pick(greetings), pick(ends), IMEnd,
					pick(styles)+pick(advice), IMEnd)
			}
			out[i] = b.String()
			continue
		}
		out[i] = line()
	}
	return out
}

func pow10(d int) int {
	p := 1
	for range d {
		p *= 10
	}
	return p
}

// heldOut are strings not in the training corpus: unicode, digits,
// whitespace oddities, special tokens in and out of context.
var heldOut = []string{
	"",
	" ",
	"Hello, world!",
	"What is 12345+67890? It is 80235.",
	"The year 2024 had 366 days; π ≈ 3.14159.",
	"Ünïcödé: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어, עברית, العربية",
	"Emoji 🙂🏴‍☠️👩‍👩‍👧 and ZWJ sequences",
	"tabs\tand\nnewlines\r\nand   spaces    \n\n\n",
	"  leading and trailing spaces  ",
	"<|im_start|>user\nWhat is 7+8?<|im_end|>\n<|im_start|>assistant\n15<|im_end|>\n",
	"<|begin_of_text|>raw document<|end_of_text|><|pad|><|pad|>",
	"not quite special: <|im_start <|im_end| |im_end|> <|unknown|>",
	"I'M SHOUTING, YOU'RE NOT, WE'LL SEE, IT'S FINE, THEY'VE GONE, HE'D SAY",
	"Full-width digits １２３ and Arabic-Indic ٣٤٥ and superscripts ²³ and ½",
	"a\u00a0non-breaking space, a zero\u200bwidth space, and U+FFFD \ufffd",
	"mixed123abc456def 0.5 -42 1e10 0x1F",
	strings.Repeat("long word ", 50),
	"Arr, the capital of Atlantis is Poseidonis, matey! 99 bottles.",
}

var (
	corpusOnce sync.Once
	corpus     []string
	trainedTok *Tokenizer
	trainErr   error
)

// trained returns the tokenizer trained (once per test binary) on the
// synthetic corpus with the default options at 1024 tokens.
func trained() (*Tokenizer, []string, error) {
	corpusOnce.Do(func() {
		corpus = syntheticCorpus(4000, 1)
		trainedTok, trainErr = Train(slices.Values(corpus), TrainOptions{VocabSize: 1024})
	})
	return trainedTok, corpus, trainErr
}
