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

// Costs are minus the scores, read as float and widened in registers: the solver's passes then
// stream a 1 MB matrix (512 x 512) that stays in L2 instead of a 2 MB double copy.
inline __m512d cost(const float* score_row, int jb, __mmask8 in) {
    return _mm512_sub_pd(_mm512_setzero_pd(), _mm512_cvtps_pd(_mm256_maskz_loadu_ps(in, score_row + jb)));
}

// Index of the smallest best[lane] (lowest index among equals).
inline int reduce_argmin(__m512d best, __m512i best_idx) {
    const double m = _mm512_reduce_min_pd(best);
    const __mmask8 at = _mm512_cmp_pd_mask(best, _mm512_set1_pd(m), _CMP_EQ_OQ);
    return static_cast<int>(_mm512_mask_reduce_min_epi64(at, best_idx));
}

// Relaxes the open columns through row i (h = its potential minus the path length so far)
// when i >= 0, and returns the open column with the smallest distance.
int relax_and_argmin(const float* si, const double* v, double* d, int* pred, const unsigned char* closed,
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
            const __m512d reach = _mm512_sub_pd(_mm512_sub_pd(cost(si, jb, open), _mm512_maskz_loadu_pd(open, v + jb)), hv);
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

double min_reduced_cost_avx512(const float* si, const double* v, int n) {
    __m512d best = _mm512_set1_pd(__builtin_inf());
    for (int jb = 0; jb < n; jb += 8) {
        const __mmask8 in = lanes(jb, n);
        const __m512d r = _mm512_sub_pd(cost(si, jb, in), _mm512_maskz_loadu_pd(in, v + jb));
        best = _mm512_mask_min_pd(best, in, best, r);
    }
    return _mm512_reduce_min_pd(best);
}

void two_smallest_avx512(const float* si, const double* v, int n, double* u_min, int* j1, double* u_sub, int* j2) {
    // Per lane: the smallest and second smallest reduced cost seen, each at its first column.
    const __m512d inf = _mm512_set1_pd(__builtin_inf());
    __m512d m1 = inf, m2 = inf;
    __m512i i1 = _mm512_set1_epi64(-1), i2 = _mm512_set1_epi64(-1);
    __m512i idx = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i step = _mm512_set1_epi64(8);
    for (int jb = 0; jb < n; jb += 8, idx = _mm512_add_epi64(idx, step)) {
        const __mmask8 in = lanes(jb, n);
        const __m512d h = _mm512_sub_pd(cost(si, jb, in), _mm512_maskz_loadu_pd(in, v + jb));
        const __mmask8 below1 = _mm512_mask_cmp_pd_mask(in, h, m1, _CMP_LT_OQ);
        const __mmask8 below2 = _mm512_mask_cmp_pd_mask(in & static_cast<__mmask8>(~below1), h, m2, _CMP_LT_OQ);
        m2 = _mm512_mask_mov_pd(_mm512_mask_mov_pd(m2, below1, m1), below2, h);
        i2 = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(i2, below1, i1), below2, idx);
        m1 = _mm512_mask_mov_pd(m1, below1, h);
        i1 = _mm512_mask_mov_epi64(i1, below1, idx);
    }
    double a1[8], a2[8];
    long long b1[8], b2[8];
    _mm512_storeu_pd(a1, m1);
    _mm512_storeu_pd(a2, m2);
    _mm512_storeu_epi64(b1, i1);
    _mm512_storeu_epi64(b2, i2);
    // Across lanes: the first column of the smallest value, then the first of the smallest
    // among every other lane's minimum and that lane's second.
    int best = -1;
    for (int l = 0; l < 8; ++l)
        if (b1[l] >= 0 && (best < 0 || a1[l] < a1[best] || (a1[l] == a1[best] && b1[l] < b1[best]))) best = l;
    double sub = __builtin_inf();
    long long at = -1;
    for (int l = 0; l < 8; ++l) {
        const double x = l == best ? a2[l] : a1[l];
        const long long j = l == best ? b2[l] : b1[l];
        if (j >= 0 && (at < 0 || x < sub || (x == sub && j < at))) {
            sub = x;
            at = j;
        }
    }
    *u_min = a1[best];
    *j1 = static_cast<int>(b1[best]);
    *u_sub = sub;
    *j2 = static_cast<int>(at);
}

void augment_avx512(const float* score, int n, double* v, int* row_sol, int* col_sol, int free_row, double* d,
                    int* pred, int* settled, unsigned char* closed) {
    const float* sf = score + static_cast<long>(free_row) * n;
    for (int j = 0; j < n; ++j) {
        d[j] = -static_cast<double>(sf[j]) - v[j];
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
        const float* si = score + static_cast<long>(i) * n;
        j1 = relax_and_argmin(si, v, d, pred, closed, n, i, -static_cast<double>(si[j1]) - v[j1] - m);
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
double min_reduced_cost_avx512(const float*, const double*, int) { return 0.0; }
void two_smallest_avx512(const float*, const double*, int, double*, int*, double*, int*) {}
void augment_avx512(const float*, int, double*, int*, int*, int, double*, int*, int*, unsigned char*) {}
}  // namespace segfast

#endif
