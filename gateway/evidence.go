package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"persona/audit"
)

// SpecEvidence names where a deployment's card finds its measured
// adherence: an audit store (persona audit --db) whose newest finished run
// it shows, and a drift report (persona drift --json). Relative paths are
// beside the spec.
type SpecEvidence struct {
	AuditDB string `yaml:"audit_db"`
	Drift   string `yaml:"drift"`
}

// Evidence is what the card shows of the stored measurements.
type Evidence struct {
	Audit *AuditEvidence `json:"audit,omitempty"`
	Drift *DriftEvidence `json:"drift,omitempty"`
	// Errors says what could not be read (the card is served anyway).
	Errors []string `json:"errors,omitempty"`
}

// AuditEvidence is the newest finished audit run: how often its probes
// pushed the model out of its persona.
type AuditEvidence struct {
	Run      string          `json:"run"`
	Suite    string          `json:"suite"`
	Target   string          `json:"target"`
	Finished *time.Time      `json:"finished"`
	Overall  audit.Rate      `json:"overall"`
	Breaches int             `json:"breaches"`
	Probes   []ProbeEvidence `json:"probes"`
}

// ProbeEvidence is one probe's elicitation rate.
type ProbeEvidence struct {
	ID       string     `json:"id"`
	Category string     `json:"category"`
	Rate     audit.Rate `json:"rate"`
}

// DriftEvidence is a drift report's end-of-conversation persona shares.
type DriftEvidence struct {
	File  string      `json:"file"`
	Model string      `json:"model"`
	Cells []DriftCell `json:"cells"`
}

// DriftCell is one domain × system prompt × control cell: the share of
// conversations still in the intended persona at their last turn.
type DriftCell struct {
	Domain        string  `json:"domain"`
	System        string  `json:"system"`
	Control       string  `json:"control,omitempty"`
	Conversations int     `json:"conversations"`
	EndShare      float64 `json:"end_share"`
	Lo            float64 `json:"lo"`
	Hi            float64 `json:"hi"`
}

// evidence reads the spec's evidence now, so the card shows the newest
// runs without a restart.
func (s *Spec) evidence(ctx context.Context) *Evidence {
	if s.Evidence == nil {
		return nil
	}
	ev := &Evidence{}
	if dsn := s.Evidence.AuditDB; dsn != "" {
		a, err := latestAudit(ctx, s.storePath(dsn))
		if err != nil {
			ev.Errors = append(ev.Errors, "audit: "+err.Error())
		}
		ev.Audit = a
	}
	if f := s.Evidence.Drift; f != "" {
		d, err := readDrift(s.path(f))
		if err != nil {
			ev.Errors = append(ev.Errors, "drift: "+err.Error())
		}
		ev.Drift = d
	}
	return ev
}

// storePath resolves a SQLite file beside the spec; a PostgreSQL DSN is
// used as is.
func (s *Spec) storePath(dsn string) string {
	if audit.IsPostgresDSN(dsn) {
		return dsn
	}
	return s.path(dsn)
}

func latestAudit(ctx context.Context, dsn string) (*AuditEvidence, error) {
	if !audit.IsPostgresDSN(dsn) {
		// Opening would create an empty store; a missing file is an error.
		if _, err := os.Stat(dsn); err != nil {
			return nil, err
		}
	}
	st, err := audit.OpenStore(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	runs, err := st.Runs(ctx)
	if err != nil {
		return nil, err
	}
	var newest *audit.RunInfo
	for i := range runs {
		r := &runs[i]
		if r.Status == "done" && r.Finished != nil && (newest == nil || r.Finished.After(*newest.Finished)) {
			newest = r
		}
	}
	if newest == nil {
		return nil, fmt.Errorf("no finished run in %s", dsn)
	}
	rep, err := st.Report(ctx, newest.ID)
	if err != nil {
		return nil, err
	}
	a := &AuditEvidence{Run: newest.ID, Suite: newest.SuiteName, Target: newest.Target, Finished: newest.Finished,
		Overall: rep.Overall, Breaches: len(rep.Breaches)}
	for _, p := range rep.Probes {
		a.Probes = append(a.Probes, ProbeEvidence{ID: p.ID, Category: string(p.Category), Rate: p.Rate})
	}
	return a, nil
}

// readDrift reads the cells of a persona drift --json report.
func readDrift(path string) (*DriftEvidence, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type interval struct{ Value, Lo, Hi float64 }
	var rep struct {
		Model string `json:"model"`
		Cells []struct {
			Domain        string    `json:"domain"`
			System        string    `json:"system"`
			Control       string    `json:"control"`
			Conversations int       `json:"conversations"`
			EndShare      *interval `json:"end_share"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: not a persona drift --json report: %w", path, err)
	}
	if len(rep.Cells) == 0 {
		return nil, fmt.Errorf("%s: no cells: not a persona drift --json report", path)
	}
	d := &DriftEvidence{File: path, Model: rep.Model}
	for _, c := range rep.Cells {
		if c.EndShare == nil {
			return nil, fmt.Errorf("%s: cell %s/%s has no end share", path, c.Domain, c.System)
		}
		d.Cells = append(d.Cells, DriftCell{Domain: c.Domain, System: c.System, Control: c.Control, Conversations: c.Conversations,
			EndShare: c.EndShare.Value, Lo: c.EndShare.Lo, Hi: c.EndShare.Hi})
	}
	return d, nil
}
