// Picks the CPU kernel set once per process, and routes gemm() and transpose() through it.
// The assignment solver (assign.cpp) reads its inner loops from the same set, so one switch,
// SEGFAST_GEMM=reference, turns every AVX-512 loop off at once.
#include "dispatch.h"

#include <cstdlib>
#include <cstring>

#include "kernel_sets.h"

namespace segfast {

namespace {

constexpr CpuKernels kReference{
    "reference",          &gemm_reference,       &transpose_reference, &min_reduced_cost_scalar,
    &two_smallest_scalar, &column_minima_scalar, &augment_scalar};

#if defined(SEGFAST_WITH_AVX512)
constexpr CpuKernels kAvx512{"avx512",
                             &gemm_avx512,
                             &transpose_avx512,
                             &min_reduced_cost_avx512,
                             &two_smallest_avx512,
                             &column_minima_avx512,
                             &augment_avx512};

// CMake compiles the AVX-512 files with -mavx512f -mavx512vl -mfma, which also turn on AVX2, AVX,
// SSE4.2, SSE4.1, SSSE3, SSE3 and POPCNT (g++ -dM -E lists them): the compiler may emit any of
// these there, so the CPU must have every one. (__builtin_cpu_supports also checks that the OS
// saves the AVX-512 registers.) Keep this list and the flags in CMakeLists.txt together.
bool cpu_runs_avx512_files() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx") && __builtin_cpu_supports("sse4.2") &&
           __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse3") &&
           __builtin_cpu_supports("popcnt");
}
#endif

const CpuKernels& choose() {
    const char* forced = std::getenv("SEGFAST_GEMM");
    if (forced && std::strcmp(forced, "reference") == 0) return kReference;
#if defined(SEGFAST_WITH_AVX512)
    if (cpu_runs_avx512_files()) return kAvx512;
#endif
    return kReference;
}

}  // namespace

const CpuKernels& cpu_kernels() {
    static const CpuKernels& chosen = choose();
    return chosen;
}

const CpuKernels& reference_kernels() { return kReference; }

void gemm(Epilogue epilogue, const GemmArgs& args) {
    if (args.m <= 0 || args.n <= 0) return;
    cpu_kernels().gemm(epilogue, args);
}

void transpose(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out) {
    cpu_kernels().transpose(in, ld_in, rows, cols, out, ld_out);
}

}  // namespace segfast
