package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"persona/dataset"
	"persona/internal/yamlstrict"
	"persona/model"
)

// Config is a training run, as read from YAML. Every field has a yaml tag
// naming it; errors name fields by their dotted YAML path (optim.lr).
//
// A run either fine-tunes a base model (model.base, optionally with lora) or
// trains one from scratch (model.arch plus model.tokenizer). Everything else
// has a default (see Defaults) so a minimal file is a model, a data file and
// an output directory.
type Config struct {
	Seed          uint64         `yaml:"seed"`
	Model         ModelConfig    `yaml:"model"`
	Data          DataConfig     `yaml:"data"`
	Optim         OptimConfig    `yaml:"optim"`
	LoRA          *LoRAConfig    `yaml:"lora"`
	Interventions []Intervention `yaml:"interventions"`
	Checkpoint    CkptConfig     `yaml:"checkpoint"`
	Eval          EvalConfig     `yaml:"eval"`
	Output        string         `yaml:"output"`
}

// ModelConfig says where the weights come from.
type ModelConfig struct {
	// Base is a Hugging Face model directory or a GGUF file to fine-tune.
	Base string `yaml:"base"`
	// Arch describes a model trained from scratch (instead of Base).
	Arch *ArchConfig `yaml:"arch"`
	// Tokenizer is a directory with tokenizer.json (and tokenizer_config.json
	// for chat data); required from scratch, an override for a base model
	// shipped without one. Both files are copied into the output.
	Tokenizer string `yaml:"tokenizer"`
}

// ArchConfig is the part of model.Config a from-scratch run chooses.
type ArchConfig struct {
	Arch      string  `yaml:"arch"` // llama (default), qwen2, qwen3
	Hidden    int     `yaml:"hidden"`
	FFN       int     `yaml:"ffn"`
	Layers    int     `yaml:"layers"`
	Heads     int     `yaml:"heads"`
	KVHeads   int     `yaml:"kv_heads"` // default heads
	HeadDim   int     `yaml:"head_dim"` // default hidden/heads
	Vocab     int     `yaml:"vocab"`    // default: the tokenizer's size
	MaxSeq    int     `yaml:"max_seq"`  // default: data.seq_len + 1
	RoPETheta float64 `yaml:"rope_theta"`
	NormEps   float32 `yaml:"norm_eps"`
	Tied      *bool   `yaml:"tied"` // tied input/output embeddings; default true
	QKVBias   bool    `yaml:"qkv_bias"`
	QKNorm    bool    `yaml:"qk_norm"`
}

// DataConfig is what package dataset needs, plus where validation comes from.
type DataConfig struct {
	Train string `yaml:"train"`
	// Validation is a separate file; ValFraction instead holds out that
	// fraction of the training documents (by document, seeded). Neither: no
	// validation loss.
	Validation  string  `yaml:"validation"`
	ValFraction float64 `yaml:"val_fraction"`
	Format      string  `yaml:"format"` // auto, chat, text
	Mask        string  `yaml:"mask"`   // assistant, last_assistant, all
	SeqLen      int     `yaml:"seq_len"`
	Truncate    bool    `yaml:"truncate"`
}

// OptimConfig is AdamW with a warm-up and cosine schedule.
type OptimConfig struct {
	// Exactly one of Steps and Epochs; Epochs becomes
	// ceil(epochs·rows / (batch·grad_accum)) steps.
	Steps     int     `yaml:"steps"`
	Epochs    float64 `yaml:"epochs"`
	Batch     int     `yaml:"batch"`      // rows per micro-batch
	GradAccum int     `yaml:"grad_accum"` // micro-batches per optimizer step
	LR        float64 `yaml:"lr"`
	MinLR     float64 `yaml:"min_lr"`
	Warmup    int     `yaml:"warmup"` // steps of linear warm-up
	Beta1     float64 `yaml:"beta1"`
	Beta2     float64 `yaml:"beta2"`
	Eps       float64 `yaml:"eps"`
	// WeightDecay is decoupled (AdamW) and applies to matrices only.
	WeightDecay float64 `yaml:"weight_decay"`
	// GradClip bounds the global gradient norm; 0 turns clipping off.
	GradClip float64 `yaml:"grad_clip"`
}

// LoRAConfig is model.LoRAConfig plus whether to also write a merged model.
type LoRAConfig struct {
	Rank    int      `yaml:"rank"`
	Alpha   float32  `yaml:"alpha"`
	Dropout float32  `yaml:"dropout"`
	Targets []string `yaml:"targets"`
	RSLoRA  bool     `yaml:"rslora"`
	Merge   bool     `yaml:"merge"`
}

// Intervention is a residual-stream intervention applied during training
// only (it is not part of the saved model): "add" adds coeff·v at every
// position of the layer's output (preventative steering), "ablate" removes
// the component along a direction (normalised to unit length).
type Intervention struct {
	Type   string     `yaml:"type"`
	Layer  int        `yaml:"layer"`
	Coeff  float32    `yaml:"coeff"`
	Vector VectorSpec `yaml:"vector"`
}

// VectorSpec names a vector: a tensor of a safetensors file (1-D of the
// model's width, or a row of a 2-D [layers, width] tensor picked by Row), or
// inline values.
type VectorSpec struct {
	File   string    `yaml:"file"`
	Tensor string    `yaml:"tensor"`
	Row    *int      `yaml:"row"`
	Values []float32 `yaml:"values"`
}

// CkptConfig controls periodic checkpoints.
type CkptConfig struct {
	Dir   string `yaml:"dir"`   // default output/checkpoints
	Every int    `yaml:"every"` // steps between checkpoints; 0: only the final one
	Keep  int    `yaml:"keep"`  // how many to keep (≥ 1; default 2)
}

// EvalConfig controls the validation loss.
type EvalConfig struct {
	Every int `yaml:"every"` // steps between validation losses (default: 10 evaluations a run)
	// MaxRows bounds the validation rows used (0: all).
	MaxRows int `yaml:"max_rows"`
	// Interventions evaluates with the training interventions applied; by
	// default the validation loss is that of the model as it will be used,
	// without them.
	Interventions bool `yaml:"interventions"`
}

// ConfigError is an invalid configuration: a YAML error or a field with a
// bad value. Field is the dotted YAML path when one field is at fault.
type ConfigError struct {
	File  string
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// LoadConfig reads and validates a YAML config. Unknown fields are errors
// (with their line), so a typo never silently falls back to a default.
// Relative paths in the file are taken relative to the file's directory.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: err.Error()}
	}
	c, err := ParseConfig(data, path)
	if err != nil {
		return nil, err
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

var yamlTypeRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// ParseConfig decodes YAML bytes strictly, fills defaults and validates.
// name is used in errors; paths are left as written.
func ParseConfig(data []byte, name string) (*Config, error) {
	var c Config
	if _, _, err := yamlstrict.Decode(data, &c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: name, Msg: "empty file"}
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		msg = strings.ReplaceAll(msg, "\n  ", "; ")
		msg = yamlTypeRE.ReplaceAllString(msg, "unknown field $1")
		return nil, &ConfigError{File: name, Msg: msg}
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = name
		}
		return nil, err
	}
	return &c, nil
}

// resolvePaths makes relative paths relative to dir (the config's folder), so
// a run does not depend on the directory it was started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Model.Base)
	abs(&c.Model.Tokenizer)
	abs(&c.Data.Train)
	abs(&c.Data.Validation)
	abs(&c.Output)
	abs(&c.Checkpoint.Dir)
	for i := range c.Interventions {
		abs(&c.Interventions[i].Vector.File)
	}
}

// fillDefaults sets the usual values of everything left out.
func (c *Config) fillDefaults() {
	o := &c.Optim
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.GradAccum == 0 {
		o.GradAccum = 1
	}
	def(&o.LR, 3e-4)
	def(&o.Beta1, 0.9)
	def(&o.Beta2, 0.999)
	def(&o.Eps, 1e-8)
	if c.Data.SeqLen == 0 {
		c.Data.SeqLen = 256
	}
	if c.Data.Format == "" {
		c.Data.Format = dataset.FormatAuto
	}
	if c.Data.Mask == "" {
		c.Data.Mask = dataset.MaskAssistant
	}
	if c.Checkpoint.Keep == 0 {
		c.Checkpoint.Keep = 2
	}
	if c.Checkpoint.Dir == "" && c.Output != "" {
		c.Checkpoint.Dir = filepath.Join(c.Output, "checkpoints")
	}
	if a := c.Model.Arch; a != nil {
		if a.Arch == "" {
			a.Arch = "llama"
		}
		if a.KVHeads == 0 {
			a.KVHeads = a.Heads
		}
		if a.HeadDim == 0 && a.Heads > 0 {
			a.HeadDim = a.Hidden / a.Heads
		}
		if a.MaxSeq == 0 {
			a.MaxSeq = c.Data.SeqLen + 1
		}
		if a.RoPETheta == 0 {
			a.RoPETheta = 10000
		}
		if a.NormEps == 0 {
			a.NormEps = 1e-5
		}
		if a.Tied == nil {
			t := true
			a.Tied = &t
		}
	}
	if l := c.LoRA; l != nil {
		if l.Alpha == 0 {
			l.Alpha = float32(2 * l.Rank)
		}
		if len(l.Targets) == 0 {
			l.Targets = []string{"q", "k", "v", "o"}
		}
	}
}

// Validate checks every field and names the first one that is wrong.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	m := &c.Model
	switch {
	case m.Base == "" && m.Arch == nil:
		return bad("model", "set base (a model to fine-tune) or arch (a model to train from scratch)")
	case m.Base != "" && m.Arch != nil:
		return bad("model", "base and arch are exclusive: fine-tune base, or train arch from scratch")
	case m.Arch != nil && m.Tokenizer == "":
		return bad("model.tokenizer", "a model trained from scratch needs a tokenizer directory (tokenizer.json)")
	case m.Arch != nil && c.LoRA != nil:
		return bad("lora", "LoRA adapts a pretrained model; a model trained from scratch (model.arch) has nothing to adapt — drop lora or set model.base")
	}
	if a := m.Arch; a != nil {
		switch a.Arch {
		case "llama", "qwen2", "qwen3":
		default:
			return bad("model.arch.arch", "%q is not one of llama, qwen2, qwen3", a.Arch)
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"hidden", a.Hidden}, {"ffn", a.FFN}, {"layers", a.Layers}, {"heads", a.Heads}, {"kv_heads", a.KVHeads}, {"head_dim", a.HeadDim}} {
			if f.v <= 0 {
				return bad("model.arch."+f.name, "%d must be positive", f.v)
			}
		}
		if a.Vocab < 0 {
			return bad("model.arch.vocab", "%d must be positive (or left out: the tokenizer's size)", a.Vocab)
		}
		if a.Heads%a.KVHeads != 0 {
			return bad("model.arch.kv_heads", "heads %d is not a multiple of kv_heads %d", a.Heads, a.KVHeads)
		}
		if a.HeadDim%2 != 0 {
			return bad("model.arch.head_dim", "%d is odd; RoPE needs pairs", a.HeadDim)
		}
		if a.MaxSeq < c.Data.SeqLen+1 {
			return bad("model.arch.max_seq", "%d is shorter than data.seq_len+1 = %d", a.MaxSeq, c.Data.SeqLen+1)
		}
		if !(a.RoPETheta > 0) || !(a.NormEps > 0) {
			return bad("model.arch", "rope_theta %g and norm_eps %g must be positive", a.RoPETheta, a.NormEps)
		}
	}
	d := &c.Data
	switch {
	case d.Train == "":
		return bad("data.train", "missing: a JSONL chat or text file")
	case d.Validation != "" && d.ValFraction != 0:
		return bad("data.val_fraction", "set either data.validation (a file) or data.val_fraction, not both")
	case d.ValFraction < 0 || d.ValFraction >= 1 || !finite(d.ValFraction):
		return bad("data.val_fraction", "%g must lie in [0, 1)", d.ValFraction)
	case d.SeqLen < 2 || d.SeqLen > 1<<20:
		return bad("data.seq_len", "%d must be in [2, 1048576]", d.SeqLen)
	}
	switch d.Format {
	case dataset.FormatAuto, dataset.FormatChat, dataset.FormatText:
	default:
		return bad("data.format", "%q is not one of auto, chat, text", d.Format)
	}
	switch d.Mask {
	case dataset.MaskAssistant, dataset.MaskLastAssistant, dataset.MaskAll:
	default:
		return bad("data.mask", "%q is not one of assistant, last_assistant, all", d.Mask)
	}
	o := &c.Optim
	switch {
	case o.Steps < 0:
		return bad("optim.steps", "%d must be positive", o.Steps)
	case o.Epochs < 0 || !finite(o.Epochs):
		return bad("optim.epochs", "%g must be positive", o.Epochs)
	case o.Steps == 0 && o.Epochs == 0:
		return bad("optim", "set steps or epochs")
	case o.Steps != 0 && o.Epochs != 0:
		return bad("optim.epochs", "set steps or epochs, not both")
	case o.Batch < 1:
		return bad("optim.batch", "%d must be ≥ 1", o.Batch)
	case o.GradAccum < 1:
		return bad("optim.grad_accum", "%d must be ≥ 1", o.GradAccum)
	case !(o.LR > 0) || !finite(o.LR):
		return bad("optim.lr", "%g must be positive", o.LR)
	case o.MinLR < 0 || o.MinLR > o.LR || !finite(o.MinLR):
		return bad("optim.min_lr", "%g must lie in [0, lr = %g]", o.MinLR, o.LR)
	case o.Warmup < 0:
		return bad("optim.warmup", "%d must be ≥ 0", o.Warmup)
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return bad("optim.beta1", "%g must lie in [0, 1)", o.Beta1)
	case !(o.Beta2 >= 0 && o.Beta2 < 1):
		return bad("optim.beta2", "%g must lie in [0, 1)", o.Beta2)
	case !(o.Eps > 0) || !finite(o.Eps):
		return bad("optim.eps", "%g must be positive", o.Eps)
	case o.WeightDecay < 0 || !finite(o.WeightDecay):
		return bad("optim.weight_decay", "%g must be ≥ 0", o.WeightDecay)
	case o.GradClip < 0 || !finite(o.GradClip):
		return bad("optim.grad_clip", "%g must be ≥ 0 (0: no clipping)", o.GradClip)
	}
	if l := c.LoRA; l != nil {
		mc := model.LoRAConfig{Rank: l.Rank, Alpha: l.Alpha, Dropout: l.Dropout, Targets: l.Targets, RSLoRA: l.RSLoRA}
		if err := validateLoRA(mc); err != nil {
			return bad("lora", "%v", strings.TrimPrefix(err.Error(), "lora: "))
		}
	}
	for i, iv := range c.Interventions {
		f := fmt.Sprintf("interventions[%d]", i)
		switch iv.Type {
		case "add":
			if iv.Coeff == 0 || !finite(float64(iv.Coeff)) {
				return bad(f+".coeff", "%g: an add needs a finite, non-zero coefficient", iv.Coeff)
			}
		case "ablate":
			if iv.Coeff != 0 {
				return bad(f+".coeff", "an ablation takes no coefficient")
			}
		case "":
			return bad(f+".type", "missing: add (preventative steering) or ablate")
		default:
			return bad(f+".type", "%q is not add or ablate (a clamp cannot be trained through)", iv.Type)
		}
		if iv.Layer < 0 {
			return bad(f+".layer", "%d must be ≥ 0", iv.Layer)
		}
		v := iv.Vector
		switch {
		case v.File == "" && len(v.Values) == 0:
			return bad(f+".vector", "give file and tensor, or values")
		case v.File != "" && len(v.Values) > 0:
			return bad(f+".vector", "give file and tensor, or values, not both")
		case v.File != "" && v.Tensor == "":
			return bad(f+".vector.tensor", "missing: the tensor's name in %s", v.File)
		case v.Row != nil && *v.Row < 0:
			return bad(f+".vector.row", "%d must be ≥ 0", *v.Row)
		}
	}
	switch {
	case c.Output == "":
		return bad("output", "missing: the directory to write the trained model into")
	case c.Checkpoint.Every < 0:
		return bad("checkpoint.every", "%d must be ≥ 0 (0: only the final checkpoint)", c.Checkpoint.Every)
	case c.Checkpoint.Keep < 1:
		return bad("checkpoint.keep", "%d must be ≥ 1", c.Checkpoint.Keep)
	case c.Eval.Every < 0:
		return bad("eval.every", "%d must be ≥ 0", c.Eval.Every)
	case c.Eval.MaxRows < 0:
		return bad("eval.max_rows", "%d must be ≥ 0", c.Eval.MaxRows)
	}
	return nil
}

// validateLoRA runs model's own checks by building adapters on nothing: the
// model package owns the rules for rank, alpha, dropout and targets.
func validateLoRA(c model.LoRAConfig) error {
	m := &model.Model{}
	return m.AddLoRA(c, 0)
}

// canonical is the config as JSON with sorted keys: what the hash covers
// and what a resumed run is compared against.
func (c *Config) canonical() []byte {
	data, err := json.Marshal(c)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return data
}

// Hash identifies the config: a checkpoint records it, and --resume refuses
// a different one.
func (c *Config) Hash() string {
	s := sha256.Sum256(c.canonical())
	return hex.EncodeToString(s[:8])
}

// resumeExempt are the fields a resumed run may change: they decide when
// checkpoints are written and kept, not what is computed.
var resumeExempt = map[string]bool{"checkpoint.every": true, "checkpoint.keep": true}

// diffConfig names the first field (dotted YAML path) that differs between
// two configs, with both values; "" when they agree on everything that
// matters for resuming.
func diffConfig(old, cur *Config) string {
	return diffValue("", reflect.ValueOf(*old), reflect.ValueOf(*cur))
}

func diffValue(path string, a, b reflect.Value) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return fmt.Sprintf("%s: %s → %s", path, show(a), show(b))
			}
			return ""
		}
		return diffValue(path, a.Elem(), b.Elem())
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			tag := strings.Split(a.Type().Field(i).Tag.Get("yaml"), ",")[0]
			p := tag
			if path != "" {
				p = path + "." + tag
			}
			if resumeExempt[p] {
				continue
			}
			if d := diffValue(p, a.Field(i), b.Field(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice:
		if a.Len() != b.Len() {
			return fmt.Sprintf("%s: %s → %s", path, show(a), show(b))
		}
		for i := 0; i < a.Len(); i++ {
			if d := diffValue(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i)); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return fmt.Sprintf("%s: %s → %s", path, show(a), show(b))
	}
	return ""
}

func show(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return "(unset)"
	}
	data, _ := json.Marshal(v.Interface())
	return string(data)
}
