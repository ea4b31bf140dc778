package posterior

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"persona/chat"
	"persona/engine"
	"persona/internal/fileio"
	"persona/vectors"
)

// Classifier turns the activations of an assistant turn at a few layers into
// a distribution over personas: projections onto one persona vector per
// reading, layer and persona, then a multinomial logistic regression over all
// of them.
//
// A reading is where in the turn the residual stream is read: the mean over
// the reply's tokens (what the model wrote) and the token just before the
// reply (the persona the model is about to play, set by the system prompt and
// the user's request — a "from now on you are…" shows there before the reply
// shows it). On the organism, reading both finds switches of persona on
// wording the model never saw more often than the reply alone (126 against
// 105 of 200), at the same per-turn accuracy.
//
// The persona vector of persona p for a reading and layer is mean(p's turns)
// − mean over the other personas of their means (one-vs-rest, so a persona
// with many samples does not dominate the reference). Projections alone are not
// probabilities: their scales differ per persona and personas overlap (the
// liar sounds like the Assistant), so the regression learns the calibration
// from labelled activations. Several layers help where one layer reads the
// persona's words and another its behaviour. Features are standardised;
// weights carry a small L2 penalty so that separable data (common on the
// organism) still give finite, calibrated-ish probabilities.
type Classifier struct {
	Names  []string `json:"names"`
	Layers []int    `json:"layers"`
	// Readings are ReadResponse and/or ReadLastPrompt; a file without them
	// (written before there was a choice) reads the response.
	Readings []string `json:"readings,omitempty"`
	Model    string   `json:"model"`
	// Dirs[r·L+l][k] is persona k's unit direction for reading r at
	// Layers[l] (L layers).
	Dirs [][][]float32 `json:"directions"`
	// Mu, Sigma standardise the features: feature g·K+k is the projection
	// on Dirs[g][k].
	Mu    []float64 `json:"mu"`
	Sigma []float64 `json:"sigma"`
	// W[k] are class k's weights over the standardised features; B[k] its
	// bias. Log-odds of class k: B[k] + W[k]·z.
	W [][]float64 `json:"weights"`
	B []float64   `json:"bias"`
	// Train holds fit statistics (samples per persona, training accuracy).
	Train map[string]float64 `json:"train,omitempty"`
}

// The readings of a turn.
const (
	ReadResponse   = "response"    // mean over the reply's tokens
	ReadLastPrompt = "last_prompt" // the token before the reply
)

// DefaultReadings are what Fit reads unless told otherwise.
var DefaultReadings = []string{ReadResponse, ReadLastPrompt}

// CheckReadings refuses an empty, repeated or unknown reading.
func CheckReadings(readings []string) error {
	if len(readings) == 0 {
		return errors.New("no readings (want response and/or last_prompt)")
	}
	for i, r := range readings {
		if r != ReadResponse && r != ReadLastPrompt {
			return fmt.Errorf("unknown reading %q (want %s or %s)", r, ReadResponse, ReadLastPrompt)
		}
		if slices.Contains(readings[:i], r) {
			return fmt.Errorf("reading %q given twice", r)
		}
	}
	return nil
}

// TurnActs returns a captured turn's activations in the order a classifier
// with readings expects (Acts of a Sample); false when the turn lacks one
// (an empty reply, or a reply at the start of the sequence).
func TurnActs(readings []string, t engine.Turn) ([][]float32, bool) {
	var out [][]float32
	for _, r := range readings {
		a := t.Mean
		if r == ReadLastPrompt {
			a = t.LastPrompt
		}
		if a == nil {
			return nil, false
		}
		out = append(out, a...)
	}
	return out, true
}

// Sample is one labelled turn: Acts[r·L+l] is reading r at the classifier's
// l-th layer (TurnActs); Chat is the index of the conversation it came from.
type Sample struct {
	Persona string
	Acts    [][]float32
	Chat    int
}

// FitOptions tune the regression.
type FitOptions struct {
	L2    float64 // default 1e-3
	Steps int     // full-batch gradient steps, default 500
	Rate  float64 // step size, default 0.5
}

// FitClassifier fits persona vectors for each reading and layer and the
// calibration on labelled activations. Every name needs at least one sample.
func FitClassifier(names []string, layers []int, readings []string, model string, samples []Sample, opt FitOptions) (*Classifier, error) {
	if opt.L2 == 0 {
		opt.L2 = 1e-3
	}
	if opt.Steps == 0 {
		opt.Steps = 500
	}
	if opt.Rate == 0 {
		opt.Rate = 0.5
	}
	if err := CheckReadings(readings); err != nil {
		return nil, fmt.Errorf("classifier: %w", err)
	}
	K, L := len(names), len(layers)*len(readings) // L: groups of activations
	if K < 2 {
		return nil, errors.New("classifier: need at least two personas")
	}
	if len(layers) == 0 {
		return nil, errors.New("classifier: no layers")
	}
	idx := map[string]int{}
	for i, n := range names {
		idx[n] = i
	}
	means := make([][]vectors.Mean, L)
	for l := range means {
		means[l] = make([]vectors.Mean, K)
	}
	ys := make([]int, len(samples))
	for i, s := range samples {
		k, ok := idx[s.Persona]
		if !ok {
			return nil, fmt.Errorf("classifier: sample %d has persona %q, not one of %v", i, s.Persona, names)
		}
		if len(s.Acts) != L {
			return nil, fmt.Errorf("classifier: sample %d has %d activations, want %d (%d readings × %d layers)", i, len(s.Acts), L, len(readings), len(layers))
		}
		for l, a := range s.Acts {
			if err := means[l][k].Add(a); err != nil {
				return nil, fmt.Errorf("classifier: sample %d: %w", i, err)
			}
		}
		ys[i] = k
	}
	c := &Classifier{Names: slices.Clone(names), Layers: slices.Clone(layers), Readings: slices.Clone(readings), Model: model, Train: map[string]float64{}}
	for k := range names {
		if means[0][k].N() == 0 {
			return nil, fmt.Errorf("classifier: no samples of persona %q", names[k])
		}
		c.Train["n_"+names[k]] = float64(means[0][k].N())
	}
	for g := range L {
		dirs, err := oneVsRest(names, means[g])
		if err != nil {
			return nil, fmt.Errorf("classifier: %s at layer %d: %w", readings[g/len(layers)], layers[g%len(layers)], err)
		}
		c.Dirs = append(c.Dirs, dirs)
	}
	// Standardised projections.
	F := L * K
	X := make([][]float64, len(samples))
	c.Mu, c.Sigma = make([]float64, F), make([]float64, F)
	for i, s := range samples {
		X[i] = c.project(s.Acts)
		for f, v := range X[i] {
			c.Mu[f] += v
		}
	}
	n := float64(len(samples))
	for f := range c.Mu {
		c.Mu[f] /= n
	}
	for _, x := range X {
		for f, v := range x {
			c.Sigma[f] += (v - c.Mu[f]) * (v - c.Mu[f])
		}
	}
	for f := range c.Sigma {
		c.Sigma[f] = math.Sqrt(c.Sigma[f]/n) + 1e-9
	}
	for _, x := range X {
		for f := range x {
			x[f] = (x[f] - c.Mu[f]) / c.Sigma[f]
		}
	}
	// Multinomial logistic regression by full-batch gradient descent.
	c.W, c.B = make([][]float64, K), make([]float64, K)
	gW, gB := make([][]float64, K), make([]float64, K)
	for k := range c.W {
		c.W[k], gW[k] = make([]float64, F), make([]float64, F)
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

// Accuracy is the share of samples whose most likely persona is their label.
func (c *Classifier) Accuracy(samples []Sample) (float64, error) {
	if len(samples) == 0 {
		return 0, errors.New("classifier: no samples to score")
	}
	right := 0
	for _, s := range samples {
		lo, err := c.LogOdds(s.Acts)
		if err != nil {
			return 0, err
		}
		if c.Names[argmax(lo)] == s.Persona {
			right++
		}
	}
	return float64(right) / float64(len(samples)), nil
}

// oneVsRest returns each persona's unit direction at one layer: its mean
// minus the mean of the other personas' means.
func oneVsRest(names []string, means []vectors.Mean) ([][]float32, error) {
	K := len(means)
	mv := make([][]float32, K)
	for k := range means {
		mv[k] = means[k].Value()
	}
	var dirs [][]float32
	for k := range mv {
		d := make([]float32, len(mv[k]))
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
			return nil, fmt.Errorf("persona %q: %w", names[k], err)
		}
		dirs = append(dirs, u)
	}
	return dirs, nil
}

// project returns the features of one sample: its projections on every
// layer's persona directions.
func (c *Classifier) project(acts [][]float32) []float64 {
	var out []float64
	for l, dirs := range c.Dirs {
		for _, d := range dirs {
			out = append(out, vectors.Project(acts[l], d))
		}
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

// LogOdds returns the class log-odds (up to a constant) for one turn's
// activations (TurnActs with the classifier's readings).
func (c *Classifier) LogOdds(acts [][]float32) ([]float64, error) {
	if len(acts) != len(c.Dirs) {
		return nil, fmt.Errorf("classifier: %d activations, want %d (%d readings × %d layers)", len(acts), len(c.Dirs), len(c.readings()), len(c.Layers))
	}
	for _, a := range acts {
		if len(a) != c.width() {
			return nil, fmt.Errorf("classifier: activation width %d, directions %d: %w", len(a), c.width(), vectors.ErrWidth)
		}
	}
	z := c.project(acts)
	out := make([]float64, len(c.Names))
	for k := range out {
		out[k] = c.B[k]
		for j := range z {
			out[k] += c.W[k][j] * (z[j] - c.Mu[j]) / c.Sigma[j]
		}
	}
	return out, nil
}

// readings returns the classifier's readings (a file from before readings
// reads the response).
func (c *Classifier) readings() []string {
	if len(c.Readings) == 0 {
		return []string{ReadResponse}
	}
	return c.Readings
}

// width is the activation width the directions expect.
func (c *Classifier) width() int { return len(c.Dirs[0][0]) }

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

// ClassifierFile is the name under which a model directory carries its own
// classifier, the activations method's default.
const ClassifierFile = "posterior-classifier.json"

// ModelClassifier returns the path of the classifier a model directory
// carries, or "" if it has none.
func ModelClassifier(dir string) string {
	p := filepath.Join(dir, ClassifierFile)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p
	}
	return ""
}

// LoadClassifier reads and checks a classifier file.
func LoadClassifier(path string) (*Classifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Classifier
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("classifier %s: %w (a file from before classifiers read several layers must be fitted again with 'persona posterior fit')", path, err)
	}
	if err := CheckReadings(c.readings()); err != nil {
		return nil, fmt.Errorf("classifier %s: %w", path, err)
	}
	K, L := len(c.Names), len(c.Layers)*len(c.readings())
	F := K * L
	if K < 2 || L == 0 || len(c.Dirs) != L || len(c.W) != K || len(c.B) != K || len(c.Mu) != F || len(c.Sigma) != F {
		return nil, fmt.Errorf("classifier %s: inconsistent sizes (%d names, %d layers, %d readings)", path, K, len(c.Layers), len(c.readings()))
	}
	for k := range c.W {
		if len(c.W[k]) != F {
			return nil, fmt.Errorf("classifier %s: persona %q has malformed weights", path, c.Names[k])
		}
	}
	for g, dirs := range c.Dirs {
		l := c.Layers[g%len(c.Layers)]
		if len(dirs) != K {
			return nil, fmt.Errorf("classifier %s: layer %d has %d directions, want %d", path, l, len(dirs), K)
		}
		for k, d := range dirs {
			if len(d) == 0 || len(d) != len(c.Dirs[0][0]) {
				return nil, fmt.Errorf("classifier %s: persona %q has a malformed direction at layer %d: %w", path, c.Names[k], l, vectors.ErrWidth)
			}
			for _, x := range d {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return nil, fmt.Errorf("classifier %s: persona %q: %w", path, c.Names[k], vectors.ErrNotFinite)
				}
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
// conversation captures every assistant turn's activations at the
// classifier's layers; each turn's classifier log-odds are its emission in
// the hidden Markov model.
type ActivationPosterior struct {
	// SwitchRate is ε of the hidden Markov model (hmm.go).
	SwitchRate float64
	E          *engine.Engine
	C          *Classifier
}

// Check reports whether the classifier fits the engine's model.
func (ap *ActivationPosterior) Check() error {
	m := ap.E.Model
	for _, l := range ap.C.Layers {
		if l < 0 || l >= m.NumLayers {
			return fmt.Errorf("classifier layer %d, the model has layers 0..%d: %w", l, m.NumLayers-1, engine.ErrLayer)
		}
	}
	if ap.C.width() != m.Hidden {
		return fmt.Errorf("classifier directions have width %d, the model's hidden size is %d: %w", ap.C.width(), m.Hidden, vectors.ErrWidth)
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
	act, err := ap.E.Capture(ctx, msgs, engine.CaptureOptions{Layers: ap.C.Layers})
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
		if acts, ok := TurnActs(ap.C.readings(), t); ok && t.Tokens > 0 { // an empty reply is no evidence
			if turn.Evidence, err = ap.C.LogOdds(acts); err != nil {
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

// LabelledSamples captures, for each reading at each of layers, the
// activations of every assistant turn of labelled chats: the training data
// of a Classifier. label(c, k) names the persona of chat c's k-th assistant
// turn ("" skips it). Chats are read as given (include system prompts only
// if the classifier should see them).
func LabelledSamples(ctx context.Context, e *engine.Engine, chats []chat.Chat, layers []int, readings []string, label func(c, turn int) string, progress func(done int)) ([]Sample, error) {
	var out []Sample
	for ci, c := range chats {
		act, err := e.Capture(ctx, c.Messages, engine.CaptureOptions{Layers: layers})
		if errors.Is(err, engine.ErrNoTurn) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("chat %d: %w", ci+1, err)
		}
		for k, t := range act.Turns {
			acts, ok := TurnActs(readings, t)
			if p := label(ci, k); p != "" && ok && t.Tokens > 0 {
				out = append(out, Sample{Persona: p, Acts: acts, Chat: ci})
			}
		}
		if progress != nil {
			progress(ci + 1)
		}
	}
	return out, nil
}
