package audit

import (
	"embed"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
)

// builtin holds the suites shipped in the binary.
//
//go:embed suites/*.yaml
var builtin embed.FS

var (
	suitesMu sync.RWMutex
	// suiteSources are named suites besides the embedded files: generated
	// ones register here, e.g. the organism suite, which is written from the
	// persona world's request types rather than by hand so that it follows
	// the world as it changes.
	suiteSources = map[string]func() ([]byte, error){}
)

// RegisterSuite makes a generated suite available by name to --suite. gen
// returns the suite's YAML, which is parsed and validated like a file and
// stored with each run (so a run resumes with the suite it started with even
// if the generator changes). It panics on a duplicate name.
func RegisterSuite(name string, gen func() ([]byte, error)) {
	suitesMu.Lock()
	defer suitesMu.Unlock()
	if _, dup := suiteSources[name]; dup || builtinHas(name) {
		panic("audit: suite registered twice: " + name)
	}
	suiteSources[name] = gen
}

func builtinHas(name string) bool {
	_, err := builtin.Open("suites/" + name + ".yaml")
	return err == nil
}

// SuiteNames lists the suites available by name.
func SuiteNames() []string {
	var names []string
	ents, _ := builtin.ReadDir("suites")
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	suitesMu.RLock()
	for n := range suiteSources {
		names = append(names, n)
	}
	suitesMu.RUnlock()
	sort.Strings(names)
	return names
}

// OpenSuite resolves --suite: an existing file path, or the name of a
// built-in or registered suite ("default").
func OpenSuite(arg string) (*Suite, error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		return LoadSuite(arg)
	}
	if data, err := builtin.ReadFile("suites/" + arg + ".yaml"); err == nil {
		return ParseSuite(data, "builtin:"+arg)
	}
	suitesMu.RLock()
	gen := suiteSources[arg]
	suitesMu.RUnlock()
	if gen != nil {
		data, err := gen()
		if err != nil {
			return nil, fmt.Errorf("suite %s: %w", arg, err)
		}
		return ParseSuite(data, "builtin:"+arg)
	}
	return nil, fmt.Errorf("%w: no suite file or built-in suite %q (built-in: %s)", ErrInput, arg, strings.Join(SuiteNames(), ", "))
}
