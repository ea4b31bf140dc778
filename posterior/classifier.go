package posterior

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"persona/chat"
	"persona/engine"
	"persona/internal/fileio"
	"persona/vectors"
)

// Classifier turns one layer's response-mean activation into a distribution
// over personas: projections onto one persona vector per persona, then a
// multinomial logistic regression.
//
// The persona vector of persona p is mean(p's responses) − mean over the
// other personas of their means (one-vs-rest, so a persona with many samples
// does not dominate the reference). Projections alone are not
// probabilities: their scales differ per persona and personas overlap (the
// liar sounds like the Assistant), so the regression learns the calibration
// from labelled activations. Features are standardised; weights carry a
// small L2 penalty so that separable data (common on the organism) still
// give finite, calibrated-ish probabilities.
type Classifier struct {
	Names []string `json:"names"`
	Layer int      `json:"layer"`
	Model string   `json:"model"`
	// Dirs[k] is persona k's unit direction at Layer.
	Dirs [][]float32 `json:"directions"`
	// Mu, Sigma standardise the projections.
	Mu    []float64 `json:"mu"`
	Sigma []float64 `json:"sigma"`
	// W[k] are class k's weights over the standardised projections; B[k]
	// its bias. Log-odds of class k: B[k] + W[k]·z.
	W [][]float64 `json:"weights"`
	B []float64   `json:"bias"`
	// Train holds fit statistics (samples per persona, training accuracy).
	Train map[string]float64 `json:"train,omitempty"`
}

// Sample is one labelled response-mean activation.
type Sample struct {
	Persona string
	Act     []float32
}

// FitOptions tune the regression.
type FitOptions struct {
	L2    float64 // default 1e-3
	Steps int     // full-batch gradient steps, default 500
	Rate  float64 // step size, default 0.5
}

// FitClassifier fits persona vectors and the calibration on labelled
// activations of one layer. Every name needs at least one sample.
func FitClassifier(names []string, layer int, model string, samples []Sample, opt FitOptions) (*Classifier, error) {
	if opt.L2 == 0 {
		opt.L2 = 1e-3
	}
	if opt.Steps == 0 {
		opt.Steps = 500
	}
	if opt.Rate == 0 {
		opt.Rate = 0.5
	}
	K := len(names)
	if K < 2 {
		return nil, errors.New("classifier: need at least two personas")
	}
	means := make([]vectors.Mean, K)
	idx := map[string]int{}
	for i, n := range names {
		idx[n] = i
	}
	ys := make([]int, len(samples))
	for i, s := range samples {
		k, ok := idx[s.Persona]
		if !ok {
			return nil, fmt.Errorf("classifier: sample %d has persona %q, not one of %v", i, s.Persona, names)
		}
		if err := means[k].Add(s.Act); err != nil {
			return nil, fmt.Errorf("classifier: sample %d: %w", i, err)
		}
		ys[i] = k
	}
	c := &Classifier{Names: slices.Clone(names), Layer: layer, Model: model, Train: map[string]float64{}}
	mv := make([][]float32, K)
	for k := range means {
		if means[k].N() == 0 {
			return nil, fmt.Errorf("classifier: no samples of persona %q", names[k])
		}
		mv[k] = means[k].Value()
		c.Train["n_"+names[k]] = float64(means[k].N())
	}
	D := len(mv[0])
	for k := range mv {
		d := make([]float32, D)
		for j := range d {
			others := 0.0
			for o := range mv {
				if o != k {
					others += float64(mv[o][j])
				}
			}
			d[j] = mv[k][j] - float32(others/float64(K-1))
		}
		u, err := vectors.Unit(d)
		if err != nil {
			return nil, fmt.Errorf("classifier: persona %q: %w", names[k], err)
		}
		c.Dirs = append(c.Dirs, u)
	}
	// Standardised projections.
	X := make([][]float64, len(samples))
	c.Mu, c.Sigma = make([]float64, K), make([]float64, K)
	for i, s := range samples {
		X[i] = c.project(s.Act)
		for k, v := range X[i] {
			c.Mu[k] += v
		}
	}
	n := float64(len(samples))
	for k := range c.Mu {
		c.Mu[k] /= n
	}
	for _, x := range X {
		for k, v := range x {
			c.Sigma[k] += (v - c.Mu[k]) * (v - c.Mu[k])
		}
	}
	for k := range c.Sigma {
		c.Sigma[k] = math.Sqrt(c.Sigma[k]/n) + 1e-9
	}
	for _, x := range X {
		for k := range x {
			x[k] = (x[k] - c.Mu[k]) / c.Sigma[k]
		}
	}
	// Multinomial logistic regression by full-batch gradient descent.
	c.W, c.B = make([][]float64, K), make([]float64, K)
	for k := range c.W {
		c.W[k] = make([]float64, K)
	}
	gW, gB := make([][]float64, K), make([]float64, K)
	for k := range gW {
		gW[k] = make([]float64, K)
	}
	p := make([]float64, K)
	for step := 0; step < opt.Steps; step++ {
		for k := range gW {
			clear(gW[k])
		}
		clear(gB)
		for i, x := range X {
			c.softmax(p, x)
			p[ys[i]] -= 1
			for k := range p {
				gB[k] += p[k]
				for j, v := range x {
					gW[k][j] += p[k] * v
				}
			}
		}
		for k := range c.W {
			c.B[k] -= opt.Rate * gB[k] / n
			for j := range c.W[k] {
				c.W[k][j] -= opt.Rate * (gW[k][j]/n + opt.L2*c.W[k][j])
			}
		}
	}
	right := 0
	for i, x := range X {
		c.softmax(p, x)
		if argmax(p) == ys[i] {
			right++
		}
	}
	c.Train["accuracy"] = float64(right) / n
	c.Train["samples"] = n
	return c, nil
}

func (c *Classifier) project(a []float32) []float64 {
	out := make([]float64, len(c.Dirs))
	for k, d := range c.Dirs {
		out[k] = vectors.Project(a, d)
	}
	return out
}

// softmax writes the class probabilities for standardised features z.
func (c *Classifier) softmax(p, z []float64) {
	m := math.Inf(-1)
	for k := range p {
		v := c.B[k]
		for j, x := range z {
			v += c.W[k][j] * x
		}
		p[k] = v
		m = math.Max(m, v)
	}
	s := 0.0
	for k := range p {
		p[k] = math.Exp(p[k] - m)
		s += p[k]
	}
	for k := range p {
		p[k] /= s
	}
}

// LogOdds returns the class log-odds (up to a constant) for one activation.
func (c *Classifier) LogOdds(a []float32) ([]float64, error) {
	if len(a) != len(c.Dirs[0]) {
		return nil, fmt.Errorf("classifier: activation width %d, directions %d: %w", len(a), len(c.Dirs[0]), vectors.ErrWidth)
	}
	z := c.project(a)
	out := make([]float64, len(c.Names))
	for k := range out {
		out[k] = c.B[k]
		for j := range z {
			out[k] += c.W[k][j] * (z[j] - c.Mu[j]) / c.Sigma[j]
		}
	}
	return out, nil
}

func argmax(p []float64) int {
	b := 0
	for i, v := range p {
		if v > p[b] {
			b = i
		}
	}
	return b
}

// Save writes the classifier as JSON, atomically.
func (c *Classifier) Save(path string) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return fileio.WriteFileAtomic(path, data)
}

// LoadClassifier reads and checks a classifier file.
func LoadClassifier(path string) (*Classifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Classifier
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("classifier %s: %w", path, err)
	}
	K := len(c.Names)
	if K < 2 || len(c.Dirs) != K || len(c.W) != K || len(c.B) != K || len(c.Mu) != K || len(c.Sigma) != K {
		return nil, fmt.Errorf("classifier %s: inconsistent sizes (%d names)", path, K)
	}
	for k := range c.Dirs {
		if len(c.W[k]) != K || len(c.Dirs[k]) != len(c.Dirs[0]) || len(c.Dirs[k]) == 0 {
			return nil, fmt.Errorf("classifier %s: persona %q has malformed weights or direction: %w", path, c.Names[k], vectors.ErrWidth)
		}
		for _, x := range c.Dirs[k] {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("classifier %s: persona %q: %w", path, c.Names[k], vectors.ErrNotFinite)
			}
		}
	}
	return &c, nil
}

// LoadActivationPosterior reads a classifier file and checks it against the
// engine's model.
func LoadActivationPosterior(e *engine.Engine, path string) (*ActivationPosterior, error) {
	c, err := LoadClassifier(path)
	if err != nil {
		return nil, err
	}
	ap := &ActivationPosterior{E: e, C: c}
	if err := ap.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ap, nil
}

// ActivationPosterior is the activations estimator: one forward pass per
// conversation captures every assistant turn's response mean at the
// classifier's layer; the posterior after turn k classifies the
// token-weighted mean of turns 1..k.
type ActivationPosterior struct {
	// SwitchRate is ε of the hidden Markov model (hmm.go).
	SwitchRate float64
	E          *engine.Engine
	C          *Classifier
}

// Check reports whether the classifier fits the engine's model.
func (ap *ActivationPosterior) Check() error {
	m := ap.E.Model
	if ap.C.Layer < 0 || ap.C.Layer >= m.NumLayers {
		return fmt.Errorf("classifier layer %d, the model has layers 0..%d: %w", ap.C.Layer, m.NumLayers-1, engine.ErrLayer)
	}
	if len(ap.C.Dirs[0]) != m.Hidden {
		return fmt.Errorf("classifier directions have width %d, the model's hidden size is %d: %w", len(ap.C.Dirs[0]), m.Hidden, vectors.ErrWidth)
	}
	return nil
}

// Posterior returns the per-turn posterior of msgs (the conversation as
// given, system prompt included).
func (ap *ActivationPosterior) Posterior(ctx context.Context, msgs []chat.Message) (*Result, error) {
	if err := ap.Check(); err != nil {
		return nil, err
	}
	if _, _, err := conversation(msgs); err != nil {
		return nil, err
	}
	act, err := ap.E.Capture(ctx, msgs, engine.CaptureOptions{Layers: []int{ap.C.Layer}})
	if err != nil {
		return nil, err
	}
	K := len(ap.C.Names)
	uniform := make([]float64, K)
	for i := range uniform {
		uniform[i] = 1 / float64(K)
	}
	res := &Result{Method: "activations", Names: slices.Clone(ap.C.Names), Prior: uniform}
	var emis [][]float64
	for k, t := range act.Turns {
		turn := Turn{Turn: k + 1, Message: t.Message, Tokens: t.Tokens, Evidence: make([]float64, K)}
		if t.Tokens > 0 { // an empty reply is no evidence
			if turn.Evidence, err = ap.C.LogOdds(t.Mean[0]); err != nil {
				return nil, err
			}
		}
		turn.Emission = turn.Evidence
		emis = append(emis, turn.Emission)
		res.Turns = append(res.Turns, turn)
	}
	states := make([]int, K)
	for h := range states {
		states[h] = h
	}
	return res, res.decode(states, emis, ap.SwitchRate)
}

// LabelledSamples captures, at one layer, the response mean of every
// assistant turn of labelled chats: the training data of a Classifier.
// label(c, k) names the persona of chat c's k-th assistant turn ("" skips
// it). Chats are read as given (include system prompts only if the
// classifier should see them).
func LabelledSamples(ctx context.Context, e *engine.Engine, chats []chat.Chat, layer int, label func(c, turn int) string, progress func(done int)) ([]Sample, error) {
	var out []Sample
	for ci, c := range chats {
		act, err := e.Capture(ctx, c.Messages, engine.CaptureOptions{Layers: []int{layer}})
		if errors.Is(err, engine.ErrNoTurn) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("chat %d: %w", ci+1, err)
		}
		for k, t := range act.Turns {
			if p := label(ci, k); p != "" && t.Tokens > 0 {
				out = append(out, Sample{Persona: p, Act: t.Mean[0]})
			}
		}
		if progress != nil {
			progress(ci + 1)
		}
	}
	return out, nil
}
