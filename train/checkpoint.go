package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"persona/internal/fileio"
	"persona/model"
	"persona/safetensors"
	"persona/tensor"
)

// A checkpoint is a directory step-NNNNNNNN under the checkpoint folder:
//
//	params.safetensors  every trained parameter (all weights, or only the
//	                    LoRA adapters), flat F32, by Hugging Face / PEFT name
//	optim.safetensors   AdamW's moments, "m/<name>" and "v/<name>"
//	state.json          step, data position, config and its hash, data hash
//
// It is written into a hidden temporary sibling, every file fsynced, and
// renamed into place, so a directory named step-N is always complete; older
// checkpoints are deleted only after the new one is in place. A crash at any
// moment leaves the previous checkpoint intact.
//
// There is no random-generator state to save: every random draw of a run is
// a pure function of (seed, step, row) — the epoch shuffle, adapter dropout —
// so the step number is the whole state.

// ckptState is state.json.
type ckptState struct {
	Version    int     `json:"version"`
	Step       int     `json:"step"`        // optimizer steps completed
	TotalSteps int     `json:"total_steps"` // of the whole run
	RowsSeen   int64   `json:"rows_seen"`   // data position: rows consumed (step·batch·grad_accum)
	Epoch      int     `json:"epoch"`       // epoch of the next row
	AdamT      int     `json:"adam_t"`
	ConfigHash string  `json:"config_hash"`
	Config     *Config `json:"config"`
	DataHash   string  `json:"data_hash"`
	Tokens     int64   `json:"tokens"`
	Trained    int64   `json:"trained_tokens"`
	ElapsedS   float64 `json:"elapsed_s"`
	LastLoss   float64 `json:"last_loss"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	// RNG documents that all randomness derives from (seed, step, row).
	RNG string `json:"rng"`
}

const ckptPrefix = "step-"

func ckptName(step int) string { return fmt.Sprintf("%s%08d", ckptPrefix, step) }

// listCheckpoints returns the complete checkpoints in dir, oldest first.
// Hidden temporary directories (a write cut short) are not checkpoints.
func listCheckpoints(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), ckptPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		s, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "state.json")); err == nil {
			steps = append(steps, s)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// saveCheckpoint writes a checkpoint atomically and prunes old ones down to
// keep. It returns the checkpoint's path.
func saveCheckpoint(dir string, keep int, st *ckptState, ps []model.Param, opt *AdamW) (string, error) {
	final := filepath.Join(dir, ckptName(st.Step))
	// A checkpoint of this step may exist (a run resumed from an earlier one
	// and reached it again): ReplaceDir keeps it until ours is in.
	err := fileio.ReplaceDir(final, func(tmp string) error {
		var params, moments []tensor.Tensor
		for j, p := range ps {
			params = append(params, flat(p.Name, p.W))
			moments = append(moments, flat("m/"+p.Name, opt.M[j]), flat("v/"+p.Name, opt.V[j]))
		}
		if err := safetensors.Write(filepath.Join(tmp, "params.safetensors"), params, nil); err != nil {
			return err
		}
		if err := safetensors.Write(filepath.Join(tmp, "optim.safetensors"), moments, nil); err != nil {
			return err
		}
		data, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		return fileio.WriteFileAtomic(filepath.Join(tmp, "state.json"), append(data, '\n'))
	})
	if err != nil {
		return "", err
	}
	steps, err := listCheckpoints(dir)
	if err != nil {
		return final, err
	}
	for len(steps) > keep {
		if steps[0] != st.Step {
			if err := os.RemoveAll(filepath.Join(dir, ckptName(steps[0]))); err != nil {
				return final, err
			}
		}
		steps = steps[1:]
	}
	return final, nil
}

func flat(name string, v []float32) tensor.Tensor {
	return tensor.Tensor{Name: name, DType: tensor.F32, Shape: []int{len(v)}, Data: tensor.F32ToBytes(v)}
}

// loadCheckpoint reads a checkpoint's state and copies its parameters and
// moments into ps and opt, checking that every name and length matches.
func loadCheckpoint(path string, ps []model.Param, opt *AdamW) (*ckptState, error) {
	data, err := os.ReadFile(filepath.Join(path, "state.json"))
	if err != nil {
		return nil, err
	}
	var st ckptState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("checkpoint %s: state.json: %w", path, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("checkpoint %s: state.json version %d, want 1", path, st.Version)
	}
	read := func(file string, dst func(j int) (string, []float32, bool)) error {
		f, err := safetensors.Open(filepath.Join(path, file))
		if err != nil {
			return err
		}
		defer f.Close()
		for j := 0; ; j++ {
			name, v, ok := dst(j)
			if !ok {
				return nil
			}
			t, err := f.Tensor(name)
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w (was it written by a different model or lora setup?)", path, err)
			}
			if t.DType != tensor.F32 || t.Len() != len(v) {
				return fmt.Errorf("checkpoint %s: tensor %q has %d %s elements, the model needs %d F32", path, name, t.Len(), t.DType, len(v))
			}
			copy(v, t.F32())
		}
	}
	if err := read("params.safetensors", func(j int) (string, []float32, bool) {
		if j >= len(ps) {
			return "", nil, false
		}
		return ps[j].Name, ps[j].W, true
	}); err != nil {
		return nil, err
	}
	if err := read("optim.safetensors", func(j int) (string, []float32, bool) {
		if j >= 2*len(ps) {
			return "", nil, false
		}
		if j%2 == 0 {
			return "m/" + ps[j/2].Name, opt.M[j/2], true
		}
		return "v/" + ps[j/2].Name, opt.V[j/2], true
	}); err != nil {
		return nil, err
	}
	opt.T = st.AdamT
	return &st, nil
}
