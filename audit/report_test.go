package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"persona/backend"
	"persona/internal/testref"
)

// sampleReport runs the tiny suite with a pirate target, a failing sample and
// a breached probe threshold, so every part of a report has something in it.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	s := tinySuite(t)
	failSeed := SampleSeed(s.Seed, "p2", 1)
	target := pirateTarget()
	flaky := &fakeBackend{name: "fake:target", reply: func(req backend.Request) (*backend.Response, error) {
		if *req.Seed == failSeed {
			return nil, errors.New("HTTP 502 <bad gateway> & friends")
		}
		return target.reply(req)
	}}
	rep, err := Start(context.Background(), s, Options{Target: flaky, Judge: pirateJudge(true), Store: openTestStore(t), Samples: 6})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Exit != ExitInfra || len(rep.Breaches) == 0 {
		t.Fatalf("fixture: exit %d breaches %v", rep.Exit, rep.Breaches)
	}
	return rep
}

func TestJUnitWellFormed(t *testing.T) {
	rep := sampleReport(t)
	var buf bytes.Buffer
	if err := rep.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	// Well-formed: every token decodes.
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("malformed XML: %v\n%s", err, buf.String())
		}
	}
	var root struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
				Error *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &root); err != nil {
		t.Fatal(err)
	}
	probes := map[string]bool{}
	failed, errored := 0, 0
	for _, s := range root.Suites {
		for _, c := range s.Cases {
			if s.Name != "thresholds" {
				probes[c.Name] = true
			}
			if c.Failure != nil {
				failed++
			}
			if c.Error != nil {
				errored++
			}
		}
	}
	if len(probes) != 2 || !probes["p1"] || !probes["p2"] {
		t.Errorf("testcases %v, want one per probe", probes)
	}
	if failed != root.Failures || failed == 0 || errored != 1 || root.Errors != 1 {
		t.Errorf("failures %d/%d errors %d/%d\n%s", failed, root.Failures, errored, root.Errors, buf.String())
	}
}

func TestJSONReport(t *testing.T) {
	rep := sampleReport(t)
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Exit != rep.Exit || len(back.Probes) != 2 || len(back.Samples) != 12 || back.Overall != rep.Overall {
		t.Errorf("JSON round trip lost data: %+v", back.Overall)
	}
	if strings.Contains(buf.String(), "suite_source") {
		t.Error("JSON carries the suite source")
	}
}

func TestTextReport(t *testing.T) {
	rep := sampleReport(t)
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"p1", "role_play_capture", "breached: probe p1", "failed samples: 1 (backend 1", "INCOMPLETE"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestHTMLInChromium(t *testing.T) {
	browser := testref.Chromium(t)
	dir := t.TempDir()
	// The checker must see a broken page as broken.
	bad := filepath.Join(dir, "bad.html")
	os.WriteFile(bad, []byte(`<html><body><script>undefinedFn();</script></body></html>`), 0o644)
	if _, console := testref.Render(t, browser, "file://"+bad, "--dump-dom"); len(console) == 0 {
		t.Fatal("a page with a script error produced no console message: the check cannot fail")
	}

	rep := sampleReport(t)
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	src := buf.String()
	// Self-contained: nothing is loaded from anywhere.
	if m := regexp.MustCompile(`(?i)(src=|<link|@import|url\(|https?://[^"]*\.(js|css|png|svg|woff))`).FindString(src); m != "" {
		t.Errorf("report references an external asset: %q", m)
	}
	if strings.Count(src, "<svg") < 4 {
		t.Error("report lacks its SVG charts")
	}
	if strings.Contains(src, "<bad gateway>") {
		t.Error("error text not escaped")
	}
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dom, console := testref.Render(t, browser, "file://"+page, "--dump-dom")
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	for _, want := range []string{`data-ready="1"`, `id="summary"`, "INCOMPLETE", `id="overall-rate"`, "p1", "Arr, I be Captain Nova!"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	shot := filepath.Join(dir, "report.png")
	testref.Render(t, browser, "file://"+page, "--screenshot="+shot, "--window-size=1200,1600", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if out := os.Getenv("PERSONA_AUDIT_SCREENSHOT"); out != "" {
		os.WriteFile(out, png, 0o644)
		os.WriteFile(strings.TrimSuffix(out, ".png")+".html", buf.Bytes(), 0o644)
	}
}
