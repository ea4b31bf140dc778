package drift

import (
	"math"
	"math/rand/v2"
	"testing"

	"persona/world"
)

// conv builds a conversation from per-turn projections and oracle verdicts.
func conv(unit int, d Domain, sys string, proj []float64, asst []bool) Conversation {
	c := Conversation{Scenario: "s", Domain: d, System: sys, unit: unit}
	for i, p := range proj {
		p := p
		c.Turns = append(c.Turns, Turn{Projection: &p, Oracle: &OracleTurn{IsAssistant: asst[i]}})
	}
	return c
}

// The statistics on conversations whose answers are known by hand.
func TestSummariseKnown(t *testing.T) {
	r := &Report{HasAxis: true, Threshold: 1}
	var scen []Scenario
	for u := range 20 {
		scen = append(scen, Scenario{ID: "s", Domain: PressureDomain, Turns: 4})
		// Strong: steady at 2 (never departs), Assistant throughout.
		r.Conversations = append(r.Conversations, conv(u, PressureDomain, "strong", []float64{2, 2, 2, 2}, []bool{true, true, true, true}))
		// Weak: falls by 0.5 a turn from 2 (departs at turn 4 where it is
		// 0.5 < 1); the Assistant at the end in every other scenario.
		r.Conversations = append(r.Conversations, conv(u, PressureDomain, "weak", []float64{2, 1.5, 1, 0.5}, []bool{true, true, true, u%2 == 0}))
	}
	r.summarise(scen, Options{Oracle: &world.Oracle{}, Reps: 500, Seed: 3})
	strong, weak := r.Cell(PressureDomain, "strong", ""), r.Cell(PressureDomain, "weak", "")
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	near("strong slope", strong.Slope.Value, 0)
	near("weak slope", weak.Slope.Value, -0.5)
	near("strong first departure (censored)", strong.FirstDeparture.Value, 5)
	near("weak first departure", weak.FirstDeparture.Value, 4)
	near("weak departed", weak.Departed.Value, 1)
	near("weak end share (oracle)", weak.EndShare.Value, 0.5)
	near("weak end share (axis)", weak.EndAxis.Value, 0)
	near("weak projection at turn 2", weak.Projection[1].Value, 1.5)
	near("weak oracle share at turn 1", weak.Oracle[0].Value, 1)
	if r.EndMeasure != "oracle" {
		t.Errorf("end measure %q", r.EndMeasure)
	}
	var all *Effect
	for i := range r.StrongVsWeak {
		if r.StrongVsWeak[i].Domain == "all" {
			all = &r.StrongVsWeak[i]
		}
	}
	if all == nil {
		t.Fatal("no pooled effect")
	}
	near("strong − weak", all.Diff.Value, 0.5)
	if !(all.Diff.Lo > 0.2 && all.Diff.Hi < 0.8 && all.Diff.Lo < 0.5 && all.Diff.Hi > 0.5) {
		t.Errorf("effect interval [%g, %g] should surround 0.5 and exclude 0", all.Diff.Lo, all.Diff.Hi)
	}
	// A share every conversation agrees on gets a Wilson interval, not a point.
	if strong.EndShare.Value != 1 || strong.EndShare.Lo >= 1 || strong.EndShare.Lo < 0.8 {
		t.Errorf("strong end share %v: want 1 with a Wilson lower bound", strong.EndShare)
	}
	// Two unanimous samples: Newcombe's interval, not a point.
	g := func(sys string) group {
		var cs []*Conversation
		for i := range r.Conversations {
			if r.Conversations[i].System == sys {
				cs = append(cs, &r.Conversations[i])
			}
		}
		return newGroup(cs)
	}
	if d := diff(g("strong"), g("strong"), last(oracleReading), 100, rand.New(rand.NewPCG(1, 1))); d.Value != 0 || d.Lo >= 0 || d.Hi <= 0 {
		t.Errorf("1 − 1 over 20 scenarios: %v, want an interval around 0", d)
	}
	// Same seed, same intervals.
	r2 := &Report{HasAxis: true, Threshold: 1, Conversations: r.Conversations}
	r2.summarise(scen, Options{Oracle: &world.Oracle{}, Reps: 500, Seed: 3})
	if r2.StrongVsWeak[0].Diff != r.StrongVsWeak[0].Diff {
		t.Error("bootstrap not reproducible for a fixed seed")
	}
}
