// harness.h — what the reference harnesses share: failing with a message
// that names the harness, whole-file input and output, and GGML types by name.
// Each harness defines harness_name before including it.
#pragma once

#include "ggml.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <strings.h>
#include <vector>

extern const char * const harness_name;

[[noreturn]] inline void fail(const std::string & msg) {
    fprintf(stderr, "%s: %s\n", harness_name, msg.c_str());
    exit(1);
}

inline std::vector<char> read_file(const std::string & path) {
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) fail("cannot open " + path);
    std::vector<char> data;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
    fclose(f);
    return data;
}

inline void write_file(const std::string & path, const void * data, size_t n) {
    FILE * f = fopen(path.c_str(), "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) fail("cannot write " + path);
}

// ggml_type_named returns the GGML type called name (any case: GGML's names
// are lower case, q4_K), failing on an unknown one.
inline enum ggml_type ggml_type_named(const std::string & name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * n = ggml_type_name((enum ggml_type) t);
        if (n && strcasecmp(name.c_str(), n) == 0) return (enum ggml_type) t;
    }
    fail("unknown type " + name);
}
