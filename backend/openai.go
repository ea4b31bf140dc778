package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"persona/chat"
)

// DefaultOpenAIURL is the base URL used when none is configured.
const DefaultOpenAIURL = "https://api.openai.com/v1"

// OpenAIConfig configures an OpenAI-compatible Chat Completions backend.
type OpenAIConfig struct {
	// Name is what Name reports (default "openai:" + Model).
	Name  string
	Model string
	// BaseURL is the API root, e.g. http://localhost:8000/v1 for vLLM,
	// http://localhost:11434/v1 for Ollama (default DefaultOpenAIURL).
	BaseURL string
	// APIKeyEnv names the environment variable holding the API key; empty
	// for servers that need none. The key is read once, sent only in the
	// Authorization header, and scrubbed from every error message and
	// recording this package writes.
	APIKeyEnv string
	// HTTPClient, if set, carries the requests (tests, proxies).
	HTTPClient *http.Client
}

// OpenAI talks to any server speaking OpenAI's Chat Completions API
// (OpenAI, vLLM, SGLang, llama.cpp server, Ollama, `persona serve`) through
// the official SDK. It maps log-probabilities both ways and makes one
// attempt per call: retries belong to Robust (the SDK's own are off, see
// Robust).
type OpenAI struct {
	name, model string
	key         string
	svc         openai.ChatCompletionService
}

// NewOpenAI builds the client. The ambient OPENAI_* variables the SDK would
// read by default are deliberately not used: only the variable named in
// APIKeyEnv supplies a key, so a developer's personal key is never sent to a
// configured third-party endpoint by accident.
func NewOpenAI(c OpenAIConfig) (*OpenAI, error) {
	if c.Model == "" {
		return nil, errors.New("openai backend: model is required")
	}
	key, err := keyFromEnv(c.APIKeyEnv)
	if err != nil {
		return nil, err
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultOpenAIURL
	}
	if c.Name == "" {
		c.Name = "openai:" + c.Model
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	opts := []option.RequestOption{
		option.WithBaseURL(c.BaseURL),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
	}
	if key != "" {
		opts = append(opts, option.WithAPIKey(key))
	}
	// The service is built directly rather than through openai.NewClient,
	// which would merge in OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID
	// and OPENAI_CUSTOM_HEADERS from the environment.
	return &OpenAI{name: c.Name, model: c.Model, key: key, svc: openai.NewChatCompletionService(opts...)}, nil
}

// keyFromEnv reads an API key from the named variable ("" → no key).
func keyFromEnv(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	key := strings.TrimSpace(os.Getenv(name))
	if key == "" {
		return "", fmt.Errorf("environment variable %s (api_key_env) is not set", name)
	}
	return key, nil
}

func (o *OpenAI) Name() string { return o.name }

// secrets lets Recorder scrub the key from what it writes.
func (o *OpenAI) secrets() []string { return nonEmpty(o.key) }

func (o *OpenAI) Chat(ctx context.Context, req Request) (*Response, error) {
	msgs := make([]openai.ChatCompletionMessageParamUnion, 0, len(req.Messages))
	for i, m := range req.Messages {
		switch m.Role {
		case chat.RoleSystem:
			msgs = append(msgs, openai.SystemMessage(m.Content))
		case chat.RoleUser:
			msgs = append(msgs, openai.UserMessage(m.Content))
		case chat.RoleAssistant:
			msgs = append(msgs, openai.AssistantMessage(m.Content))
		default:
			return nil, &Error{Backend: o.name, Kind: KindBadRequest, Msg: fmt.Sprintf("message %d: role %q", i, m.Role), Err: ErrUnsupported}
		}
	}
	p := openai.ChatCompletionNewParams{
		Model:       o.model,
		Messages:    msgs,
		Temperature: openai.Float(req.Temperature),
	}
	if req.MaxTokens > 0 {
		p.MaxTokens = openai.Int(int64(req.MaxTokens))
	}
	if req.TopP > 0 {
		p.TopP = openai.Float(req.TopP)
	}
	if req.Seed != nil {
		p.Seed = openai.Int(*req.Seed)
	}
	if req.Logprobs {
		p.Logprobs = openai.Bool(true)
		if req.TopLogprobs > 0 {
			p.TopLogprobs = openai.Int(int64(req.TopLogprobs))
		}
	}
	if len(req.Stop) > 0 {
		p.Stop.OfStringArray = req.Stop
	}
	cc, err := o.svc.New(ctx, p)
	if err != nil {
		return nil, o.classify(ctx, err)
	}
	if len(cc.Choices) == 0 {
		return nil, &Error{Backend: o.name, Kind: KindMalformed, Msg: "response has no choices"}
	}
	ch := cc.Choices[0]
	resp := &Response{
		Model:        cc.Model,
		Content:      ch.Message.Content,
		FinishReason: ch.FinishReason,
		Usage:        Usage{PromptTokens: int(cc.Usage.PromptTokens), CompletionTokens: int(cc.Usage.CompletionTokens)},
	}
	if req.Logprobs {
		for _, t := range ch.Logprobs.Content {
			lp := TokenLogprob{Token: t.Token, Logprob: t.Logprob}
			for _, a := range t.TopLogprobs {
				lp.Top = append(lp.Top, TopLogprob{Token: a.Token, Logprob: a.Logprob})
			}
			resp.Logprobs = append(resp.Logprobs, lp)
		}
	}
	return resp, nil
}

// classify turns an SDK error into *Error, with the API's own message (not
// the SDK's Error(), which may quote the request URL) and the key scrubbed.
func (o *OpenAI) classify(ctx context.Context, err error) error {
	var ae *openai.Error
	if errors.As(err, &ae) {
		e := &Error{Backend: o.name, Kind: kindForStatus(ae.StatusCode), Status: ae.StatusCode, Msg: redact(ae.Message, o.key)}
		if ae.Response != nil {
			e.RetryAfter = retryAfter(ae.Response.Header, time.Now())
		}
		return e
	}
	return redactError(transportError(ctx, o.name, err), o.key)
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// redact replaces every secret in s.
func redact(s string, secrets ...string) string {
	for _, k := range secrets {
		if k != "" {
			s = strings.ReplaceAll(s, k, "[REDACTED]")
		}
	}
	return s
}

// redactError makes sure err's message does not contain a secret. The
// wrapped error is replaced by its scrubbed text only when it would print
// one (losing its chain, which is the lesser harm).
func redactError(err error, secrets ...string) error {
	secrets = nonEmpty(secrets...)
	var e *Error
	if len(secrets) == 0 || !errors.As(err, &e) {
		return err
	}
	e.Msg = redact(e.Msg, secrets...)
	if e.Err != nil {
		if s := e.Err.Error(); redact(s, secrets...) != s {
			e.Err = errors.New(redact(s, secrets...))
		}
	}
	return err
}
