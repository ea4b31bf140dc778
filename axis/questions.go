package axis

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
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
