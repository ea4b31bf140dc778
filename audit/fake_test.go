package audit

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"persona/backend"
)

// fakeBackend answers with a function of the request; calls counts requests.
type fakeBackend struct {
	name  string
	reply func(req backend.Request) (*backend.Response, error)
	calls atomic.Int64
}

func (f *fakeBackend) Name() string { return f.name }
func (f *fakeBackend) Chat(ctx context.Context, req backend.Request) (*backend.Response, error) {
	f.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return f.reply(req)
}

func text(s string) *backend.Response { return &backend.Response{Content: s, FinishReason: "stop"} }

// lastUser is the last user message of a request.
func lastUser(req backend.Request) string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			return req.Messages[i].Content
		}
	}
	return ""
}

// judgedReply extracts the reply a judge prompt asks about.
func judgedReply(req backend.Request) string {
	u := lastUser(req)
	i := strings.Index(u, "<final_reply>\n")
	j := strings.Index(u, "\n</final_reply>")
	if i < 0 || j < 0 {
		return ""
	}
	return u[i+len("<final_reply>\n") : j]
}

func isCoherencePrompt(req backend.Request) bool {
	return strings.Contains(lastUser(req), "coherent and realistic")
}

// pirateJudge is a judge that rates replies containing "Arr" 90 and others
// 5, and every reply coherent unless it contains "zzz". With logprobs it
// returns a distribution over number tokens around that value.
func pirateJudge(withLogprobs bool) *fakeBackend {
	return &fakeBackend{name: "fake:judge", reply: func(req backend.Request) (*backend.Response, error) {
		r := judgedReply(req)
		v := 5
		if isCoherencePrompt(req) {
			v = 95
			if strings.Contains(r, "zzz") {
				v = 10
			}
		} else if strings.Contains(r, "Arr") {
			v = 90
		}
		resp := text(itoa(v))
		if withLogprobs && req.Logprobs {
			// 70% on v, 30% on v-10 (or v+10): weighted mean v∓3.
			alt := v - 10
			if alt < 0 {
				alt = v + 10
			}
			resp.Logprobs = []backend.TokenLogprob{{Token: itoa(v), Logprob: math.Log(0.7), Top: []backend.TopLogprob{
				{Token: itoa(v), Logprob: math.Log(0.7)}, {Token: itoa(alt), Logprob: math.Log(0.3)},
			}}}
		}
		return resp, nil
	}}
}

func itoa(v int) string {
	return strconv.Itoa(v)
}
