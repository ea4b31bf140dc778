package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"persona/internal/testref"
	"persona/vectors"
)

// Vectors saved by PyTorch the way persona-vectors and assistant-axis save
// them import with their layers translated: hidden_states row ℓ+1 and
// axis row ℓ are our layer ℓ.
func TestVectorsImport(t *testing.T) {
	py := testref.TorchPython(t)
	dir := t.TempDir()
	script := `
import json, os, sys, torch
os.chdir(sys.argv[1])
torch.manual_seed(0)
pv = torch.randn(5, 128)
torch.save(pv, "evil_response_avg_diff.pt")
ax = torch.randn(4, 128).to(torch.bfloat16)
torch.save({"axis": ax, "layers": [0, 1, 2, 3]}, "assistant_axis.pt")
torch.save(torch.randn(5, 64), "narrow.pt")
torch.save(torch.randn(7, 128), "deeper.pt")
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))
torch.save(Evil(), "evil.pt")
json.dump({"pv": pv.tolist(), "axis": ax.float().tolist()}, open("expected.json", "w"))
`
	if out, err := exec.Command(py, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("torch: %v\n%s", err, out)
	}
	var exp struct{ PV, Axis [][]float32 }
	data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file  string
		rows  [][]float32
		first int // the source row of our layer 0
	}{{"evil_response_avg_diff.pt", exp.PV, 1}, {"assistant_axis.pt", exp.Axis, 0}} {
		out := filepath.Join(dir, c.file+".safetensors")
		if _, stderr, code := run(t, "vectors", "import", filepath.Join(dir, c.file), "--model", "organism", "--out", out); code != 0 {
			t.Fatalf("import %s: exit %d: %s", c.file, code, stderr)
		}
		s, err := vectors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Layers) != 4 || s.Layers[0] != 0 || s.Layers[3] != 3 {
			t.Fatalf("%s: layers %v, want 0-3", c.file, s.Layers)
		}
		for i, l := range s.Layers {
			for j, x := range s.Vectors[i] {
				if x != c.rows[l+c.first][j] {
					t.Fatalf("%s: layer %d element %d = %g, want source row %d's %g", c.file, l, j, x, l+c.first, c.rows[l+c.first][j])
				}
			}
		}
	}
	for _, c := range []struct{ file, msg string }{
		{"narrow.pt", "wide"},
		{"deeper.pt", "7 rows"},
		{"evil.pt", "system"},
	} {
		_, stderr, code := run(t, "vectors", "import", filepath.Join(dir, c.file), "--model", "organism", "--out", filepath.Join(dir, "x.safetensors"))
		if code != exitUsage || !strings.Contains(stderr, c.msg) {
			t.Errorf("import %s: exit %d, stderr %q (want 2 and %q)", c.file, code, stderr, c.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned.txt")); err == nil {
		t.Error("the pickle's command ran")
	}
}
