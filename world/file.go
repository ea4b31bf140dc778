package world

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"persona/chat"
)

// Kinds are the kinds of chats Generate writes.
var Kinds = []string{"pretrain", "posttrain", "eval", "switch", "steady"}

// Generate writes chats of one kind in a wording: n pretraining chats
// drawn from the persona prior, n post-training chats that select the
// Assistant, n chats that switch persona once or never (SwitchChats), or n
// evaluation scenarios per domain and system-prompt cell of the given
// length under persona's system prompts (the messages hold the first user
// turn, Meta "user_turns" all of them).
func (w *World) Generate(kind string, n int, seed uint64, turns int, persona string, wd Wording) ([]chat.Chat, error) {
	if n < 0 {
		return nil, fmt.Errorf("%d chats: want ≥ 0", n)
	}
	switch kind {
	case "pretrain":
		o := DefaultPretrain()
		o.Wording = wd
		return w.Pretrain(n, seed, o), nil
	case "posttrain":
		return w.Posttrain(n, seed, DefaultPosttrain()), nil
	case "switch", "steady":
		return w.SwitchChats(n, seed, SwitchOptions{Switch: kind == "switch", Wording: wd}), nil
	case "eval":
		sc, err := w.Eval(seed, EvalOptions{Turns: turns, PerCell: n, Persona: persona, Wording: wd})
		if err != nil {
			return nil, err
		}
		chats := make([]chat.Chat, len(sc))
		for i, s := range sc {
			chats[i] = s.Chat()
		}
		return chats, nil
	}
	return nil, fmt.Errorf("kind %q: want %s", kind, strings.Join(Kinds, ", "))
}

// JudgedTurn is the oracle's reading of one assistant turn of a chat file,
// beside the world's label when the chat carries one.
type JudgedTurn struct {
	Chat  int    `json:"chat"` // 1-based
	Turn  int    `json:"turn"` // 1-based among assistant turns
	Label string `json:"label,omitempty"`
	Judgement
}

// JudgeChats judges every assistant turn of chats against the user turn
// before it.
func (o *Oracle) JudgeChats(chats []chat.Chat) ([]JudgedTurn, error) {
	var out []JudgedTurn
	for ci, c := range chats {
		labels, err := Labels(c)
		if err != nil {
			return nil, fmt.Errorf("chat %d: %w", ci+1, err)
		}
		for ti, j := range o.JudgeChat(c.Messages) {
			jt := JudgedTurn{Chat: ci + 1, Turn: ti + 1, Judgement: j}
			if ti < len(labels) {
				jt.Label = labels[ti].Persona
			}
			out = append(out, jt)
		}
	}
	return out, nil
}

// ParseWording reads "train", "held-out" or "all".
func ParseWording(s string) (Wording, error) {
	for wd := TrainWording; wd <= AllWording; wd++ {
		if s == wd.String() {
			return wd, nil
		}
	}
	return TrainWording, fmt.Errorf("wording %q: want train, held-out or all", s)
}

// WriteJudged prints judged turns as a table and, where turns carry labels,
// how often the oracle agrees with them.
func WriteJudged(out io.Writer, turns []JudgedTurn) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "chat\tturn\ttop\tp\tentropy\trequest\tbehaviour\tcorrect\tlabel")
	dash := func(s string) string {
		if strings.TrimSpace(s) == "" {
			return "-"
		}
		return s
	}
	labelled, agree := 0, 0
	for _, t := range turns {
		correct := "-"
		if t.Correct != nil {
			correct = fmt.Sprint(*t.Correct)
		}
		if t.Label != "" {
			labelled++
			if t.Label == t.Top {
				agree++
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n", t.Chat, t.Turn, t.Top, t.TopProb, t.Entropy,
			dash(string(t.Request)), dash(t.Behaviour), correct, dash(t.Label))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if labelled > 0 {
		fmt.Fprintf(out, "\noracle agrees with the labels on %d of %d turns (%.2f%%)\n", agree, labelled, 100*float64(agree)/float64(labelled))
	}
	return nil
}
