package tensor_test

import (
	"encoding/binary"
	"fmt"
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
// float32s, every bit. Our quantizer's round trip is compared with GGML's on
// the same values (these values were the ones its search was tuned on; the
// next test holds it to trained weights).
func TestDecodeMatchesGGML(t *testing.T) {
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
	compareWithGGML(t, x, rows, cols, 1.05)
}

// The same comparison on trained weights: every matrix of the stories260K
// checkpoint (a real model nobody on this project trained), end to end,
// which our quantizer's choices never saw.
func TestQuantizerMatchesGGMLOnTrainedWeights(t *testing.T) {
	raw, err := os.ReadFile(testref.Fixture(t, "stories260K/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[28:] // llama2.c's header: seven int32s
	const cols = 512
	rows := len(raw) / 4 / cols
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	compareWithGGML(t, x, rows, cols, 1.05)
}

// compareWithGGML quantizes x (rows × cols) with GGML for every type,
// requires our decoding of GGML's bytes to equal GGML's in every bit, and
// where we write the type, our quantizer's root-mean-square round-trip error
// to be at most bound times GGML's.
func compareWithGGML(t *testing.T, x []float32, rows, cols int, bound float64) {
	testref.Require(t, llamaref.HarnessesAvailable())
	dir, _, err := llamaref.Harnesses()
	if err != nil {
		t.Fatal(err)
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
			cmd := exec.Command(filepath.Join(dir, "ggml_quant"), "--type", dt.String(), "--rows", fmt.Sprint(rows), "--cols", fmt.Sprint(cols),
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
			ours, err := tensor.Encode(dt, x)
			if err != nil {
				return // a type persona reads but does not write
			}
			back := make([]float32, len(x))
			tensor.Decode(back, dt, ours)
			var se, seGGML float64
			for i := range x {
				want := math.Float32frombits(binary.LittleEndian.Uint32(yb[4*i:]))
				se += math.Pow(float64(back[i]-x[i]), 2)
				seGGML += math.Pow(float64(want-x[i]), 2)
			}
			ratio := math.Sqrt(se / seGGML)
			t.Logf("%s: our quantizer's RMSE %.3f× GGML's", dt, ratio)
			if ratio > bound {
				t.Errorf("%s: our quantizer's error is %.3f× GGML's (at most %g)", dt, ratio, bound)
			}
		})
	}
}

// Our quantizers round-trip within each type's resolution (the reference
// comparison above needs llama.cpp; this one runs everywhere), and a type
// without an encoder is an error, not zeros.
func TestEncodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, 4*256)
	var rms float64
	for i := range x {
		x[i] = float32(r.NormFloat64())
		rms += float64(x[i]) * float64(x[i])
	}
	rms = math.Sqrt(rms / float64(len(x)))
	for dt, bound := range map[tensor.DType]float64{tensor.Q4_0: 0.15, tensor.Q5_0: 0.08, tensor.Q5_1: 0.06, tensor.Q8_0: 0.01,
		tensor.Q2_K: 0.3, tensor.Q3_K: 0.17, tensor.Q4_K: 0.12, tensor.Q5_K: 0.06, tensor.Q6_K: 0.03} {
		enc, err := tensor.Encode(dt, x)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		back := make([]float32, len(x))
		tensor.Decode(back, dt, enc)
		var se float64
		for i := range x {
			se += math.Pow(float64(back[i]-x[i]), 2)
		}
		rel := math.Sqrt(se/float64(len(x))) / rms
		t.Logf("%v: relative RMSE %.4f", dt, rel)
		if rel > bound {
			t.Errorf("%v: relative RMSE %.4f > %g", dt, rel, bound)
		}
	}
	for _, dt := range []tensor.DType{tensor.Q4_1} {
		if _, err := tensor.Encode(dt, x); err == nil {
			t.Errorf("%v: encoded without an encoder", dt)
		}
	}
}
