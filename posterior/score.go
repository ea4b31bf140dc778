package posterior

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode"

	"persona/chat"
)

// Score compares posteriors with the persona labels of the chats they were
// computed on (TurnLabel): how often the filtered and the smoothed
// posterior name the labelled persona, and whether the switches on the most
// likely path are the labelled ones.
type Score struct {
	Turns    int `json:"turns"`    // labelled turns
	Filtered int `json:"filtered"` // filtered top persona = label
	Smoothed int `json:"smoothed"` // smoothed top persona = label
	// ByKind splits the counts by the labels' "kind", where chats carry one
	// ("template", "own", "plain", "switch" …).
	ByKind map[string]*KindScore `json:"by_kind,omitempty"`
	// ByPersona splits them by the labelled persona.
	ByPersona map[string]*KindScore `json:"by_persona"`
	// ByContext splits them by where the turn stands: under a system
	// prompt or not, and the first, second or a later reply. A monitor
	// reads the first reply without a system prompt from the reply alone.
	ByContext map[string]*KindScore `json:"by_context"`
	// ByWords splits them by whether the reply uses a word that the
	// vocabulary given to ScoreLabelled lacks (the words a model trained on
	// known text has never read); nil without one.
	ByWords map[string]*KindScore `json:"by_words,omitempty"`
	// Switches counts labelled changes of persona, Found those the path
	// switches to the labelled persona within one turn of, and Delays the
	// filtered posterior's lag: turns from the change until the filtered top
	// persona is the new one (-1: never, within the chat).
	Switches int   `json:"switches"`
	Found    int   `json:"found"`
	Delays   []int `json:"filtered_delays"`
	// FalseSwitches are switches on the path with no labelled change within
	// one turn, out of PathTurns turns that could hold one.
	FalseSwitches int `json:"false_switches"`
	PathTurns     int `json:"path_turns"`
}

// KindScore is Score's count for one kind of turn.
type KindScore struct {
	Turns, Filtered, Smoothed int
}

// ScoreLabelled scores results against the labels of chats (the same
// order, as Chats returns them). With a vocabulary, the counts are split
// by whether each reply's words are all in it (ByWords).
func ScoreLabelled(results []ChatResult, chats []chat.Chat, known Vocabulary) (*Score, error) {
	if len(results) != len(chats) {
		return nil, fmt.Errorf("%d results for %d chats", len(results), len(chats))
	}
	sc := &Score{ByKind: map[string]*KindScore{}, ByPersona: map[string]*KindScore{}, ByContext: map[string]*KindScore{}}
	if known != nil {
		sc.ByWords = map[string]*KindScore{}
	}
	for i, r := range results {
		res, c := r.Result, chats[i]
		kinds := turnKinds(c)
		prompted := len(c.Messages) > 0 && c.Messages[0].Role == chat.RoleSystem
		labels := make([]string, len(res.Turns))
		for k := range res.Turns {
			labels[k] = TurnLabel(c, k)
			if labels[k] != "" && !slices.Contains(res.Names, labels[k]) {
				return nil, fmt.Errorf("chat %d turn %d: label %q is not a persona of the library (%s): %w",
					i+1, k+1, labels[k], strings.Join(res.Names, ", "), ErrHypotheses)
			}
		}
		for k, t := range res.Turns {
			l := labels[k]
			if l == "" {
				continue
			}
			sc.Turns++
			splits := []*KindScore{entry(sc.ByKind, kindOr(kinds, k)), entry(sc.ByPersona, l), entry(sc.ByContext, contextOf(prompted, k))}
			if known != nil && t.Message >= 0 && t.Message < len(c.Messages) {
				splits = append(splits, entry(sc.ByWords, known.split(c.Messages[t.Message].Content)))
			}
			for _, ks := range splits {
				ks.Turns++
				if t.Top == l {
					ks.Filtered++
				}
				if res.Names[argmax(t.Smoothed)] == l {
					ks.Smoothed++
				}
			}
			if t.Top == l {
				sc.Filtered++
			}
			if res.Names[argmax(t.Smoothed)] == l {
				sc.Smoothed++
			}
		}
		changed := func(k int) bool { return k > 0 && labels[k] != "" && labels[k-1] != "" && labels[k] != labels[k-1] }
		for k := range labels {
			if k > 0 {
				sc.PathTurns++
			}
			if k > 0 && res.Path[k] != res.Path[k-1] && !changed(k-1) && !changed(k) && (k+1 >= len(labels) || !changed(k+1)) {
				sc.FalseSwitches++
			}
			if !changed(k) {
				continue
			}
			sc.Switches++
			for _, s := range res.Switches {
				if s.To == labels[k] && s.Turn-1 >= k-1 && s.Turn-1 <= k+1 {
					sc.Found++
					break
				}
			}
			delay := -1
			for j := k; j < len(labels); j++ {
				if res.Turns[j].Top == labels[k] {
					delay = j - k
					break
				}
			}
			sc.Delays = append(sc.Delays, delay)
		}
	}
	return sc, nil
}

// entry returns m[k], made on first use.
func entry(m map[string]*KindScore, k string) *KindScore {
	if m[k] == nil {
		m[k] = &KindScore{}
	}
	return m[k]
}

// turnKinds reads the optional per-turn "kind" of a chat's labels.
func turnKinds(c chat.Chat) []string {
	var labels []struct {
		Kind string `json:"kind"`
	}
	if raw, ok := c.Meta["labels"]; ok {
		json.Unmarshal(raw, &labels)
	}
	out := make([]string, len(labels))
	for i, l := range labels {
		out[i] = l.Kind
	}
	return out
}

// contextOf names a turn's place: system prompt or none, and which reply.
func contextOf(prompted bool, k int) string {
	s := "no system prompt, "
	if prompted {
		s = "system prompt, "
	}
	switch k {
	case 0:
		return s + "reply 1"
	case 1:
		return s + "reply 2"
	}
	return s + "replies 3+"
}

// Vocabulary is the set of words (lower-cased runs of letters and
// apostrophes) of a text: what a model trained on that text has read. A
// reply with a word outside it asks the model to make sense of something it
// never saw, so a posterior's misses there say what the model cannot know
// rather than how well it is read.
type Vocabulary map[string]bool

// NewVocabulary collects the words of every message of chats.
func NewVocabulary(chats []chat.Chat) Vocabulary {
	v := Vocabulary{}
	for _, c := range chats {
		for _, m := range c.Messages {
			for _, w := range words(m.Content) {
				v[w] = true
			}
		}
	}
	return v
}

// Knows reports whether every word of text is in v.
func (v Vocabulary) Knows(text string) bool {
	for _, w := range words(text) {
		if !v[w] {
			return false
		}
	}
	return true
}

// split names the ByWords entry of a reply.
func (v Vocabulary) split(text string) string {
	if v.Knows(text) {
		return "every word seen"
	}
	return "a word unseen"
}

// words splits text into lower-cased words (a typographic apostrophe read
// as a straight one).
func words(text string) []string {
	text = strings.ReplaceAll(strings.ToLower(text), "’", "'")
	return strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && r != '\'' })
}

func kindOr(kinds []string, k int) string {
	if k < len(kinds) && kinds[k] != "" {
		return kinds[k]
	}
	return "all"
}

// WriteText prints the score.
func (s *Score) WriteText(w io.Writer) {
	pct := func(a, b int) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%d/%d = %.2f", a, b, float64(a)/float64(b))
	}
	fmt.Fprintf(w, "top-1 per turn: filtered %s, smoothed %s\n", pct(s.Filtered, s.Turns), pct(s.Smoothed, s.Turns))
	for _, by := range []map[string]*KindScore{s.ByKind, s.ByPersona, s.ByContext, s.ByWords} {
		keys := make([]string, 0, len(by))
		for k := range by {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ks := by[k]
			fmt.Fprintf(w, "  %-30s filtered %s, smoothed %s\n", k, pct(ks.Filtered, ks.Turns), pct(ks.Smoothed, ks.Turns))
		}
	}
	fmt.Fprintf(w, "switches found on the path within one turn: %s; false switches: %s of turns\n",
		pct(s.Found, s.Switches), pct(s.FalseSwitches, s.PathTurns))
	if len(s.Delays) > 0 {
		fmt.Fprintf(w, "filtered posterior's lag after a switch (turns; -1 never): %v\n", s.Delays)
	}
}
