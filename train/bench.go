package train

import (
	"fmt"
	"math/rand/v2"
	"time"

	"persona/model"
)

// BenchResult is the speed of full training steps on one model shape.
type BenchResult struct {
	Params  int64   `json:"params"`
	Steps   int     `json:"steps"`
	Tokens  int64   `json:"tokens"`
	Seconds float64 `json:"seconds"`
	TokPerS float64 `json:"tok_s"`
	// FLOPsPerToken is the effective training cost of one token (see
	// TrainFLOPsPerToken); GFLOPS = FLOPsPerToken·TokPerS/1e9.
	FLOPsPerToken float64 `json:"flops_per_token"`
	GFLOPS        float64 `json:"gflops"`
	FinalLoss     float64 `json:"final_loss"`
}

// TrainFLOPsPerToken is the conventional effective cost of training on one
// token of a row of seqLen positions (forward + backward = 3× forward):
//
//	6·N_matmul + 6·L·H·d_head·(T+1)
//
// N_matmul counts the weights that multiply activations: every linear of
// every block and the output head (the embedding matrix once when tied; an
// untied input embedding is a lookup and is left out; norms are
// negligible). The second term is causal attention: per layer and head,
// q·k and p·v cost 2·d_head multiply-adds each over (T+1)/2 keys on average,
// i.e. 4·d_head·(T+1)/2 FLOPs forward, 3× that with the backward pass. Work
// an implementation does beyond this (our backward recomputes the attention
// probabilities) is not counted: the figure compares implementations.
func TrainFLOPsPerToken(c model.Config, seqLen int) float64 {
	D, qd, kvd := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	perLayer := D*qd + 2*D*kvd + qd*D + 3*D*c.FFN
	n := float64(c.NumLayers*perLayer + c.Vocab*D)
	return 6*n + 6*float64(c.NumLayers*c.Heads*c.HeadDim)*float64(seqLen+1)
}

// Bench times steps full-training steps (forward, backward, clipping,
// AdamW: the loop Run executes) of a randomly initialised model of shape c
// on random tokens, rows rows of seqLen positions per step, after one
// untimed warm-up step.
func Bench(c model.Config, seqLen, rows, steps int, seed uint64) (*BenchResult, error) {
	if c.MaxSeq < seqLen {
		c.MaxSeq = seqLen
	}
	m, err := model.NewRandom(c, seed)
	if err != nil {
		return nil, err
	}
	g := m.NewGrads()
	ps := m.Params(g)
	initScratch(ps, seed, c.NumLayers)
	adam := NewAdamW(ps, 0.9, 0.95, 1e-8, 0.1)
	r := rand.New(rand.NewPCG(seed, 0xbe7c))
	batch := make([]*model.Row, rows)
	for i := range batch {
		row := &model.Row{Tokens: make([]int, seqLen), Targets: make([]int, seqLen), Weights: make([]float32, seqLen), Start: make([]int, seqLen)}
		for t := range row.Tokens {
			row.Tokens[t], row.Targets[t], row.Weights[t] = r.IntN(c.Vocab), r.IntN(c.Vocab), 1
		}
		batch[i] = row
	}
	weight := float64(rows * seqLen)
	res := &BenchResult{Params: m.ParamCount(), Steps: steps, FLOPsPerToken: TrainFLOPsPerToken(c, seqLen)}
	var start time.Time
	for s := 0; s <= steps; s++ {
		if s == 1 {
			start = time.Now()
		}
		loss, _, err := accumulate(m, g, batch, weight, nil, seed, s)
		if err != nil {
			return nil, err
		}
		ClipGradNorm(ps, 1)
		adam.Step(ps, 1e-3)
		res.FinalLoss = loss
	}
	if steps > 0 {
		res.Seconds = time.Since(start).Seconds()
		res.Tokens = int64(steps * rows * seqLen)
		res.TokPerS = float64(res.Tokens) / res.Seconds
		res.GFLOPS = res.FLOPsPerToken * res.TokPerS / 1e9
	}
	if res.FinalLoss != res.FinalLoss {
		return nil, fmt.Errorf("bench: the loss is NaN")
	}
	return res, nil
}
