package vectors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"persona/internal/llamaref"
	"persona/internal/testref"
	"persona/model"
	"persona/resid"
)

// cvecHarness builds tools/llamaref/cvec (a C++ program linked against the
// llama.cpp libraries that tools/llamaref installs) and returns its path.
// Like every llama.cpp reference test, a missing reference or compiler fails
// under CI=true and skips elsewhere, with the fix in the message.
func cvecHarness(t *testing.T) (bin, bins string) {
	t.Helper()
	testref.Require(t, llamaref.HarnessesAvailable())
	dir, bins, err := llamaref.Harnesses()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "cvec_logits"), bins
}

// cvecLogits runs the harness: llama.cpp's logits at every position of ids,
// steered by the control-vector file at the given strength (no file: plain).
func cvecLogits(t *testing.T, bin, bins, modelPath string, ids []int, cvec string, strength float32, layerRange []int) [][]float32 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "logits.f32")
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = strconv.Itoa(id)
	}
	args := []string{"--bins", bins, "--model", modelPath, "--ids", strings.Join(strs, ","), "--out", out, "--threads", "2"}
	if cvec != "" {
		args = append(args, "--cvec", cvec, "--strength", strconv.FormatFloat(float64(strength), 'g', -1, 32))
	}
	if layerRange != nil {
		args = append(args, "--layer-range", strconv.Itoa(layerRange[0]), strconv.Itoa(layerRange[1]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cvec_logits: %v\n%s", err, tail(stderr.String(), 3000))
	}
	var meta struct {
		NVocab     int `json:"n_vocab"`
		NPositions int `json:"n_positions"`
		CvecLayers int `json:"cvec_layers"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &meta); err != nil {
		t.Fatalf("cvec_logits printed %q: %v", stdout.String(), err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if meta.NPositions != len(ids) || len(raw) != 4*meta.NPositions*meta.NVocab {
		t.Fatalf("cvec_logits: %d positions × %d vocab in %d bytes; want %d positions", meta.NPositions, meta.NVocab, len(raw), len(ids))
	}
	flat := llamaref.DecodeF32(raw)
	rows := make([][]float32, len(ids))
	for i := range rows {
		rows[i] = flat[i*meta.NVocab : (i+1)*meta.NVocab]
	}
	return rows
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// maxDiff returns max |a − b| over all positions and tokens.
func maxDiff(a, b [][]float32) float64 {
	var worst float64
	for p := range a {
		for v := range a[p] {
			worst = math.Max(worst, math.Abs(float64(a[p][v]-b[p][v])))
		}
	}
	return worst
}

// A control vector exported by WriteControlVector, loaded by llama.cpp's own
// loader (common_control_vector_load) at strength c and applied with
// llama_set_adapter_cvec, steers a random Llama-shaped model exactly as
// resid.Add with coefficient c at the same layers does in our forward pass.
//
// Tolerance: 1e-4 on raw logits (which spread over several units). Both
// sides compute in float32 in different orders; measured differences are
// about 2e-6, steered or not. Steering moves the logits by more than 2, and a
// one-layer shift of the convention or a wrong sign by more than 100× the
// tolerance, checked below so the comparison can fail.
func TestControlVectorMatchesLlamaCpp(t *testing.T) {
	bin, bins := cvecHarness(t)
	cfg := model.Config{Arch: "llama", Hidden: 64, FFN: 128, NumLayers: 4, Heads: 8, KVHeads: 2, HeadDim: 8, Vocab: 320,
		MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, RoPEStyle: model.RoPEHalf}
	m, err := model.NewRandom(cfg, 11)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	modelPath := filepath.Join(dir, "model.gguf")
	if err := m.WriteGGUF(modelPath, model.SyntheticVocab(cfg.Vocab)); err != nil {
		t.Fatal(err)
	}
	back, err := model.Load(modelPath) // run what llama.cpp runs
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()

	// Vectors at every layer llama.cpp can steer, of about the residual
	// stream's own size (‖h‖ ≈ 8 here).
	r := rand.New(rand.NewPCG(3, 4))
	set := &Set{Name: "random-trait", Model: "random-llama", Layers: []int{1, 2, 3}, Meta: map[string]string{"method": "random", "architecture": "llama"}}
	for range set.Layers {
		v := make([]float32, cfg.Hidden)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.6)
		}
		set.Vectors = append(set.Vectors, v)
	}
	cvPath := filepath.Join(dir, "trait.gguf")
	if err := set.WriteControlVector(cvPath, ControlVectorOptions{}); err != nil {
		t.Fatal(err)
	}

	ids := []int{1, 300, 17, 42, 265, 99, 3, 128, 77, 201, 64, 5, 250, 12}
	ours := func(s *Set, coeff float32) [][]float32 { return steeredLogits(t, back, ids, s, coeff) }
	const tol = 1e-4
	plainOurs, plainRef := ours(nil, 0), cvecLogits(t, bin, bins, modelPath, ids, "", 0, nil)
	if d := maxDiff(plainOurs, plainRef); d > tol {
		t.Fatalf("unsteered logits differ by %.3g > %g: the models disagree before any steering", d, tol)
	} else {
		t.Logf("unsteered: max |Δ logit| = %.3g", d)
	}

	for _, c := range []struct {
		name       string
		strength   float32
		layerRange []int // llama.cpp's --control-vector-layer-range; nil: all
		outside    []int // the layers of the file that range leaves out
	}{
		{"strength 1.5", 1.5, nil, nil},
		{"strength -2 on layers 2..3", -2, []int{2, 3}, []int{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ref := cvecLogits(t, bin, bins, modelPath, ids, cvPath, c.strength, c.layerRange)
			sub := set.Without(c.outside...)
			got := ours(sub, c.strength)
			d := maxDiff(got, ref)
			moved := maxDiff(plainRef, ref)
			t.Logf("steered: max |Δ logit| vs llama.cpp = %.3g; steering moved llama.cpp's logits by up to %.3g", d, moved)
			if d > tol {
				t.Errorf("steered logits differ from llama.cpp by %.3g > %g", d, tol)
			}
			// The comparison must be able to fail.
			if moved < 100*tol {
				t.Errorf("steering moved logits by only %.3g: the test cannot tell steering from none", moved)
			}
			shifted := &Set{Name: "one layer early", Vectors: sub.Vectors}
			for _, l := range sub.Layers {
				shifted.Layers = append(shifted.Layers, l-1)
			}
			if off := maxDiff(ours(shifted, c.strength), ref); off < 100*tol {
				t.Errorf("the vectors one layer early differ from llama.cpp by only %.3g: the test cannot see the layer convention", off)
			}
			if off := maxDiff(ours(sub, -c.strength), ref); off < 100*tol {
				t.Errorf("the opposite sign differs by only %.3g", off)
			}
		})
	}

	// What llama.cpp reads back is what we wrote.
	got, err := ReadControlVector(cvPath)
	if err != nil {
		t.Fatal(err)
	}
	if maxDiff(got.Vectors, set.Vectors) != 0 || fmt.Sprint(got.Layers) != fmt.Sprint(set.Layers) || got.Name != set.Name || got.Meta["method"] != "random" {
		t.Errorf("ReadControlVector: %+v, wrote %+v", got, set)
	}
}

// steeredLogits runs ids through m with s steering every layer at coeff (nil:
// unsteered) and returns the logits row by row: our side of the llama.cpp
// control-vector comparisons.
func steeredLogits(t *testing.T, m *model.Model, ids []int, s *Set, coeff float32) [][]float32 {
	t.Helper()
	var rs *resid.Set
	if s != nil {
		adds, err := s.SteerAll(coeff, resid.All)
		if err != nil {
			t.Fatal(err)
		}
		if rs, err = s.Interventions(m.NumLayers, m.Hidden, adds...); err != nil {
			t.Fatal(err)
		}
	}
	flat := m.Forward(m.NewState(), ids, rs, model.AllLogits)
	rows := make([][]float32, len(ids))
	for i := range rows {
		rows[i] = flat[i*m.Vocab : (i+1)*m.Vocab]
	}
	return rows
}
