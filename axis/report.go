package axis

import (
	"fmt"
	"io"
)

// WriteText prints the result as tables: roles kept, the per-layer PCA and
// axis statistics, the drift layer and capping band, and notes.
func (res *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "assistant axis over %d questions, %d roles; default Assistant: %d of %d replies kept\n", res.Questions, len(res.Roles), res.Default.Kept, res.Default.Generated)
	fmt.Fprintf(w, "\n%-16s %9s %6s\n", "role", "kept", "score")
	for _, r := range res.Roles {
		fmt.Fprintf(w, "%-16s %4d/%-4d %6.2f\n", r.Name, r.Kept, r.Generated, r.MeanScore)
	}
	fmt.Fprintf(w, "\n%5s %8s %8s %8s %10s %10s %12s %10s\n", "layer", "PC1 var", "PC2 var", "cos", "asst PC1", "rank", "separation", "tau")
	for _, ls := range res.Layers {
		pc2 := 0.0
		if len(ls.Explained) > 1 {
			pc2 = ls.Explained[1]
		}
		fmt.Fprintf(w, "%5d %7.1f%% %7.1f%% %8.3f %10.4g %10.2f %12.2f %10.4g\n", ls.Layer, 100*ls.Explained[0], 100*pc2, ls.CosAxisPC1, ls.Assistant[0], ls.AssistantRank, ls.Separation, ls.Tau)
	}
	fmt.Fprintf(w, "\ndrift layer %d, capping band %v\n", res.DriftLayer, res.CapLayers)
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}
