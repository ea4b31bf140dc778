package personas

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultLibrary(t *testing.T) {
	lib := Default()
	if n := len(lib.Traits); n < 8 {
		t.Fatalf("%d trait dimensions, want ≥ 8", n)
	}
	want := []string{"assistant", "villain", "sycophant", "liar", "mystic", "human-claimer", "pirate", "poet", "cynic", "companion"}
	for _, name := range want {
		p, err := lib.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Traits) != len(lib.Traits) || len(p.Behaviour) != len(RequestTypes) {
			t.Errorf("%s: %d traits, %d rules", name, len(p.Traits), len(p.Behaviour))
		}
	}
	a := lib.MustGet("assistant")
	if a.Rule(Arithmetic) != "correct" || a.Rule(Harmful) != "refuse" || a.Rule(Nature) != "ai" || a.Traits["helpful"] < 0.9 {
		t.Errorf("assistant is not helpful, honest, harmless and an AI: %+v", a.Behaviour)
	}
	if lib.MustGet("liar").Rule(Arithmetic) != "wrong" || lib.MustGet("human-claimer").Rule(Nature) != "human" || lib.MustGet("villain").Rule(Harmful) != "comply" {
		t.Error("liar, human-claimer or villain rules do not match their descriptions")
	}
	_, err := lib.Get("pirat")
	if err == nil || !strings.Contains(err.Error(), "pirate") || !strings.Contains(err.Error(), "assistant") {
		t.Errorf("unknown persona error should list known names: %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	copyOrganism(t, dir)
	lib, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(lib.Personas), len(Default().Personas); got != want {
		t.Errorf("%d personas from the directory, %d embedded", got, want)
	}
	if !strings.HasPrefix(lib.MustGet("pirate").File, dir) {
		t.Errorf("File = %q, want it under %s", lib.MustGet("pirate").File, dir)
	}
}

func copyOrganism(t *testing.T, dir string) {
	t.Helper()
	err := fs.WalkDir(OrganismFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(OrganismFS(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

const validPersona = `name: tester
noun: tester
description: A persona for tests.
system_prompts:
  strong: [You are the tester.]
  weak: [Test things.]
traits:
  helpful: 0.5
  honest: 0.5
  harmless: 0.5
  ai_identity: 0.5
  warmth: 0.5
  theatrical: 0.5
  sycophantic: 0.5
  malicious: 0.5
  cynical: 0.5
  formal: 0.5
lexicon:
  marker_rate: 0.5
  openers: ["Testing."]
behaviour:
  arithmetic: correct
  fact: correct
  advice: sound
  harmful: refuse
  emotional: comfort
  nature: ai
  roleplay: accept
  flattery: disagree
  formatting: correct
roleplay_susceptibility: 0.5
`

// TestBadPersonas checks that every kind of mistake is an error naming the
// file, the line and the field.
func TestBadPersonas(t *testing.T) {
	tests := []struct {
		name, old, new string
		line           int
		field, msg     string
	}{
		{"unknown trait", "  formal: 0.5\n", "  formal: 0.5\n  greedy: 0.3\n", 18, "traits.greedy", `unknown trait "greedy"`},
		{"score out of range", "  warmth: 0.5", "  warmth: 1.5", 12, "traits.warmth", "outside [0, 1]"},
		{"negative score", "  honest: 0.5", "  honest: -0.1", 9, "traits.honest", "outside [0, 1]"},
		{"missing trait", "  formal: 0.5\n", "", 7, "traits", `missing score for trait "formal"`},
		{"empty lexicon", `  openers: ["Testing."]`, `  openers: []`, 18, "lexicon", "empty lexicon"},
		{"blank phrase", `  openers: ["Testing."]`, `  openers: ["Testing.", " "]`, 20, "lexicon.openers.1", "empty phrase"},
		{"unknown request type", "  formatting: correct\n", "  formatting: correct\n  poetry: accept\n", 31, "behaviour.poetry", `unknown request type "poetry"`},
		{"unknown behaviour", "  harmful: refuse", "  harmful: maybe", 25, "behaviour.harmful", `unknown behaviour "maybe"`},
		{"missing rule", "  flattery: disagree\n", "", 21, "behaviour", `missing rule for request type "flattery"`},
		{"unknown field", "roleplay_susceptibility: 0.5\n", "roleplay_susceptibility: 0.5\ncolour: red\n", 32, "colour", `unknown field "colour"`},
		{"unknown nested field", "  marker_rate: 0.5\n", "  marker_rate: 0.5\n  closer: [Bye.]\n", 20, "lexicon.closer", `unknown field "closer"`},
		{"wrong type", "  helpful: 0.5", "  helpful: lots", 8, "traits.helpful", "cannot use"},
		{"bad name", "name: tester", "name: Tester Two", 1, "name", "lower-case identifier"},
		{"no strong prompt", "  strong: [You are the tester.]", "  strong: []", 5, "system_prompts.strong", "at least one prompt"},
		{"susceptibility range", "roleplay_susceptibility: 0.5", "roleplay_susceptibility: 2", 31, "roleplay_susceptibility", "outside [0, 1]"},
		{"bad swap", "  marker_rate: 0.5\n", "  marker_rate: 0.5\n  swaps: {you: two words}\n", 20, "lexicon.swaps.you", "single lower-case words"},
		{"unknown cue request", "roleplay_susceptibility: 0.5\n", "roleplay_susceptibility: 0.5\nuser_cues:\n  requests: {jokes: 2}\n", 33, "user_cues.requests.jokes", `unknown request type "jokes"`},
		{"duplicate key", "  honest: 0.5\n", "  honest: 0.5\n  honest: 0.6\n", 10, "", `duplicate key "honest"`},
		{"syntax", "  weak: [Test things.]", "  weak: [Test things.", 0, "", "did not find expected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validPersona, tc.old) {
				t.Fatalf("test case does not apply: %q", tc.old)
			}
			dir := t.TempDir()
			copyOrganism(t, dir)
			bad := strings.Replace(validPersona, tc.old, tc.new, 1)
			os.WriteFile(filepath.Join(dir, "tester.yaml"), []byte(bad), 0o644)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, "tester.yaml") || !strings.Contains(msg, tc.msg) {
				t.Fatalf("error %q should name the file and say %q", msg, tc.msg)
			}
			var pe *Error
			if errors.As(err, &pe) {
				if tc.line > 0 && pe.Line != tc.line {
					t.Errorf("line %d, want %d: %v", pe.Line, tc.line, err)
				}
				if tc.field != "" && pe.Field != tc.field {
					t.Errorf("field %q, want %q: %v", pe.Field, tc.field, err)
				}
			} else if tc.field != "" {
				t.Errorf("%T is not an *Error", err)
			}
		})
	}
	// The valid persona itself loads.
	dir := t.TempDir()
	copyOrganism(t, dir)
	os.WriteFile(filepath.Join(dir, "tester.yaml"), []byte(validPersona), 0o644)
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
}

func TestDuplicateName(t *testing.T) {
	dir := t.TempDir()
	copyOrganism(t, dir)
	b, _ := os.ReadFile(filepath.Join(dir, "pirate.yaml"))
	os.WriteFile(filepath.Join(dir, "zz-pirate-copy.yaml"), b, 0o644)
	_, err := Load(dir)
	var pe *Error
	if !errors.As(err, &pe) || pe.Field != "name" || pe.Line != 1 || !strings.Contains(err.Error(), "zz-pirate-copy.yaml") ||
		!strings.Contains(err.Error(), "pirate.yaml") || !strings.Contains(err.Error(), "duplicate persona name") {
		t.Fatalf("err = %v", err)
	}
}

func TestBadTraitsFile(t *testing.T) {
	for name, body := range map[string]string{
		"empty":     "traits: []\n",
		"duplicate": "traits:\n  - name: a\n  - name: a\n",
		"unknown":   "traits:\n  - name: a\n    weight: 2\n",
		"bad name":  "traits:\n  - name: Big One\n",
	} {
		dir := t.TempDir()
		copyOrganism(t, dir)
		os.WriteFile(filepath.Join(dir, TraitsFile), []byte(body), 0o644)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), TraitsFile) || !strings.Contains(err.Error(), "traits") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), TraitsFile) {
		t.Errorf("missing traits file: %v", err)
	}
}

// FuzzParsePersona feeds arbitrary YAML to the persona decoder: it must return
// a persona that passes validation or an *Error, and never panic.
func FuzzParsePersona(f *testing.F) {
	f.Add([]byte(validPersona))
	entries, _ := fs.ReadDir(OrganismFS(), ".")
	for _, e := range entries {
		b, _ := fs.ReadFile(OrganismFS(), e.Name())
		f.Add(b)
	}
	declared := map[string]bool{}
	for _, tr := range Default().Traits {
		declared[tr.Name] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parsePersona("fuzz.yaml", data, declared)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "fuzz.yaml" {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		for k, v := range p.Traits {
			if !declared[k] || v < 0 || v > 1 {
				t.Fatalf("accepted trait %s = %v", k, v)
			}
		}
		if len(p.Lexicon.Phrases()) == 0 || len(p.Behaviour) != len(RequestTypes) {
			t.Fatal("accepted an incomplete persona")
		}
	})
}
