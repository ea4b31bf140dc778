// Package bench measures persona's speed against a reference in the same
// run: the inference engine against llama.cpp (prefill, decode, the cost of
// interventions, peak memory), and the trainer against PyTorch. Every
// measurement runs in a child process, so that its peak resident memory is
// its own, and the implementations take turns (ABAB…), so that a burst of
// other work on a shared machine lands on both rather than on one. Results
// are the median of the runs with their range.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Stat summarises repeated measurements of one quantity.
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// NewStat summarises xs (at least one).
func NewStat(xs []float64) Stat {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[n-1], Runs: xs}
}

// String prints the median with its range.
func (s Stat) String() string {
	if s.Min == s.Max {
		return fmt.Sprintf("%.1f", s.Median)
	}
	return fmt.Sprintf("%.1f (%.1f–%.1f)", s.Median, s.Min, s.Max)
}

// Ratio is a over b: the ratio of the medians, and the range of the ratios
// of runs made side by side.
func Ratio(a, b Stat) Stat {
	var rs []float64
	for i := range min(len(a.Runs), len(b.Runs)) {
		rs = append(rs, a.Runs[i]/b.Runs[i])
	}
	r := NewStat(rs)
	r.Median = a.Median / b.Median
	return r
}

// runChild runs a command that prints one JSON object, decodes it into out
// and returns the child's peak resident memory in bytes. Linux counts in a
// child's ru_maxrss the parent's resident memory at the moment it started
// the child (the exec replaces a copy of the parent's address space), so a
// child that can report its own high-water mark should (selfPeakRSS).
func runChild(ctx context.Context, out any, argv []string) (int64, error) {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Stderr = os.Stderr
	data, err := c.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return 0, fmt.Errorf("%s: %w: %q", argv[0], err, data)
	}
	var rss int64
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return rss, nil
}

// selfPeakRSS is this process's resident high-water mark in bytes (VmHWM in
// /proc/self/status), 0 where that is not available.
func selfPeakRSS() int64 { return procStatus("VmHWM") }

// selfRSS is this process's resident memory now (VmRSS), 0 where that is
// not available.
func selfRSS() int64 { return procStatus("VmRSS") }

// procStatus reads one "kB" field of /proc/self/status in bytes.
func procStatus(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}
