package posterior

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"persona/chat"
	"persona/engine"
	"persona/internal/testmodel"
	"persona/personas"
)

// benchEngine is a random model of the organism's shape (d=128, 4 layers)
// with the test tokenizer.
func benchEngine(b *testing.B) *engine.Engine {
	e, err := engine.Load(testmodel.Organism(b, 128, 4))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// benchHyps returns n hypotheses with one strong prompt each: the library's
// ten, then numbered variants of them.
func benchHyps(n int) []Hypothesis {
	lib := personas.Default()
	var out []Hypothesis
	for i := 0; i < n; i++ {
		p := lib.Personas[i%len(lib.Personas)]
		prompt := p.SystemPrompts.Strong[0]
		if i >= len(lib.Personas) {
			prompt = fmt.Sprintf("%s You are number %d.", prompt, i)
		}
		out = append(out, Hypothesis{Name: fmt.Sprintf("%s-%d", p.Name, i), Prompts: []string{prompt}, Prior: 1})
	}
	return out
}

// BenchmarkLikelihood measures the posterior's cost per assistant turn on a
// four-turn conversation, for 10 and 50 personas:
//
//   - tracker: a Tracker updated after every turn (KV states kept; each turn
//     runs only its new tokens, once per persona);
//   - recompute: the posterior over the whole conversation recomputed from
//     scratch after every turn (prompt trie, no kept states): what a
//     stateless caller pays;
//   - turn-context: the default posterior, each reply scored after its own
//     user turn, asked again after every turn (turns scored before are
//     remembered, so each call runs only the newest turn);
//   - naive: engine.LogProbs per persona and turn, nothing shared;
//   - activations: the activations method asked again after every turn
//     (one forward pass over the conversation whatever the number of
//     personas; a classifier of n personas fitted on random activations).
func BenchmarkLikelihood(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	conv := testChat[1:]
	conv = append(conv, chat.Message{Role: "user", Content: "How can I sleep better?"},
		chat.Message{Role: "assistant", Content: "Go to bed at the same time each night and keep your room dark, matey."})
	var cuts []int
	for i, m := range conv {
		if m.Role == chat.RoleAssistant {
			cuts = append(cuts, i+1)
		}
	}
	for _, n := range []int{10, 50} {
		hyps := benchHyps(n)
		l, err := NewLikelihood(e, hyps)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("personas=%d/tracker", n), func(b *testing.B) {
			l.Forwarded.Store(0)
			for b.Loop() {
				tr := l.Tracker()
				for _, c := range cuts {
					if _, err := tr.Update(ctx, conv[:c]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cuts))/1e6, "ms/turn")
			b.ReportMetric(float64(l.Forwarded.Load())/float64(b.N*len(cuts)), "positions/turn")
		})
		for _, mode := range []struct {
			name  string
			whole bool
		}{{"recompute", true}, {"turn-context", false}} {
			b.Run(fmt.Sprintf("personas=%d/%s", n, mode.name), func(b *testing.B) {
				l.WholeConversation = mode.whole
				l.Forwarded.Store(0)
				for b.Loop() {
					l.scored = nil // a new conversation: nothing scored yet
					for _, c := range cuts {
						if _, err := l.Posterior(ctx, conv[:c]); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cuts))/1e6, "ms/turn")
				b.ReportMetric(float64(l.Forwarded.Load())/float64(b.N*len(cuts)), "positions/turn")
			})
		}
		b.Run(fmt.Sprintf("personas=%d/naive", n), func(b *testing.B) {
			positions := 0
			for b.Loop() {
				for _, c := range cuts {
					for _, h := range hyps {
						enc, err := e.EncodeChat(append([]chat.Message{{Role: "system", Content: h.Prompts[0]}}, conv[:c]...), false)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := e.LogProbs(ctx, enc.IDs, 1, nil); err != nil {
							b.Fatal(err)
						}
						positions += len(enc.IDs) - 1
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cuts))/1e6, "ms/turn")
			b.ReportMetric(float64(positions)/float64(b.N*len(cuts)), "positions/turn")
		})
		b.Run(fmt.Sprintf("personas=%d/activations", n), func(b *testing.B) {
			ap := &ActivationPosterior{E: e, C: randomClassifier(b, n, e.Model.NumLayers, e.Model.Hidden), SwitchRate: DefaultSwitchRate}
			positions := 0
			for b.Loop() {
				for _, c := range cuts {
					if _, err := ap.Posterior(ctx, conv[:c]); err != nil {
						b.Fatal(err)
					}
					enc, err := e.EncodeChat(conv[:c], false)
					if err != nil {
						b.Fatal(err)
					}
					positions += len(enc.IDs)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cuts))/1e6, "ms/turn")
			b.ReportMetric(float64(positions)/float64(b.N*len(cuts)), "positions/turn")
		})
	}
}

// randomClassifier fits a classifier of n personas at every layer on
// random activations: what the activations method costs does not depend on
// what it learned.
func randomClassifier(b *testing.B, n, layers, width int) *Classifier {
	r := rand.New(rand.NewPCG(5, 6))
	names := make([]string, n)
	var samples []Sample
	for k := range names {
		names[k] = fmt.Sprintf("p%d", k)
		for range 3 {
			acts := make([][]float32, layers*len(DefaultReadings))
			for l := range acts {
				acts[l] = make([]float32, width)
				for j := range acts[l] {
					acts[l][j] = float32(r.NormFloat64())
				}
			}
			samples = append(samples, Sample{Persona: names[k], Acts: acts})
		}
	}
	all := make([]int, layers)
	for l := range all {
		all[l] = l
	}
	c, err := FitClassifier(names, all, DefaultReadings, "random", samples, FitOptions{Steps: 5})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
