// cvec_logits: llama.cpp's logits for a token sequence, optionally steered by
// control-vector GGUF files, for persona's vectors package to compare against.
//
// It loads the control vectors with llama.cpp's own loader
// (common_control_vector_load, the code behind llama-cli --control-vector-scaled)
// and applies them with llama_set_adapter_cvec, so the comparison covers both
// the file format and the arithmetic. Nothing here re-implements either.
//
// Usage:
//   cvec_logits --bins DIR --model M.gguf --ids 1,2,3 --out logits.f32
//               [--cvec FILE.gguf --strength S]... [--layer-range A B] [--threads N]
//
// Writes n_positions × n_vocab little-endian float32 logits (every position, in
// order) to --out and one JSON line {"n_vocab":…, "n_positions":…, "n_embd":…,
// "n_layer":…, "cvec_layers":…} to stdout. Runs on the CPU with flash attention
// off and an F32 KV cache, the settings under which llama.cpp reproduces
// persona's forward pass to float32 noise.
#include "common.h"
#include "ggml-backend.h"
#include "llama.h"
#include "harness.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

const char * const harness_name = "cvec_logits";

static std::vector<llama_token> parse_ids(const std::string & s) {
    std::vector<llama_token> ids;
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        try {
            ids.push_back((llama_token) std::stol(s.substr(i, j - i)));
        } catch (...) {
            fail("bad token id list: " + s);
        }
        i = j + 1;
    }
    return ids;
}

int main(int argc, char ** argv) {
    std::string bins, model_path, out_path, ids_arg;
    std::vector<common_control_vector_load_info> cvecs;
    int layer_start = -1, layer_end = -1, threads = 1;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) fail("missing value after " + a);
            return argv[++i];
        };
        if (a == "--bins") bins = next();
        else if (a == "--model") model_path = next();
        else if (a == "--out") out_path = next();
        else if (a == "--ids") ids_arg = next();
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--cvec") cvecs.push_back({1.0f, next()});
        else if (a == "--strength") {
            if (cvecs.empty()) fail("--strength must follow a --cvec");
            cvecs.back().strength = std::strtof(next().c_str(), nullptr);
        } else if (a == "--layer-range") {
            layer_start = std::atoi(next().c_str());
            layer_end = std::atoi(next().c_str());
        } else fail("unknown argument " + a);
    }
    if (bins.empty() || model_path.empty() || out_path.empty() || ids_arg.empty()) {
        fail("need --bins, --model, --ids and --out");
    }
    std::vector<llama_token> ids = parse_ids(ids_arg);

    // The CPU backends are separate libggml-cpu-*.so files next to libllama.
    ggml_backend_load_all_from_path(bins.c_str());
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) fail("cannot load model " + model_path);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = ids.size() + 8;
    cp.n_batch = ids.size();
    cp.n_ubatch = ids.size();
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) fail("cannot create context");

    const int n_embd = llama_model_n_embd(model);
    const int n_layer = llama_model_n_layer(model);
    int cvec_layers = 0;
    if (!cvecs.empty()) {
        common_control_vector_data cv = common_control_vector_load(cvecs);
        if (cv.n_embd == -1) fail("llama.cpp rejected the control vector file(s); see its log above");
        cvec_layers = cv.data.size() / cv.n_embd;
        if (layer_start < 0) layer_start = 1;
        if (layer_end < 0) layer_end = n_layer;
        if (llama_set_adapter_cvec(ctx, cv.data.data(), cv.data.size(), cv.n_embd, layer_start, layer_end) != 0) {
            fail("llama_set_adapter_cvec failed; see its log above");
        }
    }

    llama_batch batch = llama_batch_init(ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = ids.size();
    if (llama_decode(ctx, batch) != 0) fail("llama_decode failed");

    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE * f = fopen(out_path.c_str(), "wb");
    if (!f) fail("cannot create " + out_path);
    for (size_t i = 0; i < ids.size(); i++) {
        const float * row = llama_get_logits_ith(ctx, i);
        if (!row || fwrite(row, sizeof(float), n_vocab, f) != (size_t) n_vocab) fail("cannot write logits");
    }
    if (fclose(f) != 0) fail("cannot write " + out_path);
    printf("{\"n_vocab\":%d,\"n_positions\":%zu,\"n_embd\":%d,\"n_layer\":%d,\"cvec_layers\":%d}\n",
           n_vocab, ids.size(), n_embd, n_layer, cvec_layers);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
