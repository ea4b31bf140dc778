package model

// testConfigs are small shapes the fixtures do not cover: Llama 3 with GQA,
// untied embeddings and llama3 RoPE scaling; Qwen2 with q/k/v biases; Qwen3
// with q/k norm and a head dim that is not hidden/heads; plain tied Llama.
func testConfigs() map[string]Config {
	base := Config{Hidden: 64, FFN: 128, NumLayers: 2, Heads: 8, KVHeads: 2, HeadDim: 8, Vocab: 320,
		MaxSeq: 256, NormEps: 1e-5, RoPETheta: 10000, RoPEStyle: RoPEHalf}
	llama3 := base
	llama3.Arch, llama3.RoPETheta = "llama", 500000
	llama3.Llama3Scaling = &Llama3Scaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}
	llama3.RoPEFactors, llama3.RoPEScaling = llama3.Llama3Scaling.Factors(8, 500000), "llama3"
	qwen2 := base
	qwen2.Arch, qwen2.QKVBias, qwen2.TiedEmbedding, qwen2.NormEps = "qwen2", true, true, 1e-6
	qwen3 := base
	qwen3.Arch, qwen3.QKNorm, qwen3.HeadDim, qwen3.KVHeads = "qwen3", true, 16, 4
	llama := base
	llama.Arch, llama.KVHeads, llama.TiedEmbedding = "llama", 8, true
	return map[string]Config{"llama3-gqa-rope-scaling": llama3, "qwen2-bias": qwen2, "qwen3-qknorm": qwen3, "llama-tied-mha": llama}
}
