// The one CPU dispatch point: which set of kernels (kernel_sets.h) runs, decided once per process.
// The AVX-512 set when the build has it, the CPU has every instruction set its files are compiled
// with, and SEGFAST_GEMM is not "reference"; the reference set otherwise. SEGFAST_GEMM=reference
// in the environment is the one override (for comparisons, and to run the reference loops in CI).
#pragma once
#include <cstddef>

#include "gemm.h"

namespace segfast {

struct CpuKernels {
    const char* name;  // "avx512" or "reference", what _core.gemm_kernel() reports
    void (*gemm)(Epilogue epilogue, const GemmArgs& args);
    void (*transpose)(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out);
    // max_assignment's inner loops (kernel_sets.h says what each computes)
    double (*min_reduced_cost)(const float* score_row, const double* prices, int n);
    void (*two_smallest)(const float* score_row, const double* prices, int n, double* u_min, int* j1, double* u_sub,
                         int* j2);
    void (*column_minima)(const float* score, const double* u, int n, double* out);
    void (*augment)(const float* score, int n, double* prices, int* row_sol, int* col_sol, int free_row, double* dist,
                    int* pred, int* settled, unsigned char* closed);
};

// The set this process runs (chosen on the first call).
const CpuKernels& cpu_kernels();
// The plain-loop set, whatever the CPU: the oracle the tests compare the fast set with.
const CpuKernels& reference_kernels();

}  // namespace segfast
