// check.mjs — smoke check that the prebuilt llama.cpp binding loads on this machine without building or
// downloading anything; prints the llama.cpp build it found. Run by install.sh.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const llama = await getLlama({build: "never", gpu: false, skipDownload: true, logLevel: LlamaLogLevel.error});
console.log(`llamaref: prebuilt llama.cpp binding loads (llama.cpp ${llama.llamaCppRelease?.release ?? "?"}, gpu ${llama.gpu})`);
await llama.dispose();
