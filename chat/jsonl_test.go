package chat

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReadJSONL(t *testing.T) {
	in := "\ufeff" + `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi <there>"}],"id":7,"tags":["a"]}` + "\n" +
		"\n   \n" +
		`{"messages":[{"role":"assistant","content":"","name":"ignored"},{"role":"tool","content":"{}"}]}` + "\r\n" +
		`{"messages":[{"role":"user","content":"no newline at end"}]}`
	chats, err := ReadJSONL(strings.NewReader(in), "chats.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	want := []Chat{
		{Messages: []Message{{"system", "Be brief."}, {"user", "Hi <there>"}}},
		{Messages: []Message{{"assistant", ""}, {"tool", "{}"}}},
		{Messages: []Message{{"user", "no newline at end"}}},
	}
	if len(chats) != len(want) {
		t.Fatalf("got %d chats", len(chats))
	}
	for i := range want {
		if !reflect.DeepEqual(chats[i].Messages, want[i].Messages) {
			t.Errorf("chat %d: %+v", i, chats[i].Messages)
		}
	}
	if string(chats[0].Meta["id"]) != "7" || string(chats[0].Meta["tags"]) != `["a"]` || len(chats[0].Meta) != 2 {
		t.Errorf("meta %q", chats[0].Meta)
	}
	if chats[1].Meta != nil {
		t.Errorf("meta %q, want nil", chats[1].Meta)
	}

	var buf bytes.Buffer
	if err := WriteJSONL(&buf, chats); err != nil {
		t.Fatal(err)
	}
	wantOut := `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi <there>"}],"id":7,"tags":["a"]}` + "\n" +
		`{"messages":[{"role":"assistant","content":""},{"role":"tool","content":"{}"}]}` + "\n" +
		`{"messages":[{"role":"user","content":"no newline at end"}]}` + "\n"
	if buf.String() != wantOut {
		t.Errorf("WriteJSONL:\n got %s\nwant %s", buf.String(), wantOut)
	}
}

func TestReadJSONLErrors(t *testing.T) {
	good := `{"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name, in, want string
		line, msg      int
	}{
		{"bad json", good + "\n\n" + `{"messages": [`, `chats.jsonl:3: invalid JSON`, 3, -1},
		{"trailing garbage", good + " x", `chats.jsonl:1: invalid JSON`, 1, -1},
		{"not an object", `[1,2]`, `chats.jsonl:1: invalid JSON`, 1, -1},
		{"null line", `null`, `chats.jsonl:1: line is null`, 1, -1},
		{"unknown role", good + "\n" + `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"robot","content":"c"}]}`,
			`chats.jsonl:2: message 2: unknown role "robot"`, 2, 2},
		{"missing content", `{"messages":[{"role":"user"}]}`, `chats.jsonl:1: message 0: missing "content"`, 1, 0},
		{"null content", `{"messages":[{"role":"user","content":null}]}`, `chats.jsonl:1: message 0: "content" must be a string, got null`, 1, 0},
		{"list content", `{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`, `chats.jsonl:1: message 0: "content" must be a string`, 1, 0},
		{"missing role", `{"messages":[{"content":"x"}]}`, `chats.jsonl:1: message 0: missing "role"`, 1, 0},
		{"message not object", `{"messages":["hi"]}`, `chats.jsonl:1: message 0: not a JSON object`, 1, 0},
		{"empty messages", `{"messages":[]}`, `chats.jsonl:1: empty conversation`, 1, -1},
		{"null messages", `{"messages":null}`, `chats.jsonl:1: empty conversation`, 1, -1},
		{"missing messages", `{"id":1}`, `chats.jsonl:1: missing "messages"`, 1, -1},
		{"messages not list", `{"messages":{}}`, `chats.jsonl:1: "messages" must be a list`, 1, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadJSONL(strings.NewReader(tc.in), "chats.jsonl")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tc.line || le.Message != tc.msg || le.File != "chats.jsonl" {
				t.Errorf("LineError %+v", le)
			}
		})
	}
}

func TestReadJSONLFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.jsonl")
	if err := os.WriteFile(path, []byte(`{"messages":[{"role":"user","content":"hi"}]}`+"\n"+`{"messages":[{"role":"bot","content":"hi"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadJSONLFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: message 0: unknown role") {
		t.Errorf("err = %v", err)
	}
	if _, err := ReadJSONLFile(filepath.Join(t.TempDir(), "missing.jsonl")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestWriteJSONLEmpty(t *testing.T) {
	if err := WriteJSONL(&bytes.Buffer{}, []Chat{{}}); err == nil {
		t.Error("empty conversation written")
	}
}

// FuzzReadJSONL checks that ReadJSONL never panics and that whatever it
// accepts survives a write and a second read unchanged.
func FuzzReadJSONL(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"<b>\u00e9\n"}],"id":"x","n":1.50}` + "\n\n" + `{"messages":[{"role":"tool","content":""}]}`,
		`{"messages":[{"role":"robot","content":"hi"}]}`,
		`{"messages":[]}`,
		`{"messages":[{"role":"user"}]}`,
		"\ufeff{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"meta\":{\"k\":[null,true]}}\r\n",
		`{"messages":[{"role":"user","content":"x"}]`,
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		chats, err := ReadJSONL(bytes.NewReader(data), "fuzz")
		if err != nil {
			var le *LineError
			if !errors.Is(err, ErrEmpty) && (!errors.As(err, &le) || le.Line < 1) {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		var w1 bytes.Buffer
		if err := WriteJSONL(&w1, chats); err != nil {
			t.Fatalf("write: %v", err)
		}
		again, err := ReadJSONL(bytes.NewReader(w1.Bytes()), "rewritten")
		if err != nil {
			t.Fatalf("reread: %v\n%s", err, w1.Bytes())
		}
		if len(again) != len(chats) {
			t.Fatalf("%d chats became %d", len(chats), len(again))
		}
		for i := range chats {
			if !reflect.DeepEqual(chats[i].Messages, again[i].Messages) {
				t.Fatalf("chat %d: %q became %q", i, chats[i].Messages, again[i].Messages)
			}
		}
		var w2 bytes.Buffer
		if err := WriteJSONL(&w2, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
			t.Fatalf("second write differs:\n%s\n%s", w1.Bytes(), w2.Bytes())
		}
	})
}

func TestClip(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 5, "hello"},
		{"hello", 4, "hell…"},
		{"héllo wörld", 2, "hé…"},
		{"日本語のテキスト", 3, "日本語…"},
		{"", 0, ""},
	} {
		got := Clip(c.in, c.n)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestWriteTranscript(t *testing.T) {
	var b strings.Builder
	WriteTranscript(&b, []Message{{RoleSystem, "secret"}, {RoleUser, "hi"}, {RoleAssistant, "hello there"}}, 5)
	if want := "[USER]\nhi\n\n[ASSISTANT]\nhello…\n\n"; b.String() != want {
		t.Errorf("%q, want %q", b.String(), want)
	}
}

// Input with no conversation, or with bytes that are not UTF-8, is refused
// with the line at fault rather than read as nothing or as U+FFFD.
func TestReadJSONLRefusesEmptyAndInvalidUTF8(t *testing.T) {
	for _, in := range []string{"", "\n\n  \n"} {
		if _, err := ReadJSONL(strings.NewReader(in), "e.jsonl"); !errors.Is(err, ErrEmpty) {
			t.Errorf("%q: %v", in, err)
		}
	}
	bad := "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}\n"
	_, err := ReadJSONL(strings.NewReader(bad), "b.jsonl")
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), "invalid UTF-8 at byte 42") {
		t.Errorf("invalid UTF-8: %v", err)
	}
}
