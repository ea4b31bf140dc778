// ggml_matmul: GGML's CPU backend multiplying quantized weights by float32
// activations, for persona's kernel package to check its quantized matrix
// products against.
//
// The weight rows are quantized with ggml_quantize_chunk and multiplied with
// ggml_mul_mat on the CPU backend llama.cpp itself loads for this machine
// (one of the libggml-cpu-*.so variants beside the library), so the product
// goes through the same activation quantization (Q8_0, Q8_1 or Q8_K blocks)
// and dot-product kernels as a llama.cpp model run. Nothing here
// re-implements either.
//
// Usage:
//   ggml_matmul --bins DIR --type Q4_1 --rows R --cols C --tokens T
//               --w w.f32 --x x.f32 --quant q.bin --out y.f32 [--threads N]
//
// Reads R×C weights and T×C activations (little-endian float32), writes the
// quantized weight rows to --quant and the T×R product to --out.
#include "harness.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

#include <cstring>

const char * const harness_name = "ggml_matmul";

// read_f32 reads exactly n little-endian float32s.
static std::vector<float> read_f32(const std::string & path, size_t n) {
    std::vector<char> raw = read_file(path);
    if (raw.size() != n * 4) fail(path + " does not hold " + std::to_string(n) + " float32s");
    std::vector<float> v(n);
    memcpy(v.data(), raw.data(), raw.size());
    return v;
}

int main(int argc, char ** argv) {
    std::string bins, type_name, w_path, x_path, quant_path, out_path;
    long rows = 0, cols = 0, tokens = 0;
    int threads = 1;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) fail("missing value after " + a);
            return argv[++i];
        };
        if (a == "--bins") bins = next();
        else if (a == "--type") type_name = next();
        else if (a == "--rows") rows = std::atol(next().c_str());
        else if (a == "--cols") cols = std::atol(next().c_str());
        else if (a == "--tokens") tokens = std::atol(next().c_str());
        else if (a == "--w") w_path = next();
        else if (a == "--x") x_path = next();
        else if (a == "--quant") quant_path = next();
        else if (a == "--out") out_path = next();
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else fail("unknown argument " + a);
    }
    if (bins.empty() || type_name.empty() || rows <= 0 || cols <= 0 || tokens <= 0 || w_path.empty() || x_path.empty() ||
        quant_path.empty() || out_path.empty())
        fail("usage: ggml_matmul --bins DIR --type T --rows R --cols C --tokens N --w w.f32 --x x.f32 --quant q.bin --out y.f32");
    const enum ggml_type type = ggml_type_named(type_name);
    if (cols % ggml_blck_size(type) != 0) fail("cols is not a whole number of blocks");

    std::vector<float> w = read_f32(w_path, rows * cols), x = read_f32(x_path, tokens * cols);
    std::vector<char> q(ggml_row_size(type, cols) * rows);
    if (ggml_quantize_chunk(type, w.data(), q.data(), 0, rows, cols, nullptr) != q.size())
        fail("ggml_quantize_chunk wrote an unexpected size");

    // The CPU backends are separate libggml-cpu-*.so files; the best one for
    // this CPU is chosen as llama.cpp chooses it.
    ggml_backend_load_all_from_path(bins.c_str());
    ggml_backend_t be = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!be) fail("no CPU backend in " + bins);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(ggml_backend_get_device(be));
    auto set_threads = (void (*)(ggml_backend_t, int)) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
    if (set_threads) set_threads(be, threads);

    ggml_init_params ip = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * wt = ggml_new_tensor_2d(ctx, type, cols, rows);
    ggml_tensor * xt = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, tokens);
    ggml_tensor * yt = ggml_mul_mat(ctx, wt, xt); // rows × tokens
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, yt);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    if (!buf) fail("cannot allocate the tensors");
    ggml_backend_tensor_set(wt, q.data(), 0, q.size());
    ggml_backend_tensor_set(xt, x.data(), 0, x.size() * 4);
    if (ggml_backend_graph_compute(be, gf) != GGML_STATUS_SUCCESS) fail("graph compute failed");
    std::vector<float> y(rows * tokens);
    ggml_backend_tensor_get(yt, y.data(), 0, y.size() * 4);
    write_file(quant_path, q.data(), q.size());
    write_file(out_path, y.data(), y.size() * 4);
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    ggml_backend_free(be);
    return 0;
}
