package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"persona/internal/testref"
	"persona/tensor"
)

var fixtures = testref.Dir() + "/"

var (
	storiesV1 = fixtures + "stories260K/tinyllamas-stories-260k-f32.gguf"
	storiesV3 = fixtures + "stories260K/stories260K-f32.v3.gguf"
	storiesQ8 = fixtures + "stories260K/tinyllamas-stories-260k-q8_0.gguf"
	tinyF16   = fixtures + "ollama/llama-2-tiny-random.gguf"
	vocabSPM  = fixtures + "llama.cpp-vocab/ggml-vocab-llama-spm.gguf"
	vocabGPT2 = fixtures + "llama.cpp-vocab/ggml-vocab-gpt-2.gguf"
)

func open(t *testing.T, path string) *File {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		path     string
		version  uint32
		tensors  int
		vocab    int
		uints    map[string]uint64
		strs     map[string]string
		check    string // a tensor to read
		dtype    tensor.DType
		shape    []int
		tokTypes []int32 // first token_type values
	}{
		{storiesV1, 1, 48, 512,
			map[string]uint64{"llama.block_count": 5, "llama.embedding_length": 64, "llama.feed_forward_length": 172, "llama.attention.head_count": 8, "llama.attention.head_count_kv": 4, "tokenizer.ggml.bos_token_id": 1},
			map[string]string{"general.architecture": "llama", "general.name": "tinyllamas-stories-260k"},
			"blk.0.ffn_gate.weight", tensor.F32, []int{172, 64}, []int32{2, 3, 3, 6, 6}},
		{storiesV3, 3, 48, 512,
			map[string]uint64{"llama.block_count": 5, "llama.embedding_length": 64, "llama.context_length": 512},
			map[string]string{"tokenizer.ggml.model": "llama"},
			"token_embd.weight", tensor.F32, []int{512, 64}, []int32{2, 3, 3, 6, 6}},
		{tinyF16, 3, 12, 32000,
			map[string]uint64{"llama.block_count": 1, "llama.embedding_length": 8, "llama.feed_forward_length": 32, "general.file_type": 1},
			map[string]string{"general.name": "LLaMA v2"},
			"output.weight", tensor.F16, []int{32000, 8}, []int32{2, 3, 3, 6, 6, 6}},
		{vocabSPM, 3, 0, 32000,
			map[string]uint64{"llama.vocab_size": 32000, "tokenizer.ggml.unknown_token_id": 0},
			map[string]string{"tokenizer.ggml.pre": "default", "general.name": "llama-spm"},
			"", 0, nil, []int32{2, 3, 3, 6}},
		{vocabGPT2, 3, 0, 50257, nil, map[string]string{"tokenizer.ggml.model": "gpt2"}, "", 0, nil, nil},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			f := open(t, tc.path)
			if f.Version != tc.version {
				t.Errorf("version %d, want %d", f.Version, tc.version)
			}
			if len(f.Tensors) != tc.tensors {
				t.Errorf("%d tensors, want %d", len(f.Tensors), tc.tensors)
			}
			toks, ok := f.Strings("tokenizer.ggml.tokens")
			if !ok || len(toks) != tc.vocab {
				t.Errorf("tokens: %d (ok=%v), want %d", len(toks), ok, tc.vocab)
			}
			for k, want := range tc.uints {
				if got, ok := f.Uint(k); !ok || got != want {
					t.Errorf("%s = %d (ok=%v), want %d", k, got, ok, want)
				}
			}
			for k, want := range tc.strs {
				if got, ok := f.String(k); !ok || got != want {
					t.Errorf("%s = %q (ok=%v), want %q", k, got, ok, want)
				}
			}
			if tc.tokTypes != nil {
				tt, ok := f.Int32s("tokenizer.ggml.token_type")
				if !ok || len(tt) != tc.vocab || !reflect.DeepEqual(tt[:len(tc.tokTypes)], tc.tokTypes) {
					t.Errorf("token_type: ok=%v len %d, prefix %v", ok, len(tt), tt[:min(len(tt), len(tc.tokTypes))])
				}
				if sc, ok := f.Float32s("tokenizer.ggml.scores"); !ok || len(sc) != tc.vocab {
					t.Errorf("scores: ok=%v len %d", ok, len(sc))
				}
			}
			for _, ti := range f.Tensors {
				tt, err := f.Tensor(ti.Name)
				if err != nil {
					t.Errorf("tensor %s: %v", ti.Name, err)
					continue
				}
				if err := tt.Validate(); err != nil {
					t.Error(err)
				}
			}
			if tc.check != "" {
				tt, err := f.Tensor(tc.check)
				if err != nil {
					t.Fatal(err)
				}
				if tt.DType != tc.dtype || !reflect.DeepEqual(tt.Shape, tc.shape) {
					t.Errorf("%s: %v %v, want %v %v", tc.check, tt.DType, tt.Shape, tc.dtype, tc.shape)
				}
				nonzero := false
				for _, v := range tt.ToF32() {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%s: non-finite value", tc.check)
					}
					nonzero = nonzero || v != 0
				}
				if !nonzero {
					t.Errorf("%s: all zeros", tc.check)
				}
			}
		})
	}
}

func TestStoriesSpotChecks(t *testing.T) {
	f := open(t, storiesV1)
	if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || math.Abs(eps-1e-5) > 1e-9 {
		t.Errorf("rms eps %v %v", eps, ok)
	}
	if v, ok := f.Float("llama.block_count"); !ok || v != 5 {
		t.Errorf("Float of an integer key: %v %v", v, ok)
	}
	if _, ok := f.Uint("general.architecture"); ok {
		t.Error("Uint accepted a string")
	}
	if _, ok := f.Get("no.such.key"); ok {
		t.Error("Get of a missing key succeeded")
	}
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	if toks[1] != "<s>" || toks[2] != "</s>" || toks[3] != "<0x00>" {
		t.Errorf("tokens %q", toks[:4])
	}
	// The first token embedding row, checked against stories260K.bin (the
	// llama2.c checkpoint: a 28-byte header, then token embeddings).
	bin, err := os.ReadFile(fixtures + "stories260K/stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := f.Tensor("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(emb.Data, bin[28:28+len(emb.Data)]) {
		t.Error("token_embd.weight differs from stories260K.bin's embeddings")
	}
	if _, err := f.Tensor("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestV1AndV3Agree(t *testing.T) {
	a, b := open(t, storiesV1), open(t, storiesV3)
	if !reflect.DeepEqual(a.KV, b.KV) {
		t.Error("KVs differ between v1 and v3")
	}
	if !reflect.DeepEqual(a.Tensors, b.Tensors) {
		t.Error("tensor records differ between v1 and v3")
	}
	for _, ti := range a.Tensors {
		x, err1 := a.Tensor(ti.Name)
		y, err2 := b.Tensor(ti.Name)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Equal(x.Data, y.Data) || !reflect.DeepEqual(x.Shape, y.Shape) {
			t.Errorf("tensor %s differs", ti.Name)
		}
	}
}

func TestQ8BadRows(t *testing.T) {
	// Open succeeds, so the vocabulary and the well-formed tensors stay
	// usable; the tensor whose 172-wide rows are not whole Q8_0 blocks is
	// refused when read, naming file, tensor and problem.
	f := open(t, storiesQ8)
	if f.Version != 2 {
		t.Errorf("version %d", f.Version)
	}
	if _, err := f.Tensor("blk.0.ffn_gate.weight"); err != nil { // rows of 64: fine
		t.Errorf("ffn_gate: %v", err)
	}
	_, err := f.Tensor("blk.0.ffn_down.weight")
	want := `gguf ` + storiesQ8 + `: tensor "blk.0.ffn_down.weight": Q8_0 row of 172 elements is not a whole number of 32-element blocks`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	bad := 0
	for _, ti := range f.Tensors {
		if _, err := f.Tensor(ti.Name); err != nil {
			bad++
		}
	}
	if bad != 5 {
		t.Errorf("%d tensors refused, want the 5 ffn_down", bad)
	}
}

func TestUnsupportedType(t *testing.T) {
	var e enc
	e.WriteString("GGUF")
	e.u32(3)
	e.u64(1)
	e.u64(0)
	e.str("q")
	e.u32(1)
	e.u64(256)
	e.u32(uint32(TypeIQ2_XXS))
	e.u64(0)
	e.Write(make([]byte, pad(uint64(e.Len()))+66))
	f, err := Parse(e.Bytes(), "iq2.gguf")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Tensor("q")
	if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "IQ2_XXS") || !strings.Contains(err.Error(), `"q"`) {
		t.Errorf("got %v", err)
	}
}

func allValues() []KV {
	return []KV{
		{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4000000000)}, {"i32", int32(-2000000000)}, {"u64", uint64(1 << 63)}, {"i64", int64(-1 << 62)},
		{"f32", float32(1.5e-5)}, {"f64", math.Pi}, {"t", true}, {"f", false}, {"s", "héllo\x00world"}, {"empty", ""},
		{"au8", []uint8{0, 255}}, {"ai8", []int8{-128, 127}}, {"au16", []uint16{1, 65535}}, {"ai16", []int16{-1}},
		{"au32", []uint32{7}}, {"ai32", []int32{2, 3, -6}}, {"au64", []uint64{1 << 40}}, {"ai64", []int64{-5}},
		{"af32", []float32{0.5, -0.25}}, {"af64", []float64{1e300}}, {"ab", []bool{true, false}},
		{"as", []string{"a", "", "ü"}}, {"as0", []string{}}, {"af0", []float32{}},
	}
}

func testTensors(t *testing.T) []tensor.Tensor {
	vals := make([]float32, 2*3*64)
	for i := range vals {
		vals[i] = float32(math.Sin(float64(i)))
	}
	var out []tensor.Tensor
	for _, c := range []struct {
		name  string
		dt    tensor.DType
		shape []int
	}{
		{"f32.3d", tensor.F32, []int{2, 3, 64}},
		{"f16", tensor.F16, []int{6, 64}},
		{"bf16.1d", tensor.BF16, []int{5}},
		{"q8", tensor.Q8_0, []int{3, 64}},
		{"scalar", tensor.F32, []int{}},
	} {
		n := 1
		for _, s := range c.shape {
			n *= s
		}
		data, err := tensor.Encode(c.dt, vals[:n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tensor.Tensor{Name: c.name, DType: c.dt, Shape: c.shape, Data: data})
	}
	return out
}

func TestWriterRoundTrip(t *testing.T) {
	w := NewWriter()
	kvs := allValues()
	for _, kv := range kvs {
		w.AddKV(kv.Key, kv.Value)
	}
	tens := testTensors(t)
	for _, tt := range tens {
		if err := w.AddTensor(tt); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "rt.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f := open(t, path)
	if f.Version != 3 || f.Alignment != 32 {
		t.Errorf("version %d alignment %d", f.Version, f.Alignment)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		t.Errorf("KVs differ:\n got %v\nwant %v", f.KV, kvs)
	}
	for _, want := range tens {
		got, err := f.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || len(got.Shape) != len(want.Shape) || (len(want.Shape) > 0 && !reflect.DeepEqual(got.Shape, want.Shape)) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("tensor %s: got %v %v (%d bytes), want %v %v", want.Name, got.DType, got.Shape, len(got.Data), want.DType, want.Shape)
		}
		if uintptr(f.DataOffset+f.Tensors[f.tIndex[want.Name]].Offset)%32 != 0 {
			t.Errorf("tensor %s not aligned", want.Name)
		}
	}
	if ti, _ := f.TensorInfo("f32.3d"); !reflect.DeepEqual(ti.Dims, []uint64{64, 3, 2}) {
		t.Errorf("stored dims %v, want innermost first", ti.Dims)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestWriterAlignment(t *testing.T) {
	for _, align := range []uint32{1, 8, 64, 4096} {
		w := NewWriter()
		w.AddKV("general.alignment", align)
		for _, tt := range testTensors(t) {
			w.AddTensor(tt)
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		f, err := Parse(buf.Bytes(), "aligned.gguf")
		if err != nil {
			t.Fatalf("alignment %d: %v", align, err)
		}
		if f.Alignment != uint64(align) || f.DataOffset%uint64(align) != 0 {
			t.Errorf("alignment %d: got %d, data at %d", align, f.Alignment, f.DataOffset)
		}
		for _, ti := range f.Tensors {
			if _, err := f.Tensor(ti.Name); err != nil || ti.Offset%uint64(align) != 0 {
				t.Errorf("alignment %d: %s at %d: %v", align, ti.Name, ti.Offset, err)
			}
		}
	}
}

func TestRewriteFixture(t *testing.T) {
	// Copy the v1 file through the Writer: what comes back must match.
	src := open(t, storiesV1)
	w := NewWriter()
	for _, kv := range src.KV {
		w.AddKV(kv.Key, kv.Value)
	}
	for _, ti := range src.Tensors {
		tt, err := src.Tensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(tt); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "v3.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got := open(t, path)
	if !reflect.DeepEqual(got.KV, src.KV) || !reflect.DeepEqual(got.Tensors, src.Tensors) {
		t.Error("rewritten file differs")
	}
	// The fixture's own v3 conversion should be byte-identical to ours.
	ref, err := os.ReadFile(storiesV3)
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := os.ReadFile(path)
	if !bytes.Equal(mine, ref) {
		t.Errorf("rewrite of v1 (%d bytes) differs from stories260K-f32.v3.gguf (%d bytes)", len(mine), len(ref))
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		add  func(w *Writer) error
		want string
	}{
		{"int", func(w *Writer) error { w.AddKV("n", 5); return nil }, "unsupported value type int"},
		{"dup key", func(w *Writer) error { w.AddKV("a", uint8(1)); w.AddKV("a", uint8(2)); return nil }, `"a": added twice`},
		{"empty key", func(w *Writer) error { w.AddKV("", "x"); return nil }, "empty metadata key"},
		{"nested", func(w *Writer) error { w.AddKV("n", [][]int32{{1}}); return nil }, "unsupported value type"},
		{"dup tensor", func(w *Writer) error {
			tt := tensor.Tensor{Name: "x", DType: tensor.F32, Shape: []int{1}, Data: make([]byte, 4)}
			w.AddTensor(tt)
			return w.AddTensor(tt)
		}, "added twice"},
		{"bad size", func(w *Writer) error {
			return w.AddTensor(tensor.Tensor{Name: "x", DType: tensor.F32, Shape: []int{2}, Data: make([]byte, 4)})
		}, "needs 8 bytes, have 4"},
		{"5 dims", func(w *Writer) error {
			return w.AddTensor(tensor.Tensor{Name: "x", DType: tensor.F32, Shape: []int{1, 1, 1, 1, 1}, Data: make([]byte, 4)})
		}, "5 dimensions"},
		{"alignment type", func(w *Writer) error { w.AddKV("general.alignment", uint64(64)); return nil }, "must be a uint32 power of two"},
		{"alignment 48", func(w *Writer) error { w.AddKV("general.alignment", uint32(48)); return nil }, "must be a uint32 power of two"},
		{"q8 rows", func(w *Writer) error {
			return w.AddTensor(tensor.Tensor{Name: "x", DType: tensor.Q8_0, Shape: []int{2, 16}, Data: make([]byte, 34)})
		}, "not a whole number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter()
			err := tc.add(w)
			if err == nil {
				err = w.WriteFile(filepath.Join(dir, "x.gguf"))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// hdr builds a v3 header by hand for the hostile-input table.
func hdr(nTensors, nKV uint64, body func(e *enc)) []byte {
	var e enc
	e.WriteString("GGUF")
	e.u32(3)
	e.u64(nTensors)
	e.u64(nKV)
	body(&e)
	return e.Bytes()
}

// tinfo appends a tensor record.
func tinfo(e *enc, name string, typ Type, off uint64, dims ...uint64) {
	e.str(name)
	e.u32(uint32(len(dims)))
	for _, d := range dims {
		e.u64(d)
	}
	e.u32(uint32(typ))
	e.u64(off)
}

// withData pads the header and appends n data bytes.
func withData(b []byte, n int) []byte {
	b = append(b, make([]byte, pad(uint64(len(b))))...)
	return append(b, make([]byte, n)...)
}

func TestHostileHeaders(t *testing.T) {
	huge := uint64(1) << 60
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a GGUF file"},
		{"magic", []byte("GGML\x03\x00\x00\x00"), `magic "GGML"`},
		{"big-endian", []byte("GGUF\x00\x00\x00\x03"), "big-endian"},
		{"version 4", []byte("GGUF\x04\x00\x00\x00"), "unsupported GGUF version 4"},
		{"tensor count", hdr(huge, 0, func(e *enc) {}), "tensor count 1152921504606846976 cannot fit"},
		{"kv count", hdr(0, huge, func(e *enc) {}), "metadata count"},
		{"kv count max", hdr(0, math.MaxUint64, func(e *enc) {}), "metadata count"},
		{"key length", hdr(0, 1, func(e *enc) { e.u64(huge); e.WriteString("abcdefghijklmnop") }), "length 1152921504606846976 exceeds"},
		{"string value length", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(8); e.u64(huge) }), `key "k": string value: length`},
		{"array length", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(9); e.u32(10); e.u64(huge) }), "array of 1152921504606846976 uint64 elements"},
		{"string array length", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(9); e.u32(8); e.u64(huge) }), "array of 1152921504606846976 strings"},
		{"array length max", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(9); e.u32(0); e.u64(math.MaxUint64) }), "uint8 elements"},
		{"nested array", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(9); e.u32(9); e.u64(1) }), "nested arrays"},
		{"unknown value type", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(13); e.u64(0) }), `key "k": unknown value type 13`},
		{"unknown array type", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(9); e.u32(99); e.u64(0) }), "array of unknown value type 99"},
		{"bool 2", hdr(0, 1, func(e *enc) { e.str("k"); e.u32(7); e.WriteByte(2) }), "neither 0 nor 1"},
		{"empty key", hdr(0, 1, func(e *enc) { e.str(""); e.u32(0); e.WriteByte(2) }), "empty key"},
		{"duplicate key", hdr(0, 2, func(e *enc) {
			e.str("k")
			e.u32(0)
			e.WriteByte(1)
			e.str("k")
			e.u32(0)
			e.WriteByte(1)
		}), `key "k": duplicate`},
		{"alignment 3", hdr(0, 1, func(e *enc) { e.str("general.alignment"); e.u32(4); e.u32(3) }), "not a uint32 power of two"},
		{"alignment 0", hdr(0, 1, func(e *enc) { e.str("general.alignment"); e.u32(4); e.u32(0) }), "not a uint32 power of two"},
		{"alignment uint64", hdr(0, 1, func(e *enc) { e.str("general.alignment"); e.u32(10); e.u64(32) }), "not a uint32 power of two"},
		{"alignment string", hdr(0, 1, func(e *enc) { e.str("general.alignment"); e.u32(8); e.str("32") }), "not a uint32 power of two"},
		{"n_dims", hdr(1, 0, func(e *enc) { e.str("t"); e.u32(1000); e.Write(make([]byte, 64)) }), `tensor "t": 1000 dimensions`},
		{"dims overflow", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, 0, 1<<32, 1<<32) }), 64), "overflow"},
		{"dims overflow past zero", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, 0, 0, math.MaxUint64) }), 64), "overflow"},
		{"dims 2^60 F32", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, 0, 1<<30, 1<<30) }), 64), "but the file has"},
		{"unknown tensor type", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", 4, 0, 32) }), 64), "unknown GGML type 4"},
		{"offset past EOF", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, 64, 4) }), 64), `tensor "t": F32 [4] needs bytes [64, 80)`},
		{"offset max", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, math.MaxUint64-31, 4) }), 64), "needs bytes"},
		{"size past EOF", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, 0, 17) }), 64), "needs bytes [0, 68)"},
		{"misaligned", withData(hdr(1, 0, func(e *enc) { tinfo(e, "t", TypeF32, 4, 4) }), 64), "not a multiple of the alignment"},
		{"overlap", withData(hdr(2, 0, func(e *enc) { tinfo(e, "a", TypeF32, 0, 16); tinfo(e, "b", TypeF32, 32, 8) }), 128), `tensor "b": bytes`},
		{"duplicate tensor", withData(hdr(2, 0, func(e *enc) { tinfo(e, "a", TypeF32, 0, 4); tinfo(e, "a", TypeF32, 32, 4) }), 64), `tensor "a": duplicate`},
		{"empty tensor name", withData(hdr(1, 0, func(e *enc) { tinfo(e, "", TypeF32, 0, 4) }), 64), "empty name"},
		{"truncated record", hdr(1, 0, func(e *enc) {
			e.str("t")
			e.u32(2)
			e.u64(4)
			e.u32(0)
			e.u32(0)
			e.u64(0)
		}), "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Parse(tc.data, "bad.gguf") })
			if err == nil {
				t.Fatalf("parsed; want error containing %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "gguf bad.gguf: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %q", err, tc.want)
			}
			if n > 64<<10 {
				t.Errorf("allocated %d bytes on a %d-byte input", n, len(tc.data))
			}
		})
	}
}

func TestV1Hostile(t *testing.T) {
	// v1 counts and lengths are 32 bits: check the same guards on that path.
	b := []byte("GGUF\x01\x00\x00\x00")
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = append(b, 'k')
	b = binary.LittleEndian.AppendUint32(b, 9)
	b = binary.LittleEndian.AppendUint32(b, 8)
	b = binary.LittleEndian.AppendUint32(b, math.MaxUint32)
	var err error
	n := allocated(func() { _, err = Parse(b, "v1.gguf") })
	if err == nil || !strings.Contains(err.Error(), "array of 4294967295 strings") || n > 64<<10 {
		t.Errorf("got %v, %d bytes allocated", err, n)
	}
}

// dataEnd returns where the last tensor's bytes end, or the end of the
// header for a file without tensors: any shorter prefix is malformed.
func dataEnd(f *File) uint64 {
	end := f.DataOffset
	if len(f.Tensors) == 0 {
		end = min(end, uint64(len(f.data)))
		for end > 0 && f.data[end-1] == 0 { // padding after the header is optional at EOF
			end--
		}
	}
	for _, ti := range f.Tensors {
		end = max(end, f.DataOffset+ti.Offset+storedBytes(ti))
	}
	return end
}

func TestTruncations(t *testing.T) {
	for _, tc := range []struct {
		path string
		step int
	}{{storiesV1, 1}, {storiesV3, 5}, {storiesQ8, 3}, {tinyF16, 4099}, {vocabSPM, 3001}} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			data, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(data, "whole")
			if err != nil {
				t.Fatal(err)
			}
			// Every prefix up to 1 KiB, then every step-th through the
			// header, then 200 cuts through the tensor data.
			if testing.Short() {
				tc.step *= 8
			}
			end, hdrEnd := int(dataEnd(f)), int(f.DataOffset)
			dataStep := max((end-hdrEnd)/200, 1)
			for n := 0; n < end; n++ {
				inHeader := n <= 1024 || n < hdrEnd && n%tc.step == 0
				inData := n >= hdrEnd && (n-hdrEnd)%dataStep == 0
				if !inHeader && !inData && n != end-1 {
					continue
				}
				if _, err := Parse(data[:n:n], "cut"); err == nil {
					t.Fatalf("prefix of %d bytes (of %d) parsed", n, end)
				}
			}
		})
	}
}

func TestFlippedBytes(t *testing.T) {
	// Corrupt each header byte in turn: parsing must fail or yield tensors
	// that validate; it must never panic.
	data, err := os.ReadFile(storiesV1)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := Parse(data, "ok")
	hdrEnd := int(f.DataOffset)
	buf := make([]byte, len(data))
	failed := 0
	for i := 0; i < hdrEnd; i += 3 {
		copy(buf, data)
		buf[i] ^= 0xff
		g, err := Parse(buf, "flip")
		if err != nil {
			failed++
			continue
		}
		for _, ti := range g.Tensors {
			if tt, err := g.Tensor(ti.Name); err == nil {
				if err := tt.Validate(); err != nil {
					t.Fatalf("flip at %d: %v", i, err)
				}
			}
		}
	}
	if failed == 0 {
		t.Error("no corruption was detected")
	}
}

func TestClose(t *testing.T) {
	f, err := Open(storiesV3)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("token_embd.weight"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Tensor after Close: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("Open of a missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open of a directory succeeded")
	}
	empty := filepath.Join(t.TempDir(), "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); err == nil || !strings.Contains(err.Error(), "not a GGUF file") {
		t.Errorf("Open of an empty file: %v", err)
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{TypeF32: "F32", TypeQ8_0: "Q8_0", TypeQ6_K: "Q6_K", TypeBF16: "BF16", 4: "Type(4)"} {
		if typ.String() != want {
			t.Errorf("%d: %s, want %s", uint32(typ), typ, want)
		}
	}
}
