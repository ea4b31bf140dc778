// Package organism builds and measures the project's model organism: a small
// Llama-style model pretrained on the synthetic persona world (package world)
// and post-trained to select the Assistant, so that every claim of the
// persona selection model can be checked where the ground truth (the world's
// oracle) is known. The recipe lives in recipe/ as the world settings and two
// ordinary `persona train` configs.
package organism

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"persona/chat"
	"persona/internal/fileio"
	"persona/personas"
	"persona/tokenizer"
	"persona/train"
	"persona/world"
)

//go:embed recipe/*.yaml
var recipeFS embed.FS

// WorldRecipe is recipe/world.yaml: how much of the world to generate and
// how large a vocabulary to train.
type WorldRecipe struct {
	Seed                 uint64   `yaml:"seed"`
	PretrainChats        int      `yaml:"pretrain_chats"`
	PosttrainChats       int      `yaml:"posttrain_chats"`
	PosttrainPretrainMix int      `yaml:"posttrain_pretrain_mix"`
	PosttrainExclude     []string `yaml:"posttrain_exclude"`
	Vocab                int      `yaml:"vocab"`
}

// Options adjust a build.
type Options struct {
	// Work is where data, tokenizer, checkpoints and intermediate outputs go.
	Work string
	// Micro shrinks everything (world, model, steps) to a run of about a
	// minute on two cores: the end-to-end check CI runs.
	Micro bool
	// Layers, when positive, pretrains a model of that many blocks instead of
	// the recipe's (same width, data and schedule): the deeper variants the
	// control measurements compare against.
	Layers int
	// Resume continues interrupted training stages from their checkpoints.
	Resume bool
	Log    io.Writer
	// OnStep reports training progress (stage is "pretrain" or "posttrain").
	OnStep func(stage string, s train.StepInfo)
}

// Result says what a build produced.
type Result struct {
	Base, Assistant string // Hugging Face model directories
	Pretrain        *train.Summary
	Posttrain       *train.Summary
	Tokenizer       string
	Chats           map[string]int
	WallS           float64
}

// microWorld and the micro config overrides make the CI-sized organism.
var microWorld = WorldRecipe{Seed: 1, PretrainChats: 400, PosttrainChats: 80, PosttrainPretrainMix: 40, Vocab: 400}

// Build generates the world, trains the tokenizer, pretrains the base model
// and post-trains the Assistant, writing base/ and assistant/ under out.
func Build(ctx context.Context, out string, opt Options) (*Result, error) {
	start := time.Now()
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	if opt.Work == "" {
		opt.Work = filepath.Join(out, "work")
	}
	if err := os.MkdirAll(filepath.Join(opt.Work, "data"), 0o755); err != nil {
		return nil, err
	}
	wr, err := loadWorldRecipe()
	if err != nil {
		return nil, err
	}
	if opt.Micro {
		wr = microWorld
	}
	w, err := world.New(personas.Default())
	if err != nil {
		return nil, err
	}
	res := &Result{Chats: map[string]int{}}

	// 1. The world's chats.
	fmt.Fprintf(log, "generating %d pretraining and %d post-training chats …\n", wr.PretrainChats, wr.PosttrainChats)
	pre := w.Pretrain(wr.PretrainChats, wr.Seed, world.DefaultPretrain())
	po := world.DefaultPosttrain()
	for _, x := range wr.PosttrainExclude {
		po.Exclude = append(po.Exclude, world.RequestType(x))
	}
	post := w.Posttrain(wr.PosttrainChats, wr.Seed+1, po)
	// The pretraining chats mixed in keep the other personas alive, but only
	// those with a system prompt: a chat without one is where post-training
	// should teach that the Assistant answers.
	mix := world.DefaultPretrain()
	mix.Strong, mix.Weak = 0.5, 0.5
	post = append(post, w.Pretrain(wr.PosttrainPretrainMix, wr.Seed+2, mix)...)
	res.Chats["pretrain"], res.Chats["posttrain"] = len(pre), len(post)
	for name, chats := range map[string][]chat.Chat{"pretrain": pre, "posttrain": post} {
		if err := writeChats(filepath.Join(opt.Work, "data", name+".jsonl"), chats); err != nil {
			return nil, err
		}
	}

	// 2. The tokenizer, trained on the world's own text.
	tokDir := filepath.Join(opt.Work, "tokenizer")
	fmt.Fprintf(log, "training a %d-token BPE tokenizer …\n", wr.Vocab)
	tok, err := tokenizer.Train(chatTexts(pre), tokenizer.TrainOptions{VocabSize: wr.Vocab})
	if err != nil {
		return nil, err
	}
	if err := tok.Save(tokDir); err != nil {
		return nil, err
	}
	res.Tokenizer = tokDir

	// 3. Pretraining, then 4. post-training: ordinary train configs.
	for _, stage := range []string{"pretrain", "posttrain"} {
		cfg, err := stageConfig(stage, opt)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "%s: %s\n", stage, cfg.Output)
		onStep := func(s train.StepInfo) {
			if opt.OnStep != nil {
				opt.OnStep(stage, s)
			}
		}
		t, err := train.New(cfg, train.Options{Resume: opt.Resume && hasCheckpoint(cfg), Log: log, OnStep: onStep})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stage, err)
		}
		sum, err := t.Run(ctx)
		t.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stage, err)
		}
		if stage == "pretrain" {
			res.Pretrain = sum
		} else {
			res.Posttrain = sum
		}
	}

	// The shipped directories: copies of the two stage outputs.
	res.Base, res.Assistant = filepath.Join(out, "base"), filepath.Join(out, "assistant")
	for src, dst := range map[string]string{res.Pretrain.Model: res.Base, res.Posttrain.Model: res.Assistant} {
		if err := copyModelDir(src, dst); err != nil {
			return nil, err
		}
	}
	res.WallS = time.Since(start).Seconds()
	data, err := json.MarshalIndent(res.relativeTo(out), "", "  ")
	if err != nil {
		return nil, err
	}
	return res, fileio.WriteFileAtomic(filepath.Join(out, BuildFile), append(data, '\n'))
}

// relativeTo returns the result with its paths relative to the build's
// output folder, so that build.json reads the same on every machine.
func (r *Result) relativeTo(out string) *Result {
	rel := func(p string) string {
		if p == "" {
			return ""
		}
		if r, err := filepath.Rel(out, p); err == nil {
			return filepath.ToSlash(r)
		}
		return p
	}
	c := *r
	c.Base, c.Assistant, c.Tokenizer = rel(r.Base), rel(r.Assistant), rel(r.Tokenizer)
	for _, s := range []**train.Summary{&c.Pretrain, &c.Posttrain} {
		if *s == nil {
			continue
		}
		t := **s
		t.Output, t.Model, t.Adapter, t.Metrics, t.Checkpoint = rel(t.Output), rel(t.Model), rel(t.Adapter), rel(t.Metrics), rel(t.Checkpoint)
		*s = &t
	}
	return &c
}

// BuildFile is where Build records what it did, next to the models; the
// model card quotes it.
const BuildFile = "build.json"

func loadWorldRecipe() (WorldRecipe, error) {
	var wr WorldRecipe
	data, err := recipeFS.ReadFile("recipe/world.yaml")
	if err != nil {
		return wr, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&wr); err != nil {
		return wr, fmt.Errorf("recipe/world.yaml: %w", err)
	}
	return wr, nil
}

// stageConfig copies a stage's train config into the work dir (so its
// relative paths point at the generated data) and loads it; Micro shrinks it.
func stageConfig(stage string, opt Options) (*train.Config, error) {
	data, err := recipeFS.ReadFile("recipe/" + stage + ".yaml")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(opt.Work, stage+".yaml")
	if err := fileio.WriteFileAtomic(path, data); err != nil {
		return nil, err
	}
	cfg, err := train.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if opt.Micro {
		if a := cfg.Model.Arch; a != nil {
			a.Hidden, a.FFN, a.Layers, a.Heads, a.KVHeads = 64, 192, 2, 4, 2
		}
		cfg.Optim.Epochs, cfg.Optim.Steps = 0, 40
		if stage == "posttrain" {
			cfg.Optim.Steps = 10
		}
		cfg.Optim.Warmup = 4
		cfg.Checkpoint.Every = 20
		cfg.Eval.Every = 20
	}
	if a := cfg.Model.Arch; a != nil && opt.Layers > 0 {
		a.Layers = opt.Layers
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func hasCheckpoint(cfg *train.Config) bool {
	entries, err := os.ReadDir(cfg.Checkpoint.Dir)
	return err == nil && len(entries) > 0
}

func writeChats(path string, chats []chat.Chat) error {
	var b bytes.Buffer
	if err := chat.WriteJSONL(&b, chats); err != nil {
		return err
	}
	return fileio.WriteFileAtomic(path, b.Bytes())
}

// chatTexts yields every message text of the chats: the tokenizer's corpus.
func chatTexts(chats []chat.Chat) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for _, c := range chats {
			for _, m := range c.Messages {
				if !yield(m.Content) {
					return
				}
			}
		}
	}
}

// copyModelDir copies the files of a Hugging Face model directory (not
// checkpoints or logs) to dst, replacing what was there.
func copyModelDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !slices.ContainsFunc([]string{".json", ".safetensors"}, func(ext string) bool { return strings.HasSuffix(e.Name(), ext) }) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := fileio.WriteFileAtomic(filepath.Join(dst, e.Name()), data); err != nil {
			return err
		}
	}
	return nil
}
