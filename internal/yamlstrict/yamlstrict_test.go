package yamlstrict

import (
	"errors"
	"io"
	"testing"
)

type doc struct {
	Name  string   `yaml:"name"`
	Items []string `yaml:"items"`
}

func TestDecode(t *testing.T) {
	var d doc
	more, line, err := Decode([]byte("name: a\nitems: [x]\n"), &d)
	if err != nil || more || d.Name != "a" {
		t.Fatalf("%v %v %+v", more, err, d)
	}
	if more, line, err = Decode([]byte("name: a\n---\nname: b\n"), &d); err != nil || !more || line != 2 { // the "---"
		t.Errorf("second document: %v %d %v", more, line, err)
	}
	_, _, err = Decode([]byte("name: a\nnmae: b\n"), &d)
	if l, msg := Locate(err); l != 2 || msg != "field nmae not found in type yamlstrict.doc" {
		t.Errorf("unknown field: %d %q", l, msg)
	}
	if err := FileError("f.yaml", err); err.Error() != "f.yaml:2: field nmae not found in type yamlstrict.doc" {
		t.Errorf("file error: %v", err)
	}
	_, _, err = Decode([]byte("name: [1]\nitems: 3\n"), &d)
	if ls := Split(err); len(ls) != 2 || ls[0].Line != 1 || ls[1].Line != 2 {
		t.Errorf("two type errors: %+v", ls)
	}
	if _, _, err := Decode(nil, &d); !errors.Is(err, io.EOF) {
		t.Errorf("empty: %v", err)
	}
}

func TestRootAndLineOf(t *testing.T) {
	if n, err := Root([]byte("# nothing\n")); err != nil || n != nil {
		t.Errorf("empty: %v %v", n, err)
	}
	if _, err := Root([]byte("a: [\n")); err == nil {
		t.Error("syntax error accepted")
	} else if l, _ := Locate(err); l == 0 {
		t.Errorf("syntax error without a line: %v", err)
	}
	n, err := Root([]byte("a: 1\nlist:\n  - x: 1\n  - x: 2\n    y: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path []string
		want int
	}{{nil, 1}, {[]string{"a"}, 1}, {[]string{"list"}, 2}, {[]string{"list", "1"}, 4}, {[]string{"list", "1", "y"}, 5}, {[]string{"list", "1", "z"}, 4}, {[]string{"list", "7"}, 2}} {
		if got := LineOf(n, c.path...); got != c.want {
			t.Errorf("%v: line %d, want %d", c.path, got, c.want)
		}
	}
	if err := (&Error{File: "f", Msg: "m"}).Error(); err != "f: m" {
		t.Errorf("%q", err)
	}
}
