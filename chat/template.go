package chat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// ErrNoTemplate is returned by NewTemplate for an empty template source: the
// model ships no chat template (base models usually do not) and the caller
// must supply one.
var ErrNoTemplate = errors.New("chat: no chat template")

// TemplateException is the error a template raises through
// raise_exception(msg). Templates use it to reject conversations they cannot
// format (Mistral and Gemma insist that user and assistant alternate), so
// callers may want to tell it apart from bugs: use errors.As.
type TemplateException struct {
	Message string
}

// Error returns the template's own message.
func (e *TemplateException) Error() string {
	return "chat template raised an exception: " + e.Message
}

// Template is a parsed chat template plus the values it reads besides the
// conversation. Parse once with NewTemplate and call Render for every
// conversation; Render is safe for concurrent use as long as the exported
// fields are not changed meanwhile.
type Template struct {
	// Now supplies the time for strftime_now (Llama 3.2 writes today's date
	// into the system header). Nil means time.Now; tests set a fixed time
	// so renderings are reproducible.
	Now func() time.Time
	// Vars are extra template variables, for example enable_thinking
	// (Qwen3), date_string (Llama 3.1) or tools. They override the
	// defaults, so Vars["bos_token"] replaces the configured one.
	Vars map[string]any

	src      string
	compiled *jinja.Template
	bos, eos string
}

// NewTemplate parses a Jinja chat template. cfg supplies bos_token and
// eos_token and may be nil. Syntax errors carry the template's line number
// when the parser knows it.
func NewTemplate(src string, cfg *Config) (*Template, error) {
	if strings.TrimSpace(src) == "" {
		return nil, ErrNoTemplate
	}
	c, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	t := &Template{src: src, compiled: c}
	if cfg != nil {
		t.bos, t.eos = cfg.BOS, cfg.EOS
	}
	return t, nil
}

// Rendered is a conversation rendered by a chat template.
type Rendered struct {
	// Text is the template's output, exactly as a tokenizer should see it
	// (with add_special_tokens=false: the template writes any BOS itself).
	Text string
	// Spans holds one span per message, in message order, each covering
	// where that message's content appears in Text; see Span.
	Spans []Span
	// Reasoning holds the spans of <think>…</think> reasoning that the
	// template kept in Text, one per such message, in message order.
	// Templates such as Qwen3's drop the reasoning of earlier turns, and
	// those messages have no entry here.
	Reasoning []Span
}

// Span is the position of one message's content in Rendered.Text:
// Text[Start:End] is that content as the template wrote it, which may differ
// from the message's Content by surrounding whitespace that the template
// trimmed. For content holding a "<think>…</think>" block the span covers
// only the answer after the last "</think>"; the reasoning gets its own span
// in Rendered.Reasoning. Byte offsets, End exclusive.
type Span struct {
	Message    int
	Role       string
	Start, End int
}

// Render formats msgs with the template. addGenerationPrompt asks the
// template to end with the header of a new assistant turn, as for
// generation. Besides the text, Render locates every message's content in it
// (see Span and locate.go); if some content cannot be located exactly, Render
// returns an error instead of a doubtful span.
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (*Rendered, error) {
	if len(msgs) == 0 {
		return nil, errors.New("chat: render: empty conversation")
	}
	contents := make([]string, len(msgs))
	for i, m := range msgs {
		contents[i] = m.Content
	}
	text, err := t.exec(msgs, contents, addGenerationPrompt)
	if err != nil {
		return nil, err
	}
	spans, reasoning, err := t.locate(msgs, text, addGenerationPrompt)
	if err != nil {
		return nil, fmt.Errorf("chat: locating messages in the rendered text: %w", err)
	}
	return &Rendered{Text: text, Spans: spans, Reasoning: reasoning}, nil
}

// exec runs the template on msgs with their contents replaced by contents.
func (t *Template) exec(msgs []Message, contents []string, addGenerationPrompt bool) (string, error) {
	// Build the message dicts directly, role before content, so that
	// "messages | tojson" keeps the key order Python would.
	items := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(contents[i]))
		items[i] = d
	}
	list := jinja.NewList(items)
	now := t.Now
	if now == nil {
		now = time.Now
	}
	data := map[string]any{
		"messages":              list,
		"add_generation_prompt": addGenerationPrompt,
		"tools":                 nil,
		"documents":             nil,
		"raise_exception": jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			msg := "raise_exception called"
			if len(args) > 0 {
				msg = plain(args[0])
			}
			return jinja.Undefined(), &TemplateException{Message: msg}
		}),
		"strftime_now": jinja.NewCallable("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 1 || !args[0].IsString() {
				return jinja.Undefined(), errors.New("strftime_now: want one format string")
			}
			return jinja.NewString(strftime(args[0].AsString(), now())), nil
		}),
	}
	if t.bos != "" {
		data["bos_token"] = t.bos
	}
	if t.eos != "" {
		data["eos_token"] = t.eos
	}
	for k, v := range t.Vars {
		data[k] = v
	}
	vals := make(map[string]jinja.Value, len(data))
	for k, v := range data {
		vals[k] = toValue(v)
	}
	out, err := t.compiled.RenderValues(vals)
	if err != nil {
		var te *TemplateException
		if errors.As(err, &te) {
			return "", te
		}
		return "", fmt.Errorf("chat template: %w", err)
	}
	return out, nil
}

// toValue converts a Go value for the template. jinja.Values pass through
// (FromGoValue would turn them into Undefined), and numeric kinds the library
// does not convert are widened first.
func toValue(v any) jinja.Value {
	switch x := v.(type) {
	case jinja.Value:
		return x
	case int32:
		return jinja.NewInt(int64(x))
	case uint32:
		return jinja.NewInt(int64(x))
	case float32:
		return jinja.NewFloat(float64(x))
	}
	return jinja.FromGoValue(v)
}

// plain returns a value as Jinja would print it ({{ v }}), without the
// quotes that Value.String adds to strings.
func plain(v jinja.Value) string {
	if v.IsString() {
		return v.AsString()
	}
	return v.String()
}

// strftime formats tm with a C/Python strftime format. It covers the
// directives chat templates use for dates and times; "%-d" style (no
// padding, glibc) is honoured; unknown directives are written as is.
func strftime(format string, tm time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		pad := true
		if format[i] == '-' && i+1 < len(format) {
			pad = false
			i++
		}
		num := func(n, width int) {
			s := strconv.Itoa(n)
			if pad {
				for len(s) < width {
					s = "0" + s
				}
			}
			b.WriteString(s)
		}
		switch format[i] {
		case 'a':
			b.WriteString(tm.Weekday().String()[:3])
		case 'A':
			b.WriteString(tm.Weekday().String())
		case 'b', 'h':
			b.WriteString(tm.Month().String()[:3])
		case 'B':
			b.WriteString(tm.Month().String())
		case 'd':
			num(tm.Day(), 2)
		case 'e':
			s := strconv.Itoa(tm.Day())
			if pad && len(s) < 2 {
				s = " " + s
			}
			b.WriteString(s)
		case 'H':
			num(tm.Hour(), 2)
		case 'I':
			h := tm.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'j':
			num(tm.YearDay(), 3)
		case 'm':
			num(int(tm.Month()), 2)
		case 'M':
			num(tm.Minute(), 2)
		case 'p':
			if tm.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'S':
			num(tm.Second(), 2)
		case 'y':
			num(tm.Year()%100, 2)
		case 'Y':
			b.WriteString(strconv.Itoa(tm.Year()))
		case 'Z':
			name, _ := tm.Zone()
			b.WriteString(name)
		case 'z':
			b.WriteString(tm.Format("-0700"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			if !pad {
				b.WriteByte('-')
			}
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
