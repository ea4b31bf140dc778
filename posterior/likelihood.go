package posterior

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"persona/chat"
	"persona/engine"
	"persona/model"
)

// Likelihood computes the Bayes posterior from the model's teacher-forced
// log-probabilities of the assistant turns under each hypothesis's system
// prompt.
//
// What is computed once and what is not. The conversation after the system
// prompt is the same text for every hypothesis, but not the same computation:
// causal attention makes every later key and value depend on the system
// prompt, so the KV cache of one hypothesis cannot serve another. What is
// shared:
//
//   - token prefixes: the sequences of all (hypothesis, prompt) pairs form a
//     trie (chat-template header, then system prompts that begin alike: "You
//     are the …"); each trie edge is run once and the KV state is cloned at
//     branch points (model.State.Clone);
//   - turns: log P(turns 1..k | h) is a prefix sum of per-token
//     log-probabilities over one causal pass, so the posterior after every
//     turn costs one pass per sequence, not one per turn; a Tracker keeps
//     the KV states so that a growing conversation pays only for its new
//     tokens (model.State.Truncate rewinds to the longest common token
//     prefix when the template re-renders earlier text differently);
//   - logits: only positions that predict an assistant-content token compute
//     the vocabulary projection; user turns and system prompts run without
//     logits.
//
// The cost per turn is therefore (number of system prompts) × (new tokens),
// linear in the number of personas (BenchmarkLikelihood).
type Likelihood struct {
	E    *engine.Engine
	Hyps []Hypothesis
	// SwitchRate is ε of the hidden Markov model (hmm.go): 0 holds one
	// persona for the whole conversation.
	SwitchRate float64
	// WholeConversation scores each reply given the whole conversation
	// before it. By default a reply is scored after its own user turn only
	// (turnPosterior), which measured better on the world's chats: 0.95 vs
	// 0.87 top-1 per turn, 91 vs 0 of 100 switches found (docs/
	// measurements.md). Posterior honours it; a Tracker always reads the
	// whole conversation.
	WholeConversation bool
	names             []string
	prior             []float64

	mu     sync.Mutex
	scored map[[sha256.Size]byte]scoredTurn // scoreTurn's cache
	// prefixes are keepPrefixes' kept states, per (hypothesis, prompt)
	// sequence.
	prefixes []*prefix

	// Forwarded counts the positions run through the model (for benchmarks
	// and the sharing test).
	Forwarded atomic.Int64
}

// NewLikelihood checks the hypotheses against the engine.
func NewLikelihood(e *engine.Engine, hyps []Hypothesis) (*Likelihood, error) {
	if err := checkHypotheses(hyps); err != nil {
		return nil, err
	}
	if e.Template == nil {
		return nil, engine.ErrNoTemplate
	}
	return &Likelihood{E: e, Hyps: hyps, names: names(hyps), prior: priors(hyps)}, nil
}

// Posterior returns the posterior after every assistant turn of msgs. Leading
// system messages of msgs are replaced by each hypothesis's prompt. It keeps
// one KV state alive per level of the prompt trie, not one per hypothesis,
// so it fits real models with many personas.
func (l *Likelihood) Posterior(ctx context.Context, msgs []chat.Message) (*Result, error) {
	if !l.WholeConversation {
		return l.turnPosterior(ctx, msgs)
	}
	t := &Tracker{l: l, keep: false}
	return t.Update(ctx, msgs)
}

// Tracker follows one growing conversation (a live chat, a drift run) and
// keeps one KV state per (hypothesis, prompt), so each Update costs only the
// tokens added since the last. Memory is that many KV caches: fine for the
// organism and small models, a lot for 50 personas on a 7B model (use
// Posterior there). A Tracker is not safe for concurrent use.
type Tracker struct {
	l    *Likelihood
	keep bool
	seqs []*seq
	// prefixes, when set, are kept states of each sequence's opening
	// tokens (its system prompt): a fresh sequence that begins with one
	// starts from a clone instead of from nothing.
	prefixes []*prefix
}

// prefix is the state after a sequence's first len(ids) tokens.
type prefix struct {
	ids   []int
	state *model.State
}

// Tracker returns a Tracker for a new conversation.
func (l *Likelihood) Tracker() *Tracker { return &Tracker{l: l, keep: true} }

// seq is one (hypothesis, prompt) rendering of the conversation.
type seq struct {
	hyp   int
	ids   []int
	spans [][2]int // assistant content spans [start, end), in turn order
	// open is where the first message's content starts after the system
	// prompt: the tokens before it are the same whatever the user says.
	open  int
	lp    []float32 // lp[p] = log P(ids[p] | ids[:p]) where scored, else NaN
	state *model.State
}

// need reports whether position q's logits are needed: q+1 is scored.
func (s *seq) need(q int) bool {
	for _, sp := range s.spans {
		if q+1 >= sp[0] && q+1 < sp[1] {
			return true
		}
	}
	return false
}

// Update scores msgs (the whole conversation so far) and returns the
// posterior after each of its assistant turns.
func (t *Tracker) Update(ctx context.Context, msgs []chat.Message) (*Result, error) {
	l := t.l
	conv, _, err := conversation(msgs)
	if err != nil {
		return nil, err
	}
	var msgIdx []int // conversation index of each assistant turn
	for i, m := range msgs {
		if m.Role == chat.RoleAssistant && i >= len(msgs)-len(conv) {
			msgIdx = append(msgIdx, i)
		}
	}
	// Render every (hypothesis, prompt).
	var fresh []*seq
	k := 0
	for hi, h := range l.Hyps {
		for _, p := range h.Prompts {
			full := conv
			if p != "" {
				full = append([]chat.Message{{Role: chat.RoleSystem, Content: p}}, conv...)
			}
			if err := l.E.CheckLength(full...); err != nil {
				return nil, fmt.Errorf("posterior: persona %s: %w", h.Name, err)
			}
			enc, err := l.E.EncodeChat(full, false)
			if err != nil {
				return nil, fmt.Errorf("posterior: persona %s: %w", h.Name, err)
			}
			if len(enc.IDs) > l.E.Model.MaxSeq {
				return nil, fmt.Errorf("posterior: persona %s: conversation of %d tokens exceeds the model's context of %d: %w", h.Name, len(enc.IDs), l.E.Model.MaxSeq, model.ErrContext)
			}
			var spans [][2]int
			open := -1
			for _, sp := range enc.Spans {
				if sp.Role == chat.RoleAssistant {
					spans = append(spans, [2]int{max(sp.Start, 1), sp.End}) // position 0 cannot be scored
				}
				if sp.Role != chat.RoleSystem && open < 0 {
					open = sp.Start
				}
			}
			if len(spans) != len(msgIdx) {
				return nil, fmt.Errorf("posterior: persona %s: %d assistant spans for %d assistant turns", h.Name, len(spans), len(msgIdx))
			}
			if k == len(t.seqs) {
				t.seqs = append(t.seqs, &seq{hyp: hi})
			}
			s := t.seqs[k]
			k++
			// Keep what the old rendering shares with the new one.
			lcp := 0
			for lcp < len(s.ids) && lcp < len(enc.IDs) && s.ids[lcp] == enc.IDs[lcp] {
				lcp++
			}
			s.ids, s.spans, s.open = enc.IDs, spans, open
			// A kept position the new rendering scores but the old one did
			// not must be run again.
			for p := 1; p < lcp; p++ {
				if s.need(p-1) && (p >= len(s.lp) || math.IsNaN(float64(s.lp[p]))) {
					lcp = p - 1
					break
				}
			}
			// Token lcp is predicted at position lcp−1: rewind to there.
			if s.state != nil {
				s.state.Truncate(min(s.state.Len, max(lcp-1, 0)))
			}
			old := s.lp
			s.lp = make([]float32, len(s.ids))
			for p := range s.lp {
				s.lp[p] = float32(math.NaN())
			}
			copy(s.lp, old[:min(lcp, len(old))])
			if s.state == nil && k-1 < len(t.prefixes) {
				if pre := t.prefixes[k-1]; pre != nil && len(pre.ids) < spans[0][0] && slices.Equal(pre.ids, s.ids[:min(len(pre.ids), len(s.ids))]) {
					s.state = pre.state.Clone()
				}
			}
			if s.state == nil {
				fresh = append(fresh, s)
			}
		}
	}
	// Fresh sequences share their prefixes through a trie; the others extend
	// their own state.
	if err := t.runTrie(ctx, nil, 0, fresh); err != nil {
		return nil, err
	}
	for _, s := range t.seqs {
		if s.state != nil {
			if err := t.feed(ctx, s.state, s.state.Len, len(s.ids)-1, []*seq{s}); err != nil {
				return nil, err
			}
		}
		if !t.keep {
			s.state = nil
		}
	}
	return t.result(msgIdx)
}

// runTrie runs the sequences of group, which share their first depth tokens
// (already in st, nil for none), feeding their longest common prefix once
// and recursing into the branches with cloned states.
func (t *Tracker) runTrie(ctx context.Context, st *model.State, depth int, group []*seq) error {
	if len(group) == 0 {
		return nil
	}
	if st == nil {
		st = t.l.E.Model.NewState()
	}
	// Positions are fed up to len(ids)−1: the last token is only ever
	// predicted, never a predictor.
	lcp := len(group[0].ids) - 1
	for _, s := range group[1:] {
		n := 0
		for n < lcp && n < len(s.ids)-1 && s.ids[n] == group[0].ids[n] {
			n++
		}
		lcp = n
	}
	if err := t.feed(ctx, st, depth, lcp, group); err != nil {
		return err
	}
	// Partition by the next token; sequences that end here take a clone.
	var parts [][]*seq
	for _, s := range group {
		if lcp >= len(s.ids)-1 {
			parts = append(parts, []*seq{s})
			continue
		}
		found := false
		for i, p := range parts {
			if q := p[0]; lcp < len(q.ids)-1 && q.ids[lcp] == s.ids[lcp] {
				parts[i] = append(parts[i], s)
				found = true
				break
			}
		}
		if !found {
			parts = append(parts, []*seq{s})
		}
	}
	for i, p := range parts {
		child := st
		if i < len(parts)-1 {
			child = st.Clone()
		}
		if len(p) == 1 && lcp >= len(p[0].ids)-1 {
			if t.keep {
				p[0].state = child
			}
			continue
		}
		if len(p) == 1 {
			// A lone branch: finish it here and hand it its state.
			if err := t.feed(ctx, child, lcp, len(p[0].ids)-1, p); err != nil {
				return err
			}
			if t.keep {
				p[0].state = child
			}
			continue
		}
		if err := t.runTrie(ctx, child, lcp, p); err != nil {
			return err
		}
	}
	return nil
}

// feed runs positions [from, to) of the group's (shared) tokens through st,
// computing logits only where some member scores the next token, and stores
// the log-probabilities in every member that scores it.
func (t *Tracker) feed(ctx context.Context, st *model.State, from, to int, group []*seq) error {
	m := t.l.E.Model
	ids := group[0].ids
	anyNeed := func(q int) bool {
		for _, s := range group {
			if s.need(q) {
				return true
			}
		}
		return false
	}
	V := m.Vocab
	for a := from; a < to; {
		need := anyNeed(a)
		b := a + 1
		for b < to && anyNeed(b) == need {
			b++
		}
		t.l.Forwarded.Add(int64(b - a))
		var err error
		if !need {
			err = m.Feed(ctx, st, ids[a:b], nil, model.NoLogits, nil)
		} else {
			err = m.Feed(ctx, st, ids[a:b], nil, model.AllLogits, func(off int, logits []float32) {
				for i := 0; i*V < len(logits); i++ {
					q := a + off + i
					row := logits[i*V : (i+1)*V]
					lp := row[ids[q+1]] - float32(model.LogSumExp(row))
					for _, s := range group {
						if s.need(q) {
							s.lp[q+1] = lp
						}
					}
				}
			})
		}
		if err != nil {
			return fmt.Errorf("posterior: %w", err)
		}
		a = b
	}
	return nil
}

// result sums each sequence's scored log-probabilities per turn: each
// (hypothesis, prompt) sequence is a state of the hidden Markov model, and
// the log-probability of a turn's tokens under it is that state's emission.
func (t *Tracker) result(msgIdx []int) (*Result, error) {
	emis, stateHyp, tokens, err := t.emissions(len(msgIdx))
	if err != nil {
		return nil, err
	}
	return t.l.combine(msgIdx, emis, stateHyp, tokens)
}

// emissions returns, per turn and sequence, the summed log-probability of
// the turn's reply tokens, each sequence's hypothesis, and each turn's
// token count.
func (t *Tracker) emissions(turns int) (emis [][]float64, stateHyp, tokens []int, err error) {
	emis = make([][]float64, turns)
	tokens = make([]int, turns)
	stateHyp = make([]int, len(t.seqs))
	for i, s := range t.seqs {
		stateHyp[i] = s.hyp
		for k, sp := range s.spans {
			sum := 0.0
			for p := sp[0]; p < sp[1]; p++ {
				v := float64(s.lp[p])
				if math.IsNaN(v) {
					return nil, nil, nil, fmt.Errorf("posterior: internal error: position %d not scored", p)
				}
				sum += v
			}
			emis[k] = append(emis[k], sum)
			if i == 0 {
				tokens[k] = sp[1] - sp[0]
			}
		}
	}
	return emis, stateHyp, tokens, nil
}

// combine turns per-sequence emissions into the posterior: the evidence
// per persona, and the hidden Markov model's filtered and smoothed
// posteriors and path.
func (l *Likelihood) combine(msgIdx []int, emis [][]float64, stateHyp, tokens []int) (*Result, error) {
	res := &Result{Method: "likelihood", Names: slices.Clone(l.names), Prior: slices.Clone(l.prior)}
	H := len(l.Hyps)
	cum := make([]float64, len(stateHyp))
	for k := range msgIdx {
		turn := Turn{Turn: k + 1, Message: msgIdx[k], Tokens: tokens[k], Evidence: make([]float64, H), Emission: make([]float64, H)}
		perCum, perTurn := make([][]float64, H), make([][]float64, H)
		for i, h := range stateHyp {
			cum[i] += emis[k][i]
			perCum[h] = append(perCum[h], cum[i])
			perTurn[h] = append(perTurn[h], emis[k][i])
		}
		for h := range perCum {
			turn.Evidence[h], turn.Emission[h] = logMeanExp(perCum[h]), logMeanExp(perTurn[h])
		}
		res.Turns = append(res.Turns, turn)
	}
	return res, res.decode(stateHyp, emis, l.SwitchRate)
}

// turnPosterior scores each reply in the context of its own user turn
// only (the default; Likelihood.WholeConversation reads it all): the emission of turn k is log P(reply k |
// persona prompt, user turn k), so what earlier turns made likely (a
// request to play a pirate, a persona the model already slid into) does
// not vouch for the reply.
func (l *Likelihood) turnPosterior(ctx context.Context, msgs []chat.Message) (*Result, error) {
	conv, skip, err := conversation(msgs)
	if err != nil {
		return nil, err
	}
	var (
		msgIdx, stateHyp, tokens []int
		emis                     [][]float64
	)
	for i, m := range conv {
		if m.Role != chat.RoleAssistant {
			continue
		}
		sub := []chat.Message{m}
		if i > 0 && conv[i-1].Role == chat.RoleUser {
			sub = []chat.Message{conv[i-1], m}
		}
		st, err := l.scoreTurn(ctx, sub)
		if err != nil {
			return nil, err
		}
		msgIdx, emis, stateHyp, tokens = append(msgIdx, skip+i), append(emis, st.emis), st.stateHyp, append(tokens, st.tokens)
	}
	return l.combine(msgIdx, emis, stateHyp, tokens)
}

// minPrefix is the shortest opening worth keeping a state for.
const minPrefix = 4

// keepPrefixes keeps, per sequence, the model state after its opening —
// the persona's system prompt and the first message's header, which do
// not depend on the turn — so that later turns start there rather than
// running the prompt again.
func (l *Likelihood) keepPrefixes(ctx context.Context, t *Tracker) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.prefixes) != len(t.seqs) {
		l.prefixes = make([]*prefix, len(t.seqs))
	}
	for k, s := range t.seqs {
		// The first scored token's predictor must be fed after the prefix.
		n := min(s.open, s.spans[0][0]-1)
		if n < minPrefix {
			continue
		}
		if pre := l.prefixes[k]; pre != nil && slices.Equal(pre.ids, s.ids[:n]) {
			continue
		}
		st := l.E.Model.NewState()
		l.Forwarded.Add(int64(n))
		if err := l.E.Model.Feed(ctx, st, s.ids[:n], nil, model.NoLogits, nil); err != nil {
			return fmt.Errorf("posterior: %w", err)
		}
		l.prefixes[k] = &prefix{ids: slices.Clone(s.ids[:n]), state: st}
	}
	return nil
}

// scoredTurn is one reply's emission under every (persona, prompt)
// sequence, given its own user turn.
type scoredTurn struct {
	emis     []float64
	stateHyp []int
	tokens   int
}

// maxScoredTurns bounds the cache of scored turns (a few hundred bytes
// each for ten personas).
const maxScoredTurns = 1 << 14

// scoreTurn scores a [user, reply] pair, or returns the score of the same
// pair seen before: a reply's turn-context emission depends on nothing
// else, so a monitor that reads a growing conversation after every turn
// runs only the newest turn through the model.
func (l *Likelihood) scoreTurn(ctx context.Context, sub []chat.Message) (scoredTurn, error) {
	h := sha256.New()
	for _, hy := range l.Hyps {
		fmt.Fprintf(h, "%q%q", hy.Name, hy.Prompts)
	}
	for _, m := range sub {
		fmt.Fprintf(h, "%q%q", m.Role, m.Content)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	l.mu.Lock()
	st, ok := l.scored[key]
	l.mu.Unlock()
	if ok {
		return st, nil
	}
	l.mu.Lock()
	t := &Tracker{l: l, prefixes: slices.Clone(l.prefixes)}
	l.mu.Unlock()
	if _, err := t.Update(ctx, sub); err != nil {
		return st, err
	}
	em, sh, tok, err := t.emissions(1)
	if err != nil {
		return st, err
	}
	if err := l.keepPrefixes(ctx, t); err != nil {
		return st, err
	}
	st = scoredTurn{emis: em[0], stateHyp: sh, tokens: tok[0]}
	l.mu.Lock()
	if l.scored == nil || len(l.scored) >= maxScoredTurns {
		l.scored = map[[sha256.Size]byte]scoredTurn{} // start over rather than track ages
	}
	l.scored[key] = st
	l.mu.Unlock()
	return st, nil
}
