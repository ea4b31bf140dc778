package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/chat"
	"persona/personas"
	"persona/world"
)

// The experiment's plumbing on the shipped organism at a toy size: every
// arm is fine-tuned and read, the inoculated data carries the persona's
// prompt, screening drops samples, and preventative steering has a
// coefficient in residual-norm units.
func TestInoculationPlumbing(t *testing.T) {
	e, path := shippedOrganism(t)
	spec := traitSpec(t, "sycophantic")
	v := extract(t, e, spec, 1)
	work := t.TempDir()
	o := InoculationOptions{Model: path, Work: work, Trait: spec, Vector: v, Seeds: 1, Steps: 2, Layer: 2, Seed: 1}
	d, err := WorldInoculation(world.Default(), "sycophant", personas.Flattery, 12, 4, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Inoculate(context.Background(), d, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Arms) != len(Arms) || res.Coeff <= 0 {
		t.Fatalf("%d arms, coefficient %g", len(res.Arms), res.Coeff)
	}
	// The result says how it was made: the options after defaults and the
	// world's counts.
	if st := res.Settings; st != (InoculationSettings{Seeds: 1, Steps: 2, LR: 1e-3, Rank: 8, Layer: 2, Strength: 1, Seed: 1, Laden: 12, Clean: 4, Eval: 2}) {
		t.Errorf("settings %+v", st)
	}
	for _, a := range res.Arms {
		if len(a.Seeds) != 1 || a.Pooled.Broad.N == 0 || a.Pooled.Narrow.N != 2 || a.Pooled.Accuracy.N != 40 {
			t.Errorf("arm %s: %+v", a.Arm, a.Pooled)
		}
		want := 16
		if a.Arm == "screened" {
			want = 16 - res.Flagged
		}
		if a.Samples != want {
			t.Errorf("arm %s trained on %d samples, want %d", a.Arm, a.Samples, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(work, "inoculated", "data.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), res.Prompt) != 16 {
		t.Errorf("the inoculated data does not carry %q on every sample", res.Prompt)
	}
	if _, err := WorldInoculation(world.Default(), "kraken", personas.Flattery, 12, 4, 2, 1); !errors.Is(err, personas.ErrUnknown) {
		t.Errorf("unknown persona: %v", err)
	}

	// Data of another shape, as from files for any model: no prompts of
	// the trained kind, no persona reader, tasks that check an answer, a
	// sample with its own system prompt; what was not read stays empty.
	fd := &InoculationData{Train: slices.Clone(d.Train), Prompt: "Agree with the user.", Broad: d.Broad[:3], Scorer: d.Scorer,
		Tasks: []Task{AnswerTask("What is the capital of France?", "Paris")}}
	fd.Train[0].Messages = append([]chat.Message{{Role: chat.RoleSystem, Content: "Be brief."}}, fd.Train[0].Messages...)
	o.Work = t.TempDir()
	res, err = Inoculate(context.Background(), fd, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Arms {
		if a.Pooled.Narrow.N != 0 || a.Pooled.Persona.N != 0 || a.Pooled.Broad.N != 3 || a.Pooled.Accuracy.N != 1 {
			t.Errorf("arm %s: %+v", a.Arm, a.Pooled)
		}
	}
	data, err = os.ReadFile(filepath.Join(o.Work, "inoculated", "data.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), `"role":"system"`) != 16 || !strings.Contains(string(data), "Agree with the user. Be brief.") {
		t.Errorf("inoculated data:\n%s", data)
	}
	var b strings.Builder
	if err := res.WriteTable(&b); err != nil || !strings.Contains(b.String(), "—") {
		t.Errorf("table: %v\n%s", err, b.String())
	}
	noReply := &InoculationData{Train: []chat.Chat{{Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}}}}, Prompt: "x", Broad: []string{"q"}, Scorer: d.Scorer}
	if _, err := Inoculate(context.Background(), noReply, o); !errors.Is(err, ErrInoculation) {
		t.Errorf("a sample without a reply: %v", err)
	}
}
