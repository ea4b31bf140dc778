package models

import (
	"path/filepath"
	"testing"

	"persona/engine"
)

// The embedded organism materialises into the cache and loads in the engine
// with its chat template, both the post-trained model and its base.
func TestEmbeddedModelsLoad(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, name := range Names() {
		dir, err := Path(name)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Path(name)
		if err != nil || again != dir {
			t.Fatalf("second Path(%q) = %q, %v; want the cached %q", name, again, err, dir)
		}
		e, err := engine.Load(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.Template == nil {
			t.Errorf("%s: no chat template", name)
		}
		e.Close()
	}
	if p, err := Resolve("/some/dir"); err != nil || p != "/some/dir" {
		t.Fatalf("Resolve of a path: %q, %v", p, err)
	}
	if p, _ := Resolve(""); filepath.Base(filepath.Dir(p)) != "models" {
		t.Fatalf("Resolve(\"\") = %q, want the cached organism", p)
	}
	if _, err := Path("nope"); err == nil {
		t.Fatal("unknown embedded model accepted")
	}
}
