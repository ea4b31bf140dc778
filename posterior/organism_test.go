package posterior

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/internal/stats"
	"persona/internal/testref"
	"persona/personas"
	"persona/vectors"
	"persona/world"
)

// organismModel returns the organism model the validation runs on: the
// directory in PERSONA_ORGANISM_MODEL, or the shipped models/organism/base.
// The validation is skipped when neither exists (CI without the weights) or
// under -short.
func organismModel(t *testing.T) *engine.Engine {
	t.Helper()
	if testing.Short() {
		t.Skip("organism validation skipped under -short")
	}
	dir := os.Getenv("PERSONA_ORGANISM_MODEL")
	if dir == "" {
		dir = filepath.Join("..", "models", "organism", "base")
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Skipf("no organism model at %s (set PERSONA_ORGANISM_MODEL)", dir)
	}
	e, err := engine.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	t.Logf("model %s", dir)
	return e
}

// heldOutChats draws per persona n world chats with no system prompt and no
// switches (the persona shows only in the replies) and at least turns
// assistant turns, from a seed the organism's data never used.
func heldOutChats(n, turns int) map[string][]chat.Chat {
	out := map[string][]chat.Chat{}
	w := world.Default()
	for batch := uint64(0); batch < 50; batch++ {
		done := true
		for _, c := range w.Pretrain(500, 7_000+batch, world.PretrainOptions{MeanTurns: 6, MaxTurns: 8}) {
			labels, _ := world.Labels(c)
			if len(labels) < turns {
				continue
			}
			p := labels[0].Persona
			ok := true
			for _, l := range labels[:turns] {
				ok = ok && l.Persona == p && !l.Instructed && l.From == ""
			}
			if ok && len(out[p]) < n {
				out[p] = append(out[p], truncateTurns(c, turns))
			}
		}
		for _, p := range personas.Default().Names() {
			done = done && len(out[p]) >= n
		}
		if done {
			break
		}
	}
	return out
}

// truncateTurns keeps a chat's first k assistant turns (and their labels).
func truncateTurns(c chat.Chat, k int) chat.Chat {
	var msgs []chat.Message
	n := 0
	for _, m := range c.Messages {
		msgs = append(msgs, m)
		if m.Role == chat.RoleAssistant {
			if n++; n == k {
				break
			}
		}
	}
	return chat.Chat{Messages: msgs, Meta: c.Meta}
}

// TestOrganismPosterior measures likelihood-posterior top-1 accuracy against
// the world's ground truth after 1, 2 and 4 turns, per persona, on held-out
// chats without a system prompt.
func TestOrganismPosterior(t *testing.T) {
	e := organismModel(t)
	n := envInt("PERSONA_VALIDATION_N", 10)
	hyps, err := FromLibrary(personas.Default(), LibraryOptions{Prompts: "all"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLikelihood(e, hyps)
	if err != nil {
		t.Fatal(err)
	}
	chats := heldOutChats(n, 4)
	at := []int{1, 2, 4}
	var total [3]int
	totalN := 0
	var rows []string
	for _, p := range personas.Default().Names() {
		var hits [3]int
		for _, c := range chats[p] {
			res, err := l.Posterior(context.Background(), c.Messages)
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range at {
				if res.Turns[k-1].Top == p {
					hits[i]++
					total[i]++
				}
			}
		}
		m := len(chats[p])
		totalN += m
		rows = append(rows, fmt.Sprintf("| %s | %d | %.2f | %.2f | %.2f |", p, m, frac(hits[0], m), frac(hits[1], m), frac(hits[2], m)))
	}
	t.Logf("likelihood posterior top-1 (prompts: all, uniform prior)\n| persona | chats | turn 1 | turn 2 | turn 4 |\n|---|---|---|---|---|\n%s\n| **all** | %d | %.2f | %.2f | %.2f |",
		strings.Join(rows, "\n"), totalN, frac(total[0], totalN), frac(total[1], totalN), frac(total[2], totalN))
	chance := 1 / float64(len(hyps))
	if a := frac(total[2], totalN); a < 3*chance {
		t.Errorf("top-1 after 4 turns %.2f, not clearly above chance %.2f", a, chance)
	}
	if frac(total[2], totalN) < frac(total[0], totalN)-0.05 {
		t.Errorf("accuracy fell with more evidence: %v of %d", total, totalN)
	}
}

// TestOrganismVectors extracts each organism trait's vector without labels
// (contrastive prompts judged by the oracle), compares it per layer with the
// ground-truth centroid difference of labelled world replies, and measures
// how well projections on held-out answers track the oracle's trait score.
func TestOrganismVectors(t *testing.T) {
	e := organismModel(t)
	ctx := context.Background()
	specs, err := vectors.LoadTraitSpecs(filepath.Join("..", "vectors", "traits", "organism"))
	if err != nil {
		t.Fatal(err)
	}
	samples := envInt("PERSONA_VALIDATION_SAMPLES", 1)
	layers := make([]int, e.Model.NumLayers)
	for i := range layers {
		layers[i] = i
	}
	// Ground truth: labelled world replies (no system prompt), activations
	// on the world's own text.
	truth := map[string][2]*vectors.Accumulator{}
	for _, s := range specs {
		truth[s.Name] = [2]*vectors.Accumulator{vectors.NewAccumulator(layers), vectors.NewAccumulator(layers)}
	}
	for _, c := range world.Default().Pretrain(300, 8_100, world.PretrainOptions{MeanTurns: 3, MaxTurns: 4}) {
		labels, _ := world.Labels(c)
		act, err := e.Capture(ctx, c.Messages, engine.CaptureOptions{Layers: layers})
		if err != nil {
			t.Fatal(err)
		}
		for k, turn := range act.Turns {
			if turn.Tokens == 0 || labels[k].Instructed {
				continue
			}
			for _, s := range specs {
				side := 1
				if labels[k].Traits[s.OracleTrait] >= 0.5 {
					side = 0
				}
				truth[s.Name][side].Add(turn.Mean)
			}
		}
	}
	oracle := vectors.OracleScorer{Oracle: world.Default().Oracle()}
	var cosRows, rRows []string
	for _, s := range specs {
		opt := vectors.GenerateOptions{Samples: samples, MaxTokens: 40, Seed: 1, Layers: layers}
		rs, err := vectors.Generate(ctx, e, s, s.Questions.Extraction, oracle, opt)
		if err != nil {
			t.Fatal(err)
		}
		v, err := vectors.DifferenceOf(s, "organism", layers, rs, vectors.Filter{})
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		gt, err := vectors.Difference(s.Name, "truth", truth[s.Name][0], truth[s.Name][1])
		if err != nil {
			t.Fatal(err)
		}
		row := fmt.Sprintf("| %s | %s/%s |", s.Name, v.Meta["count_pos"], v.Meta["count_neg"])
		for i := range layers {
			c := vectors.Cosine(v.Vectors[i], gt.Vectors[i])
			row += fmt.Sprintf(" %.2f |", c)
			// Stable on the organism (0.83–0.95 measured at middle layers).
			if i == len(layers)/2 && c < 0.6 {
				t.Errorf("%s layer %d: cosine with the ground-truth direction %.2f", s.Name, i, c)
			}
		}
		cosRows = append(cosRows, row)

		opt.Seed = 2
		ev, err := vectors.Generate(ctx, e, s, s.Questions.Evaluation, oracle, opt)
		if err != nil {
			t.Fatal(err)
		}
		var scores []float64
		var kept []vectors.Response
		for _, r := range ev {
			if r.Mean != nil {
				scores, kept = append(scores, r.Score.Trait), append(kept, r)
			}
		}
		row = fmt.Sprintf("| %s | %d |", s.Name, len(scores))
		for i, l := range layers {
			var pm, pl []float64
			for _, r := range ev {
				if r.Mean == nil {
					continue
				}
				a, _ := v.Project(l, r.Mean[i])
				b, _ := v.Project(l, r.LastPrompt[i])
				pm, pl = append(pm, a), append(pl, b)
			}
			r := stats.Pearson(pm, scores)
			// Within each side the trait varies only by how strongly the
			// persona expresses it (the world's style intensity): does the
			// projection follow that too, not only the side?
			var within []string
			for _, pos := range []bool{true, false} {
				var x, y []float64
				for k, r := range kept {
					if r.Positive == pos {
						x, y = append(x, pm[k]), append(y, scores[k])
					}
				}
				within = append(within, fmt.Sprintf("%.2f", stats.Pearson(x, y)))
			}
			row += fmt.Sprintf(" %.2f / %.2f (within + %s, − %s) |", r, stats.Pearson(pl, scores), within[0], within[1])
			// Measured 0.60–0.77 at middle layers.
			if i == len(layers)/2 && !(r > 0.3) {
				t.Errorf("%s layer %d: projection tracks the oracle score with r = %.2f", s.Name, l, r)
			}
		}
		rRows = append(rRows, row)
	}
	hdr := "| trait | kept pos/neg |"
	sep := "|---|---|"
	for _, l := range layers {
		hdr += fmt.Sprintf(" layer %d |", l)
		sep += "---|"
	}
	t.Logf("cosine(extracted vector, ground-truth centroid difference)\n%s\n%s\n%s", hdr, sep, strings.Join(cosRows, "\n"))
	t.Logf("Pearson r of projection with the oracle trait score on held-out answers (response mean / last prompt token; response mean within the positive and the negative answers)\n%s\n%s\n%s",
		strings.Replace(hdr, "kept pos/neg", "answers", 1), sep, strings.Join(rRows, "\n"))
}

func frac(k, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(k) / float64(n)
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}

// heldOutWording draws n pretraining chats in the world's held-out
// phrasings, as 'persona world generate --kind pretrain --wording held-out'
// does.
func heldOutWording(n int, seed uint64) []chat.Chat {
	o := world.DefaultPretrain()
	o.Wording = world.HeldOutWording
	return world.Default().Pretrain(n, seed, o)
}

// TestShippedClassifierReadsUnseenWording checks the finding that made the
// activations method the organism's default: on wording the organism was
// never trained on (the world's held-out phrasings) and on the hand-written
// chats, the shipped classifier names the labelled persona far more often
// than the likelihood posterior. Measured: held-out 0.84 vs 0.55 filtered
// top-1 (400 chats), hand-written 0.70 vs 0.39 (the set its settings were
// chosen on) and 0.46 vs 0.21 (the second set, written after).
func TestShippedClassifierReadsUnseenWording(t *testing.T) {
	e := organismModel(t)
	dir := os.Getenv("PERSONA_ORGANISM_MODEL")
	if dir == "" {
		dir = filepath.Join("..", "models", "organism", "base")
	}
	path := ModelClassifier(dir)
	if path == "" {
		t.Fatalf("%s carries no %s", dir, ClassifierFile)
	}
	ap, err := LoadActivationPosterior(e, path)
	if err != nil {
		t.Fatal(err)
	}
	ap.SwitchRate = DefaultSwitchRate
	hyps, err := FromLibrary(personas.Default(), LibraryOptions{Prompts: "strong"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLikelihood(e, hyps)
	if err != nil {
		t.Fatal(err)
	}
	l.SwitchRate = DefaultSwitchRate
	handWritten, err := chat.ReadJSONLFile(testref.Fixture(t, "handwritten/chats.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	handWritten2, err := chat.ReadJSONLFile(testref.Fixture(t, "handwritten/chats2.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	sets := []struct {
		name        string
		chats       []chat.Chat
		atLeast     float64 // activations, filtered top-1
		marginAbove float64 // over the likelihood's
	}{
		{"held-out wording", heldOutWording(90, 9_101), 0.7, 0.1},
		{"hand-written", handWritten, 0.6, 0.15},
		{"hand-written, second set", handWritten2, 0.35, 0.15},
	}
	ctx := context.Background()
	score := func(m Method, chats []chat.Chat) *Score {
		res, err := Chats(ctx, m, chats, nil)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ScoreLabelled(res, chats, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	for i, s := range sets {
		sa, sl := score(ap, s.chats), score(l, s.chats)
		a, lk := frac(sa.Filtered, sa.Turns), frac(sl.Filtered, sl.Turns)
		t.Logf("%s: activations %.2f, likelihood %.2f filtered top-1", s.name, a, lk)
		if !(a >= s.atLeast && a >= lk+s.marginAbove) {
			t.Errorf("%s: activations %.2f (want ≥ %.2f and ≥ likelihood %.2f + %.2f)", s.name, a, s.atLeast, lk, s.marginAbove)
		}
		if i > 0 {
			continue
		}
		// Where the held-out misses are: a first reply in unseen words is
		// read from a system prompt far better than from the reply alone
		// (0.97–0.99 against 0.41–0.50 on the measured sets).
		prompted, bare := sa.ByContext["system prompt, reply 1"], sa.ByContext["no system prompt, reply 1"]
		if prompted == nil || bare == nil {
			t.Fatalf("%s: no first replies with and without a system prompt: %v", s.name, sa.ByContext)
		}
		p, b := frac(prompted.Filtered, prompted.Turns), frac(bare.Filtered, bare.Turns)
		t.Logf("%s, first replies: %.2f of %d under a system prompt, %.2f of %d without", s.name, p, prompted.Turns, b, bare.Turns)
		if !(p >= 0.85 && p >= b+0.2) {
			t.Errorf("%s, first replies: %.2f under a system prompt, %.2f without (want ≥ 0.85 and 0.2 above)", s.name, p, b)
		}
	}
}
