package tokenizer

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func mustTrained(t testing.TB) (*Tokenizer, []string) {
	t.Helper()
	tk, c, err := trained()
	if err != nil {
		t.Fatal(err)
	}
	return tk, c
}

func TestTrainVocabulary(t *testing.T) {
	tk, _ := mustTrained(t)
	if got := tk.VocabSize(); got != 1024 {
		t.Fatalf("VocabSize = %d, want 1024", got)
	}
	for i, s := range DefaultSpecialTokens {
		if id, ok := tk.ID(s); !ok || id != i || !tk.IsSpecial(id) {
			t.Errorf("special %q: id %d, %v, special %v; want id %d, special", s, id, ok, tk.IsSpecial(id), i)
		}
	}
	for b := 0; b < 256; b++ {
		if id, ok := tk.ID(byteToString[b]); !ok || id != len(DefaultSpecialTokens)+b {
			t.Errorf("byte %#x: id %d, %v; want %d", b, id, ok, len(DefaultSpecialTokens)+b)
		}
	}
	want := map[string]int{"BOS": 0, "EOS": 3, "PAD": 4}
	got := map[string]int{"BOS": tk.BOS(), "EOS": tk.EOS(), "PAD": tk.PAD()}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s = %d, want %d", k, got[k], want[k])
		}
	}
	if tk.ChatTemplate() != ChatMLTemplate {
		t.Errorf("chat template %q", tk.ChatTemplate())
	}
	if p := tk.AddedPrefix(); !slices.Equal(p, []int{0}) || len(tk.AddedSuffix()) != 0 {
		t.Errorf("post-processor adds %v ... %v, want [0] ... []", p, tk.AddedSuffix())
	}
	// The corpus' most common words became single tokens.
	for _, w := range []string{" the", "user", "assistant", " capital"} {
		if ids := tk.Encode(w, false); len(ids) != 1 {
			t.Errorf("%q: %d tokens %v, want 1", w, len(ids), ids)
		}
	}
}

func TestTrainCompresses(t *testing.T) {
	tk, _ := mustTrained(t)
	held := syntheticCorpus(500, 99) // same world, other seed: not the training text
	var nb, nt int
	for _, s := range held {
		nb += len(s)
		nt += len(tk.Encode(s, false))
	}
	ratio := float64(nt) / float64(nb)
	t.Logf("held-out chats: %d bytes -> %d tokens (%.3f tokens/byte)", nb, nt, ratio)
	if ratio > 0.4 {
		t.Errorf("%.3f tokens per byte: merges do not compress", ratio)
	}
}

func TestTrainRoundTrip(t *testing.T) {
	tk, _ := mustTrained(t)
	texts := append(slices.Clone(heldOut), syntheticCorpus(200, 5)...)
	for _, s := range texts {
		for _, special := range []bool{false, true} {
			ids := tk.Encode(s, special)
			if got := tk.Decode(ids[len(tk.AddedPrefix())*b2i(special):]); got != s {
				t.Errorf("Decode(Encode(%q, %v)) = %q", s, special, got)
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestTrainDigitsSingleTokens(t *testing.T) {
	tk, _ := mustTrained(t)
	texts := append(slices.Clone(heldOut), "0123456789", "a1b22c333 4444 x55555y", "x=10000000000;", " 7 77 777")
	r := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		texts = append(texts, strings.Repeat("9", 1+r.IntN(12))+" + "+strings.Repeat("1", 1+r.IntN(12)))
	}
	for _, s := range texts {
		ids, offs := tk.EncodeWithOffsets(s, false)
		for i, o := range offs {
			piece := s[o.Start:o.End]
			hasDigit := strings.ContainsAny(piece, "0123456789")
			if hasDigit && (len(piece) != 1 || tk.Token(ids[i]) != piece) {
				t.Errorf("%q: token %d %q covers %q, want a single digit", s, ids[i], tk.Token(ids[i]), piece)
			}
		}
	}
	// No vocabulary entry holds an ASCII digit together with anything else.
	for id := range tk.VocabSize() {
		if tok := tk.Token(id); len(tok) > 1 && strings.ContainsAny(tok, "0123456789") {
			t.Errorf("token %d %q contains a digit", id, tok)
		}
	}
}

func TestTrainSpecialTokensAtomic(t *testing.T) {
	tk, _ := mustTrained(t)
	im, _ := tk.ID(IMStart)
	end, _ := tk.ID(IMEnd)
	ids := tk.Encode("<|im_start|>user\nHi<|im_end|>", false)
	if ids[0] != im || ids[len(ids)-1] != end {
		t.Errorf("ids %v: want %d first and %d last", ids, im, end)
	}
	if got := tk.Decode(ids); got != "<|im_start|>user\nHi<|im_end|>" {
		t.Errorf("decode %q", got)
	}
	if got := tk.DecodeSkipSpecial(ids); got != "user\nHi" {
		t.Errorf("DecodeSkipSpecial %q", got)
	}
	// Near misses are plain text, spelled without any special id.
	for _, s := range []string{"<|im_start", "im_start|>", "<|im_end |>", "<|IM_START|>"} {
		for _, id := range tk.Encode(s, false) {
			if tk.IsSpecial(id) {
				t.Errorf("%q: special token %d in %v", s, id, tk.Encode(s, false))
			}
		}
	}
	// Every special token is exactly one id wherever it appears.
	for _, sp := range DefaultSpecialTokens {
		want, _ := tk.ID(sp)
		for _, ctx := range []string{"%s", "x%sy", " %s ", "%s%s", "1%s2"} {
			s := strings.ReplaceAll(ctx, "%s", sp)
			n := 0
			for _, id := range tk.Encode(s, false) {
				if id == want {
					n++
				} else if tk.IsSpecial(id) {
					t.Errorf("%q: unexpected special %d", s, id)
				}
			}
			if n != strings.Count(s, sp) {
				t.Errorf("%q: %d copies of %q, want %d", s, n, sp, strings.Count(s, sp))
			}
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	tk, c := mustTrained(t)
	a, err := tk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// Same corpus in another order, through a fresh run: the same file.
	shuffled := slices.Clone(c)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	tk2, err := Train(slices.Values(shuffled), TrainOptions{VocabSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tk2.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two trainings on the same corpus wrote different tokenizer.json files")
	}
	dir1, dir2 := t.TempDir(), t.TempDir()
	if err := tk.Save(dir1); err != nil {
		t.Fatal(err)
	}
	if err := tk2.Save(dir2); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		x, _ := os.ReadFile(filepath.Join(dir1, f))
		y, _ := os.ReadFile(filepath.Join(dir2, f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between runs (or is empty)", f)
		}
	}
}

// naiveTrain is the textbook trainer, recounting every pair before every
// merge, with the same tie rule; it checks the incremental bookkeeping.
func naiveTrain(pieces map[string]int64, nSpecial, vocab int, minFreq int64) [][2]int32 {
	type w struct {
		syms  []int32
		count int64
	}
	var ws []w
	for p, c := range pieces {
		s := make([]int32, len(p))
		for i := range len(p) {
			s[i] = int32(nSpecial) + int32(p[i])
		}
		ws = append(ws, w{s, c})
	}
	var merges [][2]int32
	next := int32(nSpecial + 256)
	for int(next) < vocab {
		counts := map[[2]int32]int64{}
		for _, x := range ws {
			for j := 0; j+1 < len(x.syms); j++ {
				counts[[2]int32{x.syms[j], x.syms[j+1]}] += x.count
			}
		}
		var best [2]int32
		var bc int64
		for p, c := range counts {
			if c > bc || (c == bc && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bc = p, c
			}
		}
		if bc < minFreq || bc == 0 {
			break
		}
		merges = append(merges, best)
		for i := range ws {
			var out []int32
			s := ws[i].syms
			for j := 0; j < len(s); j++ {
				if j+1 < len(s) && s[j] == best[0] && s[j+1] == best[1] {
					out = append(out, next)
					j++
				} else {
					out = append(out, s[j])
				}
			}
			ws[i].syms = out
		}
		next++
	}
	return merges
}

func TestTrainMatchesNaive(t *testing.T) {
	// Lowercase letters and spaces only, so that no two merges can spell the
	// same string and ids advance one per merge in both trainers.
	r := rand.New(rand.NewPCG(4, 4))
	var texts []string
	for range 300 {
		var b strings.Builder
		for range 5 + r.IntN(20) {
			b.WriteString(" ")
			for range 1 + r.IntN(7) {
				b.WriteByte("aabbbcdeeeeefg"[r.IntN(14)])
			}
		}
		texts = append(texts, b.String())
	}
	// Runs of one letter and of repeated pairs exercise overlapping
	// occurrences ("a a a": only the first two merge) and long pieces.
	for i := range 40 {
		texts = append(texts, " "+strings.Repeat("a", 1+i)+" "+strings.Repeat("ab", 1+i%9)+strings.Repeat("e", i%5)+" "+strings.Repeat("bba", i))
	}
	tk, err := Train(slices.Values(texts), TrainOptions{VocabSize: 3000, SpecialTokens: []string{"<s>"}})
	if err != nil {
		t.Fatal(err)
	}
	var byteLevel bool
	pre, _ := parsePreTokenizer((&hfSpec{pattern: DefaultPattern}).preTokenizerJSON(), "", &byteLevel)
	want := naiveTrain(countPieces(slices.Values(texts), newAddedSet([]addedToken{{content: "<s>", id: 0}}), pre), 1, 3000, 2)
	s, err := specOf(tk)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.merges) != len(want) {
		t.Fatalf("%d merges, naive trainer %d", len(s.merges), len(want))
	}
	for i, m := range s.merges {
		a, _ := tk.ID(m[0])
		b, _ := tk.ID(m[1])
		if int32(a) != want[i][0] || int32(b) != want[i][1] {
			t.Fatalf("merge %d: (%d %d) %q, naive trainer (%d %d)", i, a, b, m, want[i][0], want[i][1])
		}
	}
	t.Logf("%d merges agree with the naive trainer", len(want))
}

func TestTrainStopsAtMinFrequency(t *testing.T) {
	tk, err := Train(slices.Values([]string{"abab abab", "xyz"}), TrainOptions{VocabSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// "abab" twice and " abab" once: merges (a,b), (ab,ab); nothing else
	// occurs twice.
	if got, want := tk.VocabSize(), 5+256+2; got != want {
		t.Errorf("VocabSize = %d, want %d", got, want)
	}
	tk, err = Train(slices.Values([]string{"abab abab", "xyz"}), TrainOptions{VocabSize: 4096, MinFrequency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() <= 5+256+2 {
		t.Errorf("MinFrequency 1: VocabSize = %d, want more merges", tk.VocabSize())
	}
}

func TestTrainBadOptions(t *testing.T) {
	corpus := slices.Values([]string{"some text to train on", "more text"})
	for _, c := range []struct {
		name  string
		texts []string
		opt   TrainOptions
		want  string
	}{
		{"vocab too small", nil, TrainOptions{VocabSize: 260}, "smaller than the 256 byte tokens plus 5 special tokens (261)"},
		{"vocab zero", nil, TrainOptions{}, "vocabulary size 0"},
		{"no specials, too small", nil, TrainOptions{VocabSize: 255, SpecialTokens: []string{}}, "(256)"},
		{"empty corpus", []string{}, TrainOptions{VocabSize: 1000}, "empty corpus"},
		{"only specials", []string{"<|im_start|><|im_end|>", ""}, TrainOptions{VocabSize: 1000}, "empty corpus"},
		{"duplicate special", nil, TrainOptions{VocabSize: 1000, SpecialTokens: []string{"<a>", "<a>"}}, "listed twice"},
		{"empty special", nil, TrainOptions{VocabSize: 1000, SpecialTokens: []string{""}}, "empty special"},
		{"byte-like special", nil, TrainOptions{VocabSize: 1000, SpecialTokens: []string{"x"}}, "spelled like a byte token"},
		{"BOS not special", nil, TrainOptions{VocabSize: 1000, SpecialTokens: []string{"<s>"}, BOS: "<bos>"}, `BOS "<bos>" is not one of`},
		{"negative min frequency", nil, TrainOptions{VocabSize: 1000, MinFrequency: -1}, "negative"},
		{"bad pattern", nil, TrainOptions{VocabSize: 1000, Pattern: "(unclosed"}, "pattern"},
	} {
		t.Run(c.name, func(t *testing.T) {
			texts := corpus
			if c.texts != nil {
				texts = slices.Values(c.texts)
			}
			_, err := Train(texts, c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestTrainCustomOptions: no BOS means no post-processor; a GPT-2 pattern
// (numbers not split) is honoured.
func TestTrainCustomOptions(t *testing.T) {
	texts := syntheticCorpus(1000, 8)
	tk, err := Train(slices.Values(texts), TrainOptions{VocabSize: 400, SpecialTokens: []string{"<|endoftext|>"},
		EOS: "<|endoftext|>", Pattern: gpt2Pattern})
	if err != nil {
		t.Fatal(err)
	}
	if tk.BOS() != -1 || tk.EOS() != 0 || tk.PAD() != -1 || len(tk.AddedPrefix()) != 0 || tk.ChatTemplate() != "" {
		t.Errorf("BOS %d EOS %d PAD %d prefix %v template %q", tk.BOS(), tk.EOS(), tk.PAD(), tk.AddedPrefix(), tk.ChatTemplate())
	}
	if got := tk.Encode("x", true); len(got) != 1 {
		t.Errorf("Encode with special tokens added %v", got)
	}
	checkReload(t, tk, texts[:50])
	checkGGUF(t, tk, texts[:50])
}

// BenchmarkTrain trains on about 6 MB, the scale of the organism's corpus.
func BenchmarkTrain(b *testing.B) {
	big := syntheticCorpus(60000, 2)
	n := 0
	for _, s := range big {
		n += len(s)
	}
	b.SetBytes(int64(n))
	for b.Loop() {
		tk, err := Train(slices.Values(big), TrainOptions{VocabSize: 4096})
		if err != nil {
			b.Fatal(err)
		}
		if tk.VocabSize() != 4096 {
			b.Fatalf("VocabSize %d, want 4096", tk.VocabSize())
		}
	}
}

// BenchmarkTrainLongPiece trains on one 200 kB piece (text without spaces):
// merges cost per occurrence, not per piece length, so this is about as fast
// per byte as ordinary text.
func BenchmarkTrainLongPiece(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	text := make([]byte, 200000)
	for i := range text {
		text[i] = "abcdefghij"[r.IntN(10)]
	}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := Train(slices.Values([]string{string(text)}), TrainOptions{VocabSize: 2048}); err != nil {
			b.Fatal(err)
		}
	}
}

// checkReload writes tk as tokenizer.json (+ config), loads it back, and
// checks ids, offsets and decoding agree on texts and heldOut, and that
// writing the loaded tokenizer gives the same file.
func checkReload(t *testing.T, tk *Tokenizer, texts []string) *Tokenizer {
	t.Helper()
	dir := t.TempDir()
	if err := tk.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, "Load(WriteJSON)", tk, back, append(slices.Clone(heldOut), texts...))
	if back.BOS() != tk.BOS() || back.EOS() != tk.EOS() || back.PAD() != tk.PAD() || back.ChatTemplate() != tk.ChatTemplate() {
		t.Errorf("reloaded BOS/EOS/PAD %d/%d/%d template %q; trained %d/%d/%d %q", back.BOS(), back.EOS(), back.PAD(),
			back.ChatTemplate(), tk.BOS(), tk.EOS(), tk.PAD(), tk.ChatTemplate())
	}
	a, _ := tk.MarshalJSON()
	b, err := back.MarshalJSON()
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("re-writing the loaded tokenizer changes tokenizer.json (err %v)", err)
	}
	return back
}

// checkGGUF writes tk's GGUF metadata into a file, reads it with FromGGUF,
// and checks the encodings agree.
func checkGGUF(t *testing.T, tk *Tokenizer, texts []string) *Tokenizer {
	t.Helper()
	kvs, err := tk.GGUFMetadata()
	if err != nil {
		t.Fatal(err)
	}
	back := readGGUFTokenizer(t, writeVocabGGUF(t, kvs))
	sameEncoding(t, "FromGGUF(GGUFMetadata)", tk, back, append(slices.Clone(heldOut), texts...))
	if back.BOS() != tk.BOS() || back.EOS() != tk.EOS() || back.PAD() != tk.PAD() || back.ChatTemplate() != tk.ChatTemplate() {
		t.Errorf("GGUF BOS/EOS/PAD %d/%d/%d; trained %d/%d/%d", back.BOS(), back.EOS(), back.PAD(), tk.BOS(), tk.EOS(), tk.PAD())
	}
	return back
}

func sameEncoding(t *testing.T, what string, want, got *Tokenizer, texts []string) {
	t.Helper()
	if got.VocabSize() != want.VocabSize() {
		t.Fatalf("%s: VocabSize %d, want %d", what, got.VocabSize(), want.VocabSize())
	}
	for id := range want.VocabSize() {
		if got.Token(id) != want.Token(id) || got.IsSpecial(id) != want.IsSpecial(id) {
			t.Fatalf("%s: token %d is %q (special %v), want %q (%v)", what, id, got.Token(id), got.IsSpecial(id),
				want.Token(id), want.IsSpecial(id))
		}
	}
	bad := 0
	for _, s := range texts {
		for _, special := range []bool{false, true} {
			wi, wo := want.EncodeWithOffsets(s, special)
			gi, gofs := got.EncodeWithOffsets(s, special)
			if !slices.Equal(wi, gi) || !slices.Equal(wo, gofs) {
				bad++
				if bad <= 5 {
					t.Errorf("%s: %q (special %v):\n got %v %v\nwant %v %v", what, s, special, gi, gofs, wi, wo)
				}
			}
		}
		if ids := want.Encode(s, true); got.Decode(ids) != want.Decode(ids) || got.DecodeSkipSpecial(ids) != want.DecodeSkipSpecial(ids) {
			t.Errorf("%s: %q decodes differently", what, s)
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d encodings differ", what, bad, 2*len(texts))
	}
}

func TestTrainedReload(t *testing.T) {
	tk, c := mustTrained(t)
	checkReload(t, tk, c[:300])
}

func TestTrainedGGUF(t *testing.T) {
	tk, c := mustTrained(t)
	back := checkGGUF(t, tk, c[:300])
	kvs, _ := tk.GGUFMetadata()
	m := map[string]any{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	if m["tokenizer.ggml.model"] != "gpt2" || m["tokenizer.ggml.pre"] != "qwen2" || m["tokenizer.ggml.add_bos_token"] != true {
		t.Errorf("metadata %v %v %v", m["tokenizer.ggml.model"], m["tokenizer.ggml.pre"], m["tokenizer.ggml.add_bos_token"])
	}
	if types := m["tokenizer.ggml.token_type"].([]int32); types[0] != TokenControl || types[5] != TokenNormal {
		t.Errorf("token types %v", types[:8])
	}
	// A GGUF tokenizer writes the same metadata again (so a model can be
	// re-exported from a GGUF), and the same tokenizer.json as the original.
	kvs2, err := back.GGUFMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs2) != len(kvs) {
		t.Fatalf("%d keys, first export had %d", len(kvs2), len(kvs))
	}
	a, _ := tk.MarshalJSON()
	b, err := back.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// The GGUF tokenizer has every token in model.vocab and no other
	// difference that matters; compare the encodings of the two JSONs.
	ja, err := FromJSON(a, "a")
	if err != nil {
		t.Fatal(err)
	}
	jb, err := FromJSON(b, "b")
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, "JSON from GGUF", ja, jb, c[:50])
}

// Writing a real byte-level tokenizer (Llama 3.1, not trained here) keeps its
// encoding; Qwen3's NFC normalizer is refused rather than dropped.
func TestWriteJSONFixtures(t *testing.T) {
	tk := loadFixture(t, "llama3.1")
	data, err := tk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromJSON(data, "rewritten")
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, "llama3.1 rewritten", tk, back, heldOut)
	if _, err := tk.GGUFMetadata(); err != nil {
		t.Errorf("llama3.1 GGUF metadata: %v", err)
	}
	q := loadFixture(t, "qwen3")
	if _, err := q.MarshalJSON(); err == nil || !strings.Contains(err.Error(), "normalizer") {
		t.Errorf("qwen3: err = %v, want a normalizer error", err)
	}
	spm := loadFixture(t, "mistral-7b-v0.1")
	if _, err := spm.GGUFMetadata(); err == nil || !strings.Contains(err.Error(), "byte-level") {
		t.Errorf("mistral: err = %v, want a byte-level error", err)
	}
}

func TestTrainedFileValid(t *testing.T) {
	tk, _ := mustTrained(t)
	data, _ := tk.MarshalJSON()
	if !utf8.Valid(data) || bytes.Contains(data, []byte(`\u003c`)) {
		t.Error("tokenizer.json is not plain UTF-8 JSON")
	}
	for _, want := range []string{`"type": "TemplateProcessing"`, `"<|begin_of_text|>": 0`, `"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("tokenizer.json lacks %s", want)
		}
	}
}

// FuzzTrain: any corpus trains (or fails with an error), the result
// round-trips its own lines, and its tokenizer.json reloads to the same
// encoding.
func FuzzTrain(f *testing.F) {
	f.Add("hello world\nhello there\n12+34=46")
	f.Add("<|im_start|>user\naaaa aaaa<|im_end|>\n\n\n  \t")
	f.Add("ünïcode 🙂🙂 ab'sab'LL\r\n\x80\xff")
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		tk, err := Train(slices.Values(lines), TrainOptions{VocabSize: 300, MinFrequency: 1})
		if err != nil {
			if !strings.Contains(err.Error(), "empty corpus") {
				t.Fatal(err)
			}
			return
		}
		data, err := tk.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := FromJSON(data, "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			ids := tk.Encode(l, false)
			if utf8.ValidString(l) && tk.Decode(ids) != l {
				t.Errorf("Decode(Encode(%q)) = %q", l, tk.Decode(ids))
			}
			if !slices.Equal(back.Encode(l, true), tk.Encode(l, true)) {
				t.Errorf("%q: reloaded tokenizer encodes differently", l)
			}
		}
	})
}
