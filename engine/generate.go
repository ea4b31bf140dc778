package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"persona/chat"
	"persona/model"
	"persona/resid"
	"persona/sample"
	"persona/tokenizer"
)

// Encoded is a tokenized prompt: the ids and, for a rendered conversation,
// the token span of every message's content.
type Encoded struct {
	Text  string
	IDs   []int
	Spans []TokenSpan
}

// TokenSpan locates one message's content in token positions [Start, End).
type TokenSpan struct {
	Message int    `json:"message"`
	Role    string `json:"role"`
	Start   int    `json:"start"`
	End     int    `json:"end"`
}

// ErrNoTemplate is returned when a conversation must be rendered but the
// model has no chat template.
var ErrNoTemplate = errors.New("model has no chat template (use raw prompts)")

// EncodeChat renders msgs with the chat template and tokenizes the text as
// Hugging Face's apply_chat_template does (no special tokens added beyond
// those the template writes), returning the token span of each message's
// content: the tokens whose text overlaps the content's bytes.
//
// One difference, on purpose: control-token text inside a message's
// content ("<|im_end|>" typed by a user) is tokenized as the characters it
// is, so content cannot forge turn boundaries or system messages. The
// template's own markers are control tokens as usual.
func (e *Engine) EncodeChat(msgs []chat.Message, addGenerationPrompt bool) (*Encoded, error) {
	return e.encodeChat(msgs, addGenerationPrompt, 0)
}

// EncodePrompt is EncodeChat with the generation prompt for input from
// outside: it refuses, with model.ErrContext, a conversation longer than
// the model's context as soon as tokenizing passes it, so a hostile input
// costs work and memory in proportion to the context, not to its size.
func (e *Engine) EncodePrompt(msgs []chat.Message) (*Encoded, error) {
	if err := e.CheckLength(msgs...); err != nil {
		return nil, err
	}
	return e.encodeChat(msgs, true, e.Model.MaxSeq)
}

func (e *Engine) encodeChat(msgs []chat.Message, addGenerationPrompt bool, maxTokens int) (*Encoded, error) {
	if e.Template == nil {
		return nil, ErrNoTemplate
	}
	r, err := e.Template.Render(msgs, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	var plain []tokenizer.Offset
	for _, sp := range append(append([]chat.Span(nil), r.Spans...), r.Reasoning...) {
		plain = append(plain, tokenizer.Offset{Start: sp.Start, End: sp.End})
	}
	slices.SortFunc(plain, func(a, b tokenizer.Offset) int { return a.Start - b.Start })
	ids, offs, err := e.Tokenizer.EncodeWith(r.Text, tokenizer.EncodeOptions{Offsets: true, Plain: plain, MaxTokens: maxTokens})
	if errors.Is(err, tokenizer.ErrTooLong) {
		return nil, fmt.Errorf("the conversation has more tokens than the model's context of %d: %w", e.Model.MaxSeq, model.ErrContext)
	}
	enc := &Encoded{Text: r.Text, IDs: ids}
	for _, sp := range r.Spans {
		ts := TokenSpan{Message: sp.Message, Role: sp.Role, Start: -1}
		for i, o := range offs {
			if o.End > sp.Start && o.Start < sp.End {
				if ts.Start < 0 {
					ts.Start = i
				}
				ts.End = i + 1
			}
		}
		if ts.Start < 0 { // empty content: an empty span where it would start
			ts.Start, ts.End = len(ids), len(ids)
			for i, o := range offs {
				if o.Start >= sp.Start {
					ts.Start, ts.End = i, i
					break
				}
			}
		}
		enc.Spans = append(enc.Spans, ts)
	}
	return enc, nil
}

// EncodeRaw tokenizes text as a plain prompt, adding BOS (and EOS) as the
// tokenizer's post-processor says. An empty text gives just BOS, so a base
// model can start from scratch.
func (e *Engine) EncodeRaw(text string) *Encoded {
	return &Encoded{Text: text, IDs: e.Tokenizer.Encode(text, true)}
}

// Request describes one generation.
type Request struct {
	Prompt    []int
	MaxTokens int
	Sampling  sample.Params
	// Interventions apply to the prompt and the generated tokens as each
	// intervention's Where says; nil for none.
	Interventions *resid.Set
	// IgnoreStop generates MaxTokens even past an end-of-sequence token.
	IgnoreStop bool
	// OnToken, if set, sees each generated token as it is produced. It may
	// end the generation: ErrStop after this token (Result.Stop "stop"),
	// any other error aborts Generate with that error.
	OnToken func(Step) error
	// From, if set, is a prompt the model already read (Prefill):
	// generation starts from a copy of its state, and Prompt must be empty.
	// Interventions then act on the generated tokens only.
	From *Prefix
	// Watch, if set, reads the text while it is written: it is called
	// after OnToken for every token the model goes on from, and
	// interventions it returns (non-nil) replace Interventions from that
	// token on. Control can so change in the middle of a reply (a monitor
	// turning capping on) with the tokens before it kept.
	Watch Watch
}

// Watch reads a generation in progress: tokens generated so far and their
// text. It returns the interventions for the rest of the generation (nil:
// no change), or an error that ends it.
type Watch func(tokens int, text string) ([]resid.Intervention, error)

// Step is one generated token, as Request.OnToken sees it.
type Step struct {
	ID int
	// Text is the text the token completes: possibly empty while a UTF-8
	// sequence is incomplete, and empty for special tokens.
	Text string
	// LogProbs is the model's log-softmax over the vocabulary at this step,
	// before any sampling transformation. The slice is reused: it is valid
	// only during the call.
	LogProbs []float32
	// EOS says the token ends the sequence.
	EOS bool
}

// ErrStop, returned by Request.OnToken, ends a generation early (a stop
// string found, enough read) without it being an error.
var ErrStop = errors.New("engine: generation stopped by the caller")

// Result is a finished generation.
type Result struct {
	PromptIDs []int  `json:"prompt_ids"`
	IDs       []int  `json:"ids"`
	Text      string `json:"text"`
	// Stop is "eos", "length", or "stop" (OnToken returned ErrStop).
	Stop string `json:"stop"`
	// LogProbs[i] is the log-probability of IDs[i] under the model (before
	// sampling transformations).
	LogProbs []float32 `json:"logprobs"`
	// PrefillMS is the time to the first generated token; TokensPerS the
	// decode speed after it.
	PrefillMS  float64 `json:"prefill_ms"`
	TokensPerS float64 `json:"tokens_per_s"`
}

// Generate runs the prompt and samples up to MaxTokens new tokens.
func (e *Engine) Generate(ctx context.Context, req Request) (*Result, error) {
	m := e.Model
	if req.From != nil {
		if len(req.Prompt) > 0 {
			return nil, errors.New("a generation from a prefix takes no prompt of its own")
		}
		req.Prompt = req.From.Prompt
	}
	if len(req.Prompt) == 0 {
		return nil, errors.New("empty prompt")
	}
	if err := req.Sampling.Validate(); err != nil {
		return nil, err
	}
	if n := len(req.Prompt) + req.MaxTokens; n > m.MaxSeq {
		return nil, fmt.Errorf("prompt (%d tokens) plus %d new tokens exceeds the model's context of %d: %w", len(req.Prompt), req.MaxTokens, m.MaxSeq, model.ErrContext)
	}
	start := time.Now()
	var s *model.State
	var logits []float32
	if req.From != nil {
		s, logits = req.From.state.Clone(), slices.Clone(req.From.logits)
	} else {
		s = m.NewState()
		s.PromptLen = len(req.Prompt)
		if err := m.Feed(ctx, s, req.Prompt, req.Interventions, model.LastLogits, func(_ int, l []float32) { logits = l }); err != nil {
			return nil, err
		}
	}
	sm := sample.New(req.Sampling)
	dec := e.Tokenizer.NewStreamDecoderSkipSpecial() // streamed text matches Result.Text
	res := &Result{PromptIDs: req.Prompt, Stop: "length"}
	history := append([]int(nil), req.Prompt...)
	lp := make([]float32, m.Vocab)
	var text strings.Builder // what Watch reads
	var first time.Time
	for len(res.IDs) < req.MaxTokens {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if first.IsZero() {
			first = time.Now()
			res.PrefillMS = float64(first.Sub(start).Microseconds()) / 1000
		}
		model.LogSoftmax(lp, logits)
		id := sm.Sample(logits, history)
		res.IDs = append(res.IDs, id)
		res.LogProbs = append(res.LogProbs, lp[id])
		history = append(history, id)
		piece := dec.Add(id)
		if req.OnToken != nil {
			err := req.OnToken(Step{ID: id, Text: piece, LogProbs: lp, EOS: e.Stop[id]})
			if errors.Is(err, ErrStop) {
				res.Stop = "stop"
				break
			}
			if err != nil {
				return res, err
			}
		}
		if e.Stop[id] && !req.IgnoreStop {
			res.Stop = "eos"
			break
		}
		if len(res.IDs) == req.MaxTokens {
			break
		}
		if req.Watch != nil {
			text.WriteString(piece)
			ivs, err := req.Watch(len(res.IDs), text.String())
			if err != nil {
				return res, err
			}
			if ivs != nil {
				if req.Interventions, err = resid.NewSet(m.NumLayers, m.Hidden, ivs...); err != nil {
					return res, fmt.Errorf("interventions from the watch: %w", err)
				}
			}
		}
		logits = m.Forward(s, []int{id}, req.Interventions, model.LastLogits)
	}
	res.Text = e.Tokenizer.DecodeSkipSpecial(res.IDs)
	if len(res.IDs) > 1 {
		res.TokensPerS = float64(len(res.IDs)-1) / time.Since(first).Seconds()
	}
	return res, nil
}

// Prefix is a prompt the model has read, to generate from or score after
// several times without reading it again: the samples of one prompt, or the
// cells of a sweep that steer only generated positions. It is read-only and
// safe for concurrent use.
type Prefix struct {
	Prompt []int
	state  *model.State
	logits []float32
}

// Prefill reads a prompt under ivs (nil: none) for Request.From and
// LogProbsFrom.
func (e *Engine) Prefill(ctx context.Context, prompt []int, ivs *resid.Set) (*Prefix, error) {
	m := e.Model
	if len(prompt) == 0 {
		return nil, errors.New("empty prompt")
	}
	if len(prompt) > m.MaxSeq {
		return nil, fmt.Errorf("prompt of %d tokens exceeds the model's context of %d: %w", len(prompt), m.MaxSeq, model.ErrContext)
	}
	if err := m.CheckIDs(prompt); err != nil {
		return nil, err
	}
	p := &Prefix{Prompt: slices.Clone(prompt), state: m.NewState()}
	p.state.PromptLen = len(prompt)
	if err := m.Feed(ctx, p.state, prompt, ivs, model.LastLogits, func(_ int, l []float32) { p.logits = l }); err != nil {
		return nil, err
	}
	return p, nil
}

// LogProbsFrom returns log P(ids[i] | prefix, ids[:i]) for every i: a
// continuation scored after a prompt read once, under iv (nil: none).
func (e *Engine) LogProbsFrom(ctx context.Context, p *Prefix, ids []int, iv *resid.Set) ([]float32, error) {
	m := e.Model
	if len(ids) == 0 {
		return nil, nil
	}
	if len(p.Prompt)+len(ids) > m.MaxSeq {
		return nil, fmt.Errorf("prefix of %d tokens plus %d more exceeds the model's context of %d: %w", len(p.Prompt), len(ids), m.MaxSeq, model.ErrContext)
	}
	if err := m.CheckIDs(ids); err != nil {
		return nil, err
	}
	out := []float32{logProbOf(p.logits, ids[0])}
	s := p.state.Clone()
	V := m.Vocab
	err := m.Feed(ctx, s, ids[:len(ids)-1], iv, model.AllLogits, func(off int, logits []float32) {
		for t := 0; t*V < len(logits); t++ {
			out = append(out, logProbOf(logits[t*V:(t+1)*V], ids[1+off+t]))
		}
	})
	return out, err
}

// LogProbs returns, for teacher-forced scoring, log P(ids[i] | ids[:i]) for
// every i ≥ from (from ≥ 1): the log-probability the model gives each token
// of a continuation. Positions before from are run without computing logits.
func (e *Engine) LogProbs(ctx context.Context, ids []int, from int, iv *resid.Set) ([]float32, error) {
	if from < 1 || from > len(ids) {
		return nil, fmt.Errorf("scoring from position %d of a %d-token sequence (need 1 ≤ from ≤ len)", from, len(ids))
	}
	m := e.Model
	if len(ids) > m.MaxSeq {
		return nil, fmt.Errorf("sequence of %d tokens exceeds the model's context of %d: %w", len(ids), m.MaxSeq, model.ErrContext)
	}
	if err := m.CheckIDs(ids); err != nil { // the last id is scored, not fed
		return nil, err
	}
	s := m.NewState()
	s.PromptLen = from
	if err := m.Feed(ctx, s, ids[:from-1], iv, model.NoLogits, nil); err != nil {
		return nil, err
	}
	out := make([]float32, 0, len(ids)-from)
	V := m.Vocab
	err := m.Feed(ctx, s, ids[from-1:len(ids)-1], iv, model.AllLogits, func(off int, logits []float32) {
		for t := 0; t*V < len(logits); t++ {
			out = append(out, logProbOf(logits[t*V:(t+1)*V], ids[from+off+t]))
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// logProbOf returns log softmax(row)[id] without materialising the whole row.
func logProbOf(row []float32, id int) float32 {
	return row[id] - float32(model.LogSumExp(row))
}
