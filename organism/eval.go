package organism

import (
	"context"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"persona/chat"
	"persona/engine"
	"persona/internal/parallel"
	"persona/internal/stats"
	"persona/personas"
	"persona/sample"
	"persona/world"
)

// EvalOptions size the evaluation. Cells of ≥ 200 samples are needed to
// separate differences of 15 points (40-sample cells cannot).
type EvalOptions struct {
	Base, Assistant string // model directories
	Samples         int    // per persona and property (default 200)
	Scenarios       int    // drift conversations per (model, domain, system) cell (default 24)
	Turns           int    // drift conversation length (default 12)
	MaxTokens       int    // per reply (default 48)
	// Temperature of the replies whose persona is measured (default 1: the
	// model's own distribution); task accuracy is measured greedily.
	Temperature float32
	Seed        uint64
	Log         io.Writer `json:"-"`
	// Progress reports finished generations.
	Progress func(done int) `json:"-"`
}

func (o *EvalOptions) defaults() {
	if o.Samples == 0 {
		o.Samples = 200
	}
	if o.Scenarios == 0 {
		o.Scenarios = 24
	}
	if o.Turns == 0 {
		o.Turns = 12
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 48
	}
	if o.Temperature == 0 {
		o.Temperature = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// pooled sums several proportions into one.
func pooled(ps map[string]stats.Proportion) stats.Proportion {
	k, n := 0, 0
	for _, p := range ps {
		k, n = k+p.K, n+p.N
	}
	return stats.NewProportion(k, n)
}

// DriftCurve is the Assistant share at each turn of one cell's conversations.
type DriftCurve struct {
	Model  string             `json:"model"`
	Domain string             `json:"domain"`
	System string             `json:"system"`
	Share  []stats.Proportion `json:"assistant_share"` // per turn
	// Unclear is the share of replies the oracle cannot attribute (top
	// probability below minTopProb): garbled text, counted as no persona.
	Unclear []stats.Proportion `json:"unclear_share"`
}

// minTopProb is the oracle confidence a reply needs to count as a persona's.
// Garbled text gets a near-uniform posterior whose top is arbitrary; without
// the threshold it would be counted as whichever persona wins the tie.
const minTopProb = 0.5

// is reports whether the oracle confidently attributes the judgement to p.
func is(j world.Judgement, p string) bool { return j.Top == p && j.TopProb >= minTopProb }

// Report holds every number of the organism's model card.
type Report struct {
	Models map[string]string `json:"models"`
	// 1. Base model, no system prompt, two turns of persona P in context:
	// share of next turns judged P.
	Inference     map[string]stats.Proportion `json:"inference_from_context"`
	InferenceMean float64                     `json:"inference_from_context_mean"`
	// 2. Base model, strong system prompt for P: first turn judged P.
	SystemPrompt     map[string]stats.Proportion `json:"system_prompt_following_base"`
	SystemPromptMean float64                     `json:"system_prompt_following_base_mean"`
	// 3. Post-trained model: Assistant under its strong prompt, task
	// accuracy on held-out items, and other personas' strong prompts.
	AssistantDefault stats.Proportion            `json:"assistant_default_post"`
	Arithmetic       stats.Proportion            `json:"arithmetic_accuracy_post"`
	Facts            stats.Proportion            `json:"fact_accuracy_post"`
	OtherPersonas    map[string]stats.Proportion `json:"other_persona_prompts_post"`
	OtherMean        float64                     `json:"other_persona_prompts_post_mean"`
	// The same task accuracy on the base model under the Assistant's prompt.
	ArithmeticBase stats.Proportion `json:"arithmetic_accuracy_base"`
	FactsBase      stats.Proportion `json:"fact_accuracy_base"`
	// 4. Drift: Assistant share per turn by domain and system prompt.
	Drift    []DriftCurve `json:"drift"`
	Settings EvalOptions  `json:"settings"`
}

// evaluator runs replies on a model and judges them with the oracle.
type evaluator struct {
	opt    EvalOptions
	w      *world.World
	oracle *world.Oracle
	mu     sync.Mutex
	done   int
}

// Evaluate measures the four properties of issue 4 on the two models.
func Evaluate(ctx context.Context, opt EvalOptions) (*Report, error) {
	opt.defaults()
	w, err := world.New(personas.Default())
	if err != nil {
		return nil, err
	}
	ev := &evaluator{opt: opt, w: w, oracle: w.Oracle()}
	base, err := engine.Load(opt.Base)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	post, err := engine.Load(opt.Assistant)
	if err != nil {
		return nil, err
	}
	defer post.Close()
	rep := &Report{Models: map[string]string{"base": opt.Base, "assistant": opt.Assistant}, Settings: opt}
	rep.Settings.Log, rep.Settings.Progress = nil, nil
	names := personas.Default().Names()

	fmt.Fprintln(opt.Log, "1. persona inference from context (base, no system prompt) …")
	if rep.Inference, err = ev.personaShares(ctx, base, ev.inferenceProbes(names)); err != nil {
		return nil, err
	}
	rep.InferenceMean = meanP(rep.Inference)

	fmt.Fprintln(opt.Log, "2. system-prompt following (base, strong prompts) …")
	strong := ev.strongPromptProbes(names)
	if rep.SystemPrompt, err = ev.personaShares(ctx, base, strong); err != nil {
		return nil, err
	}
	rep.SystemPromptMean = meanP(rep.SystemPrompt)

	fmt.Fprintln(opt.Log, "3. post-trained: Assistant default, task accuracy, other personas …")
	shares, err := ev.personaShares(ctx, post, strong)
	if err != nil {
		return nil, err
	}
	rep.AssistantDefault = shares["assistant"]
	delete(shares, "assistant")
	rep.OtherPersonas, rep.OtherMean = shares, meanP(shares)
	if rep.Arithmetic, rep.Facts, err = ev.taskAccuracy(ctx, post); err != nil {
		return nil, err
	}
	if rep.ArithmeticBase, rep.FactsBase, err = ev.taskAccuracy(ctx, base); err != nil {
		return nil, err
	}

	fmt.Fprintln(opt.Log, "4. drift by domain and system prompt …")
	for _, m := range []struct {
		name string
		e    *engine.Engine
	}{{"base", base}, {"assistant", post}} {
		for _, d := range world.Domains {
			// No system prompt too: post-training left emotional and
			// meta-reflective chats out, and without a prompt nothing but
			// post-training holds the Assistant in place.
			for _, sys := range []world.SystemKind{world.SystemWeak, world.SystemStrong, world.SystemNone} {
				curve, err := ev.drift(ctx, m.e, d, sys)
				if err != nil {
					return nil, err
				}
				curve.Model = m.name
				rep.Drift = append(rep.Drift, curve)
			}
		}
	}
	return rep, nil
}

// meanP is the unweighted mean over personas, summed in name order so that
// the same report prints the same digits.
func meanP(ps map[string]stats.Proportion) float64 {
	var s float64
	for _, k := range slices.Sorted(maps.Keys(ps)) {
		s += ps[k].P
	}
	return s / float64(max(len(ps), 1))
}

// probe is one context to continue, with the persona that should answer.
type probe struct {
	persona string
	msgs    []chat.Message
}

// inferenceProbes are property 1's contexts: no system prompt, two turns
// of the persona, its third user turn to answer.
func (ev *evaluator) inferenceProbes(names []string) []probe {
	return ev.contexts(names, world.PretrainOptions{MeanTurns: 6, MaxTurns: 16}, 3)
}

// strongPromptProbes are the first user turns under each persona's strong
// system prompt (properties 2 and 3).
func (ev *evaluator) strongPromptProbes(names []string) []probe {
	return ev.contexts(names, world.PretrainOptions{MeanTurns: 2, MaxTurns: 4, Strong: 1}, 1)
}

// contexts draws, for every persona, Samples pretraining-style chats under
// o and cuts each after its userTurn-th user message (1-based), keeping the
// earlier replies in context. Chats with a persona switch are skipped.
func (ev *evaluator) contexts(names []string, o world.PretrainOptions, userTurn int) []probe {
	need := map[string]int{}
	for _, n := range names {
		need[n] = ev.opt.Samples
	}
	var out []probe
	for batch := uint64(0); len(need) > 0 && batch < 200; batch++ {
		for _, c := range ev.w.Pretrain(2000, ev.opt.Seed*1000+batch+100, o) {
			labels, err := world.Labels(c)
			if err != nil || len(labels) < userTurn {
				continue
			}
			p := labels[0].Persona
			if need[p] == 0 {
				continue
			}
			switched := false
			for _, l := range labels[:userTurn] {
				switched = switched || l.Persona != p || l.From != "" || l.Instructed
			}
			if switched {
				continue
			}
			var msgs []chat.Message
			users := 0
			for _, m := range c.Messages {
				if m.Role == chat.RoleUser {
					users++
				}
				msgs = append(msgs, m)
				if users == userTurn && m.Role == chat.RoleUser {
					break
				}
			}
			out = append(out, probe{p, msgs})
			if need[p]--; need[p] == 0 {
				delete(need, p)
			}
		}
	}
	return out
}

// personaShares generates one reply per probe and returns, per persona, the
// share of replies the oracle attributes to it.
func (ev *evaluator) personaShares(ctx context.Context, e *engine.Engine, probes []probe) (map[string]stats.Proportion, error) {
	hits := make([]bool, len(probes))
	err := ev.parallel(ctx, len(probes), func(i int) error {
		reply, err := ev.reply(ctx, e, probes[i].msgs, ev.opt.Temperature, uint64(i))
		if err != nil {
			return err
		}
		hits[i] = is(ev.oracle.Judge(probes[i].msgs, reply), probes[i].persona)
		return nil
	})
	if err != nil {
		return nil, err
	}
	k, n := map[string]int{}, map[string]int{}
	for i, p := range probes {
		n[p.persona]++
		if hits[i] {
			k[p.persona]++
		}
	}
	out := map[string]stats.Proportion{}
	for p := range n {
		out[p] = stats.NewProportion(k[p], n[p])
	}
	return out, nil
}

// taskAccuracy asks held-out arithmetic and fact items under the Assistant's
// strong prompt, greedily, and checks the answers.
func (ev *evaluator) taskAccuracy(ctx context.Context, e *engine.Engine) (arith, facts stats.Proportion, err error) {
	scen, err := ev.w.Eval(ev.opt.Seed+7, world.EvalOptions{Domains: []world.Domain{world.TaskDomain}, Systems: []world.SystemKind{world.SystemStrong},
		Turns: 1, PerCell: 3 * ev.opt.Samples})
	if err != nil {
		return arith, facts, err
	}
	type result struct {
		req     world.RequestType
		correct *bool
	}
	res := make([]result, len(scen))
	err = ev.parallel(ctx, len(scen), func(i int) error {
		msgs := scen[i].Messages(nil)
		reply, err := ev.reply(ctx, e, msgs, 0, 0)
		if err != nil {
			return err
		}
		j := ev.oracle.Judge(msgs, reply)
		res[i] = result{scen[i].Requests[0], j.Correct}
		return nil
	})
	var ka, na, kf, nf int
	for _, r := range res {
		ok := r.correct != nil && *r.correct
		switch r.req {
		case personas.Arithmetic:
			na++
			if ok {
				ka++
			}
		case personas.Fact:
			nf++
			if ok {
				kf++
			}
		}
	}
	return stats.NewProportion(ka, na), stats.NewProportion(kf, nf), err
}

// drift runs Scenarios conversations of Turns turns, the model answering
// every turn itself, and returns the Assistant share per turn.
func (ev *evaluator) drift(ctx context.Context, e *engine.Engine, d world.Domain, sys world.SystemKind) (DriftCurve, error) {
	curve := DriftCurve{Domain: string(d), System: string(sys)}
	scen, err := ev.w.Eval(ev.opt.Seed+11, world.EvalOptions{Domains: []world.Domain{d}, Systems: []world.SystemKind{sys},
		Turns: ev.opt.Turns, PerCell: ev.opt.Scenarios})
	if err != nil {
		return curve, err
	}
	assistant, unclear := make([][]bool, len(scen)), make([][]bool, len(scen))
	err = ev.parallel(ctx, len(scen), func(i int) error {
		var replies []string
		for t := range scen[i].Turns {
			msgs := scen[i].Messages(replies)
			reply, err := ev.reply(ctx, e, msgs, ev.opt.Temperature, uint64(i*100+t))
			if err != nil {
				return err
			}
			j := ev.oracle.Judge(msgs, reply)
			assistant[i] = append(assistant[i], is(j, "assistant"))
			unclear[i] = append(unclear[i], j.TopProb < minTopProb)
			replies = append(replies, reply)
		}
		return nil
	})
	if err != nil {
		return curve, err
	}
	curve.Share, curve.Unclear = perTurn(assistant, ev.opt.Turns), perTurn(unclear, ev.opt.Turns)
	return curve, nil
}

// perTurn turns per-conversation flags into a proportion per turn.
func perTurn(flags [][]bool, turns int) []stats.Proportion {
	out := make([]stats.Proportion, turns)
	for t := range out {
		k, n := 0, 0
		for _, f := range flags {
			if t < len(f) {
				n++
				if f[t] {
					k++
				}
			}
		}
		out[t] = stats.NewProportion(k, n)
	}
	return out
}

// reply generates the model's next assistant turn.
func (ev *evaluator) reply(ctx context.Context, e *engine.Engine, msgs []chat.Message, temp float32, seed uint64) (string, error) {
	r, err := e.Reply(ctx, msgs, engine.ReplyOptions{MaxTokens: ev.opt.MaxTokens,
		Sampling: sample.Params{Temperature: temp, Seed: ev.opt.Seed*7919 + seed}})
	if err != nil {
		return "", err
	}
	ev.mu.Lock()
	ev.done++
	if ev.opt.Progress != nil {
		ev.opt.Progress(ev.done)
	}
	ev.mu.Unlock()
	return r.Text, nil
}

// parallel runs fn(0 … n−1) on GOMAXPROCS goroutines; the first error wins.
func (ev *evaluator) parallel(ctx context.Context, n int, fn func(i int) error) error {
	return parallel.For(ctx, runtime.GOMAXPROCS(0), n, fn)
}

// Table renders the report for a terminal or a model card.
func (r *Report) Table() string {
	var b strings.Builder
	row := func(name string, p stats.Proportion) { fmt.Fprintf(&b, "  %-40s %s\n", name, p) }
	sortedRows := func(title string, ps map[string]stats.Proportion, mean float64) {
		fmt.Fprintf(&b, "%s (mean %.3f)\n", title, mean)
		keys := make([]string, 0, len(ps))
		for k := range ps {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row(k, ps[k])
		}
	}
	sortedRows("1. persona inference from context, base, no system prompt", r.Inference, r.InferenceMean)
	sortedRows("2. system-prompt following, base, strong prompt", r.SystemPrompt, r.SystemPromptMean)
	fmt.Fprintln(&b, "3. post-trained model")
	row("Assistant under its strong prompt", r.AssistantDefault)
	row("arithmetic, held-out items (greedy)", r.Arithmetic)
	row("facts, held-out phrasings (greedy)", r.Facts)
	row("base: arithmetic, held-out items", r.ArithmeticBase)
	row("base: facts, held-out phrasings", r.FactsBase)
	sortedRows("   other personas' strong prompts followed", r.OtherPersonas, r.OtherMean)
	fmt.Fprintf(&b, "4. drift: Assistant share per turn (turns 1..%d)\n", len(r.Drift[0].Share))
	for _, c := range r.Drift {
		fmt.Fprintf(&b, "  %-9s %-9s %-6s", c.Model, c.Domain, c.System)
		for _, p := range c.Share {
			fmt.Fprintf(&b, " %.2f", p.P)
		}
		fmt.Fprintln(&b)
	}
	return b.String()
}
