// logprobs.mjs — llama.cpp reference log-probabilities for a fixed token sequence.
//
// Usage: node logprobs.mjs --model M.gguf --out ls.f32 [--threads N] [--n-greedy G] [--ids-file ids.json] < ids.json
//
// Input: a JSON array of token ids (stdin, or --ids-file). Nothing is tokenized and no BOS is added: the ids are
// evaluated exactly as given, in one batch, with flash attention off and an F32 KV cache (both are needed for
// comparisons at the 1e-5 level). Output:
//   --out   float32 little-endian, [n_positions][vocab]: row i is the log-softmax over the vocabulary of the
//           next-token distribution after ids[0..i].
//   stdout  JSON {vocab, n_positions, greedy, threads, ...}; greedy holds n_greedy ids chosen by argmax,
//           each fed back one at a time after the input.
// node-llama-cpp exposes no raw logits; it returns the full softmax (computed in float32 by its addon over the
// whole vocabulary when the sampler is greedy). The log of that is the log-softmax; a probability that underflows
// float32 comes out as -Infinity.

import fs from "node:fs";
import {parseArgs, intArg, loadCpuModel, readStdin, vocabSize, main} from "./common.mjs";

main(async () => {
    const args = parseArgs(process.argv.slice(2), ["model", "out", "threads", "n-greedy", "ids-file"]);
    if (!args.model) throw new Error("missing --model");
    if (!args.out) throw new Error("missing --out");
    const threads = intArg(args, "threads", 1);
    const nGreedy = intArg(args, "n-greedy", 0);
    const ids = JSON.parse(args["ids-file"] ? fs.readFileSync(args["ids-file"], "utf8") : await readStdin());
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every((t) => Number.isInteger(t) && t >= 0))
        throw new Error("input must be a non-empty JSON array of non-negative integer token ids");

    const {llama, model} = await loadCpuModel(args.model, threads);
    const nVocab = vocabSize(model);
    for (const t of ids) if (nVocab !== undefined && t >= nVocab) throw new Error(`token id ${t} out of vocabulary (${nVocab})`);

    // One slot more than the ids even without greedy steps: with the context
    // exactly as long as the ids, the last position's probabilities came back
    // wrong (|Δ log-softmax| of 17 against persona and against the same run
    // with one greedy step).
    const needed = ids.length + Math.max(nGreedy, 1);
    const context = await model.createContext({
        contextSize: needed,
        batchSize: Math.max(ids.length, 1),
        threads,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        sequences: 1,
    });
    if (context.contextSize < needed) throw new Error(`context size ${context.contextSize} < ${needed} needed`);
    const seq = context.getSequence();

    const res = await seq.controlledEvaluate(
        ids.map((t, i) => [t, {generateNext: {probabilities: true, token: i === ids.length - 1}}]),
    );

    let vocab = 0;
    for (let i = 0; i < ids.length; i++) {
        const p = res[i]?.next?.probabilities;
        if (!p) throw new Error(`no probabilities returned for position ${i}`);
        if (i === 0) vocab = p.size;
        else if (p.size !== vocab) throw new Error(`position ${i}: ${p.size} probabilities, expected ${vocab}`);
    }
    if (nVocab !== undefined && vocab !== nVocab) throw new Error(`${vocab} probabilities per position but the GGUF has ${nVocab} tokens`);

    const buf = Buffer.alloc(ids.length * vocab * 4);
    const row = new Float32Array(vocab);
    for (let i = 0; i < ids.length; i++) {
        row.fill(NaN);
        for (const [tok, prob] of res[i].next.probabilities) {
            if (tok < 0 || tok >= vocab) throw new Error(`position ${i}: token ${tok} outside [0,${vocab})`);
            row[tok] = Math.log(prob);
        }
        for (let j = 0; j < vocab; j++) {
            if (Number.isNaN(row[j])) throw new Error(`position ${i}: no probability for token ${j}`);
            buf.writeFloatLE(row[j], (i * vocab + j) * 4);
        }
    }
    fs.writeFileSync(args.out, buf);

    const greedy = [];
    let next = res[ids.length - 1].next.token;
    for (let step = 0; step < nGreedy; step++) {
        if (next == null) throw new Error(`greedy step ${step}: no token sampled`);
        greedy.push(next);
        if (step === nGreedy - 1) break;
        const r = await seq.controlledEvaluate([[next, {generateNext: {token: true}}]]);
        next = r[0]?.next?.token;
    }

    process.stdout.write(JSON.stringify({
        vocab,
        n_positions: ids.length,
        greedy,
        threads: context.currentThreads ?? threads,
        flash_attention: context.flashAttention,
        kv_cache: "F32",
        engine: "llama.cpp via node-llama-cpp 3.21.1 (CPU)",
    }) + "\n");

    await context.dispose();
    await model.dispose();
    await llama.dispose();
});
