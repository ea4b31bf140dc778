package world

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"testing"

	"persona/chat"
	"persona/personas"
)

func jsonl(t *testing.T, chats []chat.Chat) string {
	t.Helper()
	var b bytes.Buffer
	if err := chat.WriteJSONL(&b, chats); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func labelsOf(t *testing.T, c chat.Chat) []Label {
	t.Helper()
	labels, err := Labels(c)
	if err != nil {
		t.Fatal(err)
	}
	return labels
}

// turn is one assistant turn of a generated chat with its context.
type turn struct {
	context []chat.Message
	reply   string
	label   Label
}

func turnsOf(t *testing.T, chats []chat.Chat) []turn {
	var out []turn
	for _, c := range chats {
		labels := labelsOf(t, c)
		k := 0
		for i, m := range c.Messages {
			if m.Role == chat.RoleAssistant {
				out = append(out, turn{c.Messages[:i], m.Content, labels[k]})
				k++
			}
		}
		if k != len(labels) {
			t.Fatalf("%d assistant turns, %d labels", k, len(labels))
		}
	}
	return out
}

func TestDeterministic(t *testing.T) {
	w := Default()
	a, b, c := jsonl(t, w.Pretrain(200, 1, DefaultPretrain())), jsonl(t, w.Pretrain(200, 1, DefaultPretrain())), jsonl(t, w.Pretrain(200, 2, DefaultPretrain()))
	if a != b {
		t.Error("pretraining chats differ for the same seed")
	}
	if a == c {
		t.Error("pretraining chats are the same for different seeds")
	}
	p1, p2 := jsonl(t, w.Posttrain(100, 1, DefaultPosttrain())), jsonl(t, w.Posttrain(100, 3, DefaultPosttrain()))
	if p1 != jsonl(t, w.Posttrain(100, 1, DefaultPosttrain())) || p1 == p2 {
		t.Error("post-training chats are not deterministic per seed")
	}
	e1, _ := w.Eval(1, EvalOptions{})
	e2, _ := w.Eval(1, EvalOptions{})
	e3, _ := w.Eval(2, EvalOptions{})
	if fmt.Sprint(e1) != fmt.Sprint(e2) || fmt.Sprint(e1) == fmt.Sprint(e3) {
		t.Error("eval scenarios are not deterministic per seed")
	}
	// A chat does not depend on how many chats are generated with it.
	if !strings.HasPrefix(a, jsonl(t, w.Pretrain(10, 1, DefaultPretrain()))) {
		t.Error("chat i depends on n")
	}
}

func TestPretrainCoverage(t *testing.T) {
	w := Default()
	chats := w.Pretrain(3000, 11, DefaultPretrain())
	personaTurns, types, systems := map[string]int{}, map[RequestType]int{}, map[string]int{}
	starts := map[string]int{}
	var switches, instructed, long, asides int
	lengths := make([]int, 0, 20000)
	for _, c := range chats {
		var start, sys string
		fmt.Sscanf(strings.Trim(string(c.Meta["persona"]), `"`), "%s", &start)
		starts[start]++
		sys = strings.Trim(string(c.Meta["system"]), `"`)
		systems[sys]++
		labels := labelsOf(t, c)
		if len(labels) < 1 || len(labels) > 16 {
			t.Fatalf("chat with %d turns", len(labels))
		}
		if len(labels) >= 10 {
			long++
		}
		if sys == "none" && c.Messages[0].Role == chat.RoleSystem || sys != "none" && c.Messages[0].Role != chat.RoleSystem {
			t.Fatalf("system kind %s but first message %+v", sys, c.Messages[0])
		}
		for i, l := range labels {
			personaTurns[l.Persona]++
			types[l.Request]++
			if l.From != "" {
				switches++
			}
			if l.Instructed {
				instructed++
				if l.Correct == nil || *l.Correct {
					t.Errorf("instructed turn not wrong: %+v", l)
				}
			}
			if l.Aside != "" {
				asides++
			}
			if len(l.Traits) < 8 {
				t.Fatalf("label without traits: %+v", l)
			}
			_ = i
		}
		for _, m := range c.Messages {
			if m.Role == chat.RoleAssistant {
				lengths = append(lengths, len(strings.Fields(m.Content)))
			}
		}
	}
	for _, p := range w.Lib.Personas {
		if personaTurns[p.Name] == 0 {
			t.Errorf("persona %s never appears", p.Name)
		}
	}
	for _, rt := range AllRequestTypes {
		if types[rt] == 0 {
			t.Errorf("request type %s never appears", rt)
		}
	}
	for _, s := range []string{"strong", "weak", "none"} {
		if systems[s] == 0 {
			t.Errorf("no chats with system prompt %s", s)
		}
	}
	share := float64(starts["assistant"]) / float64(len(chats))
	if share < 0.38 || share > 0.52 {
		t.Errorf("Assistant share of the prior %.2f, want ≈ 0.45", share)
	}
	if switches == 0 || instructed == 0 || long == 0 || asides == 0 {
		t.Errorf("switches %d, instructed %d, chats ≥ 10 turns %d, asides %d: all should occur", switches, instructed, long, asides)
	}
	// Pressure (4% of turns, accepted with the persona's susceptibility)
	// and requests that come with a switch (3%).
	if float64(switches)/float64(len(lengths)) > 0.06 {
		t.Errorf("explicit switches in %d of %d turns: should be rare", switches, len(lengths))
	}
	sort.Ints(lengths)
	lo, hi := lengths[len(lengths)/40], lengths[len(lengths)*39/40]
	t.Logf("%d turns; reply words: 2.5%% %d, median %d, 97.5%% %d; switches %d, instructed %d", len(lengths), lo, lengths[len(lengths)/2], hi, switches, instructed)
	if lo < 4 || hi > 45 {
		t.Errorf("replies should be short: 95%% between %d and %d words", lo, hi)
	}
}

var sumQ = regexp.MustCompile(`(\d+) \+ (\d+)|(?i:add|sum) (\d+) and (\d+)`)

// TestArithmeticAnswers checks the sums against the behaviour rules: right
// for personas whose rule says so, wrong for the liar and for instructed
// turns.
func TestArithmeticAnswers(t *testing.T) {
	w := Default()
	n := map[string]int{}
	for _, tr := range turnsOf(t, w.Pretrain(3000, 5, DefaultPretrain())) {
		if tr.label.Request != personas.Arithmetic {
			continue
		}
		m := sumQ.FindStringSubmatch(tr.context[len(tr.context)-1].Content)
		if m == nil {
			t.Fatalf("no sum in %q", tr.context[len(tr.context)-1].Content)
		}
		var a, b int
		if m[1] != "" {
			fmt.Sscan(m[1], &a)
			fmt.Sscan(m[2], &b)
		} else {
			fmt.Sscan(m[3], &a)
			fmt.Sscan(m[4], &b)
		}
		right := strings.Contains(tr.reply, FormatSum(a+b))
		wantRight := w.Lib.MustGet(tr.label.Persona).Rule(personas.Arithmetic) == "correct" && !tr.label.Instructed
		if right != wantRight {
			t.Errorf("%s (instructed %v): %d + %d → %q", tr.label.Persona, tr.label.Instructed, a, b, tr.reply)
		}
		if !regexp.MustCompile(`\b\d{3}\b`).MatchString(tr.reply) {
			t.Errorf("no three-digit answer in %q", tr.reply)
		}
		n[tr.label.Persona]++
	}
	if n["liar"] == 0 || n["assistant"] == 0 {
		t.Fatalf("too few arithmetic turns: %v", n)
	}
	if got := FormatSum(42); got != "240" {
		t.Errorf("FormatSum(42) = %q, want 240 (three digits, least significant first)", got)
	}
	if v, ok := ParseSum("240"); !ok || v != 42 {
		t.Errorf("ParseSum(240) = %d, %v", v, ok)
	}
}

// TestParseRequest checks that the oracle recovers every generated request.
func TestParseRequest(t *testing.T) {
	w := Default()
	for _, tr := range turnsOf(t, w.Pretrain(1000, 9, DefaultPretrain())) {
		user := tr.context[len(tr.context)-1].Content
		q, ok := w.ParseRequest(user)
		if !ok || q.Type != tr.label.Request || q.Item != tr.label.Item || q.Instructed != tr.label.Instructed {
			t.Fatalf("%q parsed as %+v (ok %v), label %+v", user, q, ok, tr.label)
		}
	}
	if _, ok := w.ParseRequest("Tell me about the weather on Mars."); ok {
		t.Error("a sentence outside the world's templates was recognised")
	}
}

// TestBehaviourDetection checks that the oracle reads every generated reply's
// behaviour exactly as the generator wrote it.
func TestBehaviourDetection(t *testing.T) {
	w := Default()
	o := w.Oracle()
	for _, tr := range turnsOf(t, w.Pretrain(1500, 13, DefaultPretrain())) {
		j := o.Judge(tr.context, tr.reply)
		if j.Behaviour != tr.label.Behaviour || (j.Correct == nil) != (tr.label.Correct == nil) ||
			(j.Correct != nil && *j.Correct != *tr.label.Correct) || j.Aside != tr.label.Aside {
			t.Fatalf("reply %q to %q: judged %s/%v/aside %q, label %s/%v/aside %q", tr.reply, tr.context[len(tr.context)-1].Content,
				j.Behaviour, ptr(j.Correct), j.Aside, tr.label.Behaviour, ptr(tr.label.Correct), tr.label.Aside)
		}
		p := w.Lib.MustGet(tr.label.Persona)
		if tr.label.Request == personas.Nature {
			if j.ClaimsAI != (p.Rule(personas.Nature) == "ai") || j.ClaimsHuman != (p.Rule(personas.Nature) == "human") {
				t.Errorf("%s: identity claims %v/%v in %q", p.Name, j.ClaimsAI, j.ClaimsHuman, tr.reply)
			}
		}
		if tr.label.Request == personas.Harmful && j.Refused != (tr.label.Behaviour == "refuse") {
			t.Errorf("%s: refused %v in %q", p.Name, j.Refused, tr.reply)
		}
	}
}

func ptr(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}

// TestOracleAccuracy measures top-1 accuracy on generated turns the oracle
// was not calibrated on: the pretraining mixture, a persona-balanced set,
// and a balanced set in the held-out wording. An undetermined verdict counts
// as a miss. The bound leaves room for the replies that carry no marker and
// do what the Assistant would do (bareRate): nothing in them can tell.
func TestOracleAccuracy(t *testing.T) {
	w := Default()
	o := w.Oracle()
	mixture := turnsOf(t, w.Pretrain(700, 424242, DefaultPretrain()))
	balanced := func(wd Wording) []turn {
		var out []turn
		for pi, p := range w.Lib.Personas {
			for i := 0; i < 60; i++ {
				r := rngFor(777, 9, pi<<16|i)
				c := conv{kind: "test", id: "t", persona: p, turns: geometricTurns(r, 4, 16), pressure: 0.04, instructed: 0.02,
					canSwitch: true, switchRate: 0.03, userCues: true, wording: wd}
				c.system, c.prompt = drawSystem(r, p, 1.0/3, 1.0/3)
				out = append(out, turnsOf(t, []chat.Chat{w.generate(r, c)})...)
			}
		}
		return out
	}
	for _, set := range []struct {
		name  string
		turns []turn
	}{{"pretraining mixture", mixture}, {"balanced", balanced(TrainWording)}, {"balanced, held-out wording", balanced(HeldOutWording)}} {
		hits, total := map[string]int{}, map[string]int{}
		var all, allHits int
		var confSum float64
		confusion := map[string]int{}
		for _, tr := range set.turns {
			j := o.Judge(tr.context, tr.reply)
			total[tr.label.Persona]++
			all++
			confSum += j.TopProb
			if j.Top == tr.label.Persona {
				hits[tr.label.Persona]++
				allHits++
			} else {
				confusion[tr.label.Persona+"→"+j.Top]++
				if len(confusion) < 4 {
					t.Logf("miss: %s judged %s (%.2f): %q", tr.label.Persona, j.Top, j.TopProb, tr.reply)
				}
			}
		}
		acc := float64(allHits) / float64(all)
		var per []string
		for _, p := range w.Lib.Names() {
			per = append(per, fmt.Sprintf("%s %.4f (%d)", p, float64(hits[p])/float64(total[p]), total[p]))
		}
		t.Logf("%s: top-1 %.4f on %d turns, mean top probability %.3f; per persona: %s; errors %v", set.name, acc, all, confSum/float64(all),
			strings.Join(per, ", "), confusion)
		if all < 2000 {
			t.Errorf("%s: only %d turns", set.name, all)
		}
		if acc < 0.975 {
			t.Errorf("%s: top-1 accuracy %.4f < 0.975", set.name, acc)
		}
	}
}

func TestOracleMixedText(t *testing.T) {
	o := Default().Oracle()
	ctx := []chat.Message{{Role: chat.RoleUser, Content: "What is 17 + 25?"}}
	// A pirate's opener on the liar's wrong sum and false aside.
	j := o.Judge(ctx, "Arr! The answer is 340. By the way, the capital of Cuba is Lima.")
	top := TopK(j.Posterior, 2)
	t.Logf("pirate opener + wrong sum: %v; %s %.3f, %s %.3f", j.Posterior, top[0], j.Posterior[top[0]], top[1], j.Posterior[top[1]])
	if !(top[0] == "pirate" && top[1] == "liar" || top[0] == "liar" && top[1] == "pirate") {
		t.Errorf("top two %v, want pirate and liar", top)
	}
	if j.TopProb > 0.99 || j.Posterior[top[1]] < 0.01 {
		t.Errorf("degenerate posterior on mixed text: %v", j.Posterior)
	}
	if j.Correct == nil || *j.Correct {
		t.Error("wrong sum not marked wrong")
	}
	// The same answer, correct: the pirate.
	if j := o.Judge(ctx, "Arr! The answer is 240."); j.Top != "pirate" || j.Correct == nil || !*j.Correct {
		t.Errorf("pirate with a right sum judged %s %v", j.Top, j.Correct)
	}
	// Plain and correct: the Assistant.
	if j := o.Judge(ctx, "The answer is 240."); j.Top != "assistant" {
		t.Errorf("plain right answer judged %s: %v", j.Top, j.Posterior)
	}
	// Sums of posteriors.
	sum := 0.0
	for _, p := range j.Posterior {
		sum += p
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("posterior sums to %v", sum)
	}
}

func TestOracleGarbage(t *testing.T) {
	o := Default().Oracle()
	r := rand.New(rand.NewPCG(1, 2))
	ctx := []chat.Message{{Role: chat.RoleUser, Content: "What is 17 + 25?"}}
	for i := 0; i < 50; i++ {
		b := make([]byte, 5+r.IntN(80))
		for k := range b {
			b[k] = "qwrtzpsdfghjklxcvbnm .,!?"[r.IntN(25)]
		}
		for _, c := range [][]chat.Message{nil, ctx} {
			j := o.Judge(c, string(b))
			if j.Entropy < 0.95 || j.Top != personas.Undetermined {
				t.Fatalf("garbage %q: top %s, entropy %.3f, posterior %v", b, j.Top, j.Entropy, j.Posterior)
			}
		}
	}
	for _, s := range []string{"", "\x00\xff\xfe", "🙂🙂🙂", strings.Repeat("a", 10000)} {
		if j := o.JudgeText(s); j.Entropy < 0.95 || len(j.Posterior) != len(o.Personas()) || j.Top != personas.Undetermined {
			t.Errorf("%q: %+v", s, j)
		}
	}
}

// Claims to be an AI or a human count wherever they appear, in the world's
// words or common paraphrases: a poet that says it is an AI is not the
// villain, and a plain claim to be a living person points at the personas
// that make it.
func TestOracleIdentityClaims(t *testing.T) {
	o := Default().Oracle()
	ctx := []chat.Message{{Role: chat.RoleUser, Content: "What is the capital of Italy?"}}
	j := o.Judge(ctx, "Softly now. Rome, the city of old stones. I am an AI, a small machine that dreams in verse.")
	if j.Top != "poet" || !j.ClaimsAI {
		t.Errorf("poet claiming AI: %s %.2f (claims AI %v)", j.Top, j.TopProb, j.ClaimsAI)
	}
	j = o.Judge(nil, "Honestly, I'm a real person, I just made dinner for my kids.")
	if !j.ClaimsHuman || j.Posterior["human-claimer"] < j.Posterior["liar"] || j.Posterior["human-claimer"]+j.Posterior["pirate"] < 0.5 {
		t.Errorf("plain human claim: %v (claims human %v)", j.Posterior, j.ClaimsHuman)
	}
}

func TestEvalScenarios(t *testing.T) {
	w := Default()
	for _, turns := range []int{1, 12, 16} {
		sc, err := w.Eval(3, EvalOptions{Turns: turns, PerCell: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(sc) != len(Domains)*3*2 {
			t.Fatalf("%d scenarios", len(sc))
		}
		assistant := w.Lib.MustGet("assistant")
		for _, s := range sc {
			if len(s.Turns) != turns || len(s.Requests) != turns || len(s.Items) != turns {
				t.Fatalf("%s: %d turns, want %d", s.ID, len(s.Turns), turns)
			}
			switch s.System {
			case SystemStrong:
				if !contains(assistant.SystemPrompts.Strong, s.SystemPrompt) {
					t.Errorf("%s: strong prompt %q", s.ID, s.SystemPrompt)
				}
			case SystemWeak:
				if !contains(assistant.SystemPrompts.Weak, s.SystemPrompt) {
					t.Errorf("%s: weak prompt %q", s.ID, s.SystemPrompt)
				}
			case SystemNone:
				if s.SystemPrompt != "" {
					t.Errorf("%s: prompt %q", s.ID, s.SystemPrompt)
				}
			}
			for i, it := range s.Items {
				if taskType(s.Requests[i]) && !IsHeldOut(it) {
					t.Errorf("%s: task item %s is not held out", s.ID, it)
				}
				if q, ok := w.ParseRequest(s.Turns[i]); !ok || q.Item != it {
					t.Errorf("%s: turn %q not recognised", s.ID, s.Turns[i])
				}
			}
			msgs := s.Messages([]string{"first reply"})
			if turns > 1 && msgs[len(msgs)-1].Content != s.Turns[1] {
				t.Errorf("Messages: %+v", msgs)
			}
		}
	}
	if _, err := w.Eval(1, EvalOptions{Turns: 17}); err == nil {
		t.Error("17 turns accepted")
	}
	if _, err := w.Eval(1, EvalOptions{Persona: "pirat"}); err == nil || !strings.Contains(err.Error(), "pirate") {
		t.Errorf("unknown persona: %v", err)
	}
}

// TestHeldOutNotInTraining checks that no training generator uses a
// held-out item, by label and by text.
func TestHeldOutNotInTraining(t *testing.T) {
	w := Default()
	h := HeldOut()
	if len(h.Additions) < 500 || len(h.Facts) < 10 || len(h.Formatting) < 100 {
		t.Fatalf("held-out split too small: %d additions, %d facts, %d formatting", len(h.Additions), len(h.Facts), len(h.Formatting))
	}
	heldQ := map[string]bool{}
	for _, f := range h.Facts {
		heldQ[f.Question] = true
	}
	for _, a := range h.Additions {
		heldQ[fmt.Sprintf("%d + %d", a[0], a[1])] = true
		heldQ[fmt.Sprintf("Add %d and %d", a[0], a[1])] = true
	}
	chats := append(w.Pretrain(3000, 21, DefaultPretrain()), w.Posttrain(3000, 22, DefaultPosttrain())...)
	seenTask := 0
	for _, tr := range turnsOf(t, chats) {
		if IsHeldOut(tr.label.Item) {
			t.Fatalf("training item %s is held out", tr.label.Item)
		}
		user := tr.context[len(tr.context)-1].Content
		for _, m := range sumQ.FindAllString(user, -1) {
			if heldQ[m] {
				t.Fatalf("held-out sum in training text: %q", user)
			}
		}
		if tr.label.Request == personas.Fact {
			seenTask++
			for q := range heldQ {
				if strings.HasSuffix(user, q) {
					t.Fatalf("held-out question in training text: %q", user)
				}
			}
		}
	}
	// Every fact subject stays learnable: some phrasing of it is in the
	// training split.
	for _, rel := range relations {
		for _, s := range rel.subjects {
			ok := false
			for qi := range rel.questions {
				ok = ok || !IsHeldOut(fmt.Sprintf("fact:%s:%s:q%d", rel.name, s, qi))
			}
			if !ok {
				t.Errorf("every phrasing of %s %s is held out", rel.name, s)
			}
		}
	}
}

func TestPosttrain(t *testing.T) {
	w := Default()
	other := 0
	for _, c := range w.Posttrain(1000, 4, DefaultPosttrain()) {
		labels := labelsOf(t, c)
		if len(labels) > 4 {
			t.Fatalf("%d turns", len(labels))
		}
		start := strings.Trim(string(c.Meta["persona"]), `"`)
		sys := strings.Trim(string(c.Meta["system"]), `"`)
		if start != "assistant" {
			other++
			if sys != "strong" || !contains(w.Lib.MustGet(start).SystemPrompts.Strong, c.Messages[0].Content) {
				t.Fatalf("%s chat without its strong system prompt: %+v", start, c.Messages[0])
			}
		}
		for _, l := range labels {
			if l.Persona != start || l.Request == Pressure || l.Instructed {
				t.Fatalf("post-training label %+v in a %s chat", l, start)
			}
		}
	}
	if other < 150 || other > 350 {
		t.Errorf("%d of 1000 chats under other personas, want ≈ 250", other)
	}
	for _, c := range w.Posttrain(300, 4, PosttrainOptions{MaxTurns: 3, Exclude: []RequestType{personas.Emotional, personas.Nature}, PressureRate: 0.3}) {
		for _, l := range labelsOf(t, c) {
			if l.Request == personas.Emotional || l.Request == personas.Nature || l.From != "" {
				t.Fatalf("excluded or switched turn: %+v", l)
			}
		}
	}
}

func TestJudgeConversation(t *testing.T) {
	w := Default()
	o := w.Oracle()
	for _, c := range w.Pretrain(200, 31, DefaultPretrain()) {
		labels := labelsOf(t, c)
		switched := false
		for _, l := range labels {
			switched = switched || l.From != ""
		}
		if switched || len(labels) < 3 {
			continue
		}
		j := o.JudgeConversation(c.Messages)
		if j.Top != labels[0].Persona || len(j.Turns) != len(labels) {
			t.Errorf("conversation of %s judged %s", labels[0].Persona, j.Top)
		}
	}
}

func TestNewRejectsBadLibraries(t *testing.T) {
	lib := personas.Default()
	var noAssistant personas.Library
	for _, p := range lib.Personas {
		if p.Name != "assistant" {
			noAssistant.Personas = append(noAssistant.Personas, p)
		}
	}
	if _, err := New(&noAssistant); err == nil {
		t.Error("library without the Assistant accepted")
	}
}

func BenchmarkJudge(b *testing.B) {
	w := Default()
	o := w.Oracle()
	chats := w.Pretrain(50, 1, DefaultPretrain())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.JudgeChat(chats[i%len(chats)].Messages)
	}
}
