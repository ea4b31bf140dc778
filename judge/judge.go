// Package judge reads 0–100 ratings from a judge model's answers: the part
// of LLM-as-judge scoring that the audit scorers and the posterior/vector
// judges share. With top log-probabilities a rating is the probability-
// weighted mean over number tokens at the answer's first position (less
// noisy than one sampled number, and it keeps the judge's uncertainty);
// without them it is the first number of the text.
package judge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"persona/backend"
	"persona/chat"
)

// TopLogprobs is how many alternatives a rating request asks for at each
// position.
const TopLogprobs = 20

// ErrNoRating is returned when a judge's answer holds no 0–100 number.
var ErrNoRating = errors.New("no 0–100 rating in the judge's answer")

// Chatter is what asking a judge needs of a backend.
type Chatter interface {
	Chat(ctx context.Context, req backend.Request) (*backend.Response, error)
}

// Asker sends rating requests with top log-probabilities asked for, and
// remembers a backend's answer that it cannot return them, so that it is
// asked once, not on every rating. The zero value is ready to use; one Asker
// serves one backend.
type Asker struct {
	noLogprobs atomic.Bool
}

// Ask sends req to b, asking for top log-probabilities unless b has said
// (backend.ErrUnsupported) that it cannot return them; then it asks again
// without. The error is b's, unwrapped.
func (a *Asker) Ask(ctx context.Context, b Chatter, req backend.Request) (*backend.Response, error) {
	if !a.noLogprobs.Load() {
		req.Logprobs, req.TopLogprobs = true, TopLogprobs
	}
	resp, err := b.Chat(ctx, req)
	if err != nil && req.Logprobs && errors.Is(err, backend.ErrUnsupported) {
		a.noLogprobs.Store(true)
		req.Logprobs, req.TopLogprobs = false, 0
		resp, err = b.Chat(ctx, req)
	}
	return resp, err
}

var numberRe = regexp.MustCompile(`\d+(?:\.\d+)?`)

// minNumberMass is the least probability the number tokens must hold at the
// answer's first position for the weighted mean to be trusted; below it the
// judge was mostly about to say something else (a refusal, a preamble), and
// the text is the better reading.
const minNumberMass = 0.25

// Read reads a judge's 0–100 answer: the probability-weighted mean over
// number tokens among the top alternatives at the first non-blank position
// when the response carries top log-probabilities (method "logprobs"), else
// the first number in the text ("text"). The weighted mean is used only when
// that position's token is the whole number the text gives: a tokenizer that
// splits "85" into "8","5" would weight single digits, so then the text is
// read instead.
func Read(resp *backend.Response) (float64, string, error) {
	text := strings.TrimSpace(resp.Content)
	textNum := numberRe.FindString(text)
	for _, tl := range resp.Logprobs {
		tok := strings.TrimSpace(tl.Token)
		if tok == "" {
			continue
		}
		if len(tl.Top) == 0 || tok != textNum {
			break
		}
		var mass, sum float64
		for _, alt := range tl.Top {
			n, err := strconv.Atoi(strings.TrimSpace(alt.Token))
			if err != nil || n < 0 || n > 100 {
				continue
			}
			p := math.Exp(alt.Logprob)
			mass += p
			sum += p * float64(n)
		}
		if mass >= minNumberMass {
			return sum / mass, "logprobs", nil
		}
		break
	}
	v, err := strconv.ParseFloat(textNum, 64)
	if textNum == "" || err != nil || v < 0 || v > 100 {
		return 0, "", fmt.Errorf("%w: judge answered %q", ErrNoRating, chat.Clip(text, 80))
	}
	return v, "text", nil
}
