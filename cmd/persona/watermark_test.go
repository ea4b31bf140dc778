package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWatermarkRoundTrip generates watermarked stories with both schemes and
// finds the mark in the text, and only with the right key. The detection runs
// with fixed keys, so its outcome does not depend on a random draw: over 40
// keys made by keygen, a 200-token story's p-value ranged up to 7e-5 (green)
// and 2.5e-4 (gumbel), so a random key would fail a 1e-4 bound about once in
// 40 runs. Keygen is checked for what it promises: a new key, private, never
// written over, accepted by generate.
func TestWatermarkRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := fixtures + "/stories260K/stories260K-f32.v3.gguf"
	made := filepath.Join(dir, "made.key")
	if out, stderr, code := run(t, "watermark", "keygen", "--out", made); code != 0 || !strings.Contains(out, "key id") {
		t.Fatalf("keygen: exit %d: %s %s", code, out, stderr)
	}
	if st, err := os.Stat(made); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	if _, stderr, code := run(t, "watermark", "keygen", "--out", made); code != exitUsage || !strings.Contains(stderr, "exists") {
		t.Fatalf("keygen over an existing key: exit %d: %s", code, stderr)
	}
	key, other := filepath.Join(dir, "wm.key"), filepath.Join(dir, "other.key")
	os.WriteFile(key, []byte("persona-test-watermark-key-one\n"), 0o600)
	os.WriteFile(other, []byte("persona-test-watermark-key-two\n"), 0o600)
	detect := func(scheme, keyFile, text string) (z, p float64) {
		t.Helper()
		out, stderr, code := run(t, "watermark", "detect", "--model", m, "--scheme", scheme, "--key-file", keyFile, "--text", text, "--json")
		if code != 0 {
			t.Fatalf("detect: exit %d: %s", code, stderr)
		}
		var res struct {
			Detection struct {
				Z      float64 `json:"z"`
				PValue float64 `json:"p_value"`
			} `json:"detection"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return res.Detection.Z, res.Detection.PValue
	}
	generate := func(args ...string) string {
		t.Helper()
		out, stderr, code := run(t, append([]string{"generate", "--model", m, "--raw", "--temperature", "1", "--seed", "7", "--max-tokens", "200"}, args...)...)
		if code != 0 {
			t.Fatalf("generate: exit %d: %s", code, stderr)
		}
		return strings.TrimSuffix(out, "\n")
	}
	plain := generate()
	if generate("--watermark", "gumbel", "--key-file", made) == plain {
		t.Fatal("a key from keygen changed nothing")
	}
	for _, scheme := range []string{"green", "gumbel"} {
		marked := generate("--watermark", scheme, "--key-file", key)
		if marked == plain {
			t.Fatalf("%s: the watermark changed nothing", scheme)
		}
		if _, p := detect(scheme, key, marked); p > 1e-6 {
			t.Errorf("%s: watermarked story p = %.3g, want < 1e-6", scheme, p)
		}
		if _, p := detect(scheme, key, plain); p < 1e-3 {
			t.Errorf("%s: unmarked story p = %.3g, want no detection", scheme, p)
		}
		if _, p := detect(scheme, other, marked); p < 1e-3 {
			t.Errorf("%s: another key finds the mark (p = %.3g)", scheme, p)
		}
	}
}

func TestWatermarkBadInput(t *testing.T) {
	dir := t.TempDir()
	m := fixtures + "/stories260K/stories260K-f32.v3.gguf"
	key := filepath.Join(dir, "wm.key")
	os.WriteFile(key, []byte("0123456789abcdef\n"), 0o600)
	blank := filepath.Join(dir, "blank.key")
	os.WriteFile(blank, []byte("\n"), 0o600)
	t.Setenv("PERSONA_TEST_WM_KEY", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"watermark", "keygen"}, "--out"},
		{[]string{"watermark", "detect", "--model", m, "--key-file", key, "--text", "hi"}, "--scheme"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "purple", "--key-file", key, "--text", "hi"}, "purple"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--text", "hi"}, "key"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", blank, "--text", "hi"}, "key"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-env", "PERSONA_TEST_WM_KEY", "--text", "hi"}, "key"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", key, "--key-env", "X", "--text", "hi"}, "not both"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", key, "--gamma", "1.5", "--text", "hi"}, "gamma"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", key}, "--text"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", key, "--ids", "1,x"}, "token id"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", key, "--ids", "1,999999"}, "tokenizer"},
		{[]string{"watermark", "detect", "--model", m, "--scheme", "green", "--key-file", key, "--text", "Once upon a time", "--window", "2", "--alpha", "2"}, "alpha"},
		{[]string{"generate", "--model", m, "--raw", "--key-file", key}, "without a scheme"},
		{[]string{"generate", "--model", m, "--raw", "--watermark", "green"}, "key"},
	} {
		_, stderr, code := run(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, exitUsage, c.want)
		}
	}
}
