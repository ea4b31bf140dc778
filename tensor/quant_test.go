package tensor_test

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"persona/internal/llamaref"
	"persona/internal/testref"
	"persona/tensor"
)

// Every quantized type decodes bit for bit as GGML does: rows of random
// values (with outliers and exact zeros, as weights have) are quantized by
// GGML's ggml_quantize_chunk and read back with its to_float through the
// ggml_quant harness; our Decode of the same bytes must give the same
// float32s, every bit.
func TestDecodeMatchesGGML(t *testing.T) {
	testref.Require(t, llamaref.HarnessesAvailable())
	dir, _, err := llamaref.Harnesses()
	if err != nil {
		t.Fatal(err)
	}
	const rows, cols = 8, 512
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, rows*cols)
	for i := range x {
		switch {
		case i%97 == 0:
			x[i] = float32(rng.NormFloat64() * 8) // an outlier
		case i%53 == 0:
			x[i] = 0
		default:
			x[i] = float32(rng.NormFloat64() * 0.05 * float64(1+i/cols))
		}
	}
	tmp := t.TempDir()
	in := filepath.Join(tmp, "x.f32")
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q4_1, tensor.Q5_0, tensor.Q5_1, tensor.Q8_0,
		tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K} {
		t.Run(dt.String(), func(t *testing.T) {
			qPath, yPath := filepath.Join(tmp, dt.String()+".q"), filepath.Join(tmp, dt.String()+".f32")
			cmd := exec.Command(filepath.Join(dir, "ggml_quant"), "--type", dt.String(), "--rows", "8", "--cols", "512",
				"--in", in, "--quant", qPath, "--dequant", yPath)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ggml_quant: %v\n%s", err, out)
			}
			q, _ := os.ReadFile(qPath)
			yb, _ := os.ReadFile(yPath)
			rb, err := dt.RowBytes(cols)
			if err != nil || len(q) != rb*rows {
				t.Fatalf("GGML wrote %d bytes; our layout says %d per row (%v)", len(q), rb, err)
			}
			got := make([]float32, rows*cols)
			tensor.Decode(got, dt, q)
			var maxErr float64
			for i := range got {
				want := math.Float32frombits(binary.LittleEndian.Uint32(yb[4*i:]))
				if math.Float32bits(got[i]) != math.Float32bits(want) {
					t.Fatalf("element %d (row %d, block %d): %g, GGML %g", i, i/cols, (i%cols)/dt.BlockSize(), got[i], want)
				}
				maxErr = max(maxErr, math.Abs(float64(got[i]-x[i])))
			}
			t.Logf("%s: identical to GGML; max |x − dequant(quant(x))| %.4f", dt, maxErr)
		})
	}
}
