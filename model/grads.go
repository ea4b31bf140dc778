package model

import (
	"fmt"

	"persona/tensor"
)

// Grads holds the gradient of the loss with respect to the weights, in the
// weights' own shape: each trained matrix has an F32 tensor of its shape,
// each trained vector a vector of its length, and a frozen parameter has
// none (the backward pass skips it). With tied embeddings the output head's
// gradient accumulates into Embed.
type Grads struct {
	Weights
	cfg      *Config      // the model's, which says which parameters exist
	adapters []adapterRef // adapters whose GA/GB this Grads owns
}

type adapterRef struct {
	layer, lin int
	a          *Adapter
}

// grad returns a gradient matrix's values, nil when the parameter is frozen.
func grad(t *tensor.Tensor) []float32 {
	if t.Data == nil {
		return nil
	}
	return t.F32()
}

// NewGrads allocates gradients for every parameter (full fine-tuning).
func (m *Model) NewGrads() *Grads {
	g := &Grads{Weights: Weights{Layers: make([]Layer, m.NumLayers)}, cfg: &m.Config}
	visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		w, dst := p.Tensor(), p.In(&g.Weights)
		zeros := make([]float32, w.Len())
		if t := dst.Matrix(); t != nil {
			*t = tensor.Tensor{DType: tensor.F32, Shape: w.Shape, Data: tensor.F32ToBytes(zeros)}
		} else {
			*dst.Vector() = zeros
		}
		return nil
	})
	return g
}

// NewLoRAGrads allocates gradients for the adapters only: the base model is
// frozen (its gradients are nil, so the backward pass skips them).
func (m *Model) NewLoRAGrads() (*Grads, error) {
	if m.LoRA == nil {
		return nil, fmt.Errorf("lora: the model has no adapters")
	}
	g := &Grads{Weights: Weights{Layers: make([]Layer, m.NumLayers)}, cfg: &m.Config}
	for i := range m.Layers {
		for lin, a := range m.Layers[i].LoRA {
			if a != nil {
				a.GA, a.GB = make([]float32, len(a.A)), make([]float32, len(a.B))
				g.adapters = append(g.adapters, adapterRef{i, lin, a})
			}
		}
	}
	return g, nil
}

// Zero clears every gradient.
func (g *Grads) Zero() {
	visitParams(&g.Weights, g.cfg, func(p paramRef) error { clear(p.values()); return nil })
	for _, r := range g.adapters {
		clear(r.a.GA)
		clear(r.a.GB)
	}
}

// values returns a parameter's float32 values, nil when it has none.
func (p paramRef) values() []float32 {
	if t := p.Matrix(); t != nil {
		return grad(t)
	}
	return *p.Vector()
}

// Param pairs a trainable parameter with its gradient for an optimizer.
type Param struct {
	Name  string // Hugging Face name
	W, G  []float32
	Decay bool // weight decay applies (matrices; not norms or biases)
}

// Params lists each weight that has a gradient in g, with its HF name, then
// the adapters g trains. The weights must be owned float32 (see
// TrainableF32); a frozen matrix may be stored in another type and is not
// read.
func (m *Model) Params(g *Grads) []Param {
	var out []Param
	visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		if gv := p.In(&g.Weights).values(); gv != nil {
			out = append(out, Param{Name: p.HF, W: p.values(), G: gv, Decay: p.Decay()})
		}
		return nil
	})
	for _, r := range g.adapters {
		out = append(out, Param{Name: peftName(r.layer, r.lin, "A"), W: r.a.A, G: r.a.GA, Decay: true},
			Param{Name: peftName(r.layer, r.lin, "B"), W: r.a.B, G: r.a.GB, Decay: true})
	}
	return out
}

// TrainableF32 makes every weight an owned, writable float32 value, copying
// (and widening) memory-mapped or lower-precision weights. Training needs
// it; inference never does.
func (m *Model) TrainableF32() {
	visitParams(&m.Weights, &m.Config, func(p paramRef) error {
		if t := p.Matrix(); t != nil {
			owned := append([]float32(nil), t.ToF32()...)
			t.DType, t.Data = tensor.F32, tensor.F32ToBytes(owned)
		} else if v := p.Vector(); *v != nil {
			*v = append([]float32(nil), (*v)...)
		}
		return nil
	})
	if m.TiedEmbedding {
		m.Output = m.Embed
	}
}
