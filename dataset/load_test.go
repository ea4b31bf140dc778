package dataset

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/internal/testmodel"
	"persona/model"
)

// testMaxSeq is the tiny model's context, small enough to test the check
// against it.
const testMaxSeq = 256

// tinyEngine loads a random Qwen3-shaped model that carries the real Qwen3
// tokenizer and chat template, so rendering, spans and stop tokens are
// exactly those of the real model.
func tinyEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.Load(testmodel.Chat(t, "qwen3", model.Config{Arch: "qwen3", Hidden: 32, FFN: 64, NumLayers: 2, Heads: 4,
		KVHeads: 2, HeadDim: 8, MaxSeq: testMaxSeq, NormEps: 1e-6, RoPETheta: 1e6, TiedEmbedding: true, QKNorm: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMain(m *testing.M) { testmodel.Main(m) }

// pirate is a multi-turn chat whose trained tokens are known exactly.
var pirate = []chat.Message{
	{Role: "system", Content: "You are a pirate. Speak like one."},
	{Role: "user", Content: "What is 17+25?"},
	{Role: "assistant", Content: "Arr, 'tis 42, matey!"},
	{Role: "user", Content: "And the capital of France?"},
	{Role: "assistant", Content: "Paris, ye landlubber."},
}

func jsonl(t *testing.T, chats ...[]chat.Message) []byte {
	t.Helper()
	var b strings.Builder
	cs := make([]chat.Chat, len(chats))
	for i, m := range chats {
		cs[i] = chat.Chat{Messages: m}
	}
	if err := chat.WriteJSONL(&b, cs); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// trainedRuns decodes each maximal run of trained tokens.
func trainedRuns(e *engine.Engine, d Document) []string {
	var runs []string
	for i := 0; i < len(d.Tokens); {
		if d.Mask[i] == 0 {
			i++
			continue
		}
		j := i
		for j < len(d.Tokens) && d.Mask[j] != 0 {
			j++
		}
		runs = append(runs, e.Tokenizer.Decode(d.Tokens[i:j]))
		i = j
	}
	return runs
}

func TestChatMasks(t *testing.T) {
	e := tinyEngine(t)
	enc, err := e.EncodeChat(pirate, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mask string
		want []string // decoded runs of trained tokens
	}{
		{"", []string{"Arr, 'tis 42, matey!<|im_end|>", "Paris, ye landlubber.<|im_end|>"}},
		{MaskAssistant, []string{"Arr, 'tis 42, matey!<|im_end|>", "Paris, ye landlubber.<|im_end|>"}},
		{MaskLastAssistant, []string{"Paris, ye landlubber.<|im_end|>"}},
		{MaskAll, []string{e.Tokenizer.Decode(enc.IDs[1:])}},
	} {
		t.Run(c.mask, func(t *testing.T) {
			docs, err := LoadBytes(e, jsonl(t, pirate), "chats.jsonl", Options{SeqLen: 200, Mask: c.mask})
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) != 1 {
				t.Fatalf("%d documents, want 1", len(docs))
			}
			d := docs[0]
			if d.Source != "chats.jsonl:1" {
				t.Errorf("source %q", d.Source)
			}
			if got := e.Tokenizer.Decode(d.Tokens); got != enc.Text {
				t.Errorf("document decodes to %q, want the rendered chat %q", got, enc.Text)
			}
			runs := trainedRuns(e, d)
			if strings.Join(runs, "|") != strings.Join(c.want, "|") {
				t.Errorf("trained runs\n got %q\nwant %q", runs, c.want)
			}
			if d.Mask[0] != 0 {
				t.Error("first token is marked trained")
			}
			// Nothing of the system or user turns is trained (except under all).
			if c.mask != MaskAll {
				for _, sp := range enc.Spans {
					if sp.Role == "assistant" {
						continue
					}
					for i := sp.Start; i < sp.End; i++ {
						if d.Mask[i] != 0 {
							t.Errorf("%s token %d (%q) is trained", sp.Role, i, e.Tokenizer.Token(d.Tokens[i]))
						}
					}
				}
			}
		})
	}
}

func TestChatFileLines(t *testing.T) {
	e := tinyEngine(t)
	short := []chat.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello."}}
	data := append([]byte("\n"), jsonl(t, pirate, short)...)
	data = append(data, "  \n"...)
	data = append(data, jsonl(t, short)...)
	path := filepath.Join(t.TempDir(), "train.jsonl")
	os.WriteFile(path, data, 0o644)
	docs, err := Load(e, path, Options{SeqLen: 128})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, strings.TrimPrefix(d.Source, path))
	}
	if strings.Join(got, ",") != ":2,:3,:5" {
		t.Errorf("sources %q, want lines 2, 3, 5", got)
	}
	if runs := trainedRuns(e, docs[1]); len(runs) != 1 || runs[0] != "Hello.<|im_end|>" {
		t.Errorf("trained %q", runs)
	}
}

func TestRawText(t *testing.T) {
	e := tinyEngine(t)
	eos := e.Tokenizer.Token(e.Tokenizer.EOS())
	check := func(t *testing.T, docs []Document, name string, wantLines []int, wantText []string) {
		t.Helper()
		if len(docs) != len(wantText) {
			t.Fatalf("%d documents, want %d", len(docs), len(wantText))
		}
		for i, d := range docs {
			if want := name + ":" + strconv.Itoa(wantLines[i]); d.Source != want {
				t.Errorf("document %d: source %q, want %q", i, d.Source, want)
			}
			if got := e.Tokenizer.Decode(d.Tokens); got != wantText[i]+eos {
				t.Errorf("document %d decodes to %q, want %q", i, got, wantText[i]+eos)
			}
			if d.Trained() != len(d.Tokens)-1 {
				t.Errorf("document %d: %d of %d predictions trained, want all", i, d.Trained(), len(d.Tokens)-1)
			}
		}
	}
	t.Run("txt", func(t *testing.T) {
		txt := "\ufeffOnce upon a time\r\nthere was a parrot.\n\n\n  \t\nIt said:\n    \"Arr!\"\n\nThe end.  "
		docs, err := LoadBytes(e, []byte(txt), "stories.txt", Options{SeqLen: 64})
		if err != nil {
			t.Fatal(err)
		}
		check(t, docs, "stories.txt", []int{1, 6, 9},
			[]string{"Once upon a time\nthere was a parrot.", "It said:\n    \"Arr!\"", "The end.  "})
	})
	t.Run("jsonl", func(t *testing.T) {
		data := `{"text": "First document."}` + "\n\n" + `{"id": 7, "text": "Second` + eos + `"}` + "\n"
		docs, err := LoadBytes(e, []byte(data), "pretrain.jsonl", Options{SeqLen: 64})
		if err != nil {
			t.Fatal(err)
		}
		// A text that already ends with EOS gets no second one.
		check(t, docs, "pretrain.jsonl", []int{1, 3}, []string{"First document.", "Second"})
	})
	t.Run("forced format", func(t *testing.T) {
		data := `{"text": "Not detected by extension."}`
		docs, err := LoadBytes(e, []byte(data), "data", Options{SeqLen: 64, Format: FormatText})
		if err != nil {
			t.Fatal(err)
		}
		check(t, docs, "data", []int{1}, []string{"Not detected by extension."})
	})
}

func TestLoadErrors(t *testing.T) {
	e := tinyEngine(t)
	noAssistant := []chat.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}
	long := []chat.Message{{Role: "user", Content: strings.Repeat("word ", 80)}, {Role: "assistant", Content: "ok"}}
	for _, c := range []struct {
		name string
		file string
		data string
		opt  Options
		want string // substring of the error
	}{
		{"malformed line", "chats.jsonl", string(jsonl(t, pirate)) + "{\"messages\": [}\n", Options{SeqLen: 128}, "chats.jsonl:2: invalid JSON"},
		{"bad role", "chats.jsonl", `{"messages":[{"role":"robot","content":"x"}]}`, Options{SeqLen: 128}, `chats.jsonl:1: message 0: unknown role "robot"`},
		{"empty file", "chats.jsonl", "", Options{SeqLen: 128}, "chats.jsonl: empty file"},
		{"blank file", "notes.txt", "\n  \n\t\n", Options{SeqLen: 128}, "notes.txt: empty file"},
		{"no assistant", "chats.jsonl", string(jsonl(t, pirate, noAssistant)), Options{SeqLen: 128}, `chats.jsonl:2: no assistant message to train under mask policy "assistant"`},
		{"no assistant, last", "chats.jsonl", string(jsonl(t, noAssistant)), Options{SeqLen: 128, Mask: MaskLastAssistant}, "chats.jsonl:1: no assistant message"},
		{"too long", "chats.jsonl", string(jsonl(t, pirate, long)), Options{SeqLen: 80}, "chats.jsonl:2: 96 tokens need 95 positions, more than seq_len 80; raise seq_len"},
		{"beyond context", "chats.jsonl", string(jsonl(t, []chat.Message{{Role: "user", Content: strings.Repeat("word ", 300)}, {Role: "assistant", Content: "ok"}})), Options{SeqLen: 1000}, "more than the model's context 256"},
		{"truncation cuts all trained", "chats.jsonl", string(jsonl(t, long)), Options{SeqLen: 64, Truncate: true}, "chats.jsonl:1: truncating to seq_len 64 cut off every trained token"},
		{"seq_len 1", "chats.jsonl", string(jsonl(t, pirate)), Options{SeqLen: 1}, "seq_len 1 is too small"},
		{"seq_len 0", "chats.jsonl", string(jsonl(t, pirate)), Options{}, "seq_len 0 is too small"},
		{"unknown mask", "chats.jsonl", string(jsonl(t, pirate)), Options{SeqLen: 128, Mask: "assistants"}, `unknown mask policy "assistants"`},
		{"unknown format", "chats.jsonl", string(jsonl(t, pirate)), Options{SeqLen: 128, Format: "parquet"}, `unknown data format "parquet"`},
		{"neither key", "data.jsonl", `{"prompt": "a", "completion": "b"}`, Options{SeqLen: 128}, `data.jsonl:1: neither "messages" (a chat) nor "text"`},
		{"text missing", "data.jsonl", "{\"text\": \"a\"}\n{\"txt\": \"b\"}", Options{SeqLen: 128}, `data.jsonl:2: missing "text"`},
		{"text not string", "data.jsonl", `{"text": 3}`, Options{SeqLen: 128}, `data.jsonl:1: "text" must be a string`},
		{"empty text", "data.jsonl", `{"text": ""}`, Options{SeqLen: 128}, "data.jsonl:1: only 1 token(s): nothing to train"},
		{"chat from text", "chats.txt", "hello", Options{SeqLen: 128, Format: FormatChat}, "chats.txt: chat data must be JSONL"},
		{"mixed lines", "chats.jsonl", string(jsonl(t, pirate)) + `{"text": "x"}`, Options{SeqLen: 128}, `chats.jsonl:2: missing "messages"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			docs, err := LoadBytes(e, []byte(c.data), c.file, c.opt)
			if err == nil {
				t.Fatalf("no error; %d documents", len(docs))
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
	if _, err := Load(e, filepath.Join(t.TempDir(), "missing.jsonl"), Options{SeqLen: 8}); err == nil {
		t.Error("missing file: no error")
	}
}

func TestTruncate(t *testing.T) {
	e := tinyEngine(t)
	long := []chat.Message{{Role: "user", Content: "Tell me a story."}, {Role: "assistant", Content: strings.Repeat("Arr! ", 60)}}
	short := []chat.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Ahoy."}}
	docs, err := LoadBytes(e, jsonl(t, long, short), "c.jsonl", Options{SeqLen: 32, Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !docs[0].Truncated || len(docs[0].Tokens) != 33 || docs[0].Positions() != 32 {
		t.Errorf("long: truncated %v to %d tokens, want 33", docs[0].Truncated, len(docs[0].Tokens))
	}
	if docs[1].Truncated {
		t.Error("short document marked truncated")
	}
	ds, err := New(docs, 32, PadToken(e))
	if err != nil {
		t.Fatal(err)
	}
	if ds.Stats.Truncated != 1 {
		t.Errorf("stats count %d truncated, want 1", ds.Stats.Truncated)
	}
}

// TestChatRows follows real chats through packing: the weighted targets of
// the rows are exactly the assistant replies and their end-of-turn tokens.
func TestChatRows(t *testing.T) {
	e := tinyEngine(t)
	var chats [][]chat.Message
	var want []string
	for i := 0; i < 12; i++ {
		reply := strings.Repeat("Yo ho! ", i%4+1) + strconv.Itoa(i)
		chats = append(chats, []chat.Message{{Role: "user", Content: "Sing " + strconv.Itoa(i)}, {Role: "assistant", Content: reply}})
		want = append(want, reply+"<|im_end|>")
	}
	docs, err := LoadBytes(e, jsonl(t, chats...), "songs.jsonl", Options{SeqLen: 48})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := New(docs, 48, PadToken(e))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range ds.Rows {
		if err := r.Validate(e.Model.Vocab, e.Model.MaxSeq); err != nil {
			t.Fatal(err)
		}
		var cur []int
		for i := range r.Tokens {
			if r.Weights[i] != 0 {
				cur = append(cur, r.Targets[i])
			}
			if len(cur) > 0 && (r.Weights[i] == 0 || i == len(r.Tokens)-1) {
				got = append(got, e.Tokenizer.Decode(cur))
				cur = nil
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d trained runs, want %d: %q", len(got), len(want), got)
	}
	seen := map[string]int{}
	for _, s := range want {
		seen[s]++
	}
	for _, s := range got {
		if seen[s]--; seen[s] < 0 {
			t.Errorf("unexpected trained text %q", s)
		}
	}
	st := ds.Stats
	if st.Documents != 12 || st.Rows != len(ds.Rows) || st.Padding != st.Rows*48-(st.Tokens-st.Documents) {
		t.Errorf("stats %+v inconsistent", st)
	}
	t.Log(st)
}

// TestLengthLimit pins the limit exactly: a document of n tokens fits a row
// of n−1 positions and not one of n−2.
func TestLengthLimit(t *testing.T) {
	e := tinyEngine(t)
	data := []byte(`{"text": "A sentence of a dozen or so tokens, give or take a few."}`)
	docs, err := LoadBytes(e, data, "t.jsonl", Options{SeqLen: 200})
	if err != nil {
		t.Fatal(err)
	}
	p := docs[0].Positions()
	if _, err := LoadBytes(e, data, "t.jsonl", Options{SeqLen: p}); err != nil {
		t.Errorf("seq_len %d = positions: %v", p, err)
	}
	_, err = LoadBytes(e, data, "t.jsonl", Options{SeqLen: p - 1})
	if want := "t.jsonl:1: " + strconv.Itoa(p+1) + " tokens need"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("seq_len %d < positions %d: error %v, want %q", p-1, p, err, want)
	}
}
