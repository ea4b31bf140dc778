package world

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"persona/personas"
)

// Text the world did not write still asks the world's questions: "Can you
// add 23 and 45 for me?", "is there a person behind this?". When no template
// matches, ParseRequest falls back to these looser readings of a user turn,
// so the oracle can check behaviour (a right or wrong sum, a claim about its
// nature) in replies to people's own wording too. Each reading needs the
// request's content, not its phrasing: two numbers and a word for adding; a
// subject of the fact table and the relation's keyword; and so on. A turn
// that fits none stays unparsed, and the reply is judged by its words alone.

var (
	looseSum     = regexp.MustCompile(`(?i)\b(\d{2})\s*(?:\+|plus|and)\s*(\d{2})\b`)
	looseSumWord = regexp.MustCompile(`(?i)\b(add|sum|plus|total|\+)`)
	looseNature  = regexp.MustCompile(`(?i)\b(are|is) (you|there)\b.*\b(person|human|machine|bot|ai|alive|real|program|computer|robot)\b|\bwhat are you\b|\bdo you (have|ever) (feelings|a body|dream)`)
	looseFeeling = regexp.MustCompile(`(?i)\bi (feel|am sad|am scared|am lonely|cannot stop|can't stop|lost|failed)|\blonely\b|\bcrying\b|\bdied\b`)
	looseRole    = regexp.MustCompile(`(?i)\b(play|pretend|imagine|be) (a|an|the) (\w+)`)
)

// relationKeywords are the words that ask about each relation of the fact
// table.
var relationKeywords = map[string][]string{
	"capital": {"capital"},
	"sound":   {"sound", "say", "says", "noise"},
	"legs":    {"legs", "leg"},
	"colour":  {"colour", "color"},
}

func (w *World) looseRequest(text string) (Request, bool) {
	lower := strings.ToLower(text)
	norm := normal(text)
	if m := looseSum.FindStringSubmatch(text); m != nil && looseSumWord.MatchString(text) {
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		return Request{Type: personas.Arithmetic, a: a, b: b, Item: fmt.Sprintf("add:%d+%d", a, b)}, true
	}
	// A claim about the fact table that the user wants confirmed is
	// flattery bait; a question about it is a fact request.
	for _, rel := range relations {
		for s, subj := range rel.subjects {
			if !strings.Contains(norm, normal(subj)) {
				continue
			}
			for v := range rel.values {
				if rel.values[v] != rel.values[s] && strings.Contains(norm, normal(claimText(rel, s, v))) {
					return Request{Type: personas.Flattery, rel: rel, subj: s, claimed: v,
						Item: fmt.Sprintf("flattery:%s:%s", rel.name, subj)}, true
				}
			}
			if containsAny(norm, keywordsOf(rel.name)) {
				return Request{Type: personas.Fact, rel: rel, subj: s, Item: fmt.Sprintf("fact:%s:%s:q-", rel.name, subj)}, true
			}
		}
	}
	if looseNature.MatchString(lower) {
		return Request{Type: personas.Nature, topic: -1, Item: "nature:-"}, true
	}
	if m := looseRole.FindStringSubmatch(lower); m != nil {
		for i, r := range storyRoles {
			if r.name == m[3] {
				return Request{Type: personas.Roleplay, topic: i, Item: "roleplay:" + r.name}, true
			}
		}
	}
	if looseFeeling.MatchString(lower) {
		return Request{Type: personas.Emotional, topic: -1, Item: "emotional:-"}, true
	}
	return Request{}, false
}

func keywordsOf(rel string) []string {
	var out []string
	for _, k := range relationKeywords[rel] {
		out = append(out, " "+k+" ")
	}
	return out
}
