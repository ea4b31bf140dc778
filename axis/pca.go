package axis

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// PCA is a principal component analysis of a small set of points in a
// high-dimensional space: the role vectors of a persona library (tens to a
// few hundred points of the model's hidden width).
//
// The components are the eigenvectors of the scatter matrix XᵀX of the
// mean-centred points X (n×d). When n ≤ d the eigenproblem is solved on the
// n×n Gram matrix XXᵀ instead: if XXᵀu = λu then XᵀX(Xᵀu) = λ(Xᵀu), so
// Xᵀu/√λ is a unit eigenvector of the scatter with the same eigenvalue. That
// keeps the work at O(n²d + n³) however wide the model is; both routes go
// through the same Jacobi eigensolver.
type PCA struct {
	// Mean is the centre the points were taken relative to.
	Mean []float64
	// Components[k] is the k-th principal direction (unit length), in order
	// of decreasing variance. Each is oriented so that its largest-magnitude
	// element is positive; callers that care about the sign (the assistant
	// axis) re-orient it.
	Components [][]float64
	// Variance[k] is the variance along Components[k] (eigenvalue / (n−1)).
	Variance []float64
	// Explained[k] is Variance[k] over the total variance.
	Explained []float64
	// Scores[i][k] is point i's coordinate along Components[k].
	Scores [][]float64
}

// FitPCA centres points on their mean and returns up to k components with a
// non-zero variance (k ≤ 0: all of them).
func FitPCA(points [][]float32, k int) (*PCA, error) {
	n := len(points)
	if n < 2 {
		return nil, fmt.Errorf("pca: %d points, need at least 2", n)
	}
	d := len(points[0])
	if d == 0 {
		return nil, errors.New("pca: points of width 0")
	}
	mean := make([]float64, d)
	for i, p := range points {
		if len(p) != d {
			return nil, fmt.Errorf("pca: point %d has width %d, point 0 has %d", i, len(p), d)
		}
		for j, v := range p {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("pca: point %d element %d is %g", i, j, v)
			}
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	x := make([][]float64, n)
	total := 0.0
	for i, p := range points {
		x[i] = make([]float64, d)
		for j, v := range p {
			x[i][j] = float64(v) - mean[j]
			total += x[i][j] * x[i][j]
		}
	}

	var vals []float64
	var vecs [][]float64 // unit eigenvectors of the d×d scatter
	if n <= d {
		g := make([][]float64, n)
		for i := range g {
			g[i] = make([]float64, n)
			for j := 0; j <= i; j++ {
				g[i][j] = dot(x[i], x[j])
				g[j][i] = g[i][j]
			}
		}
		ev, eu := Eigen(g)
		for c, lam := range ev {
			if lam <= total*1e-12 {
				continue
			}
			v := make([]float64, d)
			for i := range x {
				for j := range v {
					v[j] += x[i][j] * eu[c][i]
				}
			}
			s := 1 / math.Sqrt(lam)
			for j := range v {
				v[j] *= s
			}
			vals, vecs = append(vals, lam), append(vecs, v)
		}
	} else {
		c := make([][]float64, d)
		for a := range c {
			c[a] = make([]float64, d)
		}
		for _, row := range x {
			for a := range d {
				for b := 0; b <= a; b++ {
					c[a][b] += row[a] * row[b]
				}
			}
		}
		for a := range d {
			for b := 0; b < a; b++ {
				c[b][a] = c[a][b]
			}
		}
		ev, eu := Eigen(c)
		for i, lam := range ev {
			if lam > total*1e-12 {
				vals, vecs = append(vals, lam), append(vecs, eu[i])
			}
		}
	}
	if len(vals) == 0 {
		return nil, errors.New("pca: all points are equal")
	}
	if k > 0 && k < len(vals) {
		vals, vecs = vals[:k], vecs[:k]
	}
	p := &PCA{Mean: mean, Components: vecs}
	for i, lam := range vals {
		orient(vecs[i])
		p.Variance = append(p.Variance, lam/float64(n-1))
		p.Explained = append(p.Explained, lam/total)
	}
	for _, row := range x {
		s := make([]float64, len(vecs))
		for c, v := range vecs {
			s[c] = dot(row, v)
		}
		p.Scores = append(p.Scores, s)
	}
	return p, nil
}

// Project returns the coordinates of a point (not part of the fit) along
// the components, relative to the fitted mean.
func (p *PCA) Project(point []float32) []float64 {
	out := make([]float64, len(p.Components))
	for c, v := range p.Components {
		for j, x := range point {
			out[c] += (float64(x) - p.Mean[j]) * v[j]
		}
	}
	return out
}

// Flip negates component k and the scores along it.
func (p *PCA) Flip(k int) {
	for j := range p.Components[k] {
		p.Components[k][j] = -p.Components[k][j]
	}
	for _, s := range p.Scores {
		s[k] = -s[k]
	}
}

// orient makes the largest-magnitude element of v positive, so that a
// component's sign does not depend on rounding inside the solver.
func orient(v []float64) {
	best := 0
	for j := range v {
		if math.Abs(v[j]) > math.Abs(v[best]) {
			best = j
		}
	}
	if v[best] < 0 {
		for j := range v {
			v[j] = -v[j]
		}
	}
}

// Eigen returns the eigenvalues of the symmetric matrix a in decreasing
// order and the matching unit eigenvectors (vecs[k] belongs to vals[k]),
// by the cyclic Jacobi method: rotate away the off-diagonal elements one
// pair at a time until they vanish. It is slow (O(m³) per sweep, a handful of
// sweeps) but simple, unconditionally stable and accurate to rounding for
// the small matrices PCA gives it here. a is not modified.
func Eigen(a [][]float64) (vals []float64, vecs [][]float64) {
	m := len(a)
	s := make([][]float64, m) // working copy, driven to diagonal
	v := make([][]float64, m) // accumulated rotations; columns are eigenvectors
	for i := range m {
		s[i] = append([]float64(nil), a[i]...)
		v[i] = make([]float64, m)
		v[i][i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		off, diag := 0.0, 0.0
		for i := range m {
			diag += s[i][i] * s[i][i]
			for j := i + 1; j < m; j++ {
				off += s[i][j] * s[i][j]
			}
		}
		if off <= 1e-30*diag || off == 0 {
			break
		}
		for p := 0; p < m; p++ {
			for q := p + 1; q < m; q++ {
				if s[p][q] == 0 {
					continue
				}
				// Choose the rotation angle θ that zeroes s[p][q]:
				// cot 2θ = (s_qq − s_pp) / (2 s_pq), t = tan θ, the smaller root.
				theta := (s[q][q] - s[p][p]) / (2 * s[p][q])
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				sn := t * c
				// S ← JᵀSJ on rows/columns p and q.
				for k := range m {
					skp, skq := s[k][p], s[k][q]
					s[k][p] = c*skp - sn*skq
					s[k][q] = sn*skp + c*skq
				}
				for k := range m {
					spk, sqk := s[p][k], s[q][k]
					s[p][k] = c*spk - sn*sqk
					s[q][k] = sn*spk + c*sqk
				}
				for k := range m {
					vkp, vkq := v[k][p], v[k][q]
					v[k][p] = c*vkp - sn*vkq
					v[k][q] = sn*vkp + c*vkq
				}
			}
		}
	}
	order := make([]int, m)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return s[order[i]][order[i]] > s[order[j]][order[j]] })
	for _, i := range order {
		vals = append(vals, s[i][i])
		col := make([]float64, m)
		for k := range m {
			col[k] = v[k][i]
		}
		vecs = append(vecs, col)
	}
	return vals, vecs
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
