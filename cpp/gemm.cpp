// Picks the gemm kernel once per process from the CPU's features.
// SEGFAST_GEMM=reference in the environment forces the plain-loop kernel (for comparisons);
// the assignment solver follows it to its scalar loops.
#include <cstdlib>
#include <cstring>

#include "gemm.h"

namespace segfast {

namespace {
bool use_avx512() {
    static const bool use = [] {
        const char* forced = std::getenv("SEGFAST_GEMM");
        if (forced && std::strcmp(forced, "reference") == 0) return false;
        return gemm_avx512_supported();
    }();
    return use;
}
}  // namespace

void gemm(Epilogue epilogue, const GemmArgs& args) {
    if (args.m <= 0 || args.n <= 0) return;
    if (use_avx512())
        gemm_avx512(epilogue, args);
    else
        gemm_reference(epilogue, args);
}

void transpose(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out) {
    if (use_avx512())
        transpose_avx512(in, ld_in, rows, cols, out, ld_out);
    else
        transpose_reference(in, ld_in, rows, cols, out, ld_out);
}

const char* gemm_kernel_name() { return use_avx512() ? "avx512" : "reference"; }

}  // namespace segfast
