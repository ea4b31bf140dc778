package bench

import (
	"math"
	"testing"

	"persona/train"
)

func TestStatAndRatio(t *testing.T) {
	s := NewStat([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || len(s.Runs) != 4 {
		t.Errorf("%+v", s)
	}
	if got := NewStat([]float64{5, 1, 3}).Median; got != 3 {
		t.Errorf("odd median %v", got)
	}
	// The ratio of medians, with the range of the ratios of runs taken side
	// by side (the first run of one with the first of the other, …).
	r := Ratio(NewStat([]float64{10, 20, 30}), NewStat([]float64{5, 20, 10}))
	if r.Median != 20.0/10 || r.Min != 1 || r.Max != 3 {
		t.Errorf("ratio %+v", r)
	}
	if s := (Stat{Median: 1.25, Min: 1, Max: 2}).String(); s != "1.2 (1.0–2.0)" && s != "1.3 (1.0–2.0)" {
		t.Errorf("String %q", s)
	}
	if math.IsNaN(Ratio(NewStat([]float64{1}), NewStat([]float64{2})).Median) {
		t.Error("NaN")
	}
}

// BenchmarkTrainShape times the trainer on each `persona bench train`
// shape in this process, for profiling:
// go test ./bench -run XXX -bench TrainShape/10M -cpuprofile cpu.out.
func BenchmarkTrainShape(b *testing.B) {
	for _, s := range TrainShapes {
		b.Run(s.Name, func(b *testing.B) {
			r, err := train.Bench(s.Cfg, 256, 4, b.N, 1)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.TokPerS, "tok/s")
			b.ReportMetric(r.GFLOPS, "GFLOP/s")
		})
	}
}

// The engine worker's own resident memory and high-water mark are read
// from /proc: each at least what it holds now, the peak at least the
// current.
func TestSelfPeakRSS(t *testing.T) {
	hold := make([]byte, 64<<20)
	for i := range hold {
		hold[i] = 1
	}
	now, peak := selfRSS(), selfPeakRSS()
	if now < 64<<20 || peak < now {
		t.Fatalf("RSS %d bytes, peak %d bytes while holding 64 MiB", now, peak)
	}
	_ = hold[len(hold)-1]
}
