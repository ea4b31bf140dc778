package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"persona/chat"
)

// DefaultAnthropicURL is the base URL used when none is configured.
const DefaultAnthropicURL = "https://api.anthropic.com"

// AnthropicConfig configures an Anthropic Messages API backend.
type AnthropicConfig struct {
	// Name is what Name reports (default "anthropic:" + Model).
	Name    string
	Model   string
	BaseURL string // default DefaultAnthropicURL
	// APIKeyEnv names the environment variable holding the key (required
	// by the real API; may be empty for a local stand-in).
	APIKeyEnv string
	// DefaultMaxTokens is sent when a request leaves MaxTokens at 0 (the
	// API requires max_tokens); default 1024.
	DefaultMaxTokens int
	HTTPClient       *http.Client
}

// Anthropic talks to the Messages API through the official SDK. The
// request shape differs from Chat Completions in three ways this type
// absorbs: system messages go to the top-level "system" field (joined when
// there are several), consecutive messages of the same role are merged into
// one message with several text blocks (the API wants user and assistant to
// alternate), and there are no log-probabilities (ErrUnsupported) and no
// seed (ignored: Request.Seed is a best-effort hint).
type Anthropic struct {
	name, model string
	key         string
	maxTokens   int
	svc         anthropic.MessageService
}

// NewAnthropic builds the client without the SDK's environment defaults
// (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, ...): only APIKeyEnv supplies a key.
func NewAnthropic(c AnthropicConfig) (*Anthropic, error) {
	if c.Model == "" {
		return nil, errors.New("anthropic backend: model is required")
	}
	key, err := keyFromEnv(c.APIKeyEnv)
	if err != nil {
		return nil, err
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultAnthropicURL
	}
	if c.Name == "" {
		c.Name = "anthropic:" + c.Model
	}
	if c.DefaultMaxTokens <= 0 {
		c.DefaultMaxTokens = 1024
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(c.BaseURL),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
	}
	if key != "" {
		opts = append(opts, option.WithAPIKey(key))
	}
	client := anthropic.NewClient(opts...)
	return &Anthropic{name: c.Name, model: c.Model, key: key, maxTokens: c.DefaultMaxTokens, svc: client.Messages}, nil
}

func (a *Anthropic) Name() string { return a.name }

func (a *Anthropic) secrets() []string { return nonEmpty(a.key) }

// anthropicMessages splits msgs into the system text and alternating turns.
func anthropicMessages(msgs []chat.Message) (system string, turns []anthropic.MessageParam, err error) {
	var sys []string
	var roles []string
	var blocks [][]anthropic.ContentBlockParamUnion
	for i, m := range msgs {
		switch m.Role {
		case chat.RoleSystem:
			sys = append(sys, m.Content)
			continue
		case chat.RoleUser, chat.RoleAssistant:
		default:
			return "", nil, fmt.Errorf("message %d: role %q: %w", i, m.Role, ErrUnsupported)
		}
		block := anthropic.NewTextBlock(m.Content)
		if n := len(roles); n > 0 && roles[n-1] == m.Role {
			blocks[n-1] = append(blocks[n-1], block)
			continue
		}
		roles = append(roles, m.Role)
		blocks = append(blocks, []anthropic.ContentBlockParamUnion{block})
	}
	for i, role := range roles {
		if role == chat.RoleUser {
			turns = append(turns, anthropic.NewUserMessage(blocks[i]...))
		} else {
			turns = append(turns, anthropic.NewAssistantMessage(blocks[i]...))
		}
	}
	return strings.Join(sys, "\n\n"), turns, nil
}

func (a *Anthropic) Chat(ctx context.Context, req Request) (*Response, error) {
	if req.Logprobs {
		return nil, &Error{Backend: a.name, Kind: KindBadRequest, Msg: "log-probabilities are not available from the Anthropic API", Err: ErrUnsupported}
	}
	system, turns, err := anthropicMessages(req.Messages)
	if err != nil {
		return nil, &Error{Backend: a.name, Kind: KindBadRequest, Msg: err.Error(), Err: ErrUnsupported}
	}
	if len(turns) == 0 {
		return nil, &Error{Backend: a.name, Kind: KindBadRequest, Msg: "no user or assistant messages"}
	}
	p := anthropic.MessageNewParams{
		Model:         a.model,
		MaxTokens:     int64(a.maxTokens),
		Messages:      turns,
		StopSequences: req.Stop,
	}
	if req.MaxTokens > 0 {
		p.MaxTokens = int64(req.MaxTokens)
	}
	if system != "" {
		p.System = []anthropic.TextBlockParam{{Text: system}}
	}
	// Sampling fields are set on the JSON body: this SDK version's params
	// struct does not carry them, the API still accepts them.
	opts := []option.RequestOption{option.WithJSONSet("temperature", req.Temperature)}
	if req.TopP > 0 {
		opts = append(opts, option.WithJSONSet("top_p", req.TopP))
	}
	msg, err := a.svc.New(ctx, p, opts...)
	if err != nil {
		return nil, a.classify(ctx, err)
	}
	var text strings.Builder
	for _, b := range msg.Content {
		if b.Type == "text" {
			text.WriteString(b.Text)
		}
	}
	resp := &Response{
		Model:        msg.Model,
		Content:      text.String(),
		FinishReason: anthropicFinish(msg.StopReason),
		Usage:        Usage{PromptTokens: int(msg.Usage.InputTokens), CompletionTokens: int(msg.Usage.OutputTokens)},
	}
	if msg.Type != "message" && msg.Type != "" {
		return nil, &Error{Backend: a.name, Kind: KindMalformed, Msg: fmt.Sprintf("response type %q, want \"message\"", msg.Type)}
	}
	return resp, nil
}

// anthropicFinish maps stop_reason to the OpenAI vocabulary Response uses.
func anthropicFinish(r anthropic.StopReason) string {
	switch r {
	case anthropic.StopReasonEndTurn, anthropic.StopReasonStopSequence:
		return "stop"
	case anthropic.StopReasonMaxTokens, anthropic.StopReasonModelContextWindowExceeded:
		return "length"
	case anthropic.StopReasonRefusal:
		return "content_filter"
	case anthropic.StopReasonToolUse:
		return "tool_calls"
	}
	return string(r)
}

func (a *Anthropic) classify(ctx context.Context, err error) error {
	var ae *anthropic.Error
	if errors.As(err, &ae) {
		msg := ae.Message
		if t := string(ae.Type()); t != "" {
			msg = t + ": " + msg
		}
		e := &Error{Backend: a.name, Kind: kindForStatus(ae.StatusCode), Status: ae.StatusCode, Msg: redact(msg, a.key)}
		if ae.Response != nil {
			e.RetryAfter = retryAfter(ae.Response.Header, time.Now())
		}
		return e
	}
	return redactError(transportError(ctx, a.name, err), a.key)
}
