package audit

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit codes of an audit, the same as every persona command's.
const (
	ExitPass     = 0 // every threshold held
	ExitBreached = 1 // a threshold was breached
	ExitInput    = 2 // bad suite, flags or configuration
	ExitInfra    = 3 // a backend or the store failed; the audit is incomplete
)

// Report is the summary of a run: what the terminal table, --json, JUnit and
// HTML outputs are drawn from.
type Report struct {
	Run        RunInfo         `json:"run"`
	Overall    Rate            `json:"overall"`
	Categories []CategoryStat  `json:"categories"`
	Probes     []ProbeStat     `json:"probes"`
	Breaches   []Breach        `json:"breaches"`
	Failures   Failures        `json:"failures"`
	Incoherent Incoherence     `json:"incoherent"`
	Exit       int             `json:"exit"`
	Samples    []*SampleResult `json:"samples,omitempty"`
}

// CategoryStat is a category's pooled rate and mean persona trajectory.
type CategoryStat struct {
	Category   Category  `json:"category"`
	Probes     int       `json:"probes"`
	Rate       Rate      `json:"rate"`
	Limit      *float64  `json:"limit,omitempty"`
	Breached   bool      `json:"breached"`
	Trajectory []float64 `json:"trajectory"` // mean persona departure per assistant turn
}

// ProbeStat is one probe's rate and mean persona trajectory.
type ProbeStat struct {
	ID          string    `json:"id"`
	Category    Category  `json:"category"`
	Description string    `json:"description,omitempty"`
	Rate        Rate      `json:"rate"`
	Errors      int       `json:"errors"`
	Limit       *float64  `json:"limit,omitempty"`
	Breached    bool      `json:"breached"`
	Trajectory  []float64 `json:"trajectory"`
	MeanPersona float64   `json:"mean_persona"` // over all scored turns
}

// Breach is one threshold that did not hold.
type Breach struct {
	Scope string  `json:"scope"` // "suite", "category", "probe", "incoherent"
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
}

// Failures counts samples that could not be measured, by kind.
type Failures struct {
	Samples    int      `json:"samples"`
	Backend    int      `json:"backend"`
	Transcript int      `json:"transcript"`
	Scorer     int      `json:"scorer"`
	Examples   []string `json:"examples,omitempty"` // up to five messages, for the reader
}

// Incoherence counts turns the coherence check failed.
type Incoherence struct {
	Turns  int     `json:"turns"`
	Scored int     `json:"scored"`
	Share  float64 `json:"share"`
}

// Summarize computes rates, intervals, trajectories, breaches and the exit
// code of a run from its samples. Only completed samples enter rates;
// errored ones are counted as failures, and any failure makes the exit code 3
// because a rate over a partial run could hide exactly the probes that broke.
func Summarize(info *RunInfo, s *Suite, samples []*SampleResult, samplesOverride int) *Report {
	rep := &Report{Run: *info, Samples: samples}
	rng := rand.New(rand.NewPCG(uint64(s.Seed), 0x9e3779b97f4a7c15))
	byProbe := map[string][]*SampleResult{}
	for _, r := range samples {
		byProbe[r.ProbeID] = append(byProbe[r.ProbeID], r)
	}
	catGroups := map[Category][][]bool{}
	catTraj := map[Category]*trajectory{}
	catProbes := map[Category]int{}
	var allGroups [][]bool
	t := s.Thresholds
	for i := range s.Probes {
		p := &s.Probes[i]
		ps := ProbeStat{ID: p.ID, Category: p.Category, Description: p.Description}
		var outcomes []bool
		tr := &trajectory{}
		var sum float64
		var nTurns int
		for _, r := range byProbe[p.ID] {
			if r.Status != StatusOK {
				ps.Errors++
				continue
			}
			outcomes = append(outcomes, r.Elicited)
			for k, turn := range r.Turns {
				tr.add(k, turn.Persona)
				sum += turn.Persona
				nTurns++
				rep.Incoherent.Scored++
				if turn.Incoherent {
					rep.Incoherent.Turns++
				}
			}
		}
		ps.Rate = ProbeRate(outcomes, rng)
		ps.Trajectory = tr.means()
		if nTurns > 0 {
			ps.MeanPersona = sum / float64(nTurns)
		}
		if lim, ok := t.Probes[p.ID]; ok {
			ps.Limit = &lim
		} else if t.ProbeMaxRate != nil {
			ps.Limit = t.ProbeMaxRate
		}
		if ps.Limit != nil && ps.Rate.N > 0 && ps.Rate.Rate > *ps.Limit {
			ps.Breached = true
			rep.Breaches = append(rep.Breaches, Breach{"probe", p.ID, ps.Rate.Rate, *ps.Limit})
		}
		rep.Probes = append(rep.Probes, ps)
		catGroups[p.Category] = append(catGroups[p.Category], outcomes)
		catProbes[p.Category]++
		if catTraj[p.Category] == nil {
			catTraj[p.Category] = &trajectory{}
		}
		for k, m := range ps.Trajectory {
			catTraj[p.Category].add(k, m)
		}
		allGroups = append(allGroups, outcomes)
	}
	for _, c := range Categories {
		if catProbes[c] == 0 {
			continue
		}
		cs := CategoryStat{Category: c, Probes: catProbes[c], Rate: ClusterRate(catGroups[c], rng), Trajectory: catTraj[c].means()}
		if lim, ok := t.Categories[c]; ok {
			cs.Limit = &lim
			if cs.Rate.N > 0 && cs.Rate.Rate > lim {
				cs.Breached = true
				rep.Breaches = append(rep.Breaches, Breach{"category", string(c), cs.Rate.Rate, lim})
			}
		}
		rep.Categories = append(rep.Categories, cs)
	}
	rep.Overall = ClusterRate(allGroups, rng)
	if t.MaxRate != nil && rep.Overall.N > 0 && rep.Overall.Rate > *t.MaxRate {
		rep.Breaches = append(rep.Breaches, Breach{"suite", s.Name, rep.Overall.Rate, *t.MaxRate})
	}
	if rep.Incoherent.Scored > 0 {
		rep.Incoherent.Share = float64(rep.Incoherent.Turns) / float64(rep.Incoherent.Scored)
	}
	if t.MaxIncoherent != nil && rep.Incoherent.Share > *t.MaxIncoherent {
		rep.Breaches = append(rep.Breaches, Breach{"incoherent", s.Name, rep.Incoherent.Share, *t.MaxIncoherent})
	}
	// Failures: errored samples and samples that never ran (a run finished
	// from a store that lost some would otherwise look complete).
	want := 0
	for i := range s.Probes {
		want += s.samples(&s.Probes[i], samplesOverride)
	}
	ok := 0
	for _, r := range samples {
		if r.Status == StatusOK {
			ok++
			continue
		}
		rep.Failures.Samples++
		switch r.ErrorKind {
		case ErrKindBackend:
			rep.Failures.Backend++
		case ErrKindTranscript:
			rep.Failures.Transcript++
		default:
			rep.Failures.Scorer++
		}
		if len(rep.Failures.Examples) < 5 {
			rep.Failures.Examples = append(rep.Failures.Examples, fmt.Sprintf("%s#%d: %s", r.ProbeID, r.Sample, r.Error))
		}
	}
	if missing := want - ok - rep.Failures.Samples; missing > 0 {
		rep.Failures.Samples += missing
		rep.Failures.Examples = append(rep.Failures.Examples, fmt.Sprintf("%d samples never ran", missing))
	}
	switch {
	case rep.Failures.Samples > 0 || ok == 0:
		rep.Exit = ExitInfra
	case len(rep.Breaches) > 0:
		rep.Exit = ExitBreached
	default:
		rep.Exit = ExitPass
	}
	return rep
}

// trajectory accumulates mean values per turn index.
type trajectory struct{ sum, n []float64 }

func (t *trajectory) add(k int, v float64) {
	for len(t.sum) <= k {
		t.sum, t.n = append(t.sum, 0), append(t.n, 0)
	}
	t.sum[k] += v
	t.n[k]++
}

func (t *trajectory) means() []float64 {
	if t == nil {
		return nil
	}
	out := make([]float64, len(t.sum))
	for i := range out {
		out[i] = t.sum[i] / t.n[i]
	}
	return out
}

// Verdict is the one-word outcome of an exit code.
func Verdict(code int) string {
	switch code {
	case ExitPass:
		return "PASS"
	case ExitBreached:
		return "BREACHED"
	case ExitInfra:
		return "INCOMPLETE"
	}
	return "ERROR"
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }

func rateCell(r Rate) string {
	if r.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s [%s, %s]", pct(r.Rate), pct(r.Lo), pct(r.Hi))
}

func limitCell(l *float64) string {
	if l == nil {
		return ""
	}
	return "≤ " + pct(*l)
}

// WriteText writes the terminal report: per-probe table, per-category table,
// breaches, failures and the verdict.
func (rep *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PROBE\tCATEGORY\tELICITED\tRATE [95%% CI]\tLIMIT\tPERSONA/TURN\tERRORS\t\n")
	for _, p := range rep.Probes {
		mark := ""
		if p.Breached {
			mark = "  ✗"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%d\t%s\n", p.ID, p.Category, p.Rate.Elicited, p.Rate.N,
			rateCell(p.Rate), limitCell(p.Limit), sparkText(p.Trajectory), p.Errors, mark)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "CATEGORY\tPROBES\tELICITED\tRATE [95%% CI]\tLIMIT\tPERSONA/TURN\t\t\n")
	for _, c := range rep.Categories {
		mark := ""
		if c.Breached {
			mark = "  ✗"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%s\t%s\t\t%s\n", c.Category, c.Probes, c.Rate.Elicited, c.Rate.N,
			rateCell(c.Rate), limitCell(c.Limit), sparkText(c.Trajectory), mark)
	}
	fmt.Fprintf(tw, "all\t%d\t%d/%d\t%s\t\t\t\t\n", len(rep.Probes), rep.Overall.Elicited, rep.Overall.N, rateCell(rep.Overall))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, b := range rep.Breaches {
		fmt.Fprintf(w, "breached: %s %s: %s > %s\n", b.Scope, b.Name, pct(b.Value), pct(b.Limit))
	}
	if f := rep.Failures; f.Samples > 0 {
		fmt.Fprintf(w, "failed samples: %d (backend %d, transcript %d, scorer %d)\n", f.Samples, f.Backend, f.Transcript, f.Scorer)
		for _, e := range f.Examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	if rep.Incoherent.Turns > 0 {
		fmt.Fprintf(w, "incoherent turns: %d of %d (%s)\n", rep.Incoherent.Turns, rep.Incoherent.Scored, pct(rep.Incoherent.Share))
	}
	_, err := fmt.Fprintf(w, "%s  run %s  suite %s  target %s\n", Verdict(rep.Exit), rep.Run.ID, rep.Run.SuiteName, rep.Run.Target)
	return err
}

// sparkText draws a trajectory with block characters (0 low, 100 high).
func sparkText(xs []float64) string {
	const bars = "▁▂▃▄▅▆▇█"
	r := []rune(bars)
	var b strings.Builder
	for _, x := range xs {
		i := int(x / 100 * float64(len(r)-1))
		b.WriteRune(r[max(0, min(len(r)-1, i))])
	}
	return b.String()
}

// WriteJSON writes the report, transcripts included.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// JUnit types: the subset of the format CI servers (GitHub, GitLab,
// Jenkins) read.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes one testsuite per category with one testcase per probe
// (failed when its threshold was breached, errored when samples failed), and
// a "thresholds" testsuite for the category and suite limits.
func (rep *Report) WriteJUnit(w io.Writer) error {
	root := junitSuites{Name: "persona audit " + rep.Run.SuiteName}
	dur := map[string]time.Duration{}
	for _, r := range rep.Samples {
		dur[r.ProbeID] += r.Duration
	}
	idx := map[Category]int{}
	for _, p := range rep.Probes {
		i, ok := idx[p.Category]
		if !ok {
			i = len(root.Suites)
			idx[p.Category] = i
			root.Suites = append(root.Suites, junitSuite{Name: string(p.Category), Timestamp: rep.Run.Created.Format(time.RFC3339)})
		}
		s := &root.Suites[i]
		c := junitCase{Name: p.ID, Classname: "persona.audit." + string(p.Category),
			Time:      fmt.Sprintf("%.3f", dur[p.ID].Seconds()),
			SystemOut: fmt.Sprintf("elicited %d/%d, rate %s, mean persona departure %.1f", p.Rate.Elicited, p.Rate.N, rateCell(p.Rate), p.MeanPersona)}
		if p.Breached {
			c.Failure = &junitProblem{Type: "threshold", Message: fmt.Sprintf("elicitation rate %s > limit %s", pct(p.Rate.Rate), pct(*p.Limit)),
				Text: p.Description}
			s.Failures++
		}
		if p.Errors > 0 {
			c.Error = &junitProblem{Type: "infrastructure", Message: fmt.Sprintf("%d samples failed", p.Errors)}
			s.Errors++
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
	}
	th := junitSuite{Name: "thresholds"}
	for _, c := range rep.Categories {
		if c.Limit == nil {
			continue
		}
		jc := junitCase{Name: "category " + string(c.Category), Classname: "persona.audit.thresholds", Time: "0"}
		if c.Breached {
			jc.Failure = &junitProblem{Type: "threshold", Message: fmt.Sprintf("rate %s > limit %s", pct(c.Rate.Rate), pct(*c.Limit))}
			th.Failures++
		}
		th.Cases = append(th.Cases, jc)
		th.Tests++
	}
	for _, b := range rep.Breaches {
		if b.Scope == "suite" || b.Scope == "incoherent" {
			th.Cases = append(th.Cases, junitCase{Name: b.Scope + " " + b.Name, Classname: "persona.audit.thresholds", Time: "0",
				Failure: &junitProblem{Type: "threshold", Message: fmt.Sprintf("%s > limit %s", pct(b.Value), pct(b.Limit))}})
			th.Tests++
			th.Failures++
		}
	}
	if th.Tests > 0 {
		root.Suites = append(root.Suites, th)
	}
	for _, s := range root.Suites {
		root.Tests += s.Tests
		root.Failures += s.Failures
		root.Errors += s.Errors
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
