package model

// testConfigs are small shapes the fixtures do not cover: Llama 3 with GQA,
// untied embeddings and llama3 RoPE scaling; Qwen2 with q/k/v biases; Qwen3
// with q/k norm and a head dim that is not hidden/heads; plain tied Llama;
// Phi-3, whose files fuse q/k/v and gate/up.
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
	phi3 := base
	phi3.Arch, phi3.KVHeads = "phi3", 8
	return map[string]Config{"llama3-gqa-rope-scaling": llama3, "qwen2-bias": qwen2, "qwen3-qknorm": qwen3, "llama-tied-mha": llama,
		"phi3-fused": phi3}
}

// inferenceConfigs are shapes run but not trained. Gemma 2 and 3: a short
// window (both layer kinds within the test's 14 tokens), soft caps small
// enough to bind, Gemma 3's local RoPE base and linear scaling of the global
// layers, and the 27B query-scale rule (46 layers). Granite: its four
// multipliers.
func inferenceConfigs() map[string]Config {
	g2 := Config{Arch: "gemma2", Hidden: 64, FFN: 128, NumLayers: 2, Heads: 4, KVHeads: 2, HeadDim: 32, Vocab: 320,
		MaxSeq: 256, NormEps: 1e-6, RoPETheta: 10000, RoPEStyle: RoPEHalf, TiedEmbedding: true,
		SlidingWindow: 4, SlidingPattern: 2, AttnSoftcap: 2, FinalSoftcap: 5}
	ggufGemmaScales(&g2)
	g3 := g2
	g3.Arch, g3.NumLayers, g3.QKNorm, g3.TiedEmbedding, g3.AttnSoftcap, g3.FinalSoftcap = "gemma3", 3, true, false, 0, 0
	g3.SlidingWindow, g3.SlidingPattern, g3.RoPETheta, g3.RoPELocalTheta = 5, 3, 1e6, 10000
	g3.RoPEScaling, g3.RoPEFactors = "linear", linearFactors(g3.HeadDim, 8)
	ggufGemmaScales(&g3)
	big := g2
	big.NumLayers, big.Hidden, big.FFN = 46, 32, 64 // 1/√(32/4) ≠ 1/√32
	ggufGemmaScales(&big)
	granite := testConfigs()["llama3-gqa-rope-scaling"]
	granite.Arch, granite.RoPEFactors, granite.RoPEScaling, granite.Llama3Scaling, granite.TiedEmbedding = "granite", nil, "", nil, true
	granite.EmbedScale, granite.ResidualScale, granite.AttnScale, granite.LogitDivisor = 3, 0.5, 0.2, 4
	return map[string]Config{"gemma2-softcap-swa": g2, "gemma3-local-rope": g3, "gemma2-27b-scale": big, "granite-multipliers": granite}
}

// allConfigs are every shape the engine runs.
func allConfigs() map[string]Config {
	out := testConfigs()
	for k, v := range inferenceConfigs() {
		out[k] = v
	}
	return out
}
