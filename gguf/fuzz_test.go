package gguf

import (
	"bytes"
	"os"
	"testing"

	"persona/tensor"
)

// FuzzParse feeds arbitrary bytes to Parse. Whatever parses must yield
// tensors that validate, accessors that do not panic, and a file the Writer
// can reproduce.
func FuzzParse(f *testing.F) {
	w := NewWriter()
	for _, kv := range allValues() {
		w.AddKV(kv.Key, kv.Value)
	}
	w.AddKV("general.alignment", uint32(64))
	for _, tt := range []tensor.Tensor{
		{Name: "a", DType: tensor.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "b", DType: tensor.Q8_0, Shape: []int{1, 32}, Data: make([]byte, 34)},
		{Name: "c", DType: tensor.BF16, Shape: []int{3}, Data: make([]byte, 6)},
		{Name: "d", DType: tensor.F16, Shape: []int{}, Data: make([]byte, 2)},
	} {
		w.AddTensor(tt)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(hdr(1, 1, func(e *enc) {
		e.str("k")
		e.u32(9)
		e.u32(8)
		e.u64(2)
		e.str("x")
		e.str("y")
		tinfo(e, "t", TypeQ8_0, 0, 32, 1)
	}))
	// The start of real headers (small, so that mutation and minimisation
	// stay fast): the fuzzer learns the metadata layout from them.
	for _, p := range []string{storiesV1, storiesQ8, tinyF16} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data[:1024])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data, "fuzz.gguf")
		if err != nil {
			return
		}
		for _, kv := range g.KV {
			g.Uint(kv.Key)
			g.Float(kv.Key)
			g.Int32s(kv.Key)
			g.Float32s(kv.Key)
		}
		w := NewWriter()
		for _, kv := range g.KV {
			w.AddKV(kv.Key, kv.Value)
		}
		kept := 0
		for _, ti := range g.Tensors {
			tt, err := g.Tensor(ti.Name)
			if err != nil {
				continue
			}
			if err := tt.Validate(); err != nil {
				t.Fatalf("tensor %s parsed but does not validate: %v", ti.Name, err)
			}
			if err := w.AddTensor(tt); err != nil {
				t.Fatalf("tensor %s parsed but cannot be written: %v", ti.Name, err)
			}
			kept++
		}
		var out bytes.Buffer
		if _, err := w.WriteTo(&out); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		h, err := Parse(out.Bytes(), "rewritten.gguf")
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v", err)
		}
		if len(h.KV) != len(g.KV) || len(h.Tensors) != kept {
			t.Fatalf("rewrite kept %d/%d KVs and %d/%d tensors", len(h.KV), len(g.KV), len(h.Tensors), kept)
		}
	})
}
