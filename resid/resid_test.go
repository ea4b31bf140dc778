package resid

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randBlock(r *rand.Rand, T, D int) Block {
	h := make([]float32, T*D)
	for i := range h {
		h[i] = float32(r.NormFloat64())
	}
	return Block{H: h, T: T, D: D, Pos0: 3, PromptLen: 5}
}

func unit(t *testing.T, r *rand.Rand, D int) []float32 {
	v := make([]float32, D)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	u, err := Unit(v)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAddRespectsWhere(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const T, D = 6, 8
	for _, w := range []Where{All, Prompt, Generated} {
		b := randBlock(r, T, D)
		orig := append([]float32(nil), b.H...)
		v := make([]float32, D)
		v[2] = 1
		s, err := NewSet(4, D, &Add{At: 1, Vector: v, Coeff: 2, Where: w})
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(1, b)
		for tt := 0; tt < T; tt++ {
			pos := b.Pos0 + tt
			want := orig[tt*D+2]
			if w.includes(pos, b.PromptLen) {
				want += 2
			}
			if got := b.H[tt*D+2]; got != want {
				t.Errorf("%v: position %d: %g, want %g", w, pos, got, want)
			}
		}
		s.Apply(0, b) // other layers untouched
	}
}

func TestClampBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const T, D = 50, 16
	b := randBlock(r, T, D)
	u := unit(t, r, D)
	floor, ceil := float32(-0.2), float32(0.3)
	s, err := NewSet(1, D, &Clamp{Direction: u, Floor: &floor, Ceiling: &ceil})
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]float32(nil), b.H...)
	s.Apply(0, b)
	for tt := 0; tt < T; tt++ {
		row, o := b.H[tt*D:(tt+1)*D], orig[tt*D:(tt+1)*D]
		p, p0 := Project(row, u), Project(o, u)
		if p < floor-1e-5 || p > ceil+1e-5 {
			t.Fatalf("row %d: projection %g outside [%g, %g]", tt, p, floor, ceil)
		}
		if p0 >= floor && p0 <= ceil {
			for i := range row {
				if row[i] != o[i] {
					t.Fatalf("row %d inside bounds was changed", tt)
				}
			}
		}
		// Only the component along u changes.
		for i := range row {
			d := row[i] - o[i] - (p-p0)*u[i]
			if math.Abs(float64(d)) > 1e-5 {
				t.Fatalf("row %d moved off the direction", tt)
			}
		}
	}
}

func TestAblateRemovesDirection(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	b := randBlock(r, 10, 12)
	u := unit(t, r, 12)
	s, _ := NewSet(2, 12, &Ablate{At: 1, Direction: u})
	s.Apply(1, b)
	for tt := 0; tt < 10; tt++ {
		if p := Project(b.H[tt*12:(tt+1)*12], u); math.Abs(float64(p)) > 1e-5 {
			t.Fatalf("row %d keeps projection %g", tt, p)
		}
	}
}

func TestCaptureSpansAcrossCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const D = 4
	c := &Capture{Spans: []Span{{Start: 2, End: 6}, {Start: 9, End: 9}}}
	s, _ := NewSet(1, D, c)
	var want [D]float64
	// Two calls: positions 0..4, then 5..7; span [2,6) straddles them.
	for _, call := range []struct{ pos0, T int }{{0, 5}, {5, 3}} {
		b := randBlock(r, call.T, D)
		b.Pos0 = call.pos0
		for tt := 0; tt < call.T; tt++ {
			if p := call.pos0 + tt; p >= 2 && p < 6 {
				for i := 0; i < D; i++ {
					want[i] += float64(b.H[tt*D+i]) / 4
				}
			}
		}
		s.Apply(0, b)
	}
	if c.Count(0) != 4 || c.Mean(1) != nil {
		t.Fatalf("counts %d, %v", c.Count(0), c.Mean(1))
	}
	for i, v := range c.Mean(0) {
		if math.Abs(float64(v)-want[i]) > 1e-6 {
			t.Fatalf("mean[%d] = %g, want %g", i, v, want[i])
		}
	}
}

// Probe reads the mean projection of the selected positions across calls
// and leaves the stream as it was.
func TestProbeReadsWithoutChanging(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const D = 6
	u := unit(t, r, D)
	p := &Probe{At: 0, Direction: u, Where: Generated}
	s, _ := NewSet(1, D, p)
	var want float64
	n := 0
	for _, call := range []struct{ pos0, T int }{{0, 7}, {7, 1}, {8, 1}} {
		b := randBlock(r, call.T, D)
		b.Pos0 = call.pos0
		before := append([]float32(nil), b.H...)
		for tt := range call.T {
			if call.pos0+tt >= b.PromptLen {
				want += float64(dot(b.row(tt), u))
				n++
			}
		}
		s.Apply(0, b)
		for i := range before {
			if b.H[i] != before[i] {
				t.Fatal("Probe changed the stream")
			}
		}
	}
	got, count := p.Mean()
	if count != n || math.Abs(got-want/float64(n)) > 1e-6 {
		t.Fatalf("mean %g over %d positions, want %g over %d", got, count, want/float64(n), n)
	}
	if m, c := (&Probe{}).Mean(); m != 0 || c != 0 {
		t.Errorf("empty projection: %g over %d", m, c)
	}
}

// Patch replaces exactly its position's row, in whichever call holds it.
func TestPatchReplacesOnePosition(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const D = 4
	row := []float32{1, 2, 3, 4}
	s, _ := NewSet(1, D, &Patch{At: 0, Pos: 6, Row: row})
	for _, call := range []struct{ pos0, T int }{{0, 5}, {5, 3}} {
		b := randBlock(r, call.T, D)
		b.Pos0 = call.pos0
		before := append([]float32(nil), b.H...)
		s.Apply(0, b)
		for tt := range call.T {
			got, was := b.row(tt), before[tt*D:(tt+1)*D]
			for i := range got {
				want := was[i]
				if call.pos0+tt == 6 {
					want = row[i]
				}
				if got[i] != want {
					t.Fatalf("position %d element %d: %g, want %g", call.pos0+tt, i, got[i], want)
				}
			}
		}
	}
}

func TestNewSetRejects(t *testing.T) {
	nan := float32(math.NaN())
	lo, hi := float32(1), float32(0)
	bad := map[string]Intervention{
		"layer out of range": &Add{At: 4, Vector: make([]float32, 3), Coeff: 1},
		"wrong width":        &Add{At: 0, Vector: make([]float32, 2), Coeff: 1},
		"nan vector":         &Add{At: 0, Vector: []float32{nan, 0, 0}, Coeff: 1},
		"not unit":           &Ablate{At: 0, Direction: []float32{1, 1, 0}},
		"no bounds":          &Clamp{At: 0, Direction: []float32{1, 0, 0}},
		"floor > ceiling":    &Clamp{At: 0, Direction: []float32{1, 0, 0}, Floor: &lo, Ceiling: &hi},
		"bad span":           &Capture{At: 0, Spans: []Span{{Start: 3, End: 1}}},
		"project not unit":   &Probe{At: 0, Direction: []float32{2, 0, 0}},
		"patch wrong width":  &Patch{At: 0, Pos: 1, Row: []float32{1}},
		"patch before start": &Patch{At: 0, Pos: -1, Row: []float32{1, 2, 3}},
	}
	for name, iv := range bad {
		if _, err := NewSet(4, 3, iv); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Unit(make([]float32, 3)); err == nil {
		t.Error("Unit of zero vector accepted")
	}
}
