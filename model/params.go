package model

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"persona/tensor"
)

// The parameters of a model are the tagged fields of Weights and Layer. The
// tags are the only list of them: loading, export, parameter counts,
// gradients, optimizer parameters and LoRA targets all walk the fields
// through visitParams, so a new weight is one struct field.
//
// Tags: hf and gguf give the tensor's name in a Hugging Face checkpoint and
// in GGUF (relative to model.layers.N. and blk.N. inside a block), and
// hfpostnorms the checkpoint name in models with post-norms, where Gemma
// calls the pre-FFN norm pre_feedforward_layernorm and gives the Llama name
// to the norm after attention; norm marks RMSNorm weights (Gemma
// checkpoints store them minus one); shape its
// dimensions in symbols of the config; when the condition under which the
// model has it (qkvbias, qknorm, untied); rope which head count's rows RoPE
// pairs up (heads or kvheads: exports permute them); lora the PEFT module
// name of a linear layer that adapters can target.

// paramField is one tagged field.
type paramField struct {
	index                 int // field index in its struct
	name                  string
	hf, gguf, shape, when string
	hfPostNorms           string
	rope, lora            string
	norm                  bool // an RMSNorm weight
	matrix                bool // a tensor.Tensor (else a []float32 vector)
}

func fieldsOf(t reflect.Type) []paramField {
	var out []paramField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("hf") == "" {
			continue
		}
		out = append(out, paramField{index: i, name: f.Name, hf: f.Tag.Get("hf"), gguf: f.Tag.Get("gguf"),
			hfPostNorms: f.Tag.Get("hfpostnorms"), shape: f.Tag.Get("shape"), when: f.Tag.Get("when"),
			rope: f.Tag.Get("rope"), lora: f.Tag.Get("lora"), norm: f.Tag.Get("norm") == "rms",
			matrix: f.Type == reflect.TypeFor[tensor.Tensor]()})
	}
	return out
}

var (
	topFields   = fieldsOf(reflect.TypeFor[Weights]())
	layerFields = fieldsOf(reflect.TypeFor[Layer]())
	// linears are the block's linear layers in LinQ … LinDown order: the
	// fields with a lora tag, in struct order.
	linears = func() (out [numLinear]paramField) {
		n := 0
		for _, f := range layerFields {
			if f.lora != "" {
				out[n] = f
				n++
			}
		}
		if n != numLinear {
			panic(fmt.Sprintf("model: %d fields tagged lora, want %d", n, numLinear))
		}
		return out
	}()
)

// paramRef is one parameter of one Weights value.
type paramRef struct {
	HF, GGUF string
	Layer    int // block index, -1 outside the blocks
	field    *paramField
	v        reflect.Value // the addressable field
}

// Matrix returns the parameter's tensor, or nil for a vector parameter.
func (p paramRef) Matrix() *tensor.Tensor {
	if !p.field.matrix {
		return nil
	}
	return p.v.Addr().Interface().(*tensor.Tensor)
}

// Vector returns the parameter's vector, or nil for a matrix parameter.
func (p paramRef) Vector() *[]float32 {
	if p.field.matrix {
		return nil
	}
	return p.v.Addr().Interface().(*[]float32)
}

// Tensor returns a tensor view of the parameter: the matrix itself, or the
// vector as a one-dimensional F32 tensor sharing its memory.
func (p paramRef) Tensor() tensor.Tensor {
	if t := p.Matrix(); t != nil {
		return *t
	}
	v := *p.Vector()
	return tensor.Tensor{DType: tensor.F32, Shape: []int{len(v)}, Data: tensor.F32ToBytes(v)}
}

// RoPEHeads is the head count whose rows RoPE pairs up (q and k weights and
// biases), else 0.
func (p paramRef) RoPEHeads(c *Config) int {
	switch p.field.rope {
	case "heads":
		return c.Heads
	case "kvheads":
		return c.KVHeads
	}
	return 0
}

// Decay says whether weight decay applies: to matrices, not to norms and
// biases.
func (p paramRef) Decay() bool { return p.field.matrix }

// hfOffset is what a Hugging Face checkpoint's value of the parameter lies
// below ours: 1 for Gemma's norm weights, else 0.
func (p paramRef) hfOffset(c *Config) float32 {
	if p.field.norm && c.gemma() {
		return 1
	}
	return 0
}

// In returns the same parameter in another Weights value of the same
// shape, such as the gradients.
func (p paramRef) In(w *Weights) paramRef {
	var s reflect.Value
	if p.Layer < 0 {
		s = reflect.ValueOf(w).Elem()
	} else {
		s = reflect.ValueOf(&w.Layers[p.Layer]).Elem()
	}
	p.v = s.Field(p.field.index)
	return p
}

// conditions says which `when` tags hold for a config.
func (c *Config) conditions() map[string]bool {
	return map[string]bool{"": true, "qkvbias": c.QKVBias, "qknorm": c.QKNorm, "untied": !c.TiedEmbedding, "postnorms": c.PostNorms}
}

// visitParams calls fn for every parameter of w that the config says the
// model has, in file order: embeddings, final norm, output head if untied,
// then each block's fields in struct order. w.Layers must already hold
// NumLayers blocks. It stops at the first error.
func visitParams(w *Weights, c *Config, fn func(paramRef) error) error {
	conds := c.conditions()
	visit := func(s reflect.Value, fields []paramField, layer int) error {
		for i := range fields {
			f := &fields[i]
			if !conds[f.when] {
				continue
			}
			p := paramRef{HF: f.hf, GGUF: f.gguf, Layer: layer, field: f, v: s.Field(f.index)}
			if c.PostNorms && f.hfPostNorms != "" {
				p.HF = f.hfPostNorms
			}
			if layer >= 0 {
				p.HF, p.GGUF = hfNames.layer(layer, p.HF), ggufNames.layer(layer, f.gguf)
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(reflect.ValueOf(w).Elem(), topFields, -1); err != nil {
		return err
	}
	for i := range w.Layers {
		if err := visit(reflect.ValueOf(&w.Layers[i]).Elem(), layerFields, i); err != nil {
			return err
		}
	}
	return nil
}

// fusion is a matrix some checkpoints store as one: Phi-3 concatenates the
// q, k and v projections, and the gate and up projections, by rows.
type fusion struct {
	parts    []string // field names, in row order
	hf, gguf string   // the stored matrix's name within a block
}

var phi3Fusions = []fusion{
	{[]string{"Q", "K", "V"}, "self_attn.qkv_proj.weight", "attn_qkv.weight"},
	{[]string{"Gate", "Up"}, "mlp.gate_up_proj.weight", "ffn_up.weight"},
}

// fusionOf returns the fusion a block parameter is stored in, if any, with
// its first row there and whether it is the fusion's last part.
func (c *Config) fusionOf(p paramRef) (f *fusion, row0 int, last bool) {
	if c.Arch != "phi3" || p.Layer < 0 {
		return nil, 0, false
	}
	for i := range phi3Fusions {
		f := &phi3Fusions[i]
		row0 = 0
		for j, part := range f.parts {
			if part == p.field.name {
				return f, row0, j == len(f.parts)-1
			}
			for _, lf := range layerFields {
				if lf.name == part {
					d, _ := c.dims(lf.shape)
					row0 += d[0]
				}
			}
		}
	}
	return nil, 0, false
}

// stored is the name and bytes a parameter has in a file of the given
// naming: its own, or, when the model stores it fused and src has the
// fused matrix, the rows of that matrix that are its part.
func (c *Config) stored(src tensorSource, p paramRef, n naming) (string, tensor.Tensor, error) {
	name := p.HF
	if n.tag == "gguf" {
		name = p.GGUF
	}
	if f, row0, _ := c.fusionOf(p); f != nil {
		fused := f.hf
		if n.tag == "gguf" {
			fused = f.gguf
		}
		fused = n.layer(p.Layer, fused)
		if src.Has(fused) {
			t, err := src.Tensor(fused)
			if err != nil {
				return fused, t, err
			}
			d, err := c.dims(p.field.shape)
			if err != nil {
				return fused, t, err
			}
			part, err := t.RowRange(row0, d[0])
			return fused, part, err
		}
	}
	if !src.Has(name) {
		return name, tensor.Tensor{}, fmt.Errorf("tensor %q is missing", name)
	}
	t, err := src.Tensor(name)
	return name, t, err
}

// fuser collects the parts of fused matrices while an export visits the
// parameters, and hands back each fused matrix when its last part arrives.
type fuser struct {
	c       *Config
	n       naming
	pending []tensor.Tensor
}

// add returns what to write for parameter p with tensor t (named as in the
// file): t itself, nothing yet (ok false), or the whole fused matrix.
func (u *fuser) add(p paramRef, t tensor.Tensor) (tensor.Tensor, bool, error) {
	f, _, last := u.c.fusionOf(p)
	if f == nil {
		return t, true, nil
	}
	u.pending = append(u.pending, t)
	if !last {
		return t, false, nil
	}
	name := f.hf
	if u.n.tag == "gguf" {
		name = f.gguf
	}
	out, err := tensor.ConcatRows(u.n.layer(p.Layer, name), u.pending...)
	u.pending = nil
	return out, true, err
}

// naming turns a field's tag into a full tensor name for one file format.
type naming struct {
	tag   string // "hf" or "gguf"
	layer func(i int, rel string) string
}

var (
	hfNames   = naming{"hf", func(i int, rel string) string { return fmt.Sprintf("model.layers.%d.%s", i, rel) }}
	ggufNames = naming{"gguf", func(i int, rel string) string { return fmt.Sprintf("blk.%d.%s", i, rel) }}
)

// tensorSource is what the binder needs from a weight file.
type tensorSource interface {
	Has(name string) bool
	Tensor(name string) (tensor.Tensor, error)
}

// bind fills m.Weights from src: every parameter the config implies must
// be present with its declared shape. Matrices stay in their stored type
// and are read in place; vectors are decoded to float32 once.
func (m *Model) bind(src tensorSource, n naming) error {
	m.Layers = make([]Layer, m.NumLayers)
	err := visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		name, t, err := m.Config.stored(src, p, n)
		if err != nil {
			return err
		}
		want, err := m.Config.dims(p.field.shape)
		if err != nil {
			return err
		}
		if !equalShape(t.Shape, want) {
			return fmt.Errorf("tensor %q: shape %v, config says %v (%s)", name, t.Shape, want, p.field.shape)
		}
		if mt := p.Matrix(); mt != nil {
			*mt = t
		} else {
			v := t.ToF32()
			if off := p.hfOffset(&m.Config); n.tag == "hf" && off != 0 {
				v = slices.Clone(v) // F32 decodes to a view of the mapping
				for i := range v {
					v[i] += off
				}
			}
			*p.Vector() = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	if m.TiedEmbedding {
		m.Output = m.Embed
	}
	return nil
}

// dims resolves a symbolic shape such as "kv,hidden" against the config.
func (c *Config) dims(shape string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(shape, ",") {
		d, ok := map[string]int{
			"hidden": c.Hidden, "ffn": c.FFN, "vocab": c.Vocab, "head": c.HeadDim,
			"q": c.Heads * c.HeadDim, "kv": c.KVHeads * c.HeadDim,
		}[s]
		if !ok {
			return nil, fmt.Errorf("model: unknown dimension %q in shape tag", s)
		}
		out = append(out, d)
	}
	return out, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
