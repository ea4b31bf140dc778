package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Input far longer than the model's context is refused as input (exit 2)
// before it is rendered or tokenized, so the cost follows the context, not
// the input. A 20 MB message used to be tokenized whole (about 1.7 GB peak
// RSS in generate); refused early, a verb peaks at reading the file itself
// (measured 103–187 MB here), so the bound below has room without letting
// whole-input tokenization pass.
func TestOverLongInputRefusedCheaply(t *testing.T) {
	dir := t.TempDir()
	huge := strings.Repeat("tell me more ", 20<<20/13)
	chatFile := writeFile(t, dir, "huge.jsonl", `{"messages":[{"role":"user","content":"`+huge+`"},{"role":"assistant","content":"ok"}]}`+"\n")
	scen := writeFile(t, dir, "scen.yaml", "scenarios:\n  - id: long\n    domain: task\n    system_prompts: {strong: \""+huge+"\", weak: \"Be helpful.\"}\n    user: [\"hi\"]\n")
	for _, args := range [][]string{
		{"generate", "--chat", chatFile},
		{"generate", "--prompt", huge[:60_000]}, // under the byte bound: tokenized, then refused
		{"posterior", "--chat", chatFile},
		{"drift", "--scenarios", scen, "--personas", filepath.Join("..", "..", "personas", "organism"), "--max-tokens", "4"},
	} {
		_, stderr, code, rss := runMeasured(t, args...)
		name := strings.Join(args[:2], " ")
		if code != exitUsage {
			t.Errorf("%s: exit %d, want 2: %.300s", name, code, stderr)
		}
		if !strings.Contains(stderr, "context") {
			t.Errorf("%s: stderr %.300q does not say the input is too long for the context", name, stderr)
		}
		t.Logf("%s: peak RSS %d MB", name, rss>>20)
		if rss > 600<<20 {
			t.Errorf("%s: peak RSS %d MB for a 20 MB input", name, rss>>20)
		}
	}
}

// Empty chat files and files with bytes that are not UTF-8 are input
// errors, not zero conversations.
func TestEmptyAndInvalidChatFiles(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty.jsonl", "\n")
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, want string }{{empty, "no conversations"}, {bad, "bad.jsonl:1: invalid UTF-8"}} {
		for _, verb := range [][]string{{"generate"}, {"posterior"}, {"world", "judge"}} {
			_, stderr, code := run(t, append(verb, "--chat", c.file)...)
			if code != exitUsage || !strings.Contains(stderr, c.want) {
				t.Errorf("%v %s: exit %d, stderr %q; want 2 and %q", verb, filepath.Base(c.file), code, stderr, c.want)
			}
		}
	}
}
