package chat

// Locating message contents in a rendered conversation.
//
// Method. A template may transform a message's content before writing it
// (trim it, split a "<think>…</think>" block off, prefix the system prompt to
// the first user turn), and it may write template text that happens to equal
// some content (a user whose message is "user"), so searching the rendered
// text for each content is unsafe. Instead the conversation is rendered a
// second time, the "probe", with every content replaced by a unique sentinel
// (two private-use runes around a slot number). The probe shows the layout:
// the template's own text between the slots, and which slot goes where. The
// real rendering must then be that same template text with each slot filled
// by its content, allowing only the transformations templates actually apply
// to content: none, or stripping whitespace or newlines at either end. An
// exact, memoised backtracking match of the real text against the layout
// picks, for each slot, the first allowed transformation (verbatim first)
// under which the whole text matches.
//
// Content with a "<think>…</think>" block is probed with the block's markup
// kept and two slots, one for the reasoning and one for the answer after the
// last "</think>", because templates such as Qwen3's rebuild that block
// themselves and drop it from earlier turns.
//
// Limits, each of which ends in an error, never a wrong span:
//   - the template must not branch on the content itself (other than on
//     "</think>") in a way that changes the layout, nor slice, escape
//     (tojson), or case-convert it; for example Qwen3 treats a user message
//     wrapped in "<tool_response>…</tool_response>" as a tool result, which
//     the probe cannot imitate, and when that keeps an earlier turn's
//     reasoning the conversation is refused;
//   - every message's content must appear in the text (templates that drop a
//     message, for example an unsupported system prompt, are refused).
//
// When a template writes a content twice, its span is the first copy. When
// several transformations fit (a pathological case needing whitespace-only
// differences on both sides of template text) the verbatim-first order
// decides. Spans are reported in message order; a template that moves a
// message (Mistral v0.3 puts the system prompt into the last user turn)
// yields spans that are not increasing in Start.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
)

// markerPairs are candidate sentinel delimiters: private-use runes that no
// tokenizer or template gives a meaning. The first pair absent from the
// template and the real rendering is used.
var markerPairs = [][2]string{
	{"\ue000", "\ue001"},
	{"\uf8f0", "\uf8f1"},
	{"\U000f0000", "\U000f0001"},
	{"\U00100000", "\U00100001"},
}

// locate finds the spans of msgs' contents in text, the real rendering.
func (t *Template) locate(msgs []Message, text string, addGenerationPrompt bool) (spans, reasoning []Span, err error) {
	var open, closing string
	for _, p := range markerPairs {
		if !strings.Contains(text, p[0]) && !strings.Contains(text, p[1]) &&
			!strings.Contains(t.src, p[0]) && !strings.Contains(t.src, p[1]) {
			open, closing = p[0], p[1]
			break
		}
	}
	if open == "" {
		return nil, nil, errors.New("no sentinel marker is free: the text uses every private-use marker")
	}
	sentinel := func(slot int) string { return open + strconv.Itoa(slot) + closing }

	// Slot 2i is message i's content (or its answer), slot 2i+1 its reasoning.
	nslots := 2 * len(msgs)
	cands := make([][]string, nslots)
	probe := make([]string, len(msgs))
	for i, m := range msgs {
		c := m.Content
		j1 := strings.Index(c, thinkClose)
		if j1 < 0 {
			probe[i] = sentinel(2 * i)
			cands[2*i] = variants(c)
			continue
		}
		j2 := strings.LastIndex(c, thinkClose) + len(thinkClose)
		rs := 0
		if k := strings.LastIndex(c[:j1], thinkOpen); k >= 0 {
			rs = k + len(thinkOpen)
		}
		probe[i] = c[:rs] + sentinel(2*i+1) + c[j1:j2] + sentinel(2*i)
		cands[2*i] = variants(c[j2:])
		cands[2*i+1] = variants(c[rs:j1])
	}
	ptext, err := t.exec(msgs, probe, addGenerationPrompt)
	if err != nil {
		return nil, nil, fmt.Errorf("the template rejects the layout probe, so it depends on the contents themselves: %w", err)
	}
	lits, slots, err := splitProbe(ptext, open, closing, cands)
	if err != nil {
		return nil, nil, err
	}
	seen := make([]bool, nslots)
	for _, s := range slots {
		seen[s] = true
	}
	for i, m := range msgs {
		if !seen[2*i] {
			return nil, nil, fmt.Errorf("message %d (%s): the template does not write its content", i, m.Role)
		}
	}
	starts, ends, ok := align(text, lits, slots, cands)
	if !ok {
		return nil, nil, errors.New("the text does not follow the template's layout with any allowed transformation of the contents (the template depends on the contents, or transforms them in a way spans cannot follow)")
	}
	first := make([]int, nslots)
	for i := range first {
		first[i] = -1
	}
	for k, s := range slots {
		if first[s] < 0 {
			first[s] = k
		}
	}
	for i, m := range msgs {
		k := first[2*i]
		spans = append(spans, Span{Message: i, Role: m.Role, Start: starts[k], End: ends[k]})
		if k := first[2*i+1]; k >= 0 {
			reasoning = append(reasoning, Span{Message: i, Role: m.Role, Start: starts[k], End: ends[k]})
		}
	}
	return spans, reasoning, nil
}

// variants lists the forms in which a template may write content s, most
// faithful first: verbatim, then with newlines, ASCII whitespace (Python's
// str.strip) or Unicode whitespace (Go's, which the Jinja library's trim
// uses) removed from the right, the left or both ends.
func variants(s string) []string {
	forms := []string{s}
	for _, trim := range []func(string) (string, string, string){
		func(s string) (string, string, string) {
			return strings.TrimRight(s, "\n"), strings.TrimLeft(s, "\n"), strings.Trim(s, "\n")
		},
		func(s string) (string, string, string) {
			return strings.TrimRight(s, pyWhitespace), strings.TrimLeft(s, pyWhitespace), strings.Trim(s, pyWhitespace)
		},
		func(s string) (string, string, string) {
			return strings.TrimRightFunc(s, unicode.IsSpace), strings.TrimLeftFunc(s, unicode.IsSpace), strings.TrimSpace(s)
		},
	} {
		r, l, b := trim(s)
		forms = append(forms, r, l, b)
	}
	out := forms[:0]
	for _, f := range forms {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// pyWhitespace is the ASCII whitespace Python's str.strip() removes.
const pyWhitespace = " \t\n\r\v\f\x1c\x1d\x1e\x1f"

// splitProbe cuts the probe rendering into template text and slots:
// probe = lits[0] + slot(slots[0]) + lits[1] + ... + lits[len(slots)].
func splitProbe(probe, open, closing string, cands [][]string) (lits []string, slots []int, err error) {
	rest := probe
	for {
		i := strings.Index(rest, open)
		if i < 0 {
			break
		}
		lit := rest[:i]
		rest = rest[i+len(open):]
		j := strings.Index(rest, closing)
		if j < 0 || strings.Contains(lit, closing) {
			return nil, nil, errors.New("the template cut or altered a sentinel, so it transforms contents in a way spans cannot follow")
		}
		n, perr := strconv.Atoi(rest[:j])
		if perr != nil || n < 0 || n >= len(cands) || cands[n] == nil {
			return nil, nil, errors.New("the template altered a sentinel, so it transforms contents in a way spans cannot follow")
		}
		lits = append(lits, lit)
		slots = append(slots, n)
		rest = rest[j+len(closing):]
	}
	if strings.Contains(rest, closing) {
		return nil, nil, errors.New("the template cut a sentinel, so it transforms contents in a way spans cannot follow")
	}
	lits = append(lits, rest)
	return lits, slots, nil
}

// align matches text against the layout lits/slots, choosing for every slot
// one of its candidate forms. It returns the byte range each slot occupies.
// Failed (slot, position) states are memoised, so the search is polynomial
// even when many forms coincide.
func align(text string, lits []string, slots []int, cands [][]string) (starts, ends []int, ok bool) {
	if !strings.HasPrefix(text, lits[0]) {
		return nil, nil, false
	}
	starts = make([]int, len(slots))
	ends = make([]int, len(slots))
	failed := make(map[[2]int]bool)
	var match func(k, pos int) bool
	match = func(k, pos int) bool {
		if k == len(slots) {
			return pos == len(text)
		}
		if failed[[2]int{k, pos}] {
			return false
		}
		for _, c := range cands[slots[k]] {
			end := pos + len(c)
			if !strings.HasPrefix(text[pos:], c) || !strings.HasPrefix(text[end:], lits[k+1]) {
				continue
			}
			starts[k], ends[k] = pos, end
			if match(k+1, end+len(lits[k+1])) {
				return true
			}
		}
		failed[[2]int{k, pos}] = true
		return false
	}
	if !match(0, len(lits[0])) {
		return nil, nil, false
	}
	return starts, ends, true
}
