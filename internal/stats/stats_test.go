package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestWilson(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		// Reference values of the 95% Wilson score interval.
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
		{50, 100, 0.4038, 0.5962},
		{190, 200, 0.9102, 0.9727},
	} {
		lo, hi := Wilson(c.k, c.n)
		if math.Abs(lo-c.lo) > 1e-3 || math.Abs(hi-c.hi) > 1e-3 {
			t.Errorf("%d/%d: [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.25, 2}, {0.5, 3}, {0.1, 1.4}, {1, 5}} {
		if got := Quantile(xs, c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Quantile(%g) = %g, want %g", c.q, got, c.want)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of nothing should be NaN")
	}
}

// The bootstrap interval of a mean covers the normal-theory interval of a
// large sample, and the same seed gives the same interval.
func TestBootstrapMean(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]float64, 400)
	for i := range xs {
		xs[i] = r.NormFloat64()*2 + 5
	}
	mean := func(idx []int) float64 {
		s := 0.0
		for _, i := range idx {
			s += xs[i]
		}
		return s / float64(len(idx))
	}
	lo, hi := Bootstrap(len(xs), 2000, rand.New(rand.NewPCG(7, 7)), mean)
	half := 1.96 * 2 / math.Sqrt(400) // ≈ 0.196
	if w := hi - lo; math.Abs(w-2*half) > 0.06 {
		t.Errorf("interval width %.3f, want about %.3f", w, 2*half)
	}
	lo2, hi2 := Bootstrap(len(xs), 2000, rand.New(rand.NewPCG(7, 7)), mean)
	if lo != lo2 || hi != hi2 {
		t.Error("same seed, different interval")
	}
	if lo, _ := Bootstrap(3, 100, r, func([]int) float64 { return math.NaN() }); !math.IsNaN(lo) {
		t.Error("all-NaN resamples should give a NaN interval")
	}
}

// Newcombe (1998), Statistics in Medicine 17:873, table II: 56/70 − 48/80
// has the method-10 interval [0.0524, 0.3339]; 0/10 − 0/20 has
// [−0.1611, 0.2775].
func TestNewcombeDiff(t *testing.T) {
	for _, c := range []struct {
		k1, n1, k2, n2 int
		lo, hi         float64
	}{
		{56, 70, 48, 80, 0.0524, 0.3339},
		{0, 10, 0, 20, -0.1611, 0.2775},
	} {
		lo, hi := NewcombeDiff(c.k1, c.n1, c.k2, c.n2)
		if math.Abs(lo-c.lo) > 1e-3 || math.Abs(hi-c.hi) > 1e-3 {
			t.Errorf("%d/%d − %d/%d: [%.4f, %.4f], want [%.4f, %.4f]", c.k1, c.n1, c.k2, c.n2, lo, hi, c.lo, c.hi)
		}
	}
}

func TestPearson(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5}
	if r := Pearson(x, []float64{2, 4, 6, 8, 10}); math.Abs(r-1) > 1e-12 {
		t.Errorf("linear: %v", r)
	}
	if r := Pearson(x, []float64{5, 4, 3, 2, 1}); math.Abs(r+1) > 1e-12 {
		t.Errorf("reversed: %v", r)
	}
	// A pair worked by hand: x = 1..5, y = 2, 1, 4, 3, 5 gives Σdxdy 8, Σdx² = Σdy² = 10.
	if r := Pearson(x, []float64{2, 1, 4, 3, 5}); math.Abs(r-0.8) > 1e-12 {
		t.Errorf("r = %v, want 0.8", r)
	}
	if !math.IsNaN(Pearson(x[:2], x[:2])) {
		t.Error("two points gave a correlation")
	}
}

func TestCalibration(t *testing.T) {
	// Perfectly calibrated: 0.75 confidence, right 3 times in 4.
	ece, d := Calibration([]float64{0.75, 0.75, 0.75, 0.75}, []bool{true, true, true, false}, 10)
	if math.Abs(ece) > 1e-12 || d[7].N != 4 || d[7].Accuracy != 0.75 {
		t.Errorf("calibrated: ece %v, bin %+v", ece, d[7])
	}
	// Overconfident: 0.9 confidence, right half the time: ECE 0.4.
	ece, _ = Calibration([]float64{0.9, 0.9, 0.9, 0.9}, []bool{true, false, true, false}, 10)
	if math.Abs(ece-0.4) > 1e-12 {
		t.Errorf("overconfident: ece %v, want 0.4", ece)
	}
	// Confidence 1 lands in the last bin.
	if _, d := Calibration([]float64{1}, []bool{true}, 4); d[3].N != 1 {
		t.Errorf("bins %+v", d)
	}
}

func TestAUROC(t *testing.T) {
	for _, c := range []struct {
		s    []float64
		p    []bool
		want float64
	}{
		{[]float64{1, 2, 3, 4}, []bool{false, false, true, true}, 1},
		{[]float64{4, 3, 2, 1}, []bool{false, false, true, true}, 0},
		{[]float64{1, 1, 1, 1}, []bool{false, true, false, true}, 0.5},
		{[]float64{0.1, 0.4, 0.35, 0.8}, []bool{false, false, true, true}, 0.75},
	} {
		if got := AUROC(c.s, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("AUROC(%v, %v) = %g, want %g", c.s, c.p, got, c.want)
		}
	}
	if !math.IsNaN(AUROC([]float64{1, 2}, []bool{true, true})) {
		t.Error("one class: want NaN")
	}
}
