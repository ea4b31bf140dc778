//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package fileio

import "os"

// Map reads the whole file where memory mapping is not wired up.
func Map(path string) ([]byte, func() error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
