package axis

import (
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
)

// WriteMap draws persona space at one layer as a self-contained SVG: every
// role at its (PC1, PC2) coordinates with its name, and the default
// Assistant, so a reader sees at a glance whether the Assistant sits at the
// end of PC1 and which roles are its neighbours. Nothing is loaded from
// anywhere; the file opens offline.
func (r *Result) WriteMap(w io.Writer, layer int) error {
	var ls *LayerStats
	for i := range r.Layers {
		if r.Layers[i].Layer == layer {
			ls = &r.Layers[i]
		}
	}
	if ls == nil {
		return fmt.Errorf("axis map: no layer %d", layer)
	}
	type pt struct {
		name   string
		x, y   float64
		assist bool
	}
	coord := func(s []float64, k int) float64 {
		if k < len(s) {
			return s[k]
		}
		return 0
	}
	var pts []pt
	for name, s := range ls.Loadings {
		pts = append(pts, pt{name, coord(s, 0), coord(s, 1), false})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].name < pts[j].name })
	pts = append(pts, pt{"Assistant (default)", coord(ls.Assistant, 0), coord(ls.Assistant, 1), true})

	const W, H, pad = 640, 480, 56
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
		minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
	}
	span := func(lo, hi float64) (float64, float64) {
		if hi-lo < 1e-9 {
			return lo - 1, hi + 1
		}
		m := 0.08 * (hi - lo)
		return lo - m, hi + m
	}
	minX, maxX = span(minX, maxX)
	minY, maxY = span(minY, maxY)
	sx := func(x float64) float64 { return pad + (x-minX)/(maxX-minX)*(W-2*pad) }
	sy := func(y float64) float64 { return H - pad - (y-minY)/(maxY-minY)*(H-2*pad) }
	pct := func(i int) string {
		if i < len(ls.Explained) {
			return fmt.Sprintf(" (%.0f%% of variance)", 100*ls.Explained[i])
		}
		return ""
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" role="img" aria-label="persona space, layer %d">`, W, H, W, H, layer)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">Persona space at layer %d: cos(axis, PC1) = %.2f</text>`, pad, layer, ls.CosAxisPC1)
	if minX < 0 && maxX > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, sx(0), pad, sx(0), H-pad)
	}
	if minY < 0 && maxY > 0 {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, pad, sy(0), W-pad, sy(0))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, pad, pad, W-2*pad, H-2*pad)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="middle">PC1%s → toward the Assistant</text>`, W/2, H-pad+32, pct(0))
	fmt.Fprintf(&b, `<text x="16" y="%d" font-size="12" text-anchor="middle" transform="rotate(-90 16 %d)">PC2%s</text>`, H/2, H/2, pct(1))
	for _, p := range pts {
		col, r := "#3b6ea8", 5
		if p.assist {
			col, r = "#b3261e", 7
		}
		x, y := sx(p.x), sy(p.y)
		anchor, dx := "start", 9.0
		if x > W-pad-120 {
			anchor, dx = "end", -9
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%d" fill="%s"><title>%s: PC1 %.3g, PC2 %.3g</title></circle>`, x, y, r, col, html.EscapeString(p.name), p.x, p.y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="%s" fill="%s">%s</text>`, x+dx, y+4, anchor, col, html.EscapeString(p.name))
	}
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}
