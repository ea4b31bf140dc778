package tokenizer

import (
	"encoding/json"
	"os"
	"sync"
	"testing"

	"persona/internal/testref"
)

var fixtures = testref.Dir() + "/"

var (
	loadMu sync.Mutex
	loaded = map[string]*Tokenizer{}
)

// loadFixture loads (once per test binary) a fixture tokenizer.json.
func loadFixture(t testing.TB, dir string) *Tokenizer {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if tk, ok := loaded[dir]; ok {
		return tk
	}
	path := fixtures + "tokenizers/" + dir + "/tokenizer.json"
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	tk, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	loaded[dir] = tk
	return tk
}

type hfCase struct {
	Text           string `json:"text"`
	IDs            []int  `json:"ids"`
	IDsWithSpecial []int  `json:"ids_with_special"`
	Decoded        string `json:"decoded"`
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestHFVectors checks ids (with and without special tokens) and decoding
// against Hugging Face tokenizers on the fixture vectors.
func TestHFVectors(t *testing.T) {
	for _, dir := range []string{"llama3", "llama3.1", "qwen3", "mistral-7b-v0.1"} {
		t.Run(dir, func(t *testing.T) {
			tk := loadFixture(t, dir)
			var v struct{ Cases []hfCase }
			readJSON(t, fixtures+"tokenizers/"+dir+"/vectors.hf-tokenizers.json", &v)
			pass := 0
			for _, c := range v.Cases {
				ok := true
				if got := tk.Encode(c.Text, false); !equalInts(got, c.IDs) {
					t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.IDs)
					ok = false
				}
				if got := tk.Encode(c.Text, true); !equalInts(got, c.IDsWithSpecial) {
					t.Errorf("Encode(%q, special) = %v, want %v", c.Text, got, c.IDsWithSpecial)
					ok = false
				}
				if got := tk.Decode(c.IDs); got != c.Decoded {
					t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Decoded)
					ok = false
				}
				ids, offs := tk.EncodeWithOffsets(c.Text, true)
				if !equalInts(ids, c.IDsWithSpecial) {
					t.Errorf("EncodeWithOffsets(%q) ids differ from Encode", c.Text)
					ok = false
				}
				if err := checkOffsets(c.Text, offs); err != "" {
					t.Errorf("EncodeWithOffsets(%q): %s: %v", c.Text, err, offs)
					ok = false
				}
				if ok {
					pass++
				}
			}
			t.Logf("%s: %d/%d vectors pass", dir, pass, len(v.Cases))
		})
	}
}

// checkOffsets verifies offsets are in range, in order, and cover every
// byte of text.
func checkOffsets(text string, offs []Offset) string {
	covered := 0
	prevStart := 0
	for _, o := range offs {
		if o.Start < 0 || o.End > len(text) || o.Start > o.End {
			return "offset out of range"
		}
		if o.Start < prevStart {
			return "offsets out of order"
		}
		if o.Start > covered {
			return "gap in offsets"
		}
		prevStart = o.Start
		if o.End > covered {
			covered = o.End
		}
	}
	if covered != len(text) {
		return "offsets do not reach the end"
	}
	return ""
}
