// Package models ships the project's model organism inside the persona
// binary (models/organism: the post-trained Assistant and its pretrained
// base), so every command has a model to run with no download. The files are
// written once to the user's cache directory, keyed by their content hash,
// because the engine memory-maps weights from files.
package models

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"persona/internal/fileio"
)

//go:embed organism/base organism/assistant
var files embed.FS

// Default is the model a command uses when none is named: the post-trained
// organism.
const Default = "organism"

// dirs maps the names the CLI accepts to embedded directories.
var dirs = map[string]string{
	"organism":      "organism/assistant",
	"organism-base": "organism/base",
}

// Names lists the embedded models.
func Names() []string {
	out := make([]string, 0, len(dirs))
	for n := range dirs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Resolve turns a --model argument into a path: "" and the embedded names
// give the embedded model's directory, anything else is returned unchanged.
func Resolve(arg string) (string, error) {
	if arg == "" {
		arg = Default
	}
	if _, ok := dirs[arg]; !ok {
		return arg, nil
	}
	return Path(arg)
}

// Path writes the embedded model name to the cache (once) and returns its
// directory.
func Path(name string) (string, error) {
	dir, ok := dirs[name]
	if !ok {
		return "", fmt.Errorf("no embedded model %q (have %s)", name, strings.Join(Names(), ", "))
	}
	h := sha256.New()
	var paths []string
	err := fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write(data)
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "persona", "models", name+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(out, "config.json")); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	// config.json last: its presence marks a complete copy.
	sort.SliceStable(paths, func(i, j int) bool {
		return filepath.Base(paths[i]) != "config.json" && filepath.Base(paths[j]) == "config.json"
	})
	for _, p := range paths {
		data, _ := files.ReadFile(p)
		if err := fileio.WriteFileAtomic(filepath.Join(out, filepath.Base(p)), data); err != nil {
			return "", err
		}
	}
	return out, nil
}
