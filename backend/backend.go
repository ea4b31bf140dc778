// Package backend talks to language models: the embedded engine, any
// OpenAI-compatible Chat Completions server (vLLM, SGLang, llama.cpp server,
// Ollama, OpenAI) and the Anthropic Messages API, behind one small
// request/response shape. Audits, drift runs and the gateway use it; what a
// backend can do beyond chat (log-probabilities, activations) is discovered
// by interface assertion, not configured.
package backend

import (
	"context"
	"encoding/json"
	"errors"

	"persona/chat"
	"persona/engine"
	"persona/resid"
)

// Request is one chat completion.
type Request struct {
	Messages    []chat.Message `json:"messages"`
	MaxTokens   int            `json:"max_tokens"`
	Temperature float64        `json:"temperature"`
	TopP        float64        `json:"top_p,omitempty"`
	// Seed makes sampling reproducible where the backend supports it.
	Seed *int64 `json:"seed,omitempty"`
	// Logprobs asks for the log-probability of each generated token and,
	// with TopLogprobs > 0, of that many alternatives at each position.
	Logprobs    bool     `json:"logprobs,omitempty"`
	TopLogprobs int      `json:"top_logprobs,omitempty"`
	Stop        []string `json:"stop,omitempty"`
	// Persona is the request's "persona" extension field as sent (a
	// gateway reads its control from it); plain backends ignore it.
	Persona json.RawMessage `json:"-"`
	// Interventions, if set, act on the embedded engine's residual stream
	// for this generation instead of the backend's own; API backends
	// ignore them.
	Interventions []resid.Intervention `json:"-"`
	// Watch, if set, reads the reply while the embedded engine writes it
	// and may change the interventions for the rest of it (see
	// engine.Request.Watch). API backends ignore it.
	Watch engine.Watch `json:"-"`
}

// Response is a finished completion.
type Response struct {
	Model        string `json:"model"`
	Content      string `json:"content"`
	FinishReason string `json:"finish_reason"` // "stop", "length", ...
	// Logprobs is empty unless requested and supported.
	Logprobs []TokenLogprob `json:"logprobs,omitempty"`
	Usage    Usage          `json:"usage"`
	// Persona is what a gateway in front of the model read and did (package
	// gateway's Telemetry); the server returns it as the "persona" field,
	// which OpenAI clients ignore. Nil from plain backends.
	Persona any `json:"persona,omitempty"`
}

// TokenLogprob is one generated token with its log-probability and the most
// likely alternatives at its position.
type TokenLogprob struct {
	Token   string       `json:"token"`
	Logprob float64      `json:"logprob"`
	Top     []TopLogprob `json:"top,omitempty"`
}

// TopLogprob is one alternative token at a position.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
}

// Usage counts tokens as the backend reports them.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Backend is anything that answers chats.
type Backend interface {
	// Name identifies the backend and model in reports, e.g. "openai:gpt-4o-mini".
	Name() string
	Chat(ctx context.Context, req Request) (*Response, error)
}

// Streamer is a backend that can stream its reply: what the server serves
// on /v1/chat/completions (the embedded engine, or a gateway in front of
// it).
type Streamer interface {
	Backend
	// Model is the model id clients see.
	Model() string
	// ChatStream is Chat calling emit with the reply's text as it becomes
	// final; the emitted texts concatenate to the Response's Content.
	ChatStream(ctx context.Context, req Request, emit func(Delta) error) (*Response, error)
}

// ErrUnsupported is returned for a request feature a backend cannot serve
// (e.g. logprobs from the Anthropic API).
var ErrUnsupported = errors.New("not supported by this backend")
