// AVX-512 inner loops of the Jonker-Volgenant solver (assign.cpp): the shortest augmenting
// path as a dense Dijkstra, where one pass over the 8-double lanes both relaxes every open
// column and finds the next closest one. The scalar version walks a column list one entry at
// a time; on weight matching's 512 x 512 problems this pass is the solver's whole cost.
// Compiled alone with AVX-512 enabled, like gemm_avx512.cpp, and without the standard library.
#include "assign.h"

#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>

namespace segfast {

namespace {

inline __mmask8 lanes(int jb, int n) {
    return jb + 8 <= n ? static_cast<__mmask8>(0xFF) : static_cast<__mmask8>((1u << (n - jb)) - 1u);
}

// Index of the smallest best[lane] (lowest index among equals).
inline int reduce_argmin(__m512d best, __m512i best_idx) {
    const double m = _mm512_reduce_min_pd(best);
    const __mmask8 at = _mm512_cmp_pd_mask(best, _mm512_set1_pd(m), _CMP_EQ_OQ);
    return static_cast<int>(_mm512_mask_reduce_min_epi64(at, best_idx));
}

// Relaxes the open columns through row i (h = its potential minus the path length so far)
// when i >= 0, and returns the open column with the smallest distance.
int relax_and_argmin(const double* ci, const double* v, double* d, int* pred, const unsigned char* closed,
                     int n, int i, double h) {
    const __m512d hv = _mm512_set1_pd(h);
    const __m256i row = _mm256_set1_epi32(i);
    __m512d best = _mm512_set1_pd(__builtin_inf());
    __m512i best_idx = _mm512_set1_epi64(n);
    __m512i idx = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i step = _mm512_set1_epi64(8);
    for (int jb = 0; jb < n; jb += 8, idx = _mm512_add_epi64(idx, step)) {
        const __mmask8 open = lanes(jb, n) & static_cast<__mmask8>(~closed[jb >> 3]);
        __m512d dv = _mm512_maskz_loadu_pd(open, d + jb);
        if (i >= 0) {
            const __m512d reach = _mm512_sub_pd(_mm512_sub_pd(_mm512_maskz_loadu_pd(open, ci + jb),
                                                              _mm512_maskz_loadu_pd(open, v + jb)), hv);
            const __mmask8 shorter = _mm512_mask_cmp_pd_mask(open, reach, dv, _CMP_LT_OQ);
            dv = _mm512_mask_mov_pd(dv, shorter, reach);
            _mm512_mask_storeu_pd(d + jb, shorter, reach);
            _mm256_mask_storeu_epi32(pred + jb, shorter, row);
        }
        const __mmask8 closer = _mm512_mask_cmp_pd_mask(open, dv, best, _CMP_LT_OQ);
        best = _mm512_mask_mov_pd(best, closer, dv);
        best_idx = _mm512_mask_mov_epi64(best_idx, closer, idx);
    }
    return reduce_argmin(best, best_idx);
}

}  // namespace

bool assign_avx512_supported() {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}

double min_reduced_cost_avx512(const double* ci, const double* v, int n) {
    __m512d best = _mm512_set1_pd(__builtin_inf());
    for (int jb = 0; jb < n; jb += 8) {
        const __mmask8 in = lanes(jb, n);
        const __m512d r = _mm512_sub_pd(_mm512_maskz_loadu_pd(in, ci + jb), _mm512_maskz_loadu_pd(in, v + jb));
        best = _mm512_mask_min_pd(best, in, best, r);
    }
    return _mm512_reduce_min_pd(best);
}

void augment_avx512(const double* c, int n, double* v, int* row_sol, int* col_sol, int free_row, double* d,
                    int* pred, int* settled, unsigned char* closed) {
    const double* cf = c + static_cast<long>(free_row) * n;
    for (int j = 0; j < n; ++j) {
        d[j] = cf[j] - v[j];
        pred[j] = free_row;
    }
    for (int b = 0; b < (n + 7) / 8; ++b) closed[b] = 0;
    int count = 0, end = -1;
    double m = 0.0;
    int j1 = relax_and_argmin(nullptr, v, d, pred, closed, n, -1, 0.0);
    for (;;) {
        m = d[j1];
        closed[j1 >> 3] = static_cast<unsigned char>(closed[j1 >> 3] | (1u << (j1 & 7)));
        settled[count++] = j1;
        if (col_sol[j1] < 0) {
            end = j1;
            break;
        }
        const int i = col_sol[j1];
        const double* ci = c + static_cast<long>(i) * n;
        j1 = relax_and_argmin(ci, v, d, pred, closed, n, i, ci[j1] - v[j1] - m);
    }
    for (int t = 0; t < count; ++t) v[settled[t]] += d[settled[t]] - m;
    for (int j = end;;) {  // flip the assignments along the path back to the free row
        const int i = pred[j];
        col_sol[j] = i;
        const int next = row_sol[i];
        row_sol[i] = j;
        if (i == free_row) break;
        j = next;
    }
}

}  // namespace segfast

#else

namespace segfast {
bool assign_avx512_supported() { return false; }
double min_reduced_cost_avx512(const double*, const double*, int) { return 0.0; }
void augment_avx512(const double*, int, double*, int*, int*, int, double*, int*, int*, unsigned char*) {}
}  // namespace segfast

#endif
