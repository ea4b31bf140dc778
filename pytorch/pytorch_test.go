package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"persona/internal/testref"
)

// writeWithTorch runs a Python script with torch in dir; the script writes
// .pt files and expected.json ({file: [{key, shape, values}]}).
const writer = `
import json, os, sys, collections, torch
os.chdir(sys.argv[1])
exp = {}
def save(name, obj, parts):
    torch.save(obj, name)
    exp[name] = [{"key": k, "shape": list(t.shape), "values": t.float().flatten().tolist()} for k, t in parts]
t = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7
save("plain.pt", t, [("", t)])
h = torch.linspace(-2, 2, 5).to(torch.float16)
b = torch.linspace(-3, 3, 4).to(torch.bfloat16).reshape(2, 2)
save("dict.pt", {"axis": b, "n": 3, "half": h, "note": "x"}, [("axis", b), ("half", h)])
od = collections.OrderedDict([("w", torch.ones(2, 2, dtype=torch.float64) * 1.5)])
save("ordered.pt", od, [("w", od["w"])])
x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
save("transposed.pt", x.t(), [("", x.t())])
save("row.pt", x[1], [("", x[1])])
l = [torch.zeros(2), torch.full((3,), 0.25)]
save("list.pt", l, [("0", l[0]), ("1", l[1])])
p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
save("param.pt", {"p": p}, [("p", p.detach())])
# persona-vectors: hidden_states 0..L (embeddings first), one row each
pv = torch.randn(5, 8)
save("pv_response_avg_diff.pt", pv, [("", pv)])
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))
torch.save({"x": Evil()}, "evil.pt")
json.dump(exp, open("expected.json", "w"))
`

func torchFiles(t *testing.T) (string, map[string][]struct {
	Key    string
	Shape  []int
	Values []float32
}) {
	t.Helper()
	py := testref.TorchPython(t)
	dir := t.TempDir()
	if out, err := exec.Command(py, "-c", writer, dir).CombinedOutput(); err != nil {
		t.Fatalf("torch: %v\n%s", err, out)
	}
	var exp map[string][]struct {
		Key    string
		Shape  []int
		Values []float32
	}
	data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	return dir, exp
}

// lookup finds a part of a value by the key the writer gave it.
func lookup(t *testing.T, v any, key string) *Tensor {
	t.Helper()
	switch x := v.(type) {
	case *Tensor:
		if key == "" {
			return x
		}
	case *Dict:
		if e, ok := x.Get(key); ok {
			if tt, ok := e.(*Tensor); ok {
				return tt
			}
		}
	case []any:
		for i, e := range x {
			if tt, ok := e.(*Tensor); ok && key == string(rune('0'+i)) {
				return tt
			}
		}
	}
	t.Fatalf("no tensor %q in %T", key, v)
	return nil
}

// Files torch.save wrote read back to the values torch holds: float32,
// float16, bfloat16 and float64 storages, dicts, ordered dicts and lists,
// views with offsets and strides, parameters.
func TestReadsWhatTorchWrites(t *testing.T) {
	dir, exp := torchFiles(t)
	for file, parts := range exp {
		v, err := Open(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		for _, p := range parts {
			got := lookup(t, v, p.Key)
			if jsonOf(got.Shape) != jsonOf(p.Shape) {
				t.Errorf("%s %q: shape %v, want %v", file, p.Key, got.Shape, p.Shape)
			}
			if len(got.Data) != len(p.Values) {
				t.Errorf("%s %q: %d values, want %d", file, p.Key, len(got.Data), len(p.Values))
				continue
			}
			for i := range p.Values {
				if got.Data[i] != p.Values[i] {
					t.Errorf("%s %q: value %d is %g, want %g", file, p.Key, i, got.Data[i], p.Values[i])
					break
				}
			}
		}
	}
	if d, err := Open(filepath.Join(dir, "dict.pt")); err == nil {
		if n, _ := d.(*Dict).Get("n"); n != int64(3) {
			t.Errorf("dict.pt n = %v", n)
		}
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }

// A pickle that would run code when torch.load opens it is refused, naming
// what it asked for, and nothing runs.
func TestRefusesTheCodeTorchWouldRun(t *testing.T) {
	dir, _ := torchFiles(t)
	_, err := Open(filepath.Join(dir, "evil.pt"))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "system") {
		t.Errorf("err = %v, want a refusal naming os.system", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned.txt")); err == nil {
		t.Error("the pickle's command ran")
	}
}

// archive builds a torch.save-shaped zip with a hand-written pickle.
func archive(pkl []byte, storages map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("a/data.pkl")
	w.Write(pkl)
	for k, v := range storages {
		w, _ := zw.Create("a/data/" + k)
		w.Write(v)
	}
	zw.Close()
	return buf.Bytes()
}

// tensorPickle is _rebuild_tensor_v2 on FloatStorage key "0" of numel
// elements, with the given offset, size and stride (one dimension).
func tensorPickle(storageType string, numel, offset, size, stride byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n" + storageType + "\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK")
	b.Write([]byte{numel})
	b.WriteString("tQK")
	b.Write([]byte{offset})
	b.WriteString("K")
	b.Write([]byte{size})
	b.WriteString("\x85K")
	b.Write([]byte{stride})
	b.WriteString("\x85\x89ccollections\nOrderedDict\n)RtR.")
	return b.Bytes()
}

func TestRefusesHostileFiles(t *testing.T) {
	four := make([]byte, 16)
	for _, c := range []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"os.system", archive([]byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR."), nil), ErrRefused, "os.system"},
		{"builtins.eval by STACK_GLOBAL", archive([]byte("\x80\x04\x8c\x08builtins\x8c\x04eval\x93."), nil), ErrRefused, "builtins.eval"},
		{"NEWOBJ", archive([]byte("\x80\x02)\x81."), nil), ErrRefused, "opcode"},
		{"integer storage", archive(tensorPickle("IntStorage", 4, 0, 4, 1), map[string][]byte{"0": four}), ErrRefused, "IntStorage"},
		{"tensor past its storage", archive(tensorPickle("FloatStorage", 4, 2, 4, 1), map[string][]byte{"0": four}), ErrFormat, "reaches"},
		{"broadcast larger than its storage", archive(tensorPickle("FloatStorage", 4, 0, 200, 0), map[string][]byte{"0": four}), ErrFormat, "elements on a storage"},
		{"missing storage", archive(tensorPickle("FloatStorage", 4, 0, 4, 1), nil), ErrFormat, "not in the archive"},
		{"legacy format", []byte("\x80\x02\x8a\x0a"), ErrFormat, "legacy"},
		{"not a zip", []byte("hello"), ErrFormat, "zip"},
		{"no pickle", archive(nil, nil)[:0], ErrFormat, ""},
		{"truncated pickle", archive([]byte("\x80\x02X\xff\x00\x00\x00ab"), nil), ErrFormat, "truncated"},
		{"memo miss", archive([]byte("\x80\x02h\x05."), nil), ErrFormat, "memo"},
		{"stack underflow", archive([]byte("\x80\x02t."), nil), ErrFormat, "mark"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.data)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want %v with %q", err, c.want, c.msg)
			}
		})
	}
	// The hand-written tensor pickle itself is good.
	v, err := Parse(archive(tensorPickle("FloatStorage", 4, 1, 2, 2), map[string][]byte{"0": {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40}}))
	if err != nil {
		t.Fatal(err)
	}
	if tt := v.(*Tensor); len(tt.Data) != 2 || tt.Data[0] != 2 || tt.Data[1] != 4 {
		t.Errorf("view = %+v, want [2 4]", tt)
	}
}

func FuzzParse(f *testing.F) {
	four := make([]byte, 16)
	f.Add(archive(tensorPickle("FloatStorage", 4, 0, 4, 1), map[string][]byte{"0": four}))
	f.Add(archive([]byte("\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01K\x02eu."), nil))
	f.Add(archive([]byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR."), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		if err == nil && v == nil {
			// None is a valid pickle; nothing else to check.
			return
		}
		if tt, ok := v.(*Tensor); ok && err == nil {
			n := 1
			for _, d := range tt.Shape {
				n *= d
			}
			if n != len(tt.Data) {
				t.Fatalf("shape %v with %d values", tt.Shape, len(tt.Data))
			}
		}
	})
}
