package axis

import (
	"math"
	"math/rand/v2"
	"testing"
)

// orthonormal returns k orthonormal vectors of width d (Gram–Schmidt on
// random vectors).
func orthonormal(r *rand.Rand, k, d int) [][]float64 {
	var q [][]float64
	for len(q) < k {
		v := make([]float64, d)
		for i := range v {
			v[i] = r.NormFloat64()
		}
		for _, u := range q {
			p := dot(v, u)
			for i := range v {
				v[i] -= p * u[i]
			}
		}
		n := math.Sqrt(dot(v, v))
		for i := range v {
			v[i] /= n
		}
		q = append(q, v)
	}
	return q
}

// Eigen recovers the eigenvalues and eigenvectors of A = Q diag(λ) Qᵀ.
func TestEigenKnownDecomposition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m = 7
	q := orthonormal(r, m, m)
	lam := []float64{9, 5.5, 3, 2, 1, 0.25, -1.5}
	a := make([][]float64, m)
	for i := range a {
		a[i] = make([]float64, m)
		for j := range a[i] {
			for k := range lam {
				a[i][j] += q[k][i] * lam[k] * q[k][j]
			}
		}
	}
	vals, vecs := Eigen(a)
	for k := range lam {
		if math.Abs(vals[k]-lam[k]) > 1e-10 {
			t.Errorf("eigenvalue %d = %.12g, want %g", k, vals[k], lam[k])
		}
		if c := math.Abs(dot(vecs[k], q[k])); math.Abs(c-1) > 1e-9 {
			t.Errorf("eigenvector %d: |cos| with the true one %.12f", k, c)
		}
	}
	// a is left alone.
	if a[0][1] != a[1][0] {
		t.Error("Eigen modified its input")
	}
}

// Points ±σ_k q_k (plus an offset) have mean offset and scatter
// Σ 2σ_k² q_k q_kᵀ, so the PCA is known exactly; both the Gram route
// (few points, wide) and the covariance route (many points, narrow) must
// find it.
func TestPCAKnown(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		name string
		d    int
		sig  []float64
		reps int // each ± pair is repeated, to have more points than width
	}{
		{"gram", 40, []float64{3, 2, 1}, 1},
		{"covariance", 3, []float64{3, 2, 1}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := orthonormal(r, len(c.sig), c.d)
			off := make([]float64, c.d)
			for i := range off {
				off[i] = r.NormFloat64()
			}
			var pts [][]float32
			for range c.reps {
				for k, s := range c.sig {
					for _, sign := range []float64{1, -1} {
						p := make([]float32, c.d)
						for i := range p {
							p[i] = float32(off[i] + sign*s*q[k][i])
						}
						pts = append(pts, p)
					}
				}
			}
			p, err := FitPCA(pts, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Components) != len(c.sig) {
				t.Fatalf("%d components, want %d", len(p.Components), len(c.sig))
			}
			n := float64(len(pts))
			total := 0.0
			for _, s := range c.sig {
				total += s * s
			}
			for k, s := range c.sig {
				wantVar := 2 * float64(c.reps) * s * s / (n - 1)
				if math.Abs(p.Variance[k]-wantVar) > 1e-4*wantVar {
					t.Errorf("variance %d = %g, want %g", k, p.Variance[k], wantVar)
				}
				if math.Abs(p.Explained[k]-s*s/total) > 1e-5 {
					t.Errorf("explained %d = %g, want %g", k, p.Explained[k], s*s/total)
				}
				if cos := math.Abs(dot(p.Components[k], q[k])); cos < 1-1e-5 {
					t.Errorf("component %d: |cos| with q_%d = %.7f", k, k, cos)
				}
				// Point 2k is +σ_k q_k: its score on component k is ±σ_k.
				if got := math.Abs(p.Scores[2*k][k]); math.Abs(got-s) > 1e-4 {
					t.Errorf("score of point %d on component %d = %g, want ±%g", 2*k, k, got, s)
				}
			}
			for j := range off {
				if math.Abs(p.Mean[j]-off[j]) > 1e-5 {
					t.Fatalf("mean[%d] = %g, want %g", j, p.Mean[j], off[j])
				}
			}
			// Projecting a fitted point gives its score.
			got := p.Project(pts[0])
			for k := range got {
				if math.Abs(got[k]-p.Scores[0][k]) > 1e-5 {
					t.Errorf("Project(point 0)[%d] = %g, score %g", k, got[k], p.Scores[0][k])
				}
			}
		})
	}
}

func TestPCAErrors(t *testing.T) {
	for name, pts := range map[string][][]float32{
		"one point": {{1, 2}},
		"widths":    {{1, 2}, {1}},
		"equal":     {{1, 2}, {1, 2}},
		"nan":       {{1, float32(math.NaN())}, {1, 2}},
	} {
		if _, err := FitPCA(pts, 0); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
