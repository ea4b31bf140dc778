package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"persona/tensor"
)

// FuzzParse feeds arbitrary bytes to Parse. Whatever parses must yield
// tensors that validate and that Write can store again.
func FuzzParse(f *testing.F) {
	tmp := f.TempDir()
	path := filepath.Join(tmp, "seed.safetensors")
	ts := []tensor.Tensor{
		{Name: "a", DType: tensor.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "b", DType: tensor.F16, Shape: []int{3}, Data: make([]byte, 6)},
		{Name: "c", DType: tensor.BF16, Shape: []int{}, Data: make([]byte, 2)},
	}
	if err := Write(path, ts, map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(path)
	f.Add(seed)
	f.Add(raw(`{"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}`, 8))
	f.Add(raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}}`, 16))
	if data, err := os.ReadFile(hfModel); err == nil {
		// The header's first two entries, rewritten to a small file.
		f.Add(raw(`{"__metadata__":{"format":"pt"},"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}`, 256))
		n := binary.LittleEndian.Uint64(data)
		f.Add(data[:min(uint64(len(data)), 8+n+64)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := Parse(data, "fuzz.safetensors")
		if err != nil {
			return
		}
		var keep []tensor.Tensor
		for _, n := range sf.Names() {
			tt, err := sf.Tensor(n)
			if err != nil {
				continue
			}
			if err := tt.Validate(); err != nil {
				t.Fatalf("tensor %s parsed but does not validate: %v", n, err)
			}
			keep = append(keep, tt)
		}
		hdr, order, err := header(keep, sf.Metadata)
		if err != nil {
			t.Fatalf("parsed tensors cannot be written: %v", err)
		}
		var buf bytes.Buffer
		buf.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(hdr))))
		buf.Write(hdr)
		for _, tt := range order {
			buf.Write(tt.Data)
		}
		again, err := Parse(buf.Bytes(), "rewritten.safetensors")
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v\n%s", err, hdr)
		}
		if len(again.Names()) != len(keep) {
			t.Fatalf("rewrite kept %d of %d tensors", len(again.Names()), len(keep))
		}
	})
}
