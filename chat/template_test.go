package chat

import (
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"persona/internal/testref"
)

var fixtures = testref.Dir() + "/tokenizers"

// conversation is the five-message chat every template test renders. The
// second user turn ends in a space so that templates which trim show it.
var conversation = []Message{
	{Role: "system", Content: "You are a helpful assistant."},
	{Role: "user", Content: "What is the capital of France?"},
	{Role: "assistant", Content: "The capital of France is Paris."},
	{Role: "user", Content: "And Germany? "},
	{Role: "assistant", Content: "Berlin."},
}

// Inline templates, written after the ones the models publish.
const (
	chatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

	// SmolLM2-Instruct: ChatML with a default system prompt.
	smolLM2Template = `{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}`

	gemma3Template = `{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
`

	// Mistral-7B-Instruct-v0.1.
	mistralInstructTemplate = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

	// Llama-2-chat.
	llama2ChatTemplate = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"

	// A Llama-3.2-style header that dates the conversation.
	datedTemplate = `{{- bos_token }}
{%- if strftime_now is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- else %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}`
)

func loadFixture(t *testing.T, name string) *Config {
	t.Helper()
	cfg, err := LoadConfig(filepath.Join(fixtures, name, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustTemplate(t testing.TB, src string, cfg *Config) *Template {
	t.Helper()
	tmpl, err := NewTemplate(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// checkSpans verifies the span invariants: one span per message in message
// order, each within Text, covering the content or a whitespace-trimmed form
// of it, and no two spans (reasoning included) overlapping.
func checkSpans(t *testing.T, msgs []Message, r *Rendered) {
	t.Helper()
	if len(r.Spans) != len(msgs) {
		t.Fatalf("got %d spans for %d messages", len(r.Spans), len(msgs))
	}
	all := append([]Span(nil), r.Spans...)
	all = append(all, r.Reasoning...)
	for i, s := range r.Spans {
		if s.Message != i || s.Role != msgs[i].Role {
			t.Errorf("span %d is for message %d (%s)", i, s.Message, s.Role)
		}
		if s.Start < 0 || s.End < s.Start || s.End > len(r.Text) {
			t.Fatalf("span %d out of range: %+v (len %d)", i, s, len(r.Text))
		}
		got := r.Text[s.Start:s.End]
		want := msgs[i].Content
		if j := strings.LastIndex(want, "</think>"); j >= 0 {
			want = want[j+len("</think>"):]
		}
		if got != want && got != strings.TrimSpace(want) && got != strings.Trim(want, "\n") && got != strings.TrimLeft(want, "\n") {
			t.Errorf("span %d = %q, want %q or a trimmed form", i, got, want)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Start < all[j].Start })
	for i := 1; i < len(all); i++ {
		if all[i].Start < all[i-1].End {
			t.Errorf("spans overlap: %+v and %+v", all[i-1], all[i])
		}
	}
}

// spanTexts returns Text[Start:End] for every span.
func spanTexts(r *Rendered) []string {
	out := make([]string, len(r.Spans))
	for i, s := range r.Spans {
		out[i] = r.Text[s.Start:s.End]
	}
	return out
}

func TestRenderTemplates(t *testing.T) {
	llama3Body := "<|begin_of_text|>" +
		"<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\nThe capital of France is Paris.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nAnd Germany?<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\nBerlin.<|eot_id|>"
	llama3Gen := "<|start_header_id|>assistant<|end_header_id|>\n\n"

	qwenBody := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
		"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
		"<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n" +
		"<|im_start|>user\nAnd Germany? <|im_end|>\n" +
		// The last assistant turn after the last user query gets an
		// (empty) think block; earlier ones do not.
		"<|im_start|>assistant\n<think>\n\n</think>\n\nBerlin.<|im_end|>\n"

	chatMLBody := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
		"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
		"<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n" +
		"<|im_start|>user\nAnd Germany? <|im_end|>\n" +
		"<|im_start|>assistant\nBerlin.<|im_end|>\n"

	gemmaBody := "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nWhat is the capital of France?<end_of_turn>\n" +
		"<start_of_turn>model\nThe capital of France is Paris.<end_of_turn>\n" +
		"<start_of_turn>user\nAnd Germany?<end_of_turn>\n" +
		"<start_of_turn>model\nBerlin.<end_of_turn>\n"

	llama2Body := "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nWhat is the capital of France? [/INST]" +
		" The capital of France is Paris. </s>" +
		"<s>[INST] And Germany? [/INST] Berlin. </s>"

	gemmaCfg := &Config{BOS: "<bos>", EOS: "<eos>"}
	llama2Cfg := &Config{BOS: "<s>", EOS: "</s>"}

	tests := []struct {
		name     string
		src      string
		cfg      *Config
		gen      bool
		want     string
		wantSpan []string // Text[span] per message; nil: checkSpans only
	}{
		// The Llama 3 (base) fixture's template always ends with an
		// assistant header, add_generation_prompt or not.
		{"llama3", "", loadFixture(t, "llama3"), false, llama3Body + llama3Gen,
			[]string{"You are a helpful assistant.", "What is the capital of France?", "The capital of France is Paris.", "And Germany?", "Berlin."}},
		{"llama3/gen", "", loadFixture(t, "llama3"), true, llama3Body + llama3Gen, nil},
		{"llama3.1", "", loadFixture(t, "llama3.1"), false, llama3Body, nil},
		{"llama3.1/gen", "", loadFixture(t, "llama3.1"), true, llama3Body + llama3Gen, nil},
		{"qwen3", "", loadFixture(t, "qwen3"), false, qwenBody,
			[]string{"You are a helpful assistant.", "What is the capital of France?", "The capital of France is Paris.", "And Germany? ", "Berlin."}},
		{"qwen3/gen", "", loadFixture(t, "qwen3"), true, qwenBody + "<|im_start|>assistant\n", nil},
		{"chatml", chatMLTemplate, nil, false, chatMLBody, nil},
		{"chatml/gen", chatMLTemplate, nil, true, chatMLBody + "<|im_start|>assistant\n", nil},
		{"smollm2", smolLM2Template, nil, true, chatMLBody + "<|im_start|>assistant\n", nil},
		{"gemma3", gemma3Template, gemmaCfg, false, gemmaBody,
			[]string{"You are a helpful assistant.", "What is the capital of France?", "The capital of France is Paris.", "And Germany?", "Berlin."}},
		{"gemma3/gen", gemma3Template, gemmaCfg, true, gemmaBody + "<start_of_turn>model\n", nil},
		{"llama2-chat", llama2ChatTemplate, llama2Cfg, false, llama2Body, nil},
		{"llama2-chat/gen", llama2ChatTemplate, llama2Cfg, true, llama2Body, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if src == "" {
				src = tc.cfg.Template
			}
			r, err := mustTemplate(t, src, tc.cfg).Render(conversation, tc.gen)
			if err != nil {
				t.Fatal(err)
			}
			if r.Text != tc.want {
				t.Fatalf("text:\n got %q\nwant %q", r.Text, tc.want)
			}
			checkSpans(t, conversation, r)
			if tc.wantSpan != nil {
				if got := spanTexts(r); strings.Join(got, "|") != strings.Join(tc.wantSpan, "|") {
					t.Errorf("spans %q, want %q", got, tc.wantSpan)
				}
			}
			for i := 1; i < len(r.Spans); i++ {
				if r.Spans[i].Start < r.Spans[i-1].End {
					t.Errorf("spans out of order: %+v then %+v", r.Spans[i-1], r.Spans[i])
				}
			}
		})
	}
}

func TestSmolLM2DefaultSystem(t *testing.T) {
	msgs := conversation[1:3]
	r, err := mustTemplate(t, smolLM2Template, nil).Render(msgs, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" +
		"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
		"<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n"
	if r.Text != want {
		t.Fatalf("got %q\nwant %q", r.Text, want)
	}
	checkSpans(t, msgs, r)
}

func TestMistral(t *testing.T) {
	cfg := loadFixture(t, "mistral-7b-v0.1")
	if cfg.Template != "" {
		t.Fatalf("the Mistral 7B v0.1 base fixture has no chat template, got %q", cfg.Template)
	}
	if cfg.BOS != "<s>" || cfg.EOS != "</s>" || !cfg.AddBOS || cfg.AddEOS {
		t.Fatalf("config: %+v", cfg)
	}
	if _, err := NewTemplate(cfg.Template, cfg); !errors.Is(err, ErrNoTemplate) {
		t.Fatalf("NewTemplate(\"\") = %v, want ErrNoTemplate", err)
	}
	tmpl := mustTemplate(t, mistralInstructTemplate, cfg)
	msgs := conversation[1:]
	r, err := tmpl.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<s>[INST] What is the capital of France? [/INST]The capital of France is Paris.</s>" +
		"[INST] And Germany?  [/INST]Berlin.</s>"
	if r.Text != want {
		t.Fatalf("got %q\nwant %q", r.Text, want)
	}
	checkSpans(t, msgs, r)
}

func TestRaiseException(t *testing.T) {
	tests := []struct {
		name, src string
		msgs      []Message
		want      string
	}{
		{"mistral/system", mistralInstructTemplate, conversation, "Conversation roles must alternate"},
		{"mistral/user-user", mistralInstructTemplate, []Message{{"user", "a"}, {"user", "b"}}, "Conversation roles must alternate"},
		{"mistral/tool", mistralInstructTemplate, []Message{{"user", "a"}, {"tool", "b"}}, "Only user and assistant roles are supported!"},
		{"gemma3/assistant-first", gemma3Template, []Message{{"assistant", "a"}}, "Conversation roles must alternate"},
		{"llama2/user-user", llama2ChatTemplate, []Message{{"system", "s"}, {"user", "a"}, {"user", "b"}}, "Conversation roles must alternate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustTemplate(t, tc.src, &Config{BOS: "<s>", EOS: "</s>"}).Render(tc.msgs, false)
			var te *TemplateException
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want a TemplateException", err)
			}
			if !strings.Contains(te.Message, tc.want) {
				t.Errorf("message %q, want it to contain %q", te.Message, tc.want)
			}
		})
	}
	// The system-role check: a user message first, then a system one.
	_, err := mustTemplate(t, mistralInstructTemplate, nil).Render([]Message{{"user", "a"}, {"system", "b"}}, false)
	var te *TemplateException
	if !errors.As(err, &te) {
		t.Fatalf("err = %v", err)
	}
}

func TestQwen3Thinking(t *testing.T) {
	cfg := loadFixture(t, "qwen3")
	tmpl := mustTemplate(t, cfg.Template, cfg)
	msgs := []Message{
		{Role: "user", Content: "What is the capital of France?"},
		{Role: "assistant", Content: "<think>\nFrance's capital.\n</think>\n\nThe capital of France is Paris."},
		{Role: "user", Content: "And Germany?"},
		{Role: "assistant", Content: "<think>\nGermany's capital is Berlin.\n</think>\n\nBerlin."},
	}
	r, err := tmpl.Render(msgs, false)
	if err != nil {
		t.Fatal(err)
	}
	// Earlier turns lose their reasoning; the last one keeps it.
	want := "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
		"<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n" +
		"<|im_start|>user\nAnd Germany?<|im_end|>\n" +
		"<|im_start|>assistant\n<think>\nGermany's capital is Berlin.\n</think>\n\nBerlin.<|im_end|>\n"
	if r.Text != want {
		t.Fatalf("got %q\nwant %q", r.Text, want)
	}
	checkSpans(t, msgs, r)
	if got := spanTexts(r); got[1] != "The capital of France is Paris." || got[3] != "Berlin." {
		t.Errorf("spans %q", got)
	}
	if len(r.Reasoning) != 1 || r.Reasoning[0].Message != 3 ||
		r.Text[r.Reasoning[0].Start:r.Reasoning[0].End] != "Germany's capital is Berlin." {
		t.Errorf("reasoning spans %+v", r.Reasoning)
	}

	// Without a leading <think> (the generation prompt opened it), and
	// with the answer not separated by blank lines.
	msgs[3].Content = "Berlin, obviously.</think>Berlin."
	r, err = tmpl.Render(msgs, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(r.Text, "<|im_start|>assistant\n<think>\nBerlin, obviously.\n</think>\n\nBerlin.<|im_end|>\n") {
		t.Fatalf("got %q", r.Text)
	}
	checkSpans(t, msgs, r)
	if len(r.Reasoning) != 1 || r.Text[r.Reasoning[0].Start:r.Reasoning[0].End] != "Berlin, obviously." {
		t.Errorf("reasoning spans %+v", r.Reasoning)
	}

	// A template that does not know <think> writes it verbatim; the span
	// is still the answer and the reasoning sits inside the markup.
	r, err = mustTemplate(t, chatMLTemplate, nil).Render(msgs, false)
	if err != nil {
		t.Fatal(err)
	}
	checkSpans(t, msgs, r)
	if got := r.Text[r.Spans[1].Start:r.Spans[1].End]; got != "\n\nThe capital of France is Paris." {
		t.Errorf("answer span %q", got)
	}
	if len(r.Reasoning) != 2 {
		t.Errorf("reasoning spans %+v", r.Reasoning)
	}
}

func TestQwen3Options(t *testing.T) {
	cfg := loadFixture(t, "qwen3")
	tmpl := mustTemplate(t, cfg.Template, cfg)
	tmpl.Vars = map[string]any{"enable_thinking": false}
	msgs := conversation[:2]
	r, err := tmpl.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
		"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
		"<|im_start|>assistant\n<think>\n\n</think>\n\n"
	if r.Text != want {
		t.Fatalf("got %q\nwant %q", r.Text, want)
	}
	checkSpans(t, msgs, r)

	// A conversation that ends with the user: the earlier assistant turn
	// is before the last query and renders without a think block.
	msgs = conversation[:4]
	r, err = mustTemplate(t, cfg.Template, cfg).Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Text, "<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n") ||
		!strings.HasSuffix(r.Text, "<|im_start|>user\nAnd Germany? <|im_end|>\n<|im_start|>assistant\n") {
		t.Fatalf("got %q", r.Text)
	}
	checkSpans(t, msgs, r)
}

func TestStrftimeNow(t *testing.T) {
	tmpl := mustTemplate(t, datedTemplate, &Config{BOS: "<|begin_of_text|>"})
	tmpl.Now = func() time.Time { return time.Date(2025, 3, 14, 9, 5, 3, 0, time.UTC) }
	msgs := conversation[1:2]
	r, err := tmpl.Render(msgs, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday Date: 14 Mar 2025\n\n" +
		"<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
	if r.Text != want {
		t.Fatalf("got %q\nwant %q", r.Text, want)
	}
	checkSpans(t, msgs, r)

	tm := time.Date(2025, 1, 3, 15, 4, 5, 0, time.UTC)
	for format, want := range map[string]string{
		"%Y-%m-%d %H:%M:%S": "2025-01-03 15:04:05",
		"%d %B %Y":          "03 January 2025",
		"%A, %b %-d %I%p":   "Friday, Jan 3 03PM",
		"%j %y %% %q":       "003 25 % %q",
	} {
		if got := strftime(format, tm); got != want {
			t.Errorf("strftime(%q) = %q, want %q", format, got, want)
		}
	}
}

// TestSpansAdversarial uses contents that also occur in the template's own
// text, and edge cases of whitespace, which a plain search would get wrong.
func TestSpansAdversarial(t *testing.T) {
	llama3 := loadFixture(t, "llama3.1")
	cases := [][]Message{
		{{"user", "user"}, {"assistant", "assistant"}, {"user", "<|eot_id|>"}, {"assistant", "\n\n"}},
		{{"user", ""}, {"assistant", ""}},
		{{"user", "  padded  "}, {"assistant", "\n\nnewlines\n\n"}},
		{{"system", "<|start_header_id|>system<|end_header_id|>\n\n"}, {"user", "x"}},
		{{"user", "Paris"}, {"assistant", "Paris"}, {"user", "Paris Paris"}, {"assistant", "Paris"}},
	}
	templates := map[string]*Template{
		"llama3.1": mustTemplate(t, llama3.Template, llama3),
		"chatml":   mustTemplate(t, chatMLTemplate, nil),
		"qwen3":    mustTemplate(t, loadFixture(t, "qwen3").Template, nil),
		"gemma3":   mustTemplate(t, gemma3Template, &Config{BOS: "<bos>"}),
	}
	for name, tmpl := range templates {
		for i, msgs := range cases {
			r, err := tmpl.Render(msgs, true)
			if err != nil {
				t.Errorf("%s case %d: %v", name, i, err)
				continue
			}
			checkSpans(t, msgs, r)
		}
	}
	// Llama 3 trims; the span of "user" must be the content, not the
	// role name in the header before it.
	r, err := templates["llama3.1"].Render(cases[0], false)
	if err != nil {
		t.Fatal(err)
	}
	if want := len("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"); r.Spans[0].Start != want {
		t.Errorf("span of \"user\" starts at %d, want %d", r.Spans[0].Start, want)
	}
}

// TestSpansRefused checks that templates whose output spans cannot follow
// give errors, not spans.
func TestSpansRefused(t *testing.T) {
	msgs := []Message{{"system", "sys"}, {"user", "hello there"}}
	for name, src := range map[string]string{
		"slice":       "{% for m in messages %}{{ m.content[:3] }}{% endfor %}",
		"upper":       "{% for m in messages %}{{ m.content | upper }}{% endfor %}",
		"drop-system": "{% for m in messages %}{% if m.role != 'system' %}{{ m.content }}{% endif %}{% endfor %}",
		"branch":      "{% for m in messages %}{% if m.content == 'sys' %}[S]{% endif %}{{ m.content }}{% endfor %}",
		"length":      "{% for m in messages %}{{ m.content | length }}:{{ m.content }}{% endfor %}",
	} {
		r, err := mustTemplate(t, src, nil).Render(msgs, false)
		if err == nil {
			t.Errorf("%s: got spans %+v for %q, want an error", name, r.Spans, r.Text)
		}
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := NewTemplate("{% for m in messages %}\n{{ m.content }}\n{{ m.content + }}\n{% endfor %}", nil)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("err = %v, want one naming line 3", err)
	}
	_, err = NewTemplate("line one\n{% for m in messages %}\n{{ m.content }}", nil)
	if err == nil {
		t.Error("unclosed for: no error")
	}
}

func TestRenderEmpty(t *testing.T) {
	if _, err := mustTemplate(t, chatMLTemplate, nil).Render(nil, true); err == nil {
		t.Error("empty conversation rendered")
	}
}

// FuzzSpans renders fuzzed contents with templates whose layout is simple
// enough to rebuild here, and checks that spans are where the rebuilt text
// says.
func FuzzSpans(f *testing.F) {
	f.Add("hi", "there", " user ", "<|im_end|>\n")
	f.Add("", "\n\n", "<think>a</think>b", "assistant")
	f.Add("<|eot_id|>", " ", "\t", "<|start_header_id|>user<|end_header_id|>\n\n")
	llama := mustTemplate(f, loadFixtureF(f, "llama3.1").Template, loadFixtureF(f, "llama3.1"))
	chatml := mustTemplate(f, chatMLTemplate, nil)
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		msgs := []Message{{"system", a}, {"user", b}, {"assistant", c}, {"user", d}}
		for _, tc := range []struct {
			tmpl  *Template
			build func(role, content string) (prefix, body, suffix string)
			head  string
		}{
			{chatml, func(role, content string) (string, string, string) {
				return "<|im_start|>" + role + "\n", content, "<|im_end|>\n"
			}, ""},
			{llama, func(role, content string) (string, string, string) {
				return "<|start_header_id|>" + role + "<|end_header_id|>\n\n", strings.TrimSpace(content), "<|eot_id|>"
			}, "<|begin_of_text|>"},
		} {
			r, err := tc.tmpl.Render(msgs, false)
			if err != nil {
				// Both templates write contents verbatim or
				// trimmed, which spans must always follow.
				t.Fatalf("%q: %v", msgs, err)
			}
			text := tc.head
			for i, m := range msgs {
				body := m.Content
				p, bd, s := tc.build(m.Role, body)
				start, end := len(text)+len(p), len(text)+len(p)+len(bd)
				if j := strings.LastIndex(bd, "</think>"); j >= 0 {
					// Neither template knows <think>: they write it
					// verbatim and the span is the answer after it.
					start += j + len("</think>")
				}
				if r.Spans[i].Start != start || r.Spans[i].End != end {
					t.Fatalf("message %d: span %+v, want [%d,%d) in %q", i, r.Spans[i], start, end, r.Text)
				}
				text += p + bd + s
			}
			if r.Text != text {
				t.Fatalf("text %q, want %q", r.Text, text)
			}
			checkSpans(t, msgs, r)
		}
	})
}

func loadFixtureF(f *testing.F, name string) *Config {
	cfg, err := LoadConfig(filepath.Join(fixtures, name, "tokenizer_config.json"))
	if err != nil {
		f.Fatal(err)
	}
	return cfg
}

// TestSpansMovedSystem uses a template that, like Mistral v0.3's, writes the
// system prompt into the last user turn: spans stay in message order and
// exact, but are no longer increasing in Start.
func TestSpansMovedSystem(t *testing.T) {
	const src = "{%- set sys = messages[0].content if messages[0].role == 'system' else '' %}" +
		"{%- set loop_messages = messages[1:] if sys else messages %}" +
		"{{- bos_token }}{%- for m in loop_messages %}" +
		"{%- if m.role == 'user' %}{%- if loop.last and sys %}{{ '[INST] ' + sys + '\\n\\n' + m.content + '[/INST]' }}" +
		"{%- else %}{{ '[INST] ' + m.content + '[/INST]' }}{%- endif %}" +
		"{%- else %}{{ ' ' + m.content + eos_token }}{%- endif %}{%- endfor %}"
	msgs := conversation[:4]
	r, err := mustTemplate(t, src, &Config{BOS: "<s>", EOS: "</s>"}).Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<s>[INST] What is the capital of France?[/INST] The capital of France is Paris.</s>" +
		"[INST] You are a helpful assistant.\n\nAnd Germany? [/INST]"
	if r.Text != want {
		t.Fatalf("got %q\nwant %q", r.Text, want)
	}
	checkSpans(t, msgs, r)
	if got := spanTexts(r); got[0] != msgs[0].Content || r.Spans[0].Start < r.Spans[2].End {
		t.Errorf("system span %+v %q", r.Spans[0], got[0])
	}
}

func TestQwen3ToolResponse(t *testing.T) {
	cfg := loadFixture(t, "qwen3")
	tmpl := mustTemplate(t, cfg.Template, cfg)
	// The tool result does not change the layout: spans are found.
	msgs := []Message{{"user", "q"}, {"assistant", "a"}, {"user", "<tool_response>42</tool_response>"}}
	r, err := tmpl.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	checkSpans(t, msgs, r)
	// Here it keeps the first answer's reasoning, which the probe cannot
	// imitate: refused.
	msgs = []Message{{"user", "q"}, {"assistant", "<think>r</think>a"}, {"user", "<tool_response>42</tool_response>"}, {"assistant", "b"}}
	if r, err := tmpl.Render(msgs, true); err == nil {
		t.Errorf("want an error, got %q", r.Text)
	}
}
