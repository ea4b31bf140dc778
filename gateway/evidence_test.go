package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"persona/audit"
)

// The card shows the newest finished audit run of the spec's store and the
// end shares of its drift report, read when asked for; what cannot be read
// is said on the card.
func TestCardEvidence(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := audit.OpenStore(ctx, filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i, id := range []string{"old", "new", "running"} {
		info := &audit.RunInfo{ID: id, SuiteName: "organism", Target: "engine:organism", Created: base.Add(time.Duration(i) * time.Hour), Status: "running"}
		if err := st.CreateRun(ctx, info); err != nil {
			t.Fatal(err)
		}
		if id == "running" {
			continue
		}
		done := info.Created.Add(time.Minute)
		info.Finished, info.Status = &done, "done"
		rep := &audit.Report{Run: *info, Overall: audit.Rate{N: 10, Elicited: 3 + i, Rate: float64(3+i) / 10},
			Probes: []audit.ProbeStat{{ID: "roleplay-capture", Category: "roleplay", Rate: audit.Rate{N: 10, Elicited: 3 + i}}}}
		if err := st.FinishRun(ctx, id, rep); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	os.WriteFile(filepath.Join(dir, "drift.json"), []byte(`{"model":"organism","cells":[
		{"domain":"pressure","system":"strong","conversations":8,"end_share":{"value":0.375,"lo":0.125,"hi":0.75,"n":8}},
		{"domain":"pressure","system":"strong","control":"rails","conversations":8,"end_share":{"value":0.625,"lo":0.25,"hi":0.875,"n":8}}]}`), 0o644)
	specPath := filepath.Join(dir, "spec.yaml")
	os.WriteFile(specPath, []byte(testSpec+"evidence: {audit_db: audit.db, drift: drift.json}\n"), 0o644)
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	g := &Guarded{Up: says(assistantReply), Guard: testGuard(t, testSpec)}
	g.Guard.Spec = spec
	ev := g.Card(ctx).Evidence
	if ev == nil || ev.Audit == nil || ev.Drift == nil || len(ev.Errors) != 0 {
		t.Fatalf("evidence: %+v", ev)
	}
	if ev.Audit.Run != "new" || ev.Audit.Overall.Elicited != 4 || len(ev.Audit.Probes) != 1 || ev.Audit.Probes[0].Rate.Elicited != 4 {
		t.Errorf("audit: %+v", ev.Audit)
	}
	if len(ev.Drift.Cells) != 2 || ev.Drift.Cells[1].Control != "rails" || ev.Drift.Cells[1].EndShare != 0.625 {
		t.Errorf("drift: %+v", ev.Drift)
	}
	var page strings.Builder
	if err := pageTmpl.ExecuteTemplate(&page, "card", map[string]any{"Card": g.Card(ctx)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Measured adherence", "Audit run new", "4 of 10", "rails", "62%"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("card page lacks %q", want)
		}
	}

	os.WriteFile(specPath, []byte(testSpec+"evidence: {audit_db: gone.db, drift: audit.db}\n"), 0o644)
	if spec, err = LoadSpec(specPath); err != nil {
		t.Fatal(err)
	}
	g.Guard.Spec = spec
	ev = g.Card(ctx).Evidence
	if ev == nil || len(ev.Errors) != 2 || ev.Audit != nil || ev.Drift != nil {
		t.Errorf("unreadable evidence: %+v", ev)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone.db")); err == nil {
		t.Error("reading the card created an audit store")
	}
}
