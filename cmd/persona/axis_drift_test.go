package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/internal/testmodel"
	"persona/vectors"
)

// persona axis then persona drift on a tiny organism, as a user runs them.
func TestAxisThenDriftCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a few hundred replies")
	}
	m := testmodel.Organism(t, 32, 4)
	dir := t.TempDir()
	ax, svg := filepath.Join(dir, "axis.safetensors"), filepath.Join(dir, "axis.svg")
	out, stderr, code := run(t, "axis", "--model", m, "--out", ax, "--svg", svg, "--n-questions", "3", "--no-judge", "--max-tokens", "4")
	if code != 0 {
		t.Fatalf("axis: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "drift layer 1, capping band [2]") {
		t.Errorf("axis output:\n%s", out)
	}
	if data, err := os.ReadFile(svg); err != nil || !strings.HasPrefix(string(data), "<svg") {
		t.Fatalf("svg: %v", err)
	}
	html := filepath.Join(dir, "drift.html")
	out, stderr, code = run(t, "drift", "--model", m, "--organism", "--per-domain", "1", "--turns", "2", "--axis", ax, "--cap",
		"--max-tokens", "4", "--html", html, "--json")
	if code != 0 {
		t.Fatalf("drift: exit %d: %s", code, stderr)
	}
	var rep struct {
		Cells []struct {
			Domain string `json:"domain"`
		} `json:"cells"`
		Conversations []struct {
			Turns []struct {
				Projection *float64 `json:"projection"`
				Posterior  *float64 `json:"posterior_assistant"`
			} `json:"turns"`
		} `json:"conversations"`
		Controls []any `json:"controls"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %.300s", err, out)
	}
	if len(rep.Cells) != 20 || len(rep.Conversations) != 20 || len(rep.Controls) != 10 {
		t.Errorf("%d cells, %d conversations, %d control effects; want 20, 20, 10", len(rep.Cells), len(rep.Conversations), len(rep.Controls))
	}
	if rep.Conversations[0].Turns[0].Posterior == nil {
		t.Error("no per-turn posterior on the organism")
	}
	if data, err := os.ReadFile(html); err != nil || !strings.Contains(string(data), "<svg") {
		t.Fatalf("html: %v", err)
	}
}

// Bad input exits 2 with a message that says what is wrong and where.
func TestAxisDriftBadInput(t *testing.T) {
	m := testmodel.Organism(t, 32, 4)
	dir := t.TempDir()
	badYAML := writeFile(t, dir, "bad.yaml", "system_prompts: {strong: S, weak: W}\nscenarios:\n  - id: a\n    domain: coding\n    user: [hi]\n")
	// A persona vector file is not an axis; an axis of another width does not fit.
	plain := filepath.Join(dir, "plain.safetensors")
	if err := (&vectors.Set{Name: "evil", Layers: []int{0}, Vectors: [][]float32{make([]float32, 32)}}).Save(plain); err != nil {
		t.Fatal(err)
	}
	wide := filepath.Join(dir, "wide.safetensors")
	s := &vectors.Set{Name: "assistant-axis", Layers: []int{0, 1, 2, 3}, Meta: map[string]string{"cap_tau": "0,0,0,0", "cap_layers": "2", "drift_layer": "1"}}
	for range 4 {
		v := make([]float32, 48)
		v[0] = 1
		s.Vectors = append(s.Vectors, v)
	}
	if err := s.Save(wide); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(dir, "out.html")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no output", []string{"axis", "--model", m}, "give --model and --out"},
		{"unknown persona library", []string{"axis", "--model", m, "--out", "x", "--personas", filepath.Join(dir, "nope")}, "nope"},
		{"bad layers", []string{"axis", "--model", m, "--out", "x", "--layers", "3-1"}, "--layers"},
		{"scenario yaml", []string{"drift", "--model", m, "--scenarios", badYAML, "--html", html}, "bad.yaml:4: scenarios[0].domain: unknown domain \"coding\""},
		{"not an axis", []string{"drift", "--model", m, "--organism", "--axis", plain, "--html", html}, "not an assistant axis"},
		{"wrong width", []string{"drift", "--model", m, "--organism", "--axis", wide, "--html", html}, "width 48"},
		{"both sources", []string{"drift", "--model", m, "--organism", "--scenarios", badYAML, "--html", html}, "alternatives"},
		{"auditor without config", []string{"drift", "--model", m, "--auditor", "a", "--html", html}, "go together"},
		{"no scenarios per domain", []string{"drift", "--model", m, "--organism", "--per-domain", "0", "--html", html}, "at least 1"},
		{"bad spec", []string{"drift", "--model", m, "--organism", "--spec", badYAML, "--html", html}, "bad.yaml"},
		{"activations monitor, no classifier", []string{"drift", "--model", m, "--organism", "--spec", activationsSpec(t, dir), "--html", html}, "posterior-classifier.json"},
	} {
		_, stderr, code := run(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 mentioning %q", c.name, code, stderr, c.want)
		}
	}
	if _, err := os.Stat(html); !os.IsNotExist(err) {
		t.Error("a failed run left a report behind")
	}
}

// activationsSpec writes the shipped organism spec with the activations
// monitor.
func activationsSpec(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "gateway", "specs", "organism-assistant.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "activations.yaml", strings.Replace(string(data), "monitor: posterior", "monitor: activations", 1))
}

// Rails with the activations monitor run on the organism, which carries
// its classifier.
func TestDriftWithActivationsMonitor(t *testing.T) {
	spec := activationsSpec(t, t.TempDir())
	out, stderr, code := run(t, "drift", "--model", "organism", "--organism", "--spec", spec, "--per-domain", "1", "--turns", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Cells []struct {
			Control       string `json:"control"`
			Conversations int    `json:"conversations"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	railed := 0
	for _, c := range rep.Cells {
		if c.Control == "rails" && c.Conversations == 1 {
			railed++
		}
	}
	if railed != len(rep.Cells)/2 || railed == 0 {
		t.Errorf("%d of %d cells ran with rails, want half", railed, len(rep.Cells))
	}
}
