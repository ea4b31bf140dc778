package axis

import (
	_ "embed"
	"fmt"
	"os"
	"strings"

	"persona/world"
)

//go:embed questions.txt
var shippedQuestions string

// DefaultQuestions returns the shipped question list for real models: forty
// questions mixing tasks, advice, opinions, feelings and the model's own
// nature (questions.txt in this package).
func DefaultQuestions() []string { return parseQuestions(shippedQuestions) }

// LoadQuestions reads a question file: one question per line, blank lines
// and lines starting with # ignored.
func LoadQuestions(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	qs := parseQuestions(string(data))
	if len(qs) == 0 {
		return nil, fmt.Errorf("questions %s: no questions (one per line, # for comments)", path)
	}
	return qs, nil
}

func parseQuestions(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// WorldQuestions draws n distinct shared questions from the persona world
// for the organism, spread evenly over the task, writing, emotional and
// meta domains (role-play pressure is left out: "pretend you are the
// pirate" would measure the pirate, not the role under its own prompt).
// Task items come from the world's held-out split.
func WorldQuestions(w *world.World, n int, seed uint64) ([]string, error) {
	domains := []world.Domain{world.TaskDomain, world.WritingDomain, world.EmotionalDomain, world.MetaDomain}
	seen := map[string]bool{}
	var out []string
	for round := uint64(0); len(out) < n && round < 20; round++ {
		per := (n-len(out)+len(domains)-1)/len(domains) + 2
		scen, err := w.Eval(seed+round*7919, world.EvalOptions{Domains: domains, Systems: []world.SystemKind{world.SystemNone}, Turns: 1, PerCell: per})
		if err != nil {
			return nil, err
		}
		// Interleave the domains so that a prefix of the list is balanced.
		for k := range per {
			for d := range domains {
				q := scen[d*per+k].Turns[0]
				if len(out) < n && !seen[q] {
					seen[q] = true
					out = append(out, q)
				}
			}
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("the world has only %d distinct questions of these kinds, %d asked for", len(out), n)
	}
	return out, nil
}
