// Package testref gives tests what they check against: the reference
// fixtures kept in the repository's testdata/ folder, and the external
// references (llama.cpp, Hugging Face tokenizers, the openai npm client,
// Chromium, PostgreSQL) that .ci/run installs.
//
// The two fail differently on purpose. A fixture is part of the repository,
// so a missing one is a broken checkout and fails the test. An external
// reference is installed separately: outside CI its absence skips the test
// with the command that installs it, and under CI (CI=true), where .ci/run
// installed it, its absence fails the test, so a broken setup can never pass
// silently.
//
// Only tests import this package: it imports testing.
package testref

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Root returns the module root: the folder of the go.mod above this file.
// Tests run in their package's folder, so paths relative to the root are the
// only ones that mean the same in every package.
var Root = sync.OnceValue(func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testref: cannot locate the module root")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
})

// Fixture returns the absolute path of testdata/rel (rel in slash form) and
// fails the test when it does not exist.
func Fixture(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(Root(), "testdata", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("fixture %s: %v (the repository's testdata/ is incomplete)", rel, err)
	}
	return p
}

// Require makes a test depend on an external reference. missing is nil when
// the reference is there, or says what is missing and how to install it.
func Require(tb testing.TB, missing error) {
	tb.Helper()
	if missing == nil {
		return
	}
	if InCI() {
		tb.Fatalf("%v (CI=true: .ci/run installs this reference)", missing)
	}
	tb.Skip(missing)
}

// InCI reports whether the tests run under CI, where every reference must be
// installed.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing builds the error Require takes: what is absent and the command
// that installs it.
func Missing(what, install string) error {
	return fmt.Errorf("%s not available; install it with: %s", what, install)
}

// Dir returns the absolute path of the repository's testdata/ folder, for
// tests that name fixture paths in package-level variables; Fixture checks
// that a file is there.
func Dir() string { return filepath.Join(Root(), "testdata") }
