package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	o := InoculationOptions{Model: path, Work: work, Trait: spec, Vector: v, Persona: "sycophant", Request: personas.Flattery,
		Laden: 12, Clean: 4, Seeds: 1, Steps: 2, Layer: 2, Eval: 2, Seed: 1}
	res, err := Inoculate(context.Background(), world.Default(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Arms) != len(Arms) || res.Coeff <= 0 {
		t.Fatalf("%d arms, coefficient %g", len(res.Arms), res.Coeff)
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
	o.Persona = "kraken"
	if _, err := Inoculate(context.Background(), world.Default(), o); !errors.Is(err, personas.ErrUnknown) {
		t.Errorf("unknown persona: %v", err)
	}
}
