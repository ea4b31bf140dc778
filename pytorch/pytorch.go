// Package pytorch reads the tensors of files written by torch.save (.pt,
// .pth): the zip archive PyTorch has written since 1.6, whose data.pkl is a
// pickle describing tensors whose bytes are the archive's data/ entries.
//
// A pickle is a program: loading one with Python's pickle module runs
// whatever functions it names, which is why a .pt file from the internet is
// dangerous to torch.load. This package interprets the pickle opcodes
// itself and knows only what tensors need: dicts (plain or
// collections.OrderedDict), lists, tuples, strings, numbers, booleans,
// None, and tensors rebuilt by torch._utils._rebuild_tensor_v2 (or wrapped
// as torch.nn.Parameter) from float storages. Any other global a pickle
// names is refused with an error that names it; nothing is ever called.
// Sizes, offsets and strides are checked against the storage bytes the
// archive holds before a tensor is read.
package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"

	"persona/tensor"
)

// Tensor is a tensor read from a file, as float32 in row-major order.
type Tensor struct {
	Shape []int
	Data  []float32
	// DType is the stored type: "float32", "float16", "bfloat16" or
	// "float64".
	DType string
}

// Dict is a pickled dict, its keys in the order they were stored.
type Dict struct {
	Keys   []any
	Values []any
}

// Get returns the value stored under a string key.
func (d *Dict) Get(key string) (any, bool) {
	for i, k := range d.Keys {
		if s, ok := k.(string); ok && s == key {
			return d.Values[i], true
		}
	}
	return nil, false
}

// Tuple is a pickled tuple (a list is []any).
type Tuple []any

// ErrFormat is a file that is not a torch.save archive this package reads.
var ErrFormat = errors.New("not a readable PyTorch file")

// ErrRefused is a pickle that asks for something other than tensors and
// plain containers.
var ErrRefused = errors.New("refused")

// Open reads the file at path.
func Open(p string) (any, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	v, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return v, nil
}

// maxEntry bounds one archive entry (a storage or the pickle): 8 GiB.
const maxEntry = 8 << 30

// Parse reads a torch.save archive held in memory and returns its value: a
// *Tensor, a *Dict, a []any, a Tuple, or a plain value.
func Parse(data []byte) (any, error) {
	if len(data) >= 2 && data[0] == 0x80 {
		return nil, fmt.Errorf("%w: a legacy (pre-1.6, non-zip) torch.save file; load it in PyTorch and save it again", ErrFormat)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	var pkl *zip.File
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[f.Name] = f
		if path.Base(f.Name) == "data.pkl" && strings.Count(f.Name, "/") == 1 {
			if pkl != nil {
				return nil, fmt.Errorf("%w: two data.pkl entries", ErrFormat)
			}
			pkl = f
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("%w: no data.pkl in the archive", ErrFormat)
	}
	prog, err := readEntry(pkl)
	if err != nil {
		return nil, err
	}
	root := path.Dir(pkl.Name)
	m := &machine{prog: prog, storage: func(key string) ([]byte, error) {
		f := entries[root+"/data/"+key]
		if f == nil {
			return nil, fmt.Errorf("%w: storage %q is not in the archive", ErrFormat, key)
		}
		return readEntry(f)
	}, storages: map[string][]byte{}}
	return m.run()
}

func readEntry(f *zip.File) ([]byte, error) {
	if f.UncompressedSize64 > maxEntry {
		return nil, fmt.Errorf("%w: entry %s is %d bytes", ErrFormat, f.Name, f.UncompressedSize64)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, f.Name, err)
	}
	if uint64(len(b)) != f.UncompressedSize64 {
		return nil, fmt.Errorf("%w: %s: size differs from its header", ErrFormat, f.Name)
	}
	return b, nil
}

// global is a name a pickle loaded with GLOBAL: only those in known are
// accepted, and they are markers the machine interprets, never code.
type global struct{ module, name string }

// storageType is a storage class such as torch.FloatStorage.
type storageType struct{ dtype dtype }

// dtype is a float element type a storage holds.
type dtype struct {
	name string
	size int64
}

var (
	f32  = dtype{"float32", 4}
	f16  = dtype{"float16", 2}
	bf16 = dtype{"bfloat16", 2}
	f64  = dtype{"float64", 8}
)

// storage is a persistent reference to an archive entry.
type storage struct {
	dtype dtype
	data  []byte
}

var storageTypes = map[string]dtype{"FloatStorage": f32, "HalfStorage": f16, "BFloat16Storage": bf16, "DoubleStorage": f64}

// known lists the globals a pickle may name.
func known(g global) (any, error) {
	switch {
	case g.module == "torch._utils" && (g.name == "_rebuild_tensor_v2" || g.name == "_rebuild_parameter"):
		return g, nil
	case g.module == "collections" && g.name == "OrderedDict":
		return g, nil
	case g.module == "torch":
		if dt, ok := storageTypes[g.name]; ok {
			return storageType{dt}, nil
		}
		if strings.HasSuffix(g.name, "Storage") {
			return nil, fmt.Errorf("%w: %s.%s: only float tensors are read", ErrRefused, g.module, g.name)
		}
	}
	return nil, fmt.Errorf("%w: the pickle names %s.%s; only tensors and plain containers are read, and nothing in a file is ever run", ErrRefused, g.module, g.name)
}

// maxStack bounds the pickle machine's stack.
const maxStack = 1 << 20

type mark struct{}

// machine interprets a pickle program.
type machine struct {
	prog     []byte
	pc       int
	stack    []any
	memo     map[uint32]any
	storage  func(key string) ([]byte, error)
	storages map[string][]byte
}

func (m *machine) errf(format string, args ...any) error {
	return fmt.Errorf("%w: pickle at byte %d: %s", ErrFormat, m.pc, fmt.Sprintf(format, args...))
}

func (m *machine) take(n int) ([]byte, error) {
	if n < 0 || m.pc+n > len(m.prog) || m.pc+n < m.pc {
		return nil, m.errf("truncated")
	}
	b := m.prog[m.pc : m.pc+n]
	m.pc += n
	return b, nil
}

func (m *machine) push(v any) error {
	if len(m.stack) >= maxStack {
		return m.errf("stack too deep")
	}
	m.stack = append(m.stack, v)
	return nil
}

func (m *machine) pop() (any, error) {
	if len(m.stack) == 0 {
		return nil, m.errf("stack empty")
	}
	v := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	if _, ok := v.(mark); ok {
		return nil, m.errf("unexpected mark")
	}
	return v, nil
}

// popMark pops everything down to the topmost mark.
func (m *machine) popMark() ([]any, error) {
	for i := len(m.stack) - 1; i >= 0; i-- {
		if _, ok := m.stack[i].(mark); ok {
			items := append([]any(nil), m.stack[i+1:]...)
			m.stack = m.stack[:i]
			return items, nil
		}
	}
	return nil, m.errf("no mark")
}

func (m *machine) top() (any, error) {
	if len(m.stack) == 0 {
		return nil, m.errf("stack empty")
	}
	return m.stack[len(m.stack)-1], nil
}

func (m *machine) line() (string, error) {
	i := bytes.IndexByte(m.prog[m.pc:], '\n')
	if i < 0 || i > 256 {
		return "", m.errf("bad GLOBAL name")
	}
	s := string(m.prog[m.pc : m.pc+i])
	m.pc += i + 1
	return s, nil
}

func (m *machine) uint(n int) (uint64, error) {
	b, err := m.take(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (m *machine) run() (any, error) {
	m.memo = map[uint32]any{}
	for {
		op, err := m.take(1)
		if err != nil {
			return nil, err
		}
		switch op[0] {
		case 0x80: // PROTO
			if _, err := m.take(1); err != nil {
				return nil, err
			}
		case 0x95: // FRAME
			if _, err := m.take(8); err != nil {
				return nil, err
			}
		case '.': // STOP
			v, err := m.pop()
			if err != nil {
				return nil, err
			}
			if len(m.stack) != 0 {
				return nil, m.errf("%d values left on the stack", len(m.stack))
			}
			return v, nil
		case '(':
			err = m.push(mark{})
		case '}':
			err = m.push(&Dict{})
		case ']':
			err = m.push([]any{})
		case ')':
			err = m.push(Tuple{})
		case 'N':
			err = m.push(nil)
		case 0x88:
			err = m.push(true)
		case 0x89:
			err = m.push(false)
		case 'K':
			var v uint64
			if v, err = m.uint(1); err == nil {
				err = m.push(int64(v))
			}
		case 'M':
			var v uint64
			if v, err = m.uint(2); err == nil {
				err = m.push(int64(v))
			}
		case 'J':
			var v uint64
			if v, err = m.uint(4); err == nil {
				err = m.push(int64(int32(uint32(v))))
			}
		case 0x8a: // LONG1
			err = m.long1()
		case 'G':
			var b []byte
			if b, err = m.take(8); err == nil {
				err = m.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
			n := map[byte]int{'X': 4, 0x8c: 1, 0x8d: 8}[op[0]]
			var l uint64
			if l, err = m.uint(n); err == nil {
				var b []byte
				if l > uint64(len(m.prog)) {
					return nil, m.errf("truncated: a string of %d bytes", l)
				}
				if b, err = m.take(int(l)); err == nil {
					err = m.push(string(b))
				}
			}
		case 't':
			var items []any
			if items, err = m.popMark(); err == nil {
				err = m.push(Tuple(items))
			}
		case 0x85, 0x86, 0x87: // TUPLE1-3
			n := int(op[0] - 0x84)
			if len(m.stack) < n {
				return nil, m.errf("stack empty")
			}
			items := make(Tuple, n)
			for i := n - 1; i >= 0; i-- {
				if items[i], err = m.pop(); err != nil {
					return nil, err
				}
			}
			err = m.push(items)
		case 'q', 'r', 0x94: // BINPUT, LONG_BINPUT, MEMOIZE
			var idx uint64
			switch op[0] {
			case 'q':
				idx, err = m.uint(1)
			case 'r':
				idx, err = m.uint(4)
			default:
				idx = uint64(len(m.memo))
			}
			if err == nil {
				var v any
				if v, err = m.top(); err == nil {
					m.memo[uint32(idx)] = v
				}
			}
		case 'h', 'j': // BINGET, LONG_BINGET
			var idx uint64
			if idx, err = m.uint(map[byte]int{'h': 1, 'j': 4}[op[0]]); err == nil {
				v, ok := m.memo[uint32(idx)]
				if !ok {
					return nil, m.errf("memo %d is empty", idx)
				}
				err = m.push(v)
			}
		case 'c': // GLOBAL
			var mod, name string
			if mod, err = m.line(); err == nil {
				if name, err = m.line(); err == nil {
					var v any
					if v, err = known(global{mod, name}); err == nil {
						err = m.push(v)
					}
				}
			}
		case 0x93: // STACK_GLOBAL
			var n, mod any
			if n, err = m.pop(); err == nil {
				if mod, err = m.pop(); err == nil {
					ms, ok1 := mod.(string)
					ns, ok2 := n.(string)
					if !ok1 || !ok2 {
						return nil, m.errf("STACK_GLOBAL of non-strings")
					}
					var v any
					if v, err = known(global{ms, ns}); err == nil {
						err = m.push(v)
					}
				}
			}
		case 'Q': // BINPERSID
			var id any
			if id, err = m.pop(); err == nil {
				var s any
				if s, err = m.persistent(id); err == nil {
					err = m.push(s)
				}
			}
		case 'R': // REDUCE
			var args, fn any
			if args, err = m.pop(); err == nil {
				if fn, err = m.pop(); err == nil {
					var v any
					if v, err = m.reduce(fn, args); err == nil {
						err = m.push(v)
					}
				}
			}
		case 'b': // BUILD: only the empty state torch writes for tensors
			var state any
			if state, err = m.pop(); err == nil {
				if d, ok := state.(*Dict); !ok || len(d.Keys) != 0 {
					if state != nil {
						return nil, fmt.Errorf("%w: BUILD with object state", ErrRefused)
					}
				}
			}
		case 's', 'u': // SETITEM, SETITEMS
			var items []any
			if op[0] == 's' {
				if len(m.stack) < 3 {
					return nil, m.errf("stack empty")
				}
				items = append(items, m.stack[len(m.stack)-2:]...)
				m.stack = m.stack[:len(m.stack)-2]
			} else if items, err = m.popMark(); err != nil {
				return nil, err
			}
			if len(items)%2 != 0 {
				return nil, m.errf("odd SETITEMS")
			}
			var d any
			if d, err = m.top(); err == nil {
				dict, ok := d.(*Dict)
				if !ok {
					return nil, m.errf("SETITEM on %T", d)
				}
				for i := 0; i < len(items); i += 2 {
					switch items[i].(type) {
					case string, int64, bool, nil, float64:
					default:
						return nil, m.errf("dict key of type %T", items[i])
					}
					dict.Keys, dict.Values = append(dict.Keys, items[i]), append(dict.Values, items[i+1])
				}
			}
		case 'a', 'e': // APPEND, APPENDS
			var items []any
			if op[0] == 'a' {
				var v any
				if v, err = m.pop(); err != nil {
					return nil, err
				}
				items = []any{v}
			} else if items, err = m.popMark(); err != nil {
				return nil, err
			}
			if len(m.stack) == 0 {
				return nil, m.errf("stack empty")
			}
			l, ok := m.stack[len(m.stack)-1].([]any)
			if !ok {
				return nil, m.errf("APPEND to %T", m.stack[len(m.stack)-1])
			}
			m.stack[len(m.stack)-1] = append(l, items...)
		case '0': // POP
			_, err = m.pop()
		default:
			return nil, fmt.Errorf("%w: pickle opcode 0x%02x at byte %d is not one tensors need", ErrRefused, op[0], m.pc-1)
		}
		if err != nil {
			return nil, err
		}
	}
}

func (m *machine) long1() error {
	n, err := m.uint(1)
	if err != nil {
		return err
	}
	if n > 8 {
		return m.errf("integer of %d bytes", n)
	}
	b, err := m.take(int(n))
	if err != nil {
		return err
	}
	var v int64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | int64(b[i])
	}
	if n > 0 && n < 8 && b[n-1]&0x80 != 0 { // two's complement sign
		v -= 1 << (8 * n)
	}
	return m.push(v)
}

// persistent resolves ('storage', type, key, location, numel).
func (m *machine) persistent(id any) (any, error) {
	t, ok := id.(Tuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, m.errf("persistent id %v is not a storage", id)
	}
	st, ok := t[1].(storageType)
	key, ok2 := t[2].(string)
	if !ok || !ok2 {
		return nil, m.errf("persistent id %v is not a storage", id)
	}
	data, ok := m.storages[key]
	if !ok {
		var err error
		if data, err = m.storage(key); err != nil {
			return nil, err
		}
		m.storages[key] = data
	}
	return &storage{st.dtype, data}, nil
}

func (m *machine) reduce(fn, args any) (any, error) {
	a, ok := args.(Tuple)
	if !ok {
		return nil, m.errf("REDUCE arguments %T", args)
	}
	g, ok := fn.(global)
	if !ok {
		return nil, fmt.Errorf("%w: REDUCE of %T", ErrRefused, fn)
	}
	switch g.name {
	case "OrderedDict":
		if len(a) != 0 {
			return nil, m.errf("OrderedDict with arguments")
		}
		return &Dict{}, nil
	case "_rebuild_parameter": // (data, requires_grad, backward_hooks)
		if len(a) < 1 {
			return nil, m.errf("_rebuild_parameter without data")
		}
		t, ok := a[0].(*Tensor)
		if !ok {
			return nil, m.errf("_rebuild_parameter of %T", a[0])
		}
		return t, nil
	}
	// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
	if len(a) < 4 {
		return nil, m.errf("_rebuild_tensor_v2 with %d arguments", len(a))
	}
	st, ok := a[0].(*storage)
	offset, ok2 := a[1].(int64)
	size, ok3 := a[2].(Tuple)
	stride, ok4 := a[3].(Tuple)
	if !ok || !ok2 || !ok3 || !ok4 || len(size) != len(stride) {
		return nil, m.errf("malformed _rebuild_tensor_v2 arguments")
	}
	return rebuild(st, offset, size, stride)
}

// maxElements bounds one tensor: 2^31 elements.
const maxElements = 1 << 31

func rebuild(st *storage, offset int64, size, stride Tuple) (*Tensor, error) {
	avail := int64(len(st.data)) / st.dtype.size
	shape := make([]int, len(size))
	strides := make([]int64, len(size))
	n := int64(1)
	last := offset // the largest element index the view reaches
	for i := range size {
		d, ok := size[i].(int64)
		s, ok2 := stride[i].(int64)
		if !ok || !ok2 || d < 0 || s < 0 || d > maxElements {
			return nil, fmt.Errorf("%w: tensor dimension %v stride %v", ErrFormat, size[i], stride[i])
		}
		shape[i], strides[i] = int(d), s
		if n *= d; n > maxElements {
			return nil, fmt.Errorf("%w: tensor of more than %d elements", ErrFormat, int64(maxElements))
		}
		if d > 0 {
			if s > maxElements {
				return nil, fmt.Errorf("%w: stride %d", ErrFormat, s)
			}
			last += (d - 1) * s
		}
	}
	if offset < 0 || (n > 0 && last >= avail) || offset > avail {
		return nil, fmt.Errorf("%w: tensor reaches element %d of a storage of %d", ErrFormat, last, avail)
	}
	// A view never holds more elements than its storage (stride-0
	// broadcasts are not saved that way): this bounds what a small
	// hostile file can make us allocate.
	if n > avail {
		return nil, fmt.Errorf("%w: a tensor of %d elements on a storage of %d", ErrFormat, n, avail)
	}
	t := &Tensor{Shape: shape, Data: make([]float32, n), DType: st.dtype.name}
	idx := make([]int64, len(shape))
	for k := range t.Data {
		pos := offset
		for i, x := range idx {
			pos += x * strides[i]
		}
		t.Data[k] = element(st, pos)
		for i := len(idx) - 1; i >= 0; i-- { // next index, row-major
			if idx[i]++; idx[i] < int64(shape[i]) {
				break
			}
			idx[i] = 0
		}
	}
	return t, nil
}

func element(st *storage, i int64) float32 {
	b := st.data[i*st.dtype.size:]
	switch st.dtype {
	case f16:
		return tensor.F16ToF32(binary.LittleEndian.Uint16(b))
	case bf16:
		return math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16)
	case f64:
		return float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(b))
}
