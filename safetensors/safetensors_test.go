package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"persona/gguf"
	"persona/internal/testref"
	"persona/tensor"
)

var (
	hfModel   = testref.Dir() + "/stories260K/hf/model.safetensors"
	storiesV3 = testref.Dir() + "/stories260K/stories260K-f32.v3.gguf"
)

func openFixture(t *testing.T) *File {
	t.Helper()
	if _, err := os.Stat(hfModel); err != nil {
		t.Fatalf("fixture missing: %v", err)
	}
	f, err := Open(hfModel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFixture(t *testing.T) {
	f := openFixture(t)
	names := f.Names()
	if len(names) != 47 {
		t.Errorf("%d tensors, want 47", len(names))
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	for _, n := range names {
		tt, err := f.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		if tt.DType != tensor.F32 {
			t.Errorf("%s: %v", n, tt.DType)
		}
	}
	emb, _ := f.Tensor("model.embed_tokens.weight")
	if !reflect.DeepEqual(emb.Shape, []int{512, 64}) {
		t.Errorf("embed shape %v", emb.Shape)
	}
}

// metaPermute reorders HF (rotate_half) q/k rows back to llama.cpp's
// interleaved-pair layout: Meta row h*hd+2j+half is HF row h*hd+half*hd/2+j.
func metaPermute(hf []byte, heads, hd, cols int) []byte {
	out := make([]byte, len(hf))
	row := 4 * cols
	for h := 0; h < heads; h++ {
		for half := 0; half < 2; half++ {
			for j := 0; j < hd/2; j++ {
				src := h*hd + half*hd/2 + j
				dst := h*hd + 2*j + half
				copy(out[dst*row:(dst+1)*row], hf[src*row:(src+1)*row])
			}
		}
	}
	return out
}

func TestAgainstGGUF(t *testing.T) {
	st := openFixture(t)
	g, err := gguf.Open(storiesV3)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	pairs := map[string]string{
		"model.embed_tokens.weight": "token_embd.weight",
		"model.norm.weight":         "output_norm.weight",
	}
	for l := 0; l < 5; l++ {
		for hf, gg := range map[string]string{
			"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
			"self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
			"mlp.gate_proj.weight": "ffn_gate.weight", "mlp.down_proj.weight": "ffn_down.weight", "mlp.up_proj.weight": "ffn_up.weight",
			"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
		} {
			pairs[fmt.Sprintf("model.layers.%d.%s", l, hf)] = fmt.Sprintf("blk.%d.%s", l, gg)
		}
	}
	for hf, gg := range pairs {
		a, err := st.Tensor(hf)
		if err != nil {
			t.Fatal(err)
		}
		b, err := g.Tensor(gg)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.Shape, b.Shape) {
			t.Errorf("%s %v vs %s %v", hf, a.Shape, gg, b.Shape)
			continue
		}
		data := a.Data
		switch {
		case strings.HasSuffix(hf, "q_proj.weight"):
			data = metaPermute(data, 8, 8, 64)
		case strings.HasSuffix(hf, "k_proj.weight"):
			data = metaPermute(data, 4, 8, 64)
		}
		if !bytes.Equal(data, b.Data) {
			t.Errorf("%s differs from %s", hf, gg)
		}
	}
}

func testTensors(t *testing.T) []tensor.Tensor {
	vals := make([]float32, 60)
	for i := range vals {
		vals[i] = float32(math.Cos(float64(i))) * 3
	}
	var out []tensor.Tensor
	for _, c := range []struct {
		name  string
		dt    tensor.DType
		shape []int
	}{
		{"h.odd", tensor.F16, []int{3}}, // 6 bytes: puts the next tensor off 4-alignment if written first
		{"w", tensor.F32, []int{3, 4, 5}},
		{"b", tensor.BF16, []int{2, 5}},
		{"s", tensor.F32, []int{}},
		{"empty", tensor.F32, []int{0, 4}},
		{"x\"quote\\名", tensor.F32, []int{1}},
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

func TestWriteRoundTrip(t *testing.T) {
	tens := testTensors(t)
	for _, meta := range []map[string]string{nil, {"format": "pt", "note": "ü \"q\""}} {
		path := filepath.Join(t.TempDir(), "rt.safetensors")
		if err := Write(path, tens, meta); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		n := binary.LittleEndian.Uint64(raw)
		if n%8 != 0 || !bytes.Contains(raw[8:8+n], []byte(`"__metadata__":{`)) {
			t.Errorf("header of %d bytes: %s", n, raw[8:8+n])
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(meta) > 0 && !reflect.DeepEqual(f.Metadata, meta) || len(meta) == 0 && len(f.Metadata) != 0 {
			t.Errorf("metadata %v, want %v", f.Metadata, meta)
		}
		if len(f.Names()) != len(tens) {
			t.Errorf("names %v", f.Names())
		}
		for _, want := range tens {
			got, err := f.Tensor(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != want.DType || !bytes.Equal(got.Data, want.Data) || len(got.Shape) != len(want.Shape) || len(want.Shape) > 0 && !reflect.DeepEqual(got.Shape, want.Shape) {
				t.Errorf("%s: got %v %v, want %v %v", want.Name, got.DType, got.Shape, want.DType, want.Shape)
			}
			_, es, _ := dtypeName(want.DType)
			if e := f.entries[want.Name]; (8+n+e.begin)%uint64(es) != 0 {
				t.Errorf("%s at file offset %d is not %d-aligned", want.Name, 8+n+e.begin, es)
			}
		}
		f.Close()
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	ok := tensor.Tensor{Name: "a", DType: tensor.F32, Shape: []int{1}, Data: make([]byte, 4)}
	tests := []struct {
		name string
		ts   []tensor.Tensor
		want string
	}{
		{"dup", []tensor.Tensor{ok, ok}, `"a": given twice`},
		{"q8", []tensor.Tensor{{Name: "q", DType: tensor.Q8_0, Shape: []int{32}, Data: make([]byte, 34)}}, "unsupported dtype Q8_0"},
		{"size", []tensor.Tensor{{Name: "q", DType: tensor.F32, Shape: []int{2}, Data: make([]byte, 4)}}, "needs 8 bytes"},
		{"metadata name", []tensor.Tensor{{Name: "__metadata__", DType: tensor.F32, Shape: []int{1}, Data: make([]byte, 4)}}, "invalid tensor name"},
	}
	for _, tc := range tests {
		err := Write(filepath.Join(dir, "x.safetensors"), tc.ts, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "no/such/dir/x.safetensors"), []tensor.Tensor{ok}, nil); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// raw builds a file from a header and n zero data bytes.
func raw(header string, n int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, n)...)
}

func TestOtherDTypes(t *testing.T) {
	data := raw(`{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"m":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]},"d":{"dtype":"F64","shape":[],"data_offsets":[19,27]}}`, 27)
	f, err := Parse(data, "mixed.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Names(), []string{"d", "ids", "m"}) {
		t.Errorf("names %v", f.Names())
	}
	for _, n := range f.Names() {
		_, err := f.Tensor(n)
		if !errors.Is(err, ErrUnsupportedDType) || !strings.Contains(err.Error(), "mixed.safetensors") || !strings.Contains(err.Error(), n) {
			t.Errorf("%s: %v", n, err)
		}
	}
	if dt, shape, ok := f.Info("ids"); dt != "I64" || !reflect.DeepEqual(shape, []int{2}) || !ok {
		t.Errorf("Info: %s %v %v", dt, shape, ok)
	}
}

func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestBadInput(t *testing.T) {
	e := func(s string) string { return `{"t":` + s + `}` }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"short", []byte{1, 2, 3}, "too short"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 1<<62), "exceeds the 100000000-byte limit"},
		{"header past EOF", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), "header length 100 exceeds the 2 bytes"},
		{"not json", raw("hello", 0), "not a JSON object"},
		{"array", raw("[1,2]", 0), "not a JSON object"},
		{"truncated json", raw(`{"t":{"dtype":"F32"`, 0), "header"},
		{"trailing", raw(`{} {}`, 0), "trailing data"},
		{"bad utf8", raw("{\"\xff\":1}", 0), "UTF-8"},
		{"duplicate", raw(`{"t":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}`, 8), `"t" appears twice`},
		{"metadata type", raw(`{"__metadata__":{"a":1}}`, 0), "__metadata__: must map strings to strings"},
		{"entry not object", raw(e(`"F32"`), 0), `tensor "t"`},
		{"missing dtype", raw(e(`{"shape":[1],"data_offsets":[0,4]}`), 4), "missing dtype"},
		{"missing shape", raw(e(`{"dtype":"F32","data_offsets":[0,4]}`), 4), "missing shape"},
		{"missing offsets", raw(e(`{"dtype":"F32","shape":[1]}`), 4), "missing data_offsets"},
		{"null entry", raw(e(`null`), 4), "missing dtype"},
		{"unknown dtype", raw(e(`{"dtype":"F4","shape":[1],"data_offsets":[0,4]}`), 4), `unknown dtype "F4"`},
		{"three offsets", raw(e(`{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}`), 8), "has 3 numbers"},
		{"backwards", raw(e(`{"dtype":"F32","shape":[0],"data_offsets":[4,0]}`), 8), "run backwards"},
		{"negative dim", raw(e(`{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}`), 4), `tensor "t"`},
		{"float dim", raw(e(`{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}`), 4), `tensor "t"`},
		{"huge dims", raw(e(`{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}`), 4), "too large"},
		{"huge dims with zero", raw(e(`{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}`), 4), "too large"},
		{"wrong size", raw(e(`{"dtype":"BF16","shape":[3,2],"data_offsets":[0,24]}`), 24), "BF16 [3 2] needs 12 bytes but data_offsets [0, 24] hold 24"},
		{"past EOF", raw(e(`{"dtype":"F32","shape":[4],"data_offsets":[0,16]}`), 12), `tensor "t": data_offsets [0, 16] run past the 12-byte data section`},
		{"huge offsets", raw(e(`{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]}`), 4), `tensor "t"`},
		{"overlap", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}}`, 16), `tensor "b": data_offsets [6, 10] overlap tensor "a"`},
		{"same range", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 16), "overlap"},
		{"deep json", raw(strings.Repeat("[", 100000), 0), "not a JSON object"},
		{"deep entry", raw(e(strings.Repeat("[", 100000)), 0), `tensor "t"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Parse(tc.data, "bad.safetensors") })
			if err == nil {
				t.Fatalf("parsed; want error containing %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "safetensors bad.safetensors: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %q", err, tc.want)
			}
			if limit := uint64(64<<10 + 40*len(tc.data)); n > limit {
				t.Errorf("allocated %d bytes on a %d-byte input", n, len(tc.data))
			}
		})
	}
}

func TestTruncations(t *testing.T) {
	data, err := os.ReadFile(hfModel)
	if err != nil {
		t.Fatal(err)
	}
	hdrEnd := 8 + int(binary.LittleEndian.Uint64(data))
	for n := 0; n < len(data); n++ {
		if n > hdrEnd && (n-hdrEnd)%997 != 0 && n != len(data)-1 {
			continue
		}
		if _, err := Parse(data[:n:n], "cut"); err == nil {
			t.Fatalf("prefix of %d bytes (of %d) parsed", n, len(data))
		}
	}
}

func TestFlippedBytes(t *testing.T) {
	data, err := os.ReadFile(hfModel)
	if err != nil {
		t.Fatal(err)
	}
	hdrEnd := 8 + int(binary.LittleEndian.Uint64(data))
	buf := make([]byte, len(data))
	failed := 0
	for i := 0; i < hdrEnd; i++ {
		copy(buf, data)
		buf[i] ^= 0x5a
		f, err := Parse(buf, "flip")
		if err != nil {
			failed++
			continue
		}
		for _, n := range f.Names() {
			if tt, err := f.Tensor(n); err == nil {
				if err := tt.Validate(); err != nil {
					t.Fatalf("flip at %d: %v", i, err)
				}
			}
		}
	}
	if failed < hdrEnd/2 {
		t.Errorf("only %d of %d corruptions detected", failed, hdrEnd)
	}
}

func writeShards(t *testing.T, dir string, index string) {
	t.Helper()
	tens := testTensors(t)
	if err := Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), tens[:3], nil); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), tens[3:], nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IndexName), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
}

const goodIndex = `{"metadata":{"total_size":123},"weight_map":{
 "h.odd":"model-00001-of-00002.safetensors","w":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",
 "s":"model-00002-of-00002.safetensors","empty":"model-00002-of-00002.safetensors","x\"quote\\名":"model-00002-of-00002.safetensors"}}`

func TestSet(t *testing.T) {
	dir := t.TempDir()
	writeShards(t, dir, goodIndex)
	s, err := OpenSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tens := testTensors(t)
	if len(s.Names()) != len(tens) {
		t.Errorf("names %v", s.Names())
	}
	for _, want := range tens {
		got, err := s.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Has(want.Name) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s differs", want.Name)
		}
	}
	if s.Has("nope") {
		t.Error("Has(nope)")
	}
	if _, err := s.Tensor("nope"); err == nil {
		t.Error("Tensor(nope) succeeded")
	}
}

func TestSetSingle(t *testing.T) {
	if _, err := os.Stat(hfModel); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(hfModel), hfModel} {
		s, err := OpenSet(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Names()) != 47 || !s.Has("model.norm.weight") {
			t.Errorf("%s: %d names", p, len(s.Names()))
		}
		s.Close()
	}
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "adapter.safetensors"), testTensors(t)[:1], nil); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSet(dir)
	if err != nil || !s.Has("h.odd") {
		t.Fatalf("single other-named file: %v", err)
	}
	s.Close()
}

func TestSetErrors(t *testing.T) {
	shard1 := "model-00001-of-00002.safetensors"
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"missing shard", func(t *testing.T, dir string) {
			writeShards(t, dir, goodIndex)
			os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		}, "shard model-00002-of-00002.safetensors named by the index is missing"},
		{"wrong shard", func(t *testing.T, dir string) {
			writeShards(t, dir, strings.Replace(goodIndex, `"s":"model-00002`, `"s":"model-00001`, 1))
		}, `tensor "s": the index places it in ` + shard1 + `, which does not hold it`},
		{"unknown tensor", func(t *testing.T, dir string) {
			writeShards(t, dir, strings.Replace(goodIndex, `"w":`, `"ghost":"`+shard1+`","w":`, 1))
		}, `tensor "ghost"`},
		{"path escape", func(t *testing.T, dir string) {
			writeShards(t, dir, `{"weight_map":{"w":"../model-00001-of-00002.safetensors"}}`)
		}, "must be a file name"},
		{"empty map", func(t *testing.T, dir string) { writeShards(t, dir, `{"weight_map":{}}`) }, "weight_map is missing or empty"},
		{"bad json", func(t *testing.T, dir string) { writeShards(t, dir, `{"weight_map":`) }, IndexName},
		{"corrupt shard", func(t *testing.T, dir string) {
			writeShards(t, dir, goodIndex)
			os.WriteFile(filepath.Join(dir, shard1), []byte("garbage!garbage"), 0o644)
		}, shard1 + ": header length"},
		{"no files", func(t *testing.T, dir string) {}, "no " + IndexName},
		{"several files", func(t *testing.T, dir string) {
			writeShards(t, dir, "")
			os.Remove(filepath.Join(dir, IndexName))
		}, "2 .safetensors files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			s, err := OpenSet(dir)
			if err == nil {
				s.Close()
				t.Fatalf("opened; want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestClose(t *testing.T) {
	f := openFixture(t)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("model.norm.weight"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Tensor after Close: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("Open of a missing file: %v", err)
	}
}
