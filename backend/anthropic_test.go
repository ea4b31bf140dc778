package backend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"persona/chat"
)

// anthropicServer speaks the Messages API wire format, answering with the
// bodies in testdata/anthropic (written from the API reference's examples),
// and hands each decoded request body to check.
func anthropicServer(t *testing.T, respond func(n int, w http.ResponseWriter), check func(body map[string]any, h http.Header)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1))
		if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
			http.Error(w, "wrong route "+r.URL.Path, http.StatusNotFound)
			return
		}
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(data, &body); err != nil {
			t.Errorf("request body is not JSON: %s", data)
		}
		if check != nil {
			check(body, r.Header)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "req_test")
		respond(n, w)
	}))
	t.Cleanup(ts.Close)
	return ts, &calls
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/anthropic/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestAnthropicMessages(t *testing.T) {
	t.Setenv("PERSONA_TEST_ANTHROPIC_KEY", "sk-ant-test-0123456789")
	ok := fixture(t, "message.json")
	ts, _ := anthropicServer(t, func(n int, w http.ResponseWriter) { w.Write(ok) }, func(body map[string]any, h http.Header) {
		// The API takes the key as x-api-key or, as this SDK version sends
		// it, a bearer token.
		if (h.Get("x-api-key") != "sk-ant-test-0123456789" && h.Get("Authorization") != "Bearer sk-ant-test-0123456789") || h.Get("anthropic-version") == "" {
			t.Errorf("headers: x-api-key %q, authorization set %v, anthropic-version %q", h.Get("x-api-key"), h.Get("Authorization") != "", h.Get("anthropic-version"))
		}
		sys, _ := json.Marshal(body["system"])
		if !strings.Contains(string(sys), "You are a pirate.\\n\\nNever break character.") {
			t.Errorf("system field %s", sys)
		}
		msgs, _ := body["messages"].([]any)
		if len(msgs) != 3 {
			t.Fatalf("%d messages, want 3 (consecutive user turns merged): %v", len(msgs), body["messages"])
		}
		roles := ""
		for _, m := range msgs {
			roles += m.(map[string]any)["role"].(string) + " "
		}
		if roles != "user assistant user " {
			t.Errorf("roles %q", roles)
		}
		first, _ := json.Marshal(msgs[0])
		if !strings.Contains(string(first), "Hello") || !strings.Contains(string(first), "What is 17+25?") {
			t.Errorf("merged first turn %s", first)
		}
		if body["temperature"] != 0.5 || body["max_tokens"] != float64(64) || body["model"] != "claude-sonnet-4-5" {
			t.Errorf("temperature %v, max_tokens %v, model %v", body["temperature"], body["max_tokens"], body["model"])
		}
		if stop, _ := json.Marshal(body["stop_sequences"]); string(stop) != `["\n\nHuman:"]` {
			t.Errorf("stop_sequences %s", stop)
		}
	})
	a, err := NewAnthropic(AnthropicConfig{Model: "claude-sonnet-4-5", BaseURL: ts.URL, APIKeyEnv: "PERSONA_TEST_ANTHROPIC_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Chat(context.Background(), Request{
		Messages: []chat.Message{
			{Role: "system", Content: "You are a pirate."},
			{Role: "user", Content: "Hello"},
			{Role: "system", Content: "Never break character."},
			{Role: "user", Content: "What is 17+25?"},
			{Role: "assistant", Content: "Arr"},
			{Role: "user", Content: "Again?"},
		},
		MaxTokens: 64, Temperature: 0.5, Seed: seed(1), Stop: []string{"\n\nHuman:"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Response{Model: "claude-sonnet-4-5-20250929", Content: "Arr, 'tis 42, matey!", FinishReason: "stop", Usage: Usage{PromptTokens: 21, CompletionTokens: 12}}
	if resp.Model != want.Model || resp.Content != want.Content || resp.FinishReason != want.FinishReason || resp.Usage != want.Usage {
		t.Errorf("got %+v, want %+v", *resp, want)
	}
	if a.Name() != "anthropic:claude-sonnet-4-5" {
		t.Errorf("name %q", a.Name())
	}

	// Logprobs are not offered by the API.
	_, err = a.Chat(context.Background(), Request{Messages: testChat, Logprobs: true})
	if !errors.Is(err, ErrUnsupported) || !IsBadRequest(err) {
		t.Errorf("logprobs: %v, want ErrUnsupported", err)
	}
}

func TestAnthropicThinkingAndLength(t *testing.T) {
	body := fixture(t, "max_tokens.json")
	ts, _ := anthropicServer(t, func(n int, w http.ResponseWriter) { w.Write(body) }, nil)
	a, err := NewAnthropic(AnthropicConfig{Model: "claude-sonnet-4-5", BaseURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Chat(context.Background(), Request{Messages: testChat[1:]})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != "Once upon a time" || resp.FinishReason != "length" {
		t.Errorf("thinking blocks must be dropped and max_tokens map to length: %+v", *resp)
	}
}

// TestAnthropicErrors: 529 overloaded and 429 with retry-after are retried
// (the latter after the time asked), 400 is not.
func TestAnthropicErrors(t *testing.T) {
	overloaded, limited, invalid, ok := fixture(t, "overloaded.json"), fixture(t, "rate_limit.json"), fixture(t, "invalid_request.json"), fixture(t, "message.json")
	policy := Policy{Retries: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

	ts, calls := anthropicServer(t, func(n int, w http.ResponseWriter) {
		switch n {
		case 1:
			w.WriteHeader(529)
			w.Write(overloaded)
		case 2:
			w.Header().Set("retry-after", "1")
			w.WriteHeader(429)
			w.Write(limited)
		default:
			w.Write(ok)
		}
	}, nil)
	a, _ := NewAnthropic(AnthropicConfig{Model: "m", BaseURL: ts.URL})
	start := time.Now()
	resp, err := NewRobust("a", policy, a).Chat(context.Background(), Request{Messages: testChat})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || resp.Content == "" {
		t.Errorf("%d calls, response %+v", calls.Load(), resp)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retry-after: 1 honoured for only %v", d)
	}

	// Overloaded every time: the last error, typed, after 3 attempts.
	ts, calls = anthropicServer(t, func(n int, w http.ResponseWriter) { w.WriteHeader(529); w.Write(overloaded) }, nil)
	a, _ = NewAnthropic(AnthropicConfig{Model: "m", BaseURL: ts.URL})
	_, err = NewRobust("a", policy, a).Chat(context.Background(), Request{Messages: testChat})
	var be *Error
	if !errors.As(err, &be) || be.Kind != KindServer || be.Status != 529 || be.Attempts != 3 || calls.Load() != 3 || !IsInfrastructure(err) {
		t.Errorf("overloaded: %v (calls %d)", err, calls.Load())
	}
	if !strings.Contains(err.Error(), "overloaded_error") {
		t.Errorf("error %q does not say overloaded_error", err)
	}

	// A bad request is not retried.
	ts, calls = anthropicServer(t, func(n int, w http.ResponseWriter) { w.WriteHeader(400); w.Write(invalid) }, nil)
	a, _ = NewAnthropic(AnthropicConfig{Model: "m", BaseURL: ts.URL})
	_, err = NewRobust("a", policy, a).Chat(context.Background(), Request{Messages: testChat})
	if !IsBadRequest(err) || IsInfrastructure(err) || calls.Load() != 1 || !strings.Contains(err.Error(), "max_tokens: Field required") {
		t.Errorf("400: %v (calls %d)", err, calls.Load())
	}
}
