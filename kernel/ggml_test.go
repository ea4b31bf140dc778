package kernel

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"persona/internal/llamaref"
	"persona/internal/testref"
	"persona/tensor"
)

// Quantized weights times float32 activations, against GGML's own CPU
// backend (the tools/llamaref/cvec/ggml_matmul harness: ggml_mul_mat on the
// libggml-cpu variant llama.cpp loads for this machine) on the same bytes.
// Both round the activations to 8 bits per block before the dot products,
// so they agree to float32 summation noise — except where that noise puts an
// activation on the other side of a rounding boundary, which moves one
// product by up to one rounding step times its weight. The test allows a
// few such elements and holds the rest to 1e-5 relative to the row's scale.
func TestLinearMatchesGGML(t *testing.T) {
	testref.Require(t, llamaref.HarnessesAvailable())
	dir, bins, err := llamaref.Harnesses()
	if err != nil {
		t.Fatal(err)
	}
	const N, K = 64, 512
	rng := rand.New(rand.NewPCG(3, 4))
	tmp := t.TempDir()
	w := make([]float32, N*K)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	wPath := filepath.Join(tmp, "w.f32")
	if err := os.WriteFile(wPath, tensor.F32ToBytes(w), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, T := range []int{1, 4, 24} {
		x := make([]float32, T*K)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		xPath := filepath.Join(tmp, "x"+strconv.Itoa(T)+".f32")
		if err := os.WriteFile(xPath, tensor.F32ToBytes(x), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q4_1, tensor.Q5_0, tensor.Q5_1, tensor.Q8_0,
			tensor.Q4_K, tensor.Q5_K, tensor.Q6_K} {
			t.Run(dt.String()+"/T="+strconv.Itoa(T), func(t *testing.T) {
				qPath, yPath := filepath.Join(tmp, "q"), filepath.Join(tmp, "y.f32")
				cmd := exec.Command(filepath.Join(dir, "ggml_matmul"), "--bins", bins, "--type", dt.String(),
					"--rows", strconv.Itoa(N), "--cols", strconv.Itoa(K), "--tokens", strconv.Itoa(T),
					"--w", wPath, "--x", xPath, "--quant", qPath, "--out", yPath)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("ggml_matmul: %v\n%s", err, out)
				}
				q, _ := os.ReadFile(qPath)
				yb, _ := os.ReadFile(yPath)
				want := tensor.BytesToF32(yb)
				got := make([]float32, T*N)
				Linear(got, x, &tensor.Tensor{DType: dt, Shape: []int{N, K}, Data: q}, T)
				var scale float64
				for _, v := range want {
					scale = max(scale, math.Abs(float64(v)))
				}
				var worst float64
				off := 0
				for i := range got {
					d := math.Abs(float64(got[i]-want[i])) / scale
					worst = max(worst, d)
					if d > 1e-5 {
						off++
					}
				}
				t.Logf("%s T=%d: max |Δ| / max |y| %.2g, %d of %d beyond 1e-5", dt, T, worst, off, len(got))
				if off > len(got)/50 || worst > 0.01 {
					t.Errorf("%s T=%d: %d of %d products beyond 1e-5 of the scale (worst %.2g): more than rounding events", dt, T, off, len(got), worst)
				}
			})
		}
	}
}
