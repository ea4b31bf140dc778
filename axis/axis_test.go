package axis

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"persona/engine"
	"persona/internal/testmodel"
	"persona/personas"
	"persona/vectors"
)

// loadTiny loads the tiny organism: the organism's plumbing at test size
// (its replies are noise, so tests check the machinery, not findings).
func loadTiny(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.Load(testmodel.Organism(t, 32, 4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMain(m *testing.M) { testmodel.Main(m) }

// The axis statistics on constructed role vectors where the truth is known:
// roles spread mostly along one direction u (their spread along v has mean
// zero and is uncorrelated with it), the Assistant far out on u.
// The axis must point along u, PC1 must be u (oriented toward the
// Assistant), the Assistant must sit at the end of PC1, and τ must be the
// 25th percentile of the default replies' projections.
func TestLayerStatsKnown(t *testing.T) {
	const d = 6
	u := []float32{0.6, 0.8, 0, 0, 0, 0}
	v := []float32{0, 0, 1, 0, 0, 0}
	at := func(a, b float32) []float32 {
		out := make([]float32, d)
		for i := range out {
			out[i] = a*u[i] + b*v[i] + 0.5 // an offset shared by everything
		}
		return out
	}
	var roles []*Role
	for i, c := range [][2]float32{{-3, 0.2}, {-1, -0.2}, {0, 0.2}, {1, -0.2}, {2, 0.15}, {-2, -0.15}} {
		roles = append(roles, &Role{Name: string(rune('a' + i)), Vector: &vectors.Set{Layers: []int{0}, Vectors: [][]float32{at(c[0], c[1])}}})
	}
	def := &vectors.Set{Layers: []int{0}, Vectors: [][]float32{at(6, 0)}}
	rolesAcc, defAcc := vectors.NewAccumulator([]int{0}), vectors.NewAccumulator([]int{0})
	for _, r := range roles {
		rolesAcc.Add(r.Vector.Vectors)
	}
	var defMeans [][][]float32
	for _, x := range []float32{4, 5, 6, 7, 8} {
		m := [][]float32{at(x, 0)}
		defMeans = append(defMeans, m)
		defAcc.Add(m)
	}
	ax, err := vectors.Difference(Name, "synthetic", defAcc, rolesAcc)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := layerStats(0, 0, ax, def, roles, defMeans)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ls.CosAxisPC1-1) > 1e-6 {
		t.Errorf("cos(axis, PC1) = %.7f, want 1", ls.CosAxisPC1)
	}
	if ls.AssistantRank != 1 || ls.Separation <= 0 {
		t.Errorf("Assistant rank %g separation %g, want the end of PC1", ls.AssistantRank, ls.Separation)
	}
	if ls.Assistant[0] <= 0 || ls.Loadings["a"][0] >= 0 {
		t.Errorf("PC1 not oriented toward the Assistant: assistant %g, role a %g", ls.Assistant[0], ls.Loadings["a"][0])
	}
	// Role mean along u is −0.5; default replies project on the unit axis
	// (= u) at x + 0.5·(0.6+0.8); the 25th percentile of x ∈ {4..8} is 5.
	if want := 5 + 0.5*1.4; math.Abs(ls.Tau-want) > 1e-5 {
		t.Errorf("τ = %g, want %g", ls.Tau, want)
	}
	if ls.Explained[0] < 0.9 {
		t.Errorf("PC1 explains %.3f, want most of the variance", ls.Explained[0])
	}
}

// Build end to end on a tiny organism: the file it saves loads back as an
// axis with τ, capping interventions apply to the model, and the map is
// well-formed SVG naming every role.
func TestBuildEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a few hundred replies")
	}
	e := loadTiny(t)
	qs := DefaultQuestions()[:4]
	res, err := Build(context.Background(), e, Options{Library: personas.Default(), Questions: qs, MaxTokens: 8, Seed: 1, Model: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Roles), len(personas.Default().Personas)-1; got != want {
		t.Errorf("%d roles, want %d (every persona but the Assistant)", got, want)
	}
	if res.Default.Generated != 4*(1+5) { // no system prompt + the Assistant's 5 prompts
		t.Errorf("%d default replies, want 24", res.Default.Generated)
	}
	if len(res.Layers) != 4 || res.DriftLayer != 1 || len(res.CapLayers) != 1 || res.CapLayers[0] != 2 {
		t.Errorf("layers %d, drift layer %d, cap band %v; want 4, 1, [2]", len(res.Layers), res.DriftLayer, res.CapLayers)
	}
	for _, ls := range res.Layers {
		if math.IsNaN(ls.Tau) || math.IsNaN(ls.CosAxisPC1) || math.Abs(ls.CosAxisPC1) > 1+1e-9 || ls.Assistant[0] < 0 {
			t.Errorf("layer %d: τ %g cos %g assistant %v", ls.Layer, ls.Tau, ls.CosAxisPC1, ls.Assistant)
		}
	}

	path := filepath.Join(t.TempDir(), "axis.safetensors")
	if err := res.Axis.Save(path); err != nil {
		t.Fatal(err)
	}
	a, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check(e.Model.NumLayers, e.Model.Hidden); err != nil {
		t.Fatal(err)
	}
	if a.Tau[2] != res.Layers[2].Tau && math.Abs(a.Tau[2]-res.Layers[2].Tau) > 1e-6 {
		t.Errorf("τ read back %g, written %g", a.Tau[2], res.Layers[2].Tau)
	}
	caps, err := a.Cap(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Set.Interventions(e.Model.NumLayers, e.Model.Hidden, caps...); err != nil {
		t.Fatal(err)
	}
	// The wrong model is refused with the width error.
	if err := a.Check(e.Model.NumLayers, e.Model.Hidden+1); !errors.Is(err, vectors.ErrWidth) {
		t.Errorf("wrong width: %v", err)
	}
	if err := a.Check(2, e.Model.Hidden); !errors.Is(err, engine.ErrLayer) {
		t.Errorf("too few layers: %v", err)
	}

	var svg bytes.Buffer
	if err := res.WriteMap(&svg, res.DriftLayer); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("map is not well-formed XML: %v", err)
			}
			break
		}
	}
	for _, r := range res.Roles {
		if r.Kept > 0 && !strings.Contains(svg.String(), ">"+r.Name+"<") {
			t.Errorf("map lacks role %q", r.Name)
		}
	}
}

func TestDefaultLayers(t *testing.T) {
	all := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	for _, c := range []struct {
		layers, drift int
		band          []int
	}{
		{1, 0, []int{0}},
		{2, 0, []int{1}},
		{4, 1, []int{2}},
		{5, 2, []int{3}},
		{32, 15, []int{16, 17, 18, 19, 20, 21, 22, 23}},
	} {
		d, b := DefaultLayers(c.layers, all(c.layers))
		if d != c.drift || !slices.Equal(b, c.band) {
			t.Errorf("%d layers: drift %d band %v, want %d %v", c.layers, d, b, c.drift, c.band)
		}
	}
	// Only some layers captured: the nearest drift layer, and no captured
	// layer inside the band falls back to the drift layer itself.
	if d, b := DefaultLayers(32, []int{8, 16, 24}); d != 16 || !slices.Equal(b, []int{16}) {
		t.Errorf("sparse layers: drift %d band %v", d, b)
	}
}

// A vector file that is not an axis, or whose metadata is damaged, is
// refused with a message saying what is missing.
func TestFromSetRejects(t *testing.T) {
	base := func() *vectors.Set {
		return &vectors.Set{Name: Name, Layers: []int{0, 1}, Vectors: [][]float32{{1, 0}, {0, 1}},
			Meta: map[string]string{MetaTau: "0.5,0.25", MetaCapLayers: "1", MetaDriftLayer: "1"}}
	}
	if _, err := FromSet(base()); err != nil {
		t.Fatalf("good set refused: %v", err)
	}
	for name, c := range map[string]struct {
		edit func(s *vectors.Set)
		want string
	}{
		"persona vector": {func(s *vectors.Set) { delete(s.Meta, MetaTau) }, "not an assistant axis"},
		"tau count":      {func(s *vectors.Set) { s.Meta[MetaTau] = "1" }, "1 values for 2 layers"},
		"tau nan":        {func(s *vectors.Set) { s.Meta[MetaTau] = "1,NaN" }, "finite"},
		"cap layer":      {func(s *vectors.Set) { s.Meta[MetaCapLayers] = "5" }, "layer 5"},
		"drift layer":    {func(s *vectors.Set) { s.Meta[MetaDriftLayer] = "x" }, MetaDriftLayer},
	} {
		s := base()
		c.edit(s)
		if _, err := FromSet(s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
		}
	}
}
