package model

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/kernel"
	"persona/resid"
	"persona/safetensors"
)

// fdCheck compares an analytic gradient with central finite differences of f
// at a sample of coordinates of w. Everything runs in float32, so the check
// uses a step and a tolerance sized for it: relative error below tol where
// the gradient is not tiny.
func fdCheck(t *testing.T, name string, w, grad []float32, f func() float64, samples int, r *rand.Rand) {
	t.Helper()
	const tol = 2e-2
	checked := 0
	for s := 0; s < samples; s++ {
		i := r.IntN(len(w))
		orig := w[i]
		h := float32(2e-3) * max(1, float32(math.Abs(float64(orig))))
		w[i] = orig + h
		up := f()
		w[i] = orig - h
		down := f()
		w[i] = orig
		num := (up - down) / float64(2*h)
		ana := float64(grad[i])
		scale := math.Max(math.Abs(num), math.Abs(ana))
		if scale < 1e-3 {
			continue
		}
		checked++
		if math.Abs(num-ana)/scale > tol && math.Abs(num-ana) > 2e-4 {
			t.Errorf("%s[%d]: analytic %.6g, numeric %.6g", name, i, ana, num)
		}
	}
	if checked == 0 && samples > 0 {
		t.Logf("%s: all sampled gradients tiny", name)
	}
}

// directionalCheck compares ⟨grad, δ⟩ with the central difference of f along
// a random direction δ over all of w. Summing over every coordinate makes the
// signal large against float32 rounding in f, which a one-coordinate check
// of a whole model cannot escape.
func directionalCheck(t *testing.T, name string, w, grad []float32, f func() float64, r *rand.Rand) {
	t.Helper()
	const eps, tol = 1e-3, 1e-2
	orig := append([]float32(nil), w...)
	delta := make([]float32, len(w))
	var want float64
	for i := range delta {
		delta[i] = float32(r.NormFloat64()*eps) * max(1, float32(math.Abs(float64(orig[i]))))
		want += float64(grad[i]) * float64(delta[i])
	}
	move := func(sign float32) float64 {
		for i := range w {
			w[i] = orig[i] + sign*delta[i]
		}
		return f()
	}
	up, down := move(1), move(-1)
	got := (up - down) / 2
	copy(w, orig)
	// float32 rounding in the loss itself sets an absolute floor that grows
	// with the loss (sums of tens of nats); below it the check says nothing.
	floor := 5e-7 * math.Max(math.Abs(up), 1)
	if diff := math.Abs(got - want); diff > tol*math.Max(math.Abs(got), math.Abs(want)) && diff > floor {
		t.Errorf("%s: directional derivative %.6g, finite difference %.6g", name, want, got)
	}
}

func randSlice(r *rand.Rand, n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * std)
	}
	return out
}

func dotF(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// Each operation's backward against finite differences of ⟨c, forward(·)⟩.
func TestOpGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	const T, D = 5, 12
	t.Run("rmsnorm", func(t *testing.T) {
		x, w, c := randSlice(r, T*D, 1), randSlice(r, D, 1), randSlice(r, T*D, 1)
		y, rstd := make([]float32, T*D), make([]float32, T)
		f := func() float64 { rmsNormForward(y, rstd, x, w, T, D, 1e-5); return dotF(y, c) }
		f()
		dx, dw := make([]float32, T*D), make([]float32, D)
		rmsNormBackward(dx, dw, c, x, w, rstd, T, D)
		fdCheck(t, "dx", x, dx, f, 40, r)
		fdCheck(t, "dw", w, dw, f, 12, r)
	})
	t.Run("swiglu", func(t *testing.T) {
		g, u, c := randSlice(r, 30, 2), randSlice(r, 30, 1), randSlice(r, 30, 1)
		h := make([]float32, 30)
		f := func() float64 { copy(h, g); kernel.SiLUMul(h, u); return dotF(h, c) }
		dg, du := make([]float32, 30), make([]float32, 30)
		siluMulBackward(dg, du, c, g, u)
		fdCheck(t, "dgate", g, dg, f, 30, r)
		fdCheck(t, "dup", u, du, f, 30, r)
	})
	t.Run("rope", func(t *testing.T) {
		cfg := Config{HeadDim: 8, RoPETheta: 10000}
		cos, sin := make([]float32, T*4), make([]float32, T*4)
		cfg.ropeTables(false, cos, sin, 3, T, nil)
		for _, style := range []RoPEStyle{RoPEHalf, RoPEInterleave} {
			x, c := randSlice(r, T*2*8, 1), randSlice(r, T*2*8, 1)
			y := make([]float32, len(x))
			f := func() float64 { copy(y, x); rope(y, T, 2, 8, cos, sin, style, false); return dotF(y, c) }
			dx := append([]float32(nil), c...)
			rope(dx, T, 2, 8, cos, sin, style, true)
			fdCheck(t, style.String(), x, dx, f, 40, r)
		}
	})
}

// The whole model's gradient, every parameter group, on a packed row of two
// documents with partial loss weights and training-time interventions.
func TestModelGradients(t *testing.T) {
	for name, cfg := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			cfg.NumLayers = 2
			m, err := NewRandom(cfg, 11)
			if err != nil {
				t.Fatal(err)
			}
			m.TrainableF32()
			r := rand.New(rand.NewPCG(2, 3))
			row := packedRow(r, []int{70, 5, 60}, m.Vocab) // across query blocks (attnBlock)
			v := randSlice(r, m.Hidden, 1)
			u, _ := resid.Unit(randSlice(r, m.Hidden, 1))
			iv, err := resid.NewSet(m.NumLayers, m.Hidden,
				&resid.Add{At: 0, Vector: v, Coeff: 0.5}, &resid.Ablate{At: 1, Direction: u})
			if err != nil {
				t.Fatal(err)
			}
			g := m.NewGrads()
			if _, _, err := m.ForwardBackward(row, g, TrainOptions{Interventions: iv, Scale: 1}); err != nil {
				t.Fatal(err)
			}
			f := func() float64 {
				l, _, err := m.Loss(row, iv)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			for _, p := range m.Params(g) {
				directionalCheck(t, p.Name, p.W, p.G, f, r)
			}
		})
	}
}

// packedRow builds a row of documents with the given lengths, random tokens,
// and loss weights on about two thirds of the positions.
func packedRow(r *rand.Rand, lengths []int, vocab int) *Row {
	row := &Row{}
	for _, n := range lengths {
		s := row.Len()
		for i := 0; i < n; i++ {
			row.Tokens = append(row.Tokens, r.IntN(vocab))
			row.Targets = append(row.Targets, r.IntN(vocab))
			w := float32(0)
			if r.IntN(3) > 0 {
				w = 1
			}
			row.Weights = append(row.Weights, w)
			row.Start = append(row.Start, s)
		}
	}
	return row
}

// The training forward computes exactly what inference computes: the loss of
// a single-document row equals the teacher-forced log-probabilities of the
// inference path, and packing documents together changes nothing.
func TestTrainForwardMatchesInference(t *testing.T) {
	m, err := NewRandom(testConfigs()["qwen3-qknorm"], 4)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	doc := func(n int) ([]int, float64) {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = r.IntN(m.Vocab)
		}
		logits := m.Forward(m.NewState(), ids, nil, AllLogits)
		var nll float64
		for i := 0; i < n-1; i++ {
			row := logits[i*m.Vocab : (i+1)*m.Vocab]
			LogSoftmax(row, row)
			nll -= float64(row[ids[i+1]])
		}
		return ids, nll
	}
	// Long enough for several query blocks of the training attention, the
	// second document starting inside one.
	a, nllA := doc(90)
	b, nllB := doc(60)
	row := &Row{}
	for _, d := range [][]int{a, b} {
		s := row.Len()
		for i, id := range d {
			row.Tokens = append(row.Tokens, id)
			row.Start = append(row.Start, s)
			if i+1 < len(d) {
				row.Targets, row.Weights = append(row.Targets, d[i+1]), append(row.Weights, 1)
			} else {
				row.Targets, row.Weights = append(row.Targets, 0), append(row.Weights, 0)
			}
		}
	}
	loss, weight, err := m.Loss(row, nil)
	if err != nil {
		t.Fatal(err)
	}
	if weight != float64(len(a)+len(b)-2) {
		t.Fatalf("weight %g", weight)
	}
	if math.Abs(loss-(nllA+nllB)) > 1e-3*math.Abs(loss) {
		t.Fatalf("packed training loss %.6f, inference %.6f", loss, nllA+nllB)
	}
}

// Full fine-tuning trains exactly the parameters the model stores: every
// tensor an export writes has a gradient, and nothing else does.
func TestParamsCoverEveryWeight(t *testing.T) {
	for name, cfg := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := NewRandom(cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := m.WriteHF(dir); err != nil {
				t.Fatal(err)
			}
			f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			stored := f.Names()
			m.TrainableF32()
			// A fused matrix (Phi-3) is stored once for its trained parts.
			storedAs := map[string]string{}
			if cfg.Arch == "phi3" {
				for _, fu := range phi3Fusions {
					for _, part := range fu.parts {
						for _, lf := range layerFields {
							if lf.name == part {
								storedAs[lf.hf] = fu.hf
							}
						}
					}
				}
			}
			var trained []string
			for _, p := range m.Params(m.NewGrads()) {
				name := p.Name
				for part, fused := range storedAs {
					name = strings.Replace(name, part, fused, 1)
				}
				if !slices.Contains(trained, name) {
					trained = append(trained, name)
				}
				if len(p.W) != len(p.G) || len(p.W) == 0 {
					t.Errorf("%s: %d weights, %d gradients", p.Name, len(p.W), len(p.G))
				}
			}
			slices.Sort(stored)
			slices.Sort(trained)
			if !slices.Equal(stored, trained) {
				t.Errorf("stored %v\ntrained %v", stored, trained)
			}
		})
	}
}
