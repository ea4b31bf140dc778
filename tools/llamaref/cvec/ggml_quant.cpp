// ggml_quant: GGML's own quantization and dequantization of a float32 matrix,
// for persona's tensor package to check its decoders against bit for bit.
//
// It quantizes with ggml_quantize_chunk (what llama-quantize calls per tensor,
// without an importance matrix) and dequantizes the result with the type's
// to_float from ggml_get_type_traits (what llama.cpp uses to read a quantized
// tensor back). Nothing here re-implements either.
//
// Usage:
//   ggml_quant --type Q4_K --rows R --cols C --in x.f32 --quant q.bin --dequant y.f32
//
// Reads R×C little-endian float32s from --in, writes the quantized rows to
// --quant and their dequantized float32s to --dequant.
#include "harness.h"

#include <cstring>

const char * const harness_name = "ggml_quant";

int main(int argc, char ** argv) {
    std::string type_name, in_path, quant_path, dequant_path;
    long rows = 0, cols = 0;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) fail("missing value after " + a);
            return argv[++i];
        };
        if (a == "--type") type_name = next();
        else if (a == "--rows") rows = std::atol(next().c_str());
        else if (a == "--cols") cols = std::atol(next().c_str());
        else if (a == "--in") in_path = next();
        else if (a == "--quant") quant_path = next();
        else if (a == "--dequant") dequant_path = next();
        else fail("unknown argument " + a);
    }
    if (type_name.empty() || rows <= 0 || cols <= 0 || in_path.empty() || quant_path.empty() || dequant_path.empty())
        fail("usage: ggml_quant --type T --rows R --cols C --in x.f32 --quant q.bin --dequant y.f32");
    const enum ggml_type type = ggml_type_named(type_name);
    const struct ggml_type_traits * tr = ggml_get_type_traits(type);
    if (!tr->is_quantized || !tr->to_float) fail(type_name + " is not a quantized type");
    if (cols % ggml_blck_size(type) != 0) fail("cols is not a whole number of blocks");
    std::vector<char> in = read_file(in_path);
    if ((long) in.size() != rows * cols * 4) fail("--in holds " + std::to_string(in.size()) + " bytes, not rows*cols*4");
    std::vector<float> x(rows * cols);
    memcpy(x.data(), in.data(), in.size());
    size_t row_size = ggml_row_size(type, cols);
    std::vector<char> q(row_size * rows);
    size_t n = ggml_quantize_chunk(type, x.data(), q.data(), 0, rows, cols, nullptr);
    if (n != q.size()) fail("ggml_quantize_chunk wrote " + std::to_string(n) + " bytes, expected " + std::to_string(q.size()));
    std::vector<float> y(rows * cols);
    tr->to_float(q.data(), y.data(), rows * cols);
    write_file(quant_path, q.data(), q.size());
    write_file(dequant_path, y.data(), y.size() * 4);
    return 0;
}
