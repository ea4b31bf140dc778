// llama_quantize: llama.cpp's own model quantization (llama_model_quantize, the
// code behind llama-quantize), for persona's tests to load files written by
// the reference and run them against llama.cpp.
//
// Usage:
//   llama_quantize IN.gguf OUT.gguf TYPE      (TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
//                                              Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K)
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: llama_quantize IN.gguf OUT.gguf TYPE\n");
        return 1;
    }
    struct { const char * name; llama_ftype ftype; } types[] = {
        {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0}, {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1}, {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
        {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1}, {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0}, {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
        {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
        {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    };
    llama_model_quantize_params params = llama_model_quantize_default_params();
    bool found = false;
    for (auto & t : types) {
        if (strcmp(argv[3], t.name) == 0) {
            params.ftype = t.ftype;
            found = true;
        }
    }
    if (!found) {
        fprintf(stderr, "llama_quantize: unknown type %s\n", argv[3]);
        return 1;
    }
    params.nthread = 1;
    llama_backend_init();
    uint32_t rc = llama_model_quantize(argv[1], argv[2], &params);
    llama_backend_free();
    if (rc != 0) {
        fprintf(stderr, "llama_quantize: llama_model_quantize failed (%u)\n", rc);
        return 1;
    }
    return 0;
}
