package backend

import (
	"io"
	"testing"
)

// EngineOf sees through the wrappers a config builds around an engine and
// calls everything else a black box.
func TestEngineOf(t *testing.T) {
	eng := NewEngine(nil, "m", 1)
	api := &fake{name: "api"}
	for _, c := range []struct {
		name string
		b    Backend
		want *Engine
	}{
		{"engine", eng, eng},
		{"robust engine", NewRobust("r", Policy{}, eng), eng},
		{"recorded robust engine", NewRecorder(NewRobust("r", Policy{}, eng), io.Discard), eng},
		{"api", api, nil},
		{"robust api", NewRobust("r", Policy{}, api), nil},
		{"engine mixed with api", NewRobust("r", Policy{}, eng, api), nil},
		{"recorded api", NewRecorder(api, io.Discard), nil},
	} {
		if got := EngineOf(c.b); got != c.want {
			t.Errorf("%s: EngineOf = %v, want %v", c.name, got, c.want)
		}
	}
}
