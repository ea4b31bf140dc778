package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"persona/internal/fileio"
	"persona/kernel"
	"persona/safetensors"
	"persona/tensor"
)

// The seven linear layers of a block, in the order LayerAdapters indexes them.
const (
	LinQ = iota
	LinK
	LinV
	LinO
	LinGate
	LinUp
	LinDown
	numLinear
)

// weight returns the layer's linear i (LinQ … LinDown).
func (L *Layer) weight(i int) *tensor.Tensor {
	return reflect.ValueOf(L).Elem().Field(linears[i].index).Addr().Interface().(*tensor.Tensor)
}

// LoRAConfig describes low-rank adapters (Hu et al. 2021) as PEFT does.
type LoRAConfig struct {
	Rank    int      `json:"r" yaml:"rank"`
	Alpha   float32  `json:"lora_alpha" yaml:"alpha"`
	Dropout float32  `json:"lora_dropout" yaml:"dropout"`
	Targets []string `json:"target_modules" yaml:"targets"` // q, k, v, o, gate, up, down (or PEFT's q_proj …)
	RSLoRA  bool     `json:"use_rslora" yaml:"rslora"`      // scale α/√r instead of α/r
}

// scale is the factor the low-rank update is multiplied by.
func (c LoRAConfig) scale() float32 {
	if c.RSLoRA {
		return c.Alpha / float32(math.Sqrt(float64(c.Rank)))
	}
	return c.Alpha / float32(c.Rank)
}

// targets resolves the target names to linear indices.
func (c LoRAConfig) targets() ([]int, error) {
	var out []int
	for _, t := range c.Targets {
		name := strings.TrimSuffix(t, "_proj") + "_proj"
		i := slices.IndexFunc(linears[:], func(f paramField) bool { return f.lora == name })
		if i < 0 {
			return nil, fmt.Errorf("lora: unknown target module %q (use q, k, v, o, gate, up, down)", t)
		}
		if !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lora: no target modules")
	}
	return out, nil
}

func (c LoRAConfig) validate() error {
	switch {
	case c.Rank <= 0 || c.Rank > 4096:
		return fmt.Errorf("lora: rank %d must be in [1, 4096]", c.Rank)
	case c.Alpha <= 0:
		return fmt.Errorf("lora: alpha %g must be positive", c.Alpha)
	case c.Dropout < 0 || c.Dropout >= 1:
		return fmt.Errorf("lora: dropout %g must be in [0, 1)", c.Dropout)
	}
	_, err := c.targets()
	return err
}

// Adapter is one low-rank update of a linear layer W [N, K]:
// y = x·Wᵀ + Scale·(dropout(x)·Aᵀ)·Bᵀ with A [R, K] and B [N, R].
type Adapter struct {
	A, B    []float32
	R, K, N int
	Scale   float32
	Dropout float32
	GA, GB  []float32 // gradients while training, else nil
}

// LayerAdapters holds a block's adapters, indexed by LinQ … LinDown; nil
// entries have none.
type LayerAdapters [numLinear]*Adapter

// apply adds the adapter's update for T rows of x to out (inference).
func (a *Adapter) apply(out, x []float32, T int) {
	h := make([]float32, T*a.R)
	kernel.MatMulNT(h, x, a.A, T, a.R, a.K, false)
	kernel.Scale(h, a.Scale)
	kernel.MatMulNT(out, h, a.B, T, a.N, a.R, true)
}

// AddLoRA attaches fresh adapters to the target linears of every block,
// initialised as PEFT does: A uniform in ±1/√K (Kaiming with a = √5), B zero,
// so training starts from the base model's exact function.
func (m *Model) AddLoRA(cfg LoRAConfig, seed uint64) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	targets, _ := cfg.targets()
	r := rand.New(rand.NewPCG(seed, 0x10a))
	for i := range m.Layers {
		L := &m.Layers[i]
		for _, lin := range targets {
			w := L.weight(lin)
			N, K := w.Shape[0], w.Shape[1]
			a := &Adapter{A: make([]float32, cfg.Rank*K), B: make([]float32, N*cfg.Rank), R: cfg.Rank, K: K, N: N,
				Scale: cfg.scale(), Dropout: cfg.Dropout}
			bound := 1 / math.Sqrt(float64(K))
			for j := range a.A {
				a.A[j] = float32((2*r.Float64() - 1) * bound)
			}
			L.LoRA[lin] = a
		}
	}
	m.LoRA = &cfg
	return nil
}

// MergeLoRA folds every adapter into its weight (W += Scale·B·A) and removes
// the adapters. Weights become owned float32.
func (m *Model) MergeLoRA() {
	if m.LoRA == nil {
		return
	}
	m.TrainableF32()
	for i := range m.Layers {
		L := &m.Layers[i]
		for lin, a := range L.LoRA {
			if a == nil {
				continue
			}
			ba := make([]float32, a.N*a.K)
			kernel.MatMulNN(ba, a.B, a.A, a.N, a.K, a.R, false)
			kernel.Axpy(L.weight(lin).F32(), a.Scale, ba)
			L.LoRA[lin] = nil
		}
	}
	m.LoRA = nil
}

// peftName is the tensor name PEFT gives an adapter matrix.
func peftName(layer, lin int, which string) string {
	path := strings.TrimSuffix(linears[lin].hf, ".weight")
	return fmt.Sprintf("base_model.model.model.layers.%d.%s.lora_%s.weight", layer, path, which)
}

// peftConfig is adapter_config.json as PEFT writes and reads it.
type peftConfig struct {
	PEFTType       string   `json:"peft_type"`
	TaskType       string   `json:"task_type"`
	BaseModel      string   `json:"base_model_name_or_path"`
	R              int      `json:"r"`
	Alpha          float32  `json:"lora_alpha"`
	Dropout        float32  `json:"lora_dropout"`
	TargetModules  []string `json:"target_modules"`
	Bias           string   `json:"bias"`
	FanInFanOut    bool     `json:"fan_in_fan_out"`
	UseRSLoRA      bool     `json:"use_rslora"`
	InferenceMode  bool     `json:"inference_mode"`
	LayersPattern  any      `json:"layers_pattern"`
	LayersToTransf any      `json:"layers_to_transform"`
}

// SaveLoRA writes the adapters in PEFT's layout: adapter_model.safetensors
// (lora_A [r, in], lora_B [out, r] per target) and adapter_config.json.
func (m *Model) SaveLoRA(dir, baseModel string) error {
	if m.LoRA == nil {
		return fmt.Errorf("lora: the model has no adapters")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var ts []tensor.Tensor
	var targets [numLinear]bool
	for i := range m.Layers {
		for lin, a := range m.Layers[i].LoRA {
			if a == nil {
				continue
			}
			targets[lin] = true
			ts = append(ts,
				tensor.Tensor{Name: peftName(i, lin, "A"), DType: tensor.F32, Shape: []int{a.R, a.K}, Data: tensor.F32ToBytes(a.A)},
				tensor.Tensor{Name: peftName(i, lin, "B"), DType: tensor.F32, Shape: []int{a.N, a.R}, Data: tensor.F32ToBytes(a.B)})
		}
	}
	if err := safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	cfg := peftConfig{PEFTType: "LORA", TaskType: "CAUSAL_LM", BaseModel: baseModel, R: m.LoRA.Rank, Alpha: m.LoRA.Alpha,
		Dropout: m.LoRA.Dropout, Bias: "none", UseRSLoRA: m.LoRA.RSLoRA, InferenceMode: true}
	for lin, f := range linears {
		if targets[lin] {
			cfg.TargetModules = append(cfg.TargetModules, f.lora)
		}
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fileio.WriteFileAtomic(filepath.Join(dir, "adapter_config.json"), append(data, '\n'))
}

// LoadLoRA attaches the PEFT adapters in dir (adapter_config.json and
// adapter_model.safetensors) for inference or further training.
func (m *Model) LoadLoRA(dir string) error {
	cfgPath := filepath.Join(dir, "adapter_config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	var pc peftConfig
	if err := json.Unmarshal(data, &pc); err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	if pc.PEFTType != "LORA" {
		return fmt.Errorf("%s: peft_type %q: only LORA adapters are supported", cfgPath, pc.PEFTType)
	}
	if pc.FanInFanOut {
		return fmt.Errorf("%s: fan_in_fan_out adapters (GPT-2 Conv1D) do not apply to Llama-family models", cfgPath)
	}
	cfg := LoRAConfig{Rank: pc.R, Alpha: pc.Alpha, Dropout: pc.Dropout, Targets: pc.TargetModules, RSLoRA: pc.UseRSLoRA}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return err
	}
	defer f.Close()
	targets, _ := cfg.targets()
	loaded := make([]LayerAdapters, len(m.Layers))
	for i := range m.Layers {
		for _, lin := range targets {
			w := m.Layers[i].weight(lin)
			N, K := w.Shape[0], w.Shape[1]
			a := &Adapter{R: cfg.Rank, K: K, N: N, Scale: cfg.scale(), Dropout: cfg.Dropout}
			for _, mat := range []struct {
				which string
				shape []int
				dst   *[]float32
			}{{"A", []int{cfg.Rank, K}, &a.A}, {"B", []int{N, cfg.Rank}, &a.B}} {
				name := peftName(i, lin, mat.which)
				t, err := f.Tensor(name)
				if err != nil {
					return fmt.Errorf("%s: %w", dir, err)
				}
				if !equalShape(t.Shape, mat.shape) {
					return fmt.Errorf("%s: tensor %q has shape %v, the model needs %v", dir, name, t.Shape, mat.shape)
				}
				*mat.dst = append([]float32(nil), t.ToF32()...)
			}
			loaded[i][lin] = a
		}
	}
	for i := range m.Layers {
		m.Layers[i].LoRA = loaded[i]
	}
	m.LoRA = &cfg
	return nil
}
