package testref

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// Chromium finds a headless browser; outside CI its absence skips the test,
// under CI it fails it.
func Chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Require(t, Missing("chromium", "apt-get install chromium"))
	return ""
}

var consoleLine = regexp.MustCompile(`(?m)^.*:CONSOLE[:(].*$`)

// Render loads url (file:// or http://) in headless Chromium and returns
// what it printed (the DOM after scripts ran, with --dump-dom among extra)
// and every console message the page produced.
func Render(t *testing.T, browser, url string, extra ...string) (out string, console []string) {
	t.Helper()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}, extra...)
	args = append(args, url)
	cmd := exec.Command(browser, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, e.String())
	}
	return o.String(), consoleLine.FindAllString(e.String(), -1)
}

// OpenAIClient returns the folder of the official openai npm client
// (tools/openai-client) after checking that node and the package are
// there.
func OpenAIClient(t *testing.T) string {
	t.Helper()
	const install = "bash tools/openai-client/install.sh"
	dir := filepath.Join(Root(), "tools", "openai-client")
	var missing error
	if _, err := exec.LookPath("node"); err != nil {
		missing = Missing("node", "apt-get install nodejs (Node ≥ 20), then "+install)
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		missing = Missing("the openai npm package", install)
	}
	Require(t, missing)
	return dir
}

// TorchPython returns a Python interpreter that imports torch (Debian's
// python3-torch, which .ci/run installs). A pyenv or venv python3 earlier
// on PATH usually lacks it, so /usr/bin/python3 is tried too.
func TorchPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import torch").Run() == nil {
			return p
		}
	}
	Require(t, Missing("Python with torch", "apt-get install python3-torch"))
	return ""
}
