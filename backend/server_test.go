package backend

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"persona/chat"
	"persona/engine"
	"persona/internal/testmodel"
	"persona/internal/testref"
	"persona/model"
	"persona/sample"
)

// tinyChatModel is a random Qwen3-shaped model carrying the real Qwen3
// tokenizer and chat template, so the server renders and tokenizes chats
// exactly as it would for the real model.
func tinyChatModel(t testing.TB) string {
	return testmodel.Chat(t, "qwen3", model.Config{Arch: "qwen3", Hidden: 32, FFN: 64, NumLayers: 2, Heads: 4, KVHeads: 2,
		HeadDim: 8, MaxSeq: 512, NormEps: 1e-6, RoPETheta: 1e6, TiedEmbedding: true, QKNorm: true})
}

func TestMain(m *testing.M) { testmodel.Main(m) }

// startServer serves the tiny model on 127.0.0.1:0 in-process.
func startServer(t testing.TB) (*httptest.Server, *Engine) {
	t.Helper()
	e, err := engine.Load(tinyChatModel(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	b := NewEngine(e, "tiny-qwen3", 2)
	ts := httptest.NewServer(NewServer(b))
	t.Cleanup(ts.Close)
	return ts, b
}

var testChat = []chat.Message{
	{Role: "system", Content: "You are a pirate."},
	{Role: "user", Content: "What is 17+25?"},
}

func seed(n int64) *int64 { return &n }

// TestOpenAIAgainstServe sends the same seeded request through the OpenAI
// backend (the official SDK) to persona serve, and streams it with the SDK's
// streaming client: both must give exactly what engine.Generate gives, with
// the log-probabilities engine.LogProbs assigns by teacher forcing.
func TestOpenAIAgainstServe(t *testing.T) {
	ts, eb := startServer(t)
	e := eb.E
	ob, err := NewOpenAI(OpenAIConfig{Model: "tiny-qwen3", BaseURL: ts.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := Request{Messages: testChat, MaxTokens: 8, Temperature: 0.9, TopP: 0.95, Seed: seed(7), Logprobs: true, TopLogprobs: 5}
	resp, err := ob.Chat(ctx, req)
	if err != nil {
		t.Fatal(err)
	}

	// The reference: the engine's own generation loop with the same sampler.
	enc, err := e.EncodeChat(testChat, true)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := e.Generate(ctx, engine.Request{Prompt: enc.IDs, MaxTokens: 8, Sampling: sample.Params{Temperature: 0.9, TopP: 0.95, Seed: 7}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != ref.Text {
		t.Fatalf("served text %q, engine.Generate %q", resp.Content, ref.Text)
	}
	if resp.Usage.PromptTokens != len(enc.IDs) || resp.Usage.CompletionTokens != len(ref.IDs) {
		t.Errorf("usage %+v, want %d prompt and %d completion tokens", resp.Usage, len(enc.IDs), len(ref.IDs))
	}
	ids := ref.IDs
	if ref.Stop == "eos" {
		ids = ids[:len(ids)-1] // the end-of-sequence token is not content
	}
	if len(resp.Logprobs) != len(ids) {
		t.Fatalf("%d logprobs for %d content tokens", len(resp.Logprobs), len(ids))
	}
	forced, err := e.LogProbs(ctx, append(append([]int(nil), enc.IDs...), ids...), len(enc.IDs), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, lp := range resp.Logprobs {
		if want := e.Tokenizer.Decode([]int{ids[i]}); lp.Token != want {
			t.Errorf("token %d: %q, want %q", i, lp.Token, want)
		}
		if math.Abs(lp.Logprob-float64(forced[i])) > 1e-3 {
			t.Errorf("token %d: logprob %.5f, engine.LogProbs %.5f", i, lp.Logprob, forced[i])
		}
		if len(lp.Top) != 5 {
			t.Fatalf("token %d: %d alternatives, want 5", i, len(lp.Top))
		}
		for j := 1; j < len(lp.Top); j++ {
			if lp.Top[j].Logprob > lp.Top[j-1].Logprob {
				t.Errorf("token %d: alternatives not in descending order", i)
			}
		}
		if lp.Logprob > lp.Top[0].Logprob+1e-6 {
			t.Errorf("token %d: chosen logprob %.4f above the best alternative %.4f", i, lp.Logprob, lp.Top[0].Logprob)
		}
	}

	// Streaming through the SDK gives the same text.
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:       "tiny-qwen3",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(testChat[0].Content), openai.UserMessage(testChat[1].Content)},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0.9),
		TopP:        openai.Float(0.95),
		Seed:        openai.Int(7),
		Logprobs:    openai.Bool(true),
		TopLogprobs: openai.Int(5),
	})
	var streamed strings.Builder
	var streamedLps []float64
	var finish string
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		chunks++
		for _, ch := range c.Choices {
			streamed.WriteString(ch.Delta.Content)
			for _, lp := range ch.Logprobs.Content {
				streamedLps = append(streamedLps, lp.Logprob)
			}
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if streamed.String() != resp.Content {
		t.Fatalf("streamed %q, non-streamed %q", streamed.String(), resp.Content)
	}
	if chunks < 3 || finish != resp.FinishReason {
		t.Errorf("%d chunks, finish %q (non-streamed %q)", chunks, finish, resp.FinishReason)
	}
	if len(streamedLps) != len(resp.Logprobs) {
		t.Fatalf("streamed %d logprobs, non-streamed %d", len(streamedLps), len(resp.Logprobs))
	}
	for i := range streamedLps {
		if streamedLps[i] != resp.Logprobs[i].Logprob {
			t.Errorf("token %d: streamed logprob %v, non-streamed %v", i, streamedLps[i], resp.Logprobs[i].Logprob)
		}
	}
}

// TestGreedyTopLogprob: at temperature 0 the chosen token is the most likely
// one, so it must head its own list of alternatives.
func TestGreedyTopLogprob(t *testing.T) {
	_, b := startServer(t)
	resp, err := b.Chat(context.Background(), Request{Messages: testChat, MaxTokens: 8, Logprobs: true, TopLogprobs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Logprobs) == 0 {
		t.Fatal("no logprobs")
	}
	for i, lp := range resp.Logprobs {
		if lp.Top[0].Token != lp.Token || lp.Top[0].Logprob != lp.Logprob {
			t.Errorf("token %d: greedy choice %q (%.4f) is not the top alternative %q (%.4f)", i, lp.Token, lp.Logprob, lp.Top[0].Token, lp.Top[0].Logprob)
		}
	}
}

// TestStopStrings: generation ends at the first stop string, which is not
// returned, in both modes; a stop string split across tokens is found too.
func TestStopStrings(t *testing.T) {
	_, b := startServer(t)
	ctx := context.Background()
	full, err := b.Chat(ctx, Request{Messages: testChat, MaxTokens: 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Content) < 12 {
		t.Skipf("generation too short to cut: %q", full.Content)
	}
	// A stop string that starts in the middle of the text and spans bytes of
	// (probably) two tokens.
	cut := len(full.Content) / 2
	for cut < len(full.Content) && !isBoundary(full.Content, cut) {
		cut++
	}
	stop := full.Content[cut:min(cut+6, len(full.Content))]
	want := full.Content[:strings.Index(full.Content, stop)]
	var streamed strings.Builder
	resp, err := b.ChatStream(ctx, Request{Messages: testChat, MaxTokens: 30, Stop: []string{"\x00never", stop}},
		func(d Delta) error { streamed.WriteString(d.Text); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != want || streamed.String() != want || resp.FinishReason != "stop" {
		t.Fatalf("stop %q: content %q, streamed %q, finish %q; want %q", stop, resp.Content, streamed.String(), resp.FinishReason, want)
	}
}

func isBoundary(s string, i int) bool { return i == len(s) || (s[i]&0xC0) != 0x80 }

func TestStopper(t *testing.T) {
	for _, c := range []struct {
		pieces []string
		stops  []string
		want   string
		hit    bool
	}{
		{[]string{"Hello", " wor", "ld"}, []string{"world"}, "Hello ", true},
		{[]string{"ab", "c"}, []string{"bd"}, "abc", false},
		{[]string{"x", "EN", "D"}, []string{"END", "NDX"}, "x", true},
		{[]string{"aaa"}, nil, "aaa", false},
		{[]string{"héllo"}, []string{"é"}, "h", true},
	} {
		s := newStopper(c.stops)
		var out strings.Builder
		hit := false
		for _, p := range c.pieces {
			o, h := s.add(p)
			out.WriteString(o)
			if h {
				hit = true
				break
			}
		}
		if !hit {
			out.WriteString(s.flush())
		}
		if out.String() != c.want || hit != c.hit {
			t.Errorf("%q stop %q: %q hit=%v, want %q hit=%v", c.pieces, c.stops, out.String(), hit, c.want, c.hit)
		}
	}
}

// TestServerAPI checks the wire format and error handling directly.
func TestServerAPI(t *testing.T) {
	ts, _ := startServer(t)
	post := func(path, body string) (int, map[string]any) {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		data, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: body %q is not JSON", path, data)
		}
		return resp.StatusCode, v
	}
	for _, c := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, 200, "chat.completion"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":2,"temperature":0}`, 200, "chat.completion"},
		{"/v1/chat/completions", `{"messages":[]}`, 400, "messages"},
		{"/v1/chat/completions", `{"messages":[{"role":"wizard","content":"hi"}]}`, 400, "role"},
		{"/v1/chat/completions", `{"messages":`, 400, "JSON"},
		{"/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, 404, "tiny-qwen3"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"temperature":3}`, 400, "temperature"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":2}`, 400, "n = 2"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}`, 400, "logprobs"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":100000}`, 400, "context"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "image_url"},
		{"/v1/completions", `{"prompt":"Once upon","max_tokens":4,"logprobs":2,"seed":1}`, 200, "text_completion"},
		{"/v1/completions", `{"prompt":["a","b"]}`, 400, "prompt"},
		{"/v1/nothing", `{}`, 404, "no route"},
	} {
		status, v := post(c.path, c.body)
		got, _ := json.Marshal(v)
		if status != c.status || !strings.Contains(string(got), c.want) {
			t.Errorf("%s %s: %d %s, want %d containing %q", c.path, c.body, status, got, c.status, c.want)
		}
		if status >= 400 {
			e, ok := v["error"].(map[string]any)
			if !ok || e["message"] == "" || e["type"] == "" {
				t.Errorf("%s %s: error body %s is not OpenAI-shaped", c.path, c.body, got)
			}
		}
	}

	// Oversized bodies are refused with 413.
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 5<<20) + `"}]}`
	if status, _ := post("/v1/chat/completions", big); status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", status)
	}

	// Streaming ends with [DONE] and, when asked, a usage chunk.
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("stream content type %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, line)
		}
	}
	resp.Body.Close()
	if n := len(events); n < 4 || events[n-1] != "[DONE]" || !strings.Contains(events[n-2], `"usage"`) || !strings.Contains(events[0], `"role":"assistant"`) {
		t.Errorf("stream events: %q", events)
	}

	// Models, health and metrics.
	for path, want := range map[string]string{
		"/v1/models":            `"id":"tiny-qwen3"`,
		"/v1/models/tiny-qwen3": `"object":"model"`,
		"/health":               `"status":"ok"`,
		"/metrics":              `persona_requests_total{route="/v1/chat/completions",code="200"}`,
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(data), want) {
			t.Errorf("GET %s: %d %s; want %q", path, resp.StatusCode, data, want)
		}
	}
	resp, _ = http.Get(ts.URL + "/metrics")
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`persona_tokens_total{kind="completion"}`, `persona_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"}`,
		`persona_requests_total{route="/v1/chat/completions",code="400"}`, `code="413"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("metrics lack %s:\n%s", want, data)
		}
	}
}

// TestEngineConcurrent: concurrent requests (more than the engine's limit)
// each get the answer they would get alone.
func TestEngineConcurrent(t *testing.T) {
	_, b := startServer(t)
	want, err := b.Chat(context.Background(), Request{Messages: testChat, MaxTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			got, err := b.Chat(context.Background(), Request{Messages: testChat, MaxTokens: 6})
			if err != nil || got.Content != want.Content {
				t.Errorf("concurrent: %v %v, want %q", got, err, want.Content)
			}
		})
	}
	wg.Wait()
}

// TestWatermarkServe serves stories260K with a Gumbel watermark: a story
// generated through /v1/completions is found by /v1/watermark/detect, human
// text is not, and the key never appears in any response.
func TestWatermarkServe(t *testing.T) {
	e, err := engine.Load(testref.Fixture(t, "stories260K/stories260K-f32.v3.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	key := "serve-test-secret-key"
	b := NewEngine(e, "stories", 1)
	b.Watermark = &sample.Watermark{Scheme: "gumbel", Key: []byte(key)}
	ts := httptest.NewServer(NewServer(b))
	defer ts.Close()
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(data), key) {
			t.Fatalf("%s: the key is in the response", path)
		}
		return resp.StatusCode, string(data)
	}
	code, body := post("/v1/completions", `{"prompt":"Once upon a time","max_tokens":200,"seed":5,"temperature":1}`)
	if code != 200 {
		t.Fatalf("completion: %d %s", code, body)
	}
	var comp struct {
		Choices []struct{ Text string } `json:"choices"`
	}
	json.Unmarshal([]byte(body), &comp)
	story := comp.Choices[0].Text
	type detection struct {
		Watermarked bool
		KeyID       string `json:"key_id"`
		Detection   sample.Detection
		Spans       []sample.Span
	}
	detect := func(body string) detection {
		t.Helper()
		code, out := post("/v1/watermark/detect", body)
		if code != 200 {
			t.Fatalf("detect: %d %s", code, out)
		}
		var d detection
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	text, _ := json.Marshal(story)
	if d := detect(`{"text":` + string(text) + `}`); !d.Watermarked || d.KeyID != sample.KeyID([]byte(key)) {
		t.Errorf("the served story is not found: %+v", d)
	}
	human := "Tom and his sister walked to the old mill by the river, where the miller kept a grey cat that nobody could catch. It was raining, and they were late for supper, but the cat sat on the wall and watched them as if it knew a secret."
	text, _ = json.Marshal(human + " " + story)
	if d := detect(`{"text":` + string(text) + `,"window":60}`); len(d.Spans) == 0 || d.Spans[0].Start < 20 {
		t.Errorf("mixed text: spans %+v, want the story's stretch after the human sentences", d.Spans)
	}
	text, _ = json.Marshal(human)
	if d := detect(`{"text":` + string(text) + `}`); d.Watermarked {
		t.Errorf("human text flagged: %+v", d)
	}
	for _, c := range []struct{ body, want string }{
		{`{}`, "either"},
		{`{"text":"a","ids":[1]}`, "either"},
		{`{"ids":[1,99999999]}`, "ids"},
		{`{"ids":[1]}`, "context"},
		{`{"text":"hello there","alpha":3}`, "alpha"},
		{`{"text":"` + strings.Repeat("a", maxDetectBytes+1) + `"}`, "bytes"},
	} {
		if code, out := post("/v1/watermark/detect", c.body); code != 400 || !strings.Contains(out, c.want) {
			t.Errorf("%.40s: %d %s, want 400 mentioning %q", c.body, code, out, c.want)
		}
	}
	// A server that does not watermark says so.
	plain := httptest.NewServer(NewServer(NewEngine(e, "stories", 1)))
	defer plain.Close()
	resp, err := http.Post(plain.URL+"/v1/watermark/detect", "application/json", strings.NewReader(`{"text":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("detect on a server without a watermark: %d", resp.StatusCode)
	}
}
