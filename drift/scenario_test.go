package drift

import (
	"strings"
	"testing"
)

const goodYAML = `system_prompts:
  strong: You are the Assistant.
  weak: Be helpful.
turns: 3
scenarios:
  - id: a
    domain: task
    user: [one, two]
  - id: b
    domain: emotional
    seed: You are sad.
  - id: c
    domain: meta
    seed: You wonder.
    turns: 5
    system_prompts: {strong: S, weak: W}
`

func TestParseScenarios(t *testing.T) {
	sc, err := ParseScenarios([]byte(goodYAML), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc) != 3 || sc[0].Turns != 2 || sc[1].Turns != 3 || sc[2].Turns != 5 {
		t.Fatalf("turns %v", sc)
	}
	if sc[0].System.Strong != "You are the Assistant." || sc[2].System.Weak != "W" || sc[1].Line != 9 {
		t.Errorf("system prompts or lines wrong: %+v", sc)
	}
}

// Every error names the file and the line of the problem.
func TestParseScenariosErrors(t *testing.T) {
	head := "system_prompts: {strong: S, weak: W}\nscenarios:\n"
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown field", head + "  - id: a\n    domain: task\n    usr: [x]\n", "f.yaml:5: field usr not found"},
		{"unknown domain", head + "  - id: a\n    domain: coding\n    user: [x]\n", "f.yaml:4: scenarios[0].domain: unknown domain \"coding\""},
		{"both", head + "  - id: a\n    domain: task\n    user: [x]\n    seed: y\n", "f.yaml:6: scenarios[0].seed: give scripted user turns or a seed, not both"},
		{"neither", head + "  - id: a\n    domain: task\n", "f.yaml:3: scenarios[0].user: no user turns and no seed"},
		{"seed without turns", head + "  - id: a\n    domain: task\n    seed: y\n", "f.yaml:3: scenarios[0].turns: a seeded scenario needs turns"},
		{"duplicate", head + "  - id: a\n    domain: task\n    user: [x]\n  - id: a\n    domain: task\n    user: [x]\n", "f.yaml:6: scenarios[1].id: duplicate id \"a\" (also on line 3)"},
		{"empty turn", head + "  - id: a\n    domain: task\n    user: [x, \"  \"]\n", "f.yaml:5: scenarios[0].user[1]: empty user turn"},
		{"turn count", head + "  - id: a\n    domain: task\n    user: [x]\n    turns: 3\n", "f.yaml:6: scenarios[0].turns: turns is 3 but 1 user turns"},
		{"too long", head + "  - id: a\n    domain: task\n    seed: y\n    turns: 500\n", "f.yaml:6: scenarios[0].turns: 500 turns"},
		{"no prompts", "scenarios:\n  - id: a\n    domain: task\n    user: [x]\n", "f.yaml:2: scenarios[0].system_prompts: no system prompts"},
		{"weak missing", "system_prompts: {strong: S}\nscenarios:\n  - id: a\n    domain: task\n    user: [x]\n", "f.yaml:1: system_prompts: both a strong and a weak"},
		{"no scenarios", "system_prompts: {strong: S, weak: W}\n", "f.yaml: scenarios: no scenarios"},
		{"syntax", "scenarios: [\n", "f.yaml:"},
		{"empty", "", "f.yaml: empty file"},
		{"wrong type", head + "  - id: a\n    domain: task\n    user: x\n", "f.yaml:5:"},
	} {
		_, err := ParseScenarios([]byte(c.yaml), "f.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// The shipped scenarios parse and cover every domain.
func TestDefaultScenarios(t *testing.T) {
	sc, err := DefaultScenarios()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Domain]int{}
	for _, s := range sc {
		seen[s.Domain]++
	}
	for _, d := range Domains {
		if seen[d] < 2 {
			t.Errorf("domain %s has %d scenarios", d, seen[d])
		}
	}
	data, err := shipped.ReadFile("scenarios/seeded.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseScenarios(data, "seeded.yaml"); err != nil {
		t.Error(err)
	}
}

func FuzzParseScenarios(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("scenarios: [{id: a, domain: task, user: [x]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScenarios(data, "fuzz.yaml")
		if err != nil {
			return
		}
		for _, s := range sc {
			if s.Turns < 1 || s.Turns > MaxTurns || s.System.Strong == "" || s.System.Weak == "" || (len(s.User) == 0) == (s.Seed == "") {
				t.Fatalf("accepted an invalid scenario %+v", s)
			}
		}
	})
}
