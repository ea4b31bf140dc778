package backend

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"persona/chat"
	"persona/engine"
	"persona/resid"
	"persona/sample"
	"persona/tokenizer"
)

// MaxTopLogprobs is the most alternatives a request may ask for per
// position (OpenAI's limit, which clients assume).
const MaxTopLogprobs = 20

// Engine is the embedded engine as a Backend, and what `persona serve`
// serves. It renders chats with the model's own template, samples with the
// request's parameters and seed, reports each generated token's
// log-probability with the top alternatives from the model's distribution
// (before temperature and truncation, as OpenAI reports them), stops on
// end-of-sequence tokens and stop strings, and counts tokens.
//
// It is safe for concurrent use; at most MaxConcurrency generations run at
// once (each owns its KV cache, and the kernels already use every core, so
// more than a few at a time only adds memory and latency).
type Engine struct {
	E    *engine.Engine
	name string
	sem  chan struct{}
	// DefaultMaxTokens is used when a request leaves MaxTokens at 0 (it is
	// further capped by the room left in the context).
	DefaultMaxTokens int
	// Interventions, if set, apply to every generation (a steered model).
	Interventions *resid.Set
	// Watermark, if set, marks every sampled generation with its key
	// (greedy requests are marked only by the green scheme, whose bias
	// also moves the argmax).
	Watermark *sample.Watermark
}

// NewEngine wraps a loaded engine; name is reported as the model name
// (e.g. the model directory's base name), maxConcurrency ≤ 0 means 1.
func NewEngine(e *engine.Engine, name string, maxConcurrency int) *Engine {
	if maxConcurrency <= 0 {
		maxConcurrency = 1
	}
	return &Engine{E: e, name: name, sem: make(chan struct{}, maxConcurrency), DefaultMaxTokens: 512}
}

// Name returns "engine:" and the model name.
func (b *Engine) Name() string { return "engine:" + b.name }

// Model returns the model name served.
func (b *Engine) Model() string { return b.name }

// Delta is a piece of streamed output: text that has become final, and the
// tokens generated since the previous Delta (their text may still be held
// back, e.g. half a UTF-8 character or a possible stop string).
type Delta struct {
	Text     string
	Logprobs []TokenLogprob
}

// Chat renders req.Messages with the chat template and generates the
// assistant's reply.
func (b *Engine) Chat(ctx context.Context, req Request) (*Response, error) {
	return b.ChatStream(ctx, req, nil)
}

// ChatStream is Chat calling emit for every generated token as it is
// produced. Concatenating the emitted texts gives exactly the Content of the
// returned Response, so streamed and non-streamed replies agree. An error
// from emit (a client gone) ends the generation with that error.
func (b *Engine) ChatStream(ctx context.Context, req Request, emit func(Delta) error) (*Response, error) {
	if len(req.Messages) == 0 {
		return nil, b.badRequest("no messages")
	}
	enc, err := b.E.EncodePrompt(req.Messages)
	if err != nil {
		return nil, b.badRequest(err.Error())
	}
	return b.generate(ctx, enc.IDs, req, emit)
}

// Complete continues a raw prompt (tokenized as is, with BOS; no chat
// template): the /v1/completions API. req.Messages is ignored.
func (b *Engine) Complete(ctx context.Context, prompt string, req Request, emit func(Delta) error) (*Response, error) {
	if err := b.E.CheckLength(chat.Message{Role: chat.RoleUser, Content: prompt}); err != nil {
		return nil, b.badRequest(err.Error())
	}
	// Raw prompts are the caller's to shape, control tokens included; only
	// their length is bounded while tokenizing.
	ids, _, err := b.E.Tokenizer.EncodeWith(prompt, tokenizer.EncodeOptions{AddSpecial: true, MaxTokens: b.E.Model.MaxSeq})
	if err != nil {
		return nil, b.badRequest(fmt.Sprintf("prompt: %v (the model's context is %d tokens)", err, b.E.Model.MaxSeq))
	}
	return b.generate(ctx, ids, req, emit)
}

func (b *Engine) badRequest(msg string) error {
	return &Error{Backend: b.Name(), Kind: KindBadRequest, Msg: msg}
}

// params turns a request's sampling fields into sample.Params. A request
// without a seed gets a random one, as API servers do.
func (b *Engine) params(req Request) (sample.Params, error) {
	p := sample.Params{Temperature: float32(req.Temperature), TopP: float32(req.TopP), Watermark: b.Watermark}
	if req.Seed != nil {
		p.Seed = uint64(*req.Seed)
	} else {
		p.Seed = rand.Uint64()
	}
	if req.TopP < 0 || req.TopP > 1 {
		return p, fmt.Errorf("top_p %g must be in [0, 1]", req.TopP)
	}
	if req.TopLogprobs < 0 || req.TopLogprobs > MaxTopLogprobs {
		return p, fmt.Errorf("top_logprobs %d must be in [0, %d]", req.TopLogprobs, MaxTopLogprobs)
	}
	if req.MaxTokens < 0 {
		return p, fmt.Errorf("max_tokens %d must be ≥ 0", req.MaxTokens)
	}
	return p, p.Validate()
}

// generate runs engine.Generate, turning each step into OpenAI-style deltas:
// stop strings held back and cut, end-of-sequence not shown, top-k
// log-probabilities from the step's distribution.
func (b *Engine) generate(ctx context.Context, prompt []int, req Request, emit func(Delta) error) (*Response, error) {
	p, err := b.params(req)
	if err != nil {
		return nil, b.badRequest(err.Error())
	}
	m := b.E.Model
	room := m.MaxSeq - len(prompt)
	maxTokens := req.MaxTokens
	switch {
	case len(prompt) == 0:
		return nil, b.badRequest("empty prompt")
	case room <= 0 || maxTokens > room:
		return nil, b.badRequest(fmt.Sprintf("prompt (%d tokens) plus max_tokens %d exceeds the model's context of %d tokens",
			len(prompt), maxTokens, m.MaxSeq))
	case maxTokens == 0:
		maxTokens = min(room, b.DefaultMaxTokens)
	}
	if err := m.CheckIDs(prompt); err != nil {
		return nil, b.badRequest(err.Error())
	}
	ivs := b.Interventions
	if len(req.Interventions) > 0 {
		if ivs, err = resid.NewSet(m.NumLayers, m.Hidden, req.Interventions...); err != nil {
			return nil, b.badRequest(err.Error())
		}
	}

	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-b.sem }()

	tok := b.E.Tokenizer
	dec := tok.NewStreamDecoderSkipSpecial()
	stops := newStopper(req.Stop)
	resp := &Response{Model: b.name, FinishReason: "length", Usage: Usage{PromptTokens: len(prompt)}}
	var content strings.Builder
	send := func(text string, lps []TokenLogprob) error {
		content.WriteString(text)
		if req.Logprobs {
			resp.Logprobs = append(resp.Logprobs, lps...)
		} else {
			lps = nil
		}
		if emit == nil || (text == "" && len(lps) == 0) {
			return nil
		}
		return emit(Delta{Text: text, Logprobs: lps})
	}
	stopped := false
	onToken := func(st engine.Step) error {
		resp.Usage.CompletionTokens++
		if st.EOS {
			resp.FinishReason = "stop"
			return nil
		}
		var lps []TokenLogprob
		if req.Logprobs {
			lps = []TokenLogprob{{Token: tok.Decode([]int{st.ID}), Logprob: float64(st.LogProbs[st.ID]),
				Top: topLogprobs(st.LogProbs, req.TopLogprobs, tok.Decode)}}
		}
		text, hit := stops.add(dec.Add(st.ID))
		if err := send(text, lps); err != nil {
			return err
		}
		if hit {
			resp.FinishReason, stopped = "stop", true
			return engine.ErrStop
		}
		return nil
	}
	if _, err := b.E.Generate(ctx, engine.Request{Prompt: prompt, MaxTokens: maxTokens, Sampling: p,
		Interventions: ivs, OnToken: onToken, Watch: req.Watch}); err != nil {
		return nil, err
	}
	if !stopped {
		text, hit := stops.add(dec.Flush())
		if !hit {
			text += stops.flush()
		} else {
			resp.FinishReason = "stop"
		}
		if err := send(text, nil); err != nil {
			return nil, err
		}
	}
	resp.Content = content.String()
	return resp, nil
}

// topLogprobs returns the k most likely tokens of a log-softmax row, most
// likely first (ties: lower id first).
func topLogprobs(lp []float32, k int, decode func([]int) string) []TopLogprob {
	if k <= 0 {
		return nil
	}
	best := make([]int, 0, k+1)
	for id, v := range lp {
		if len(best) == k && v <= lp[best[k-1]] {
			continue
		}
		i := len(best)
		for i > 0 && lp[best[i-1]] < v {
			i--
		}
		best = append(best, 0)
		copy(best[i+1:], best[i:])
		best[i] = id
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]TopLogprob, len(best))
	for i, id := range best {
		out[i] = TopLogprob{Token: decode([]int{id}), Logprob: float64(lp[id])}
	}
	return out
}

// stopper finds stop strings in streamed text. It holds back any tail that
// could be the start of a stop string, so text it has released never has to
// be taken back.
type stopper struct {
	stops []string
	held  string
}

func newStopper(stops []string) *stopper {
	s := &stopper{}
	for _, st := range stops {
		if st != "" {
			s.stops = append(s.stops, st)
		}
	}
	return s
}

// add appends text and returns what may be released; hit reports a stop
// string, in which case out is the text before it and the rest is dropped.
func (s *stopper) add(text string) (out string, hit bool) {
	if len(s.stops) == 0 {
		return text, false
	}
	buf := s.held + text
	cut := -1
	for _, st := range s.stops {
		if i := strings.Index(buf, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		s.held = ""
		return buf[:cut], true
	}
	keep := 0
	for _, st := range s.stops {
		for n := min(len(st)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, st[:n]) {
				keep = n
				break
			}
		}
	}
	s.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// flush releases the held tail at the end of generation.
func (s *stopper) flush() string {
	h := s.held
	s.held = ""
	return h
}

// errClientGone ends a generation whose client went away.
var errClientGone = errors.New("client disconnected")
