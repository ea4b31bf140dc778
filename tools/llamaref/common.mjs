// Shared helpers for the llama.cpp reference scripts (driven by persona/internal/llamaref).
//
// Everything the scripts print on stdout is a single JSON document; diagnostics go to stderr so the Go
// side can surface them in errors.

import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

// parseArgs turns "--name value" pairs into an object; every flag takes a value.
export function parseArgs(argv, known) {
    const out = {};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (!a.startsWith("--")) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
        const name = a.slice(2);
        if (!known.includes(name)) throw new Error(`unknown flag --${name} (known: ${known.join(", ")})`);
        if (i + 1 >= argv.length) throw new Error(`flag --${name} needs a value`);
        out[name] = argv[++i];
    }
    return out;
}

// intArg reads a non-negative integer flag, with a default when absent.
export function intArg(args, name, def) {
    if (args[name] === undefined) {
        if (def === undefined) throw new Error(`missing --${name}`);
        return def;
    }
    const v = Number(args[name]);
    if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer, got ${args[name]}`);
    return v;
}

// loadCpuModel loads a GGUF on the CPU with the prebuilt binaries only (never builds, never downloads).
// Logs from llama.cpp go to stderr at warning level and above.
export async function loadCpuModel(modelPath, threads) {
    const llama = await getLlama({
        build: "never",
        gpu: false,
        skipDownload: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.warn,
        logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message}\n`),
        maxThreads: threads,
    });
    const rssBeforeModel = procStatusBytes("VmRSS");
    const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
    return {llama, model, rssBeforeModel};
}

// procStatusBytes reads one "kB" field of /proc/self/status (VmRSS, VmHWM) in bytes; 0 where there is none.
export function procStatusBytes(field) {
    try {
        const m = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s*(\\d+) kB`, "m"));
        return m ? Number(m[1]) * 1024 : 0;
    } catch {
        return 0;
    }
}

// vocabSize returns the vocabulary size from the GGUF's tokenizer.ggml.tokens, or undefined when the file has
// none (node-llama-cpp exposes no n_vocab getter; the logits width equals this array's length).
export function vocabSize(model) {
    const t = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
    return Array.isArray(t) && t.length > 0 ? t.length : undefined;
}

// readStdin returns all of stdin as a string.
export async function readStdin() {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
}

// main runs fn and turns any failure into a message on stderr and exit status 1.
export function main(fn) {
    fn().then(
        () => process.exit(0),
        (err) => {
            process.stderr.write(`${err?.stack ?? err}\n`);
            process.exit(1);
        },
    );
}
