package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"persona/internal/fileio"
	"persona/tensor"
)

// Write stores tensors (F32, F16 or BF16) and optional metadata as a
// safetensors file, atomically: into a temporary file in the same
// directory, synced, then renamed over path.
//
// The header is padded with spaces to a multiple of 8 bytes, so the data
// section starts 8-aligned. Tensors are laid out contiguously (as the
// reference implementation requires) in order of decreasing element size,
// then in the order given, so every tensor starts aligned to its own
// element size. The header always has a "__metadata__" entry.
func Write(path string, tensors []tensor.Tensor, metadata map[string]string) error {
	hdr, order, err := header(tensors, metadata)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	err = fileio.WriteAtomic(path, func(w io.Writer) error {
		if _, err := w.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, t := range order {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return nil
}

func dtypeName(d tensor.DType) (string, int, bool) {
	switch d {
	case tensor.F32:
		return "F32", 4, true
	case tensor.F16:
		return "F16", 2, true
	case tensor.BF16:
		return "BF16", 2, true
	}
	return "", 0, false
}

// header checks the tensors and builds the padded JSON header and the data
// order.
func header(tensors []tensor.Tensor, metadata map[string]string) ([]byte, []tensor.Tensor, error) {
	seen := map[string]bool{}
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" {
			return nil, nil, fmt.Errorf("invalid tensor name %q", t.Name)
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("tensor %q: given twice", t.Name)
		}
		seen[t.Name] = true
		if _, _, ok := dtypeName(t.DType); !ok {
			return nil, nil, fmt.Errorf("tensor %q: %w %v (safetensors stores F32, F16, BF16 here)", t.Name, ErrUnsupportedDType, t.DType)
		}
		if err := t.Validate(); err != nil {
			return nil, nil, err
		}
	}
	order := append([]tensor.Tensor(nil), tensors...)
	sort.SliceStable(order, func(i, j int) bool {
		_, a, _ := dtypeName(order[i].DType)
		_, b, _ := dtypeName(order[j].DType)
		return a > b
	})
	var buf bytes.Buffer
	meta, err := json.Marshal(metadata)
	if err != nil {
		return nil, nil, err
	}
	if metadata == nil {
		meta = []byte("{}")
	}
	buf.WriteString(`{"__metadata__":`)
	buf.Write(meta)
	var off uint64
	for _, t := range order {
		name, _ := json.Marshal(t.Name)
		dt, _, _ := dtypeName(t.DType)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		end := off + uint64(len(t.Data))
		fmt.Fprintf(&buf, `,%s:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, name, dt, sh, off, end)
		off = end
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	return buf.Bytes(), order, nil
}
