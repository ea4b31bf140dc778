// Package yamlstrict is the strict YAML decoding that the project's file
// formats share: fields the Go type lacks are errors, and every error names
// the file, the line and, where known, the field, as "file:line: field:
// message". What each format then checks of the decoded values stays with
// the format.
package yamlstrict

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem in a YAML file, located by file, line and field.
type Error struct {
	File  string
	Line  int    // 1-based; 0 when the problem has no line
	Field string // dotted path such as "backends[1].timeout"; may be empty
	Msg   string
}

// Error formats the problem as "file:line: field: message", leaving out the
// line and field where they are unknown.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// Root parses data into a node tree and returns the first document's top
// node, nil for an empty file (nothing but blanks and comments).
func Root(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// Decode decodes the first document of data into v, rejecting fields that
// v's type does not have. more reports whether anything follows the first
// document, and moreLine the line where it starts (0 when that is unknown);
// formats that hold one document turn it into their own error.
func Decode(data []byte, v any) (more bool, moreLine int, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return false, 0, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return true, extra.Line, nil
	}
	return false, 0, nil
}

// Located is one message of a YAML error with its line (0 if it has none).
type Located struct {
	Line int
	Msg  string
}

var lineRe = regexp.MustCompile(`^line (\d+): (.*)$`)

// Split turns a yaml.v3 error into its located messages: one for each
// problem of a type error, else one. The library's "yaml: " and "line N: "
// prefixes are taken off the message.
func Split(err error) []Located {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msgs = te.Errors
	}
	out := make([]Located, len(msgs))
	for i, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		out[i].Msg = m
		if g := lineRe.FindStringSubmatch(m); g != nil {
			out[i].Line, _ = strconv.Atoi(g[1])
			out[i].Msg = strings.TrimSpace(g[2])
		}
	}
	return out
}

// Locate is Split's first message: the line and message of a yaml.v3 error.
func Locate(err error) (line int, msg string) {
	l := Split(err)[0]
	return l.Line, l.Msg
}

// FileError is Locate's message as an *Error of file.
func FileError(file string, err error) *Error {
	line, msg := Locate(err)
	return &Error{File: file, Line: line, Msg: msg}
}

// LineOf returns the line of the node at path, a list of mapping keys and
// sequence indexes, or of its deepest ancestor that exists. In a mapping
// the key's line is the entry's.
func LineOf(n *yaml.Node, path ...string) int {
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line, next = n.Content[i].Line, n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(p); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
