package fileio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// entries lists a folder's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	for _, content := range []string{"first", "second"} {
		if err := WriteFileAtomic(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != content {
			t.Fatalf("read %q, want %q", got, content)
		}
	}
	// A failed write leaves the old file and no temporary behind.
	boom := errors.New("boom")
	if err := WriteAtomic(path, func(w io.Writer) error { w.Write([]byte("half")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "second" {
		t.Errorf("after a failed write the file holds %q", got)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("folder holds %v", names)
	}
}

func TestReplaceDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "model")
	fill := func(content string) func(string) error {
		return func(tmp string) error { return os.WriteFile(filepath.Join(tmp, "a"), []byte(content), 0o644) }
	}
	for _, content := range []string{"one", "two"} {
		if err := ReplaceDir(dir, fill(content)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != content {
			t.Fatalf("read %q, want %q", got, content)
		}
	}
	boom := errors.New("boom")
	if err := ReplaceDir(dir, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "two" {
		t.Errorf("after a failed fill the folder holds %q", got)
	}
	if names := entries(t, parent); len(names) != 1 || names[0] != "model" {
		t.Errorf("parent holds %v", names)
	}
}
