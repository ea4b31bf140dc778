// bench.mjs — llama.cpp speed reference: batched prefill and one-token-at-a-time greedy decode on the CPU.
//
// Usage: node bench.mjs --model M.gguf [--threads N] [--prefill P] [--decode D] [--reps R]
//                       [--kv-type F32|F16] [--flash-attention 0|1]
//
// Each repetition starts from an empty KV cache, evaluates P fixed token ids in one batch (logits for the last
// one only, as a real prompt prefill does), then decodes D tokens one at a time, feeding back the greedy choice.
// A short warm-up run comes first. Prints JSON {prefill_tok_s, decode_tok_s, threads, ...} with the best of the
// R repetitions for each phase (best-of is the least noisy figure on a shared machine), and the process's resident
// memory before the model was loaded and at its peak.

import {performance} from "node:perf_hooks";
import {parseArgs, intArg, loadCpuModel, procStatusBytes, vocabSize, main} from "./common.mjs";

main(async () => {
    const args = parseArgs(process.argv.slice(2),
        ["model", "threads", "prefill", "decode", "reps", "kv-type", "flash-attention"]);
    if (!args.model) throw new Error("missing --model");
    const threads = intArg(args, "threads", 1);
    const prefill = intArg(args, "prefill", 128);
    const decode = intArg(args, "decode", 32);
    const reps = Math.max(1, intArg(args, "reps", 3));
    const kvType = (args["kv-type"] ?? "F32").toUpperCase();
    const flash = (args["flash-attention"] ?? "0") === "1";
    if (prefill < 1) throw new Error("--prefill must be at least 1");
    if (threads < 1) throw new Error("--threads must be at least 1");

    const {llama, model, rssBeforeModel} = await loadCpuModel(args.model, threads);
    const context = await model.createContext({
        contextSize: prefill + decode,
        batchSize: prefill,
        threads,
        flashAttention: flash,
        experimentalKvCacheKeyType: kvType,
        experimentalKvCacheValueType: kvType,
        sequences: 1,
    });
    const seq = context.getSequence();

    // The vocabulary size bounds the ids; without tokenizer metadata, ask the model for one distribution.
    let vocab = vocabSize(model);
    if (vocab === undefined) {
        const r = await seq.controlledEvaluate([[1, {generateNext: {probabilities: true}}]]);
        vocab = r[0]?.next?.probabilities?.size;
        if (!vocab) throw new Error("cannot determine the vocabulary size");
    }

    // Fixed, spread-out ids that avoid the first few (usually special) tokens.
    const ids = [];
    for (let i = 0; i < prefill; i++) ids.push(3 + ((i * 7919 + 13) % Math.max(1, vocab - 3)));

    async function once(p, d) {
        await seq.clearHistory();
        const t0 = performance.now();
        const r = await seq.controlledEvaluate(ids.slice(0, p).map((t, i) =>
            i === p - 1 ? [t, {generateNext: {token: true}}] : t));
        const t1 = performance.now();
        let next = r[p - 1]?.next?.token ?? ids[0];
        for (let i = 0; i < d; i++) {
            const s = await seq.controlledEvaluate([[next, {generateNext: {token: true}}]]);
            next = s[0]?.next?.token ?? ids[0];
        }
        const t2 = performance.now();
        return {prefillS: (t1 - t0) / 1000, decodeS: (t2 - t1) / 1000};
    }

    await once(Math.min(prefill, 16), Math.min(decode, 4)); // warm-up: page in weights, spin up threads
    let bestPrefill = 0, bestDecode = 0;
    const runs = [];
    for (let r = 0; r < reps; r++) {
        const {prefillS, decodeS} = await once(prefill, decode);
        const pt = prefill / prefillS, dt = decode > 0 ? decode / decodeS : 0;
        runs.push({prefill_tok_s: pt, decode_tok_s: dt});
        bestPrefill = Math.max(bestPrefill, pt);
        bestDecode = Math.max(bestDecode, dt);
    }

    process.stdout.write(JSON.stringify({
        prefill_tok_s: bestPrefill,
        decode_tok_s: bestDecode,
        threads: context.currentThreads ?? threads,
        prefill,
        decode,
        reps,
        vocab,
        kv_type: kvType,
        flash_attention: flash,
        runs,
        rss_before_model_bytes: rssBeforeModel,
        peak_rss_bytes: procStatusBytes("VmHWM"),
        engine: "llama.cpp via node-llama-cpp 3.21.1 (CPU)",
    }) + "\n");

    await context.dispose();
    await model.dispose();
    await llama.dispose();
});
