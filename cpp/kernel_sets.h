// The two versions of every CPU kernel that has a fast one: the reference (plain loops: the
// tests' oracle and the fallback) and the AVX-512 one, with one signature per pair. Internal:
// only dispatch.cpp picks between them (everything else calls gemm(), transpose() or the solver),
// and the AVX-512 versions exist only in builds with SEGFAST_WITH_AVX512.
#pragma once
#include <cstddef>

#include "gemm.h"

namespace segfast {

// gemm() and transpose() of gemm.h.
void gemm_reference(Epilogue epilogue, const GemmArgs& args);
void transpose_reference(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out);

// The inner loops of max_assignment (assign.h). Rows are score rows (float); the cost minimised
// is minus the score, in double. The scalar versions are in assign_scalar.cpp.
//
// The smallest reduced cost of a row.
double min_reduced_cost_scalar(const float* score_row, const double* prices, int n);
// The smallest reduced cost of a row and its first column, and the smallest over the other
// columns and its first column (j2 = -1, u_sub = inf when n = 1).
void two_smallest_scalar(const float* score_row, const double* prices, int n, double* u_min, int* j1, double* u_sub,
                         int* j2);
// out[j] = min over rows k of (cost(k, j) - u[k]), rows with u[k] = -inf left out: the highest
// price column j can have with every such row's reduced cost still >= 0.
void column_minima_scalar(const float* score, const double* u, int n, double* out);
// One shortest augmenting path (Dijkstra on reduced costs) from free_row, and the flip of the
// assignments along it. dist, pred, settled (n,) and closed ((n + 7) / 8, one bit per column)
// are scratch; the scalar version keeps its columns in a list and leaves closed alone.
void augment_scalar(const float* score, int n, double* prices, int* row_sol, int* col_sol, int free_row, double* dist,
                    int* pred, int* settled, unsigned char* closed);

#if defined(SEGFAST_WITH_AVX512)
// gemm_avx512.cpp
void gemm_avx512(Epilogue epilogue, const GemmArgs& args);
void transpose_avx512(const float* in, std::ptrdiff_t ld_in, int rows, int cols, float* out, std::ptrdiff_t ld_out);
// assign_avx512.cpp: the same results and ties as the scalar versions.
double min_reduced_cost_avx512(const float* score_row, const double* prices, int n);
void two_smallest_avx512(const float* score_row, const double* prices, int n, double* u_min, int* j1, double* u_sub,
                         int* j2);
void column_minima_avx512(const float* score, const double* u, int n, double* out);
void augment_avx512(const float* score, int n, double* prices, int* row_sol, int* col_sol, int free_row, double* dist,
                    int* pred, int* settled, unsigned char* closed);
#endif

}  // namespace segfast
