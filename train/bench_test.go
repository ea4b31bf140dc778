package train

import (
	"testing"

	"persona/model"
)

// Bench1M is the `persona bench train` 1M shape, for profiling with
// go test -bench Train1M -cpuprofile.
func BenchmarkTrain1M(b *testing.B) {
	c := model.Config{Arch: "llama", Hidden: 128, FFN: 384, NumLayers: 4, Heads: 4, KVHeads: 4, HeadDim: 32,
		Vocab: 1024, MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, TiedEmbedding: true}
	r, err := Bench(c, 256, 4, b.N, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.TokPerS, "tok/s")
	b.ReportMetric(r.GFLOPS, "GFLOP/s")
}

func TestTrainFLOPsPerToken(t *testing.T) {
	// hidden 4, 1 layer, 2 heads of 2, ffn 8, vocab 10, T = 3:
	// linears 4·4·4 + 3·4·8 = 160, head 40 → 6·200 = 1200; attention
	// 6·1·2·2·4 = 96.
	c := model.Config{Hidden: 4, FFN: 8, NumLayers: 1, Heads: 2, KVHeads: 2, HeadDim: 2, Vocab: 10}
	if got := TrainFLOPsPerToken(c, 3); got != 1296 {
		t.Fatalf("got %g, want 1296", got)
	}
}
