// Package chat holds conversations and turns them into the exact text a chat
// model was trained on.
//
// A conversation is a list of Messages. ReadJSONL and WriteJSONL move them in
// and out of the JSON-lines format that the OpenAI and Hugging Face
// ecosystems share. A Template renders a conversation with the model's own
// Jinja chat template (the chat_template of tokenizer_config.json, loaded by
// LoadConfig) and reports, for every message, the byte span its content
// occupies in the rendered text. Those spans are what the rest of the project
// uses to average activations over exactly the assistant's response tokens, so
// Render either reports a span that is exact or fails; it never guesses.
package chat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"unicode/utf8"
)

// Role names accepted in conversations. They are the roles every mainstream
// chat template understands; anything else is almost always a typo or a
// format this package does not model (for example function-call messages).
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// validRole reports whether role is one this package accepts.
func validRole(role string) bool {
	switch role {
	case RoleSystem, RoleUser, RoleAssistant, RoleTool:
		return true
	}
	return false
}

// Message is one turn of a conversation. Content is plain text: multimodal
// content lists and tool calls are outside the scope of this project.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Chat is one conversation as read from a JSONL line. Meta keeps every other
// top-level field of the line verbatim (ids, labels, scores), so that tools
// which filter or annotate data sets can write back what they read without
// losing anything.
type Chat struct {
	Messages []Message
	Meta     map[string]json.RawMessage
}

// MarshalJSON writes the chat as one JSON object with "messages" first and
// the Meta fields after it in sorted order, so output is deterministic.
func (c Chat) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"messages":`)
	if err := encodeNoEscape(&b, c.Messages); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(c.Meta))
	for k := range c.Meta {
		if k != "messages" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(',')
		if err := encodeNoEscape(&b, k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := encodeNoEscape(&b, c.Meta[k]); err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encodeNoEscape writes v as compact JSON without HTML escaping: chat data is
// full of "<think>" and "<|im_end|>", which \u003c escapes make unreadable.
func encodeNoEscape(b *bytes.Buffer, v any) error {
	var tmp bytes.Buffer
	enc := json.NewEncoder(&tmp)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Write(bytes.TrimRight(tmp.Bytes(), "\n"))
	return nil
}

// LineError is the error ReadJSONL returns for a bad line. It carries the
// position so that callers (and people) can go straight to the culprit.
// Message is the 0-based index of the offending message, or -1 when the
// problem is with the line as a whole.
type LineError struct {
	File    string
	Line    int
	Message int
	Err     error
}

// Error formats the error as "file:line: message N: cause".
func (e *LineError) Error() string {
	if e.Message >= 0 {
		return fmt.Sprintf("%s:%d: message %d: %v", e.File, e.Line, e.Message, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

// Unwrap returns the underlying cause.
func (e *LineError) Unwrap() error { return e.Err }

// ErrEmpty is returned for input that holds no conversation at all.
var ErrEmpty = errors.New("no conversations")

// ReadJSONL reads one conversation per line, each a JSON object of the form
// {"messages":[{"role":..,"content":..}, ...], ...}. Blank lines are skipped;
// other top-level fields go to Chat.Meta; extra fields inside a message are
// ignored. name is used only in error messages, which have the form
// "chats.jsonl:17: message 2: unknown role \"robot\"" (lines count from 1,
// messages from 0, as in .messages[2]). The first error stops reading. Text
// must be valid UTF-8 (JSON decoding would silently replace bad bytes), and
// input without a single conversation is ErrEmpty.
func ReadJSONL(r io.Reader, name string) ([]Chat, error) {
	br := bufio.NewReader(r)
	var chats []Chat
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return chats, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 byte-order mark
		}
		if !utf8.Valid(line) {
			return chats, &LineError{File: name, Line: lineNo, Message: -1, Err: fmt.Errorf("invalid UTF-8 at byte %d", validPrefix(line))}
		}
		if len(bytes.TrimSpace(line)) > 0 {
			c, msgIdx, perr := parseLine(line)
			if perr != nil {
				return chats, &LineError{File: name, Line: lineNo, Message: msgIdx, Err: perr}
			}
			chats = append(chats, c)
		}
		if err == io.EOF {
			if len(chats) == 0 {
				return nil, fmt.Errorf("%s: %w (want one JSON object with \"messages\" per line)", name, ErrEmpty)
			}
			return chats, nil
		}
	}
}

// validPrefix returns the length of the longest valid UTF-8 prefix of b.
func validPrefix(b []byte) int {
	n := 0
	for n < len(b) {
		r, size := utf8.DecodeRune(b[n:])
		if r == utf8.RuneError && size <= 1 {
			return n
		}
		n += size
	}
	return n
}

// parseLine decodes one non-blank line. On error it also returns the index of
// the message at fault, or -1.
func parseLine(line []byte) (Chat, int, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil {
		return Chat{}, -1, fmt.Errorf("invalid JSON: %w", err)
	}
	if top == nil {
		return Chat{}, -1, errors.New("line is null, want a JSON object")
	}
	raw, ok := top["messages"]
	if !ok {
		return Chat{}, -1, errors.New(`missing "messages"`)
	}
	delete(top, "messages")
	var rawMsgs []json.RawMessage
	if err := json.Unmarshal(raw, &rawMsgs); err != nil {
		return Chat{}, -1, fmt.Errorf(`"messages" must be a list of objects: %w`, err)
	}
	if len(rawMsgs) == 0 {
		return Chat{}, -1, errors.New("empty conversation: no messages")
	}
	c := Chat{Messages: make([]Message, len(rawMsgs))}
	if len(top) > 0 {
		c.Meta = top
	}
	for i, rm := range rawMsgs {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(rm, &fields); err != nil || fields == nil {
			return Chat{}, i, errors.New("not a JSON object")
		}
		role, err := stringField(fields, "role")
		if err != nil {
			return Chat{}, i, err
		}
		if !validRole(role) {
			return Chat{}, i, fmt.Errorf("unknown role %q", role)
		}
		content, err := stringField(fields, "content")
		if err != nil {
			return Chat{}, i, err
		}
		c.Messages[i] = Message{Role: role, Content: content}
	}
	return c, -1, nil
}

// stringField extracts a required string field of a message object.
func stringField(fields map[string]json.RawMessage, key string) (string, error) {
	raw, ok := fields[key]
	if !ok {
		return "", fmt.Errorf("missing %q", key)
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return "", fmt.Errorf("%q must be a string, got %s", key, abbreviate(raw))
	}
	return *s, nil
}

// abbreviate shortens a raw JSON value for an error message.
func abbreviate(raw json.RawMessage) string {
	const max = 40
	s := string(bytes.TrimSpace(raw))
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// ReadJSONLFile reads a JSONL file of conversations; see ReadJSONL. Errors
// name the file by the path given.
func ReadJSONLFile(path string) ([]Chat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadJSONL(f, path)
}

// WriteJSONL writes chats one per line in the format ReadJSONL reads,
// keeping each chat's Meta fields. Output is deterministic and unescaped
// ("<" stays "<"), so files diff well.
func WriteJSONL(w io.Writer, chats []Chat) error {
	bw := bufio.NewWriter(w)
	for i, c := range chats {
		if len(c.Messages) == 0 {
			return fmt.Errorf("chat %d: empty conversation: no messages", i)
		}
		b, err := c.MarshalJSON()
		if err != nil {
			return fmt.Errorf("chat %d: %w", i, err)
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
