// Tokenizes strings with llama.cpp (npm node-llama-cpp 3.21.1, installed by tools/llamaref/install.sh) from the
// vocabulary of a GGUF file, loaded vocab-only, for persona's tokenizer tests (tokenizer/llamacpp_test.go):
// the check that our GGUF tokenizer metadata means to llama.cpp what it means to us.
//
// stdin:  {"gguf": "/path/vocab.gguf", "texts": ["...", ...]}
// stdout: {"bos": id, "eos": id, "ids": [[...], ...]}   (special tokens in the text parsed, no BOS added)
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const { getLlama, LlamaLogLevel } = await import(
  path.join(here, "..", "llamaref", "node_modules", "node-llama-cpp", "dist", "index.js"));

// stdin is read as a stream: a synchronous read of fd 0 can fail with EAGAIN once the event loop runs.
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const llama = await getLlama({ build: "never", gpu: false, skipDownload: true, progressLogs: false,
  logLevel: LlamaLogLevel.error, logger: (level, msg) => process.stderr.write(msg + "\n") });
const model = await llama.loadModel({ modelPath: req.gguf, vocabOnly: true });
const ids = req.texts.map((s) => Array.from(model.tokenize(s, true)));
process.stdout.write(JSON.stringify({ bos: model.tokens.bos, eos: model.tokens.eos, ids }));
