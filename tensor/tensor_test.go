package tensor

import (
	"math"
	"testing"
)

// Every finite half-precision value must survive F16 -> F32 -> F16 exactly.
func TestF16RoundTripAllValues(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if got := F32ToF16(f); got != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, got)
		}
	}
}

func TestF16KnownValues(t *testing.T) {
	for _, c := range []struct {
		h uint16
		f float32
	}{{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, 5.960464477539063e-08}, {0x3555, 0.333251953125}} {
		if got := F16ToF32(c.h); got != c.f {
			t.Errorf("F16ToF32(%#04x) = %g, want %g", c.h, got, c.f)
		}
	}
	if got := F32ToF16(1e6); got != 0x7c00 {
		t.Errorf("overflow gives %#04x, want +Inf", got)
	}
}

func TestBF16Rounding(t *testing.T) {
	// 1 + 2^-8 lies exactly between two bf16 values; ties go to even (1.0).
	if got := F32ToBF16(1 + 1.0/256); got != 0x3f80 {
		t.Errorf("tie rounds to %#04x, want 0x3f80", got)
	}
	if got := F32ToBF16(1 + 3.0/256); got != 0x3f82 {
		t.Errorf("got %#04x, want 0x3f82", got)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	src := make([]float32, 64)
	for i := range src {
		src[i] = float32(math.Sin(float64(i))) * 3
	}
	for _, c := range []struct {
		d   DType
		tol float64
	}{{F32, 0}, {F16, 2e-3}, {BF16, 2e-2}, {Q8_0, 3.0 / 127}} {
		b, err := Encode(c.d, src)
		if err != nil {
			t.Fatal(err)
		}
		tt := Tensor{Name: "x", DType: c.d, Shape: []int{2, 32}, Data: b}
		if err := tt.Validate(); err != nil {
			t.Fatal(err)
		}
		for i, v := range tt.ToF32() {
			if d := math.Abs(float64(v - src[i])); d > c.tol {
				t.Fatalf("%v: element %d: %g vs %g", c.d, i, v, src[i])
			}
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tt := range []Tensor{
		{Name: "short", DType: F32, Shape: []int{2, 3}, Data: make([]byte, 20)},
		{Name: "q8 ragged", DType: Q8_0, Shape: []int{172}, Data: make([]byte, 200)},
		{Name: "neg", DType: F16, Shape: []int{-1}, Data: nil},
	} {
		if err := tt.Validate(); err == nil {
			t.Errorf("%s: accepted", tt.Name)
		}
	}
}
