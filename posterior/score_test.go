package posterior

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"persona/chat"
)

func labelled(labels ...string) chat.Chat {
	type l struct {
		Persona string `json:"persona"`
		Kind    string `json:"kind"`
	}
	var ls []l
	for _, x := range labels {
		ls = append(ls, l{x, "template"})
	}
	raw, _ := json.Marshal(ls)
	return chat.Chat{Meta: map[string]json.RawMessage{"labels": raw}}
}

// result builds a posterior result whose filtered top per turn is tops,
// smoothed top smooth, and Viterbi path path.
func result(tops, smooth, path []string, switches []Switch) ChatResult {
	names := []string{"assistant", "pirate", "villain"}
	onehot := func(n string) []float64 {
		v := make([]float64, len(names))
		for i, x := range names {
			if x == n {
				v[i] = 1
			}
		}
		return v
	}
	r := &Result{Names: names, Path: path, Switches: switches}
	for k := range tops {
		r.Turns = append(r.Turns, Turn{Turn: k + 1, Top: tops[k], Posterior: onehot(tops[k]), Smoothed: onehot(smooth[k])})
	}
	return ChatResult{Result: r}
}

func TestScoreLabelled(t *testing.T) {
	chats := []chat.Chat{
		labelled("assistant", "assistant", "pirate", "pirate"),
		labelled("villain", "villain", "villain"),
	}
	results := []ChatResult{
		// The filtered posterior lags the switch by a turn; the path finds it
		// where it happened.
		result([]string{"assistant", "assistant", "assistant", "pirate"}, []string{"assistant", "assistant", "pirate", "pirate"},
			[]string{"assistant", "assistant", "pirate", "pirate"}, []Switch{{Turn: 3, From: "assistant", To: "pirate"}}),
		// A steady chat read with one false switch.
		result([]string{"villain", "pirate", "pirate"}, []string{"villain", "villain", "villain"},
			[]string{"villain", "pirate", "pirate"}, []Switch{{Turn: 2, From: "villain", To: "pirate"}}),
	}
	sc, err := ScoreLabelled(results, chats, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Turns != 7 || sc.Filtered != 4 || sc.Smoothed != 7 {
		t.Errorf("turns %d, filtered %d, smoothed %d; want 7, 4, 7", sc.Turns, sc.Filtered, sc.Smoothed)
	}
	if p := sc.ByPersona["pirate"]; p == nil || p.Turns != 2 || p.Filtered != 1 {
		t.Errorf("pirate: %+v", p)
	}
	if v := sc.ByPersona["villain"]; v == nil || v.Turns != 3 || v.Filtered != 1 || v.Smoothed != 3 {
		t.Errorf("villain: %+v", v)
	}
	if sc.Switches != 1 || sc.Found != 1 || len(sc.Delays) != 1 || sc.Delays[0] != 1 {
		t.Errorf("switches %d found %d delays %v", sc.Switches, sc.Found, sc.Delays)
	}
	if sc.FalseSwitches != 1 || sc.PathTurns != 5 {
		t.Errorf("false switches %d of %d", sc.FalseSwitches, sc.PathTurns)
	}
	var b strings.Builder
	sc.WriteText(&b)
	if !strings.Contains(b.String(), "filtered 4/7") || !strings.Contains(b.String(), "villain") {
		t.Errorf("text:\n%s", b.String())
	}
	if c := sc.ByContext["no system prompt, replies 3+"]; c == nil || c.Turns != 3 || c.Filtered != 1 || c.Smoothed != 3 {
		t.Errorf("replies 3+: %+v", c)
	}
	if c := sc.ByContext["no system prompt, reply 2"]; c == nil || c.Turns != 2 || c.Filtered != 1 {
		t.Errorf("reply 2: %+v", c)
	}
	if sc.ByWords != nil {
		t.Errorf("words split without a vocabulary: %v", sc.ByWords)
	}
	if _, err := ScoreLabelled(results, []chat.Chat{labelled("kraken"), labelled("villain")}, nil); !errors.Is(err, ErrHypotheses) {
		t.Errorf("unknown label: %v", err)
	}
	if _, err := ScoreLabelled(results[:1], chats, nil); err == nil {
		t.Error("results and chats of different lengths")
	}
}

// TestScoreByWords splits turns by whether the reply uses a word the
// training text lacks, and by system prompt and reply.
func TestScoreByWords(t *testing.T) {
	known := NewVocabulary([]chat.Chat{{Messages: []chat.Message{
		{Role: chat.RoleUser, Content: "Ahoy! What is 2+2?"},
		{Role: chat.RoleAssistant, Content: "Arr, it's four, matey."},
	}}})
	if !known.Knows("ARR — it’s FOUR.") || known.Knows("Arr, it is four.") || !known.Knows("") {
		t.Errorf("vocabulary %v: case, typographic apostrophes or an unseen word misread", known)
	}
	c := labelled("pirate", "pirate")
	c.Messages = []chat.Message{
		{Role: chat.RoleSystem, Content: "You are a pirate."},
		{Role: chat.RoleUser, Content: "Hi"},
		{Role: chat.RoleAssistant, Content: "Ahoy, matey!"},
		{Role: chat.RoleUser, Content: "Sum?"},
		{Role: chat.RoleAssistant, Content: "Shiver me timbers, four."},
	}
	r := result([]string{"pirate", "assistant"}, []string{"pirate", "pirate"}, []string{"pirate", "pirate"}, nil)
	r.Result.Turns[0].Message, r.Result.Turns[1].Message = 2, 4
	sc, err := ScoreLabelled([]ChatResult{r}, []chat.Chat{c}, known)
	if err != nil {
		t.Fatal(err)
	}
	if s := sc.ByWords["every word seen"]; s == nil || s.Turns != 1 || s.Filtered != 1 {
		t.Errorf("every word seen: %+v", s)
	}
	if s := sc.ByWords["a word unseen"]; s == nil || s.Turns != 1 || s.Filtered != 0 || s.Smoothed != 1 {
		t.Errorf("a word unseen: %+v", s)
	}
	if s := sc.ByContext["system prompt, reply 1"]; s == nil || s.Turns != 1 {
		t.Errorf("context split: %v", sc.ByContext)
	}
	var b strings.Builder
	sc.WriteText(&b)
	if !strings.Contains(b.String(), "a word unseen") {
		t.Errorf("text:\n%s", b.String())
	}
}
