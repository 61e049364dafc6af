// AVX-512 inner loops of the Jonker-Volgenant solver (assign.cpp): the shortest augmenting
// path as a dense Dijkstra, where one pass over the 8-double lanes both relaxes every open
// column and finds the next closest one. The scalar version walks a column list one entry at
// a time; on weight matching's 512 x 512 problems this pass is the solver's whole cost.
// Compiled alone with AVX-512 enabled, like gemm_avx512.cpp, and without the standard library;
// only in builds with SEGFAST_WITH_AVX512, and run only when dispatch.cpp picks the AVX-512 set.
#include <immintrin.h>

#include "kernel_sets.h"

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

// Lane by lane: (x, ix) comes before (y, iy) by value, then by column.
inline __mmask8 before(__m512d x, __m512i ix, __m512d y, __m512i iy) {
    return _mm512_cmp_pd_mask(x, y, _CMP_LT_OQ) |
           (_mm512_cmp_pd_mask(x, y, _CMP_EQ_OQ) & _mm512_cmplt_epi64_mask(ix, iy));
}

// Relaxes the open columns through row i (h = its potential minus the path length so far)
// and returns the open column with the smallest distance. First: the search's first pass, from
// the free row itself, where every distance is set (none is read). Two sets of lanes take
// alternate blocks (two dependency chains instead of one) and meet at the end.
template <bool First>
int relax_and_argmin(const float* si, const double* v, double* d, int* pred, const unsigned char* closed, int n, int i,
                     double h) {
    const __m512d hv = _mm512_set1_pd(h);
    const __m256i row = _mm256_set1_epi32(i);
    __m512d best0 = _mm512_set1_pd(__builtin_inf()), best1 = best0;
    __m512i idx0 = _mm512_set1_epi64(n), idx1 = idx0;
    const __m512i step = _mm512_set1_epi64(8);
    auto block = [&](int jb, __m512i idx, __m512d& best, __m512i& best_idx) {
        const __mmask8 open = First ? lanes(jb, n) : lanes(jb, n) & static_cast<__mmask8>(~closed[jb >> 3]);
        const __m512d reach = _mm512_sub_pd(_mm512_sub_pd(cost(si, jb, open), _mm512_maskz_loadu_pd(open, v + jb)), hv);
        __m512d dv = reach;
        if (First) {
            _mm512_mask_storeu_pd(d + jb, open, reach);
            _mm256_mask_storeu_epi32(pred + jb, open, row);
        } else {
            dv = _mm512_maskz_loadu_pd(open, d + jb);
            const __mmask8 shorter = _mm512_mask_cmp_pd_mask(open, reach, dv, _CMP_LT_OQ);
            dv = _mm512_mask_mov_pd(dv, shorter, reach);
            _mm512_mask_storeu_pd(d + jb, shorter, reach);
            _mm256_mask_storeu_epi32(pred + jb, shorter, row);
        }
        const __mmask8 closer = _mm512_mask_cmp_pd_mask(open, dv, best, _CMP_LT_OQ);
        best = _mm512_mask_mov_pd(best, closer, dv);
        best_idx = _mm512_mask_mov_epi64(best_idx, closer, idx);
    };
    __m512i idx = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    int jb = 0;
    for (; jb + 16 <= n; jb += 16) {
        block(jb, idx, best0, idx0);
        idx = _mm512_add_epi64(idx, step);
        block(jb + 8, idx, best1, idx1);
        idx = _mm512_add_epi64(idx, step);
    }
    for (; jb < n; jb += 8, idx = _mm512_add_epi64(idx, step)) block(jb, idx, best0, idx0);
    const __mmask8 second = before(best1, idx1, best0, idx0);
    return reduce_argmin(_mm512_mask_mov_pd(best0, second, best1), _mm512_mask_mov_epi64(idx0, second, idx1));
}

}  // namespace

double min_reduced_cost_avx512(const float* si, const double* v, int n) {
    __m512d best0 = _mm512_set1_pd(__builtin_inf()), best1 = best0;
    int jb = 0;
    for (; jb + 16 <= n; jb += 16) {  // two chains of minima
        best0 = _mm512_min_pd(best0, _mm512_sub_pd(cost(si, jb, 0xFF), _mm512_loadu_pd(v + jb)));
        best1 = _mm512_min_pd(best1, _mm512_sub_pd(cost(si, jb + 8, 0xFF), _mm512_loadu_pd(v + jb + 8)));
    }
    for (; jb < n; jb += 8) {
        const __mmask8 in = lanes(jb, n);
        best0 = _mm512_mask_min_pd(best0, in, best0,
                                   _mm512_sub_pd(cost(si, jb, in), _mm512_maskz_loadu_pd(in, v + jb)));
    }
    return _mm512_reduce_min_pd(_mm512_min_pd(best0, best1));
}

void column_minima_avx512(const float* score, const double* u, int n, double* out) {
    const __m512d inf = _mm512_set1_pd(__builtin_inf());
    for (int jb = 0; jb < n; jb += 8) _mm512_mask_storeu_pd(out + jb, lanes(jb, n), inf);
    for (int k = 0; k < n; ++k) {
        if (u[k] == -__builtin_inf()) continue;
        const float* sk = score + static_cast<long>(k) * n;
        const __m512d uk = _mm512_set1_pd(u[k]);
        for (int jb = 0; jb < n; jb += 8) {
            const __mmask8 in = lanes(jb, n);
            const __m512d c = _mm512_sub_pd(cost(sk, jb, in), uk);
            _mm512_mask_storeu_pd(out + jb, in, _mm512_min_pd(_mm512_maskz_loadu_pd(in, out + jb), c));
        }
    }
}

namespace {

// The two smallest reduced costs seen by each lane, each with its first column (lanes see their
// columns in increasing order, so a strict "below" keeps the first of equal values).
struct TwoSmallest {
    __m512d m1, m2;
    __m512i i1, i2;
};

inline void see(TwoSmallest& t, __m512d h, __m512i idx, __mmask8 in) {
    const __mmask8 below1 = _mm512_mask_cmp_pd_mask(in, h, t.m1, _CMP_LT_OQ);
    const __mmask8 below2 = _mm512_mask_cmp_pd_mask(in & static_cast<__mmask8>(~below1), h, t.m2, _CMP_LT_OQ);
    t.m2 = _mm512_mask_mov_pd(_mm512_mask_mov_pd(t.m2, below1, t.m1), below2, h);
    t.i2 = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(t.i2, below1, t.i1), below2, idx);
    t.m1 = _mm512_mask_mov_pd(t.m1, below1, h);
    t.i1 = _mm512_mask_mov_epi64(t.i1, below1, idx);
}

}  // namespace

void two_smallest_avx512(const float* si, const double* v, int n, double* u_min, int* j1, double* u_sub, int* j2) {
    // Two sets of lanes take alternate blocks (two dependency chains instead of one); every
    // (value, column) pair they keep competes at the end, ordered by value, then column.
    const __m512d inf = _mm512_set1_pd(__builtin_inf());
    const __m512i none = _mm512_set1_epi64(n);  // a column past the end: loses every tie
    TwoSmallest a{inf, inf, none, none}, b{inf, inf, none, none};
    __m512i idx = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i step = _mm512_set1_epi64(8);
    int jb = 0;
    for (; jb + 16 <= n; jb += 16) {
        see(a, _mm512_sub_pd(cost(si, jb, 0xFF), _mm512_loadu_pd(v + jb)), idx, 0xFF);
        idx = _mm512_add_epi64(idx, step);
        see(b, _mm512_sub_pd(cost(si, jb + 8, 0xFF), _mm512_loadu_pd(v + jb + 8)), idx, 0xFF);
        idx = _mm512_add_epi64(idx, step);
    }
    for (; jb < n; jb += 8, idx = _mm512_add_epi64(idx, step)) {
        const __mmask8 in = lanes(jb, n);
        see(a, _mm512_sub_pd(cost(si, jb, in), _mm512_maskz_loadu_pd(in, v + jb)), idx, in);
    }
    // Lane by lane, the two sets' best two of four; then across lanes, the best and the best of
    // the rest (the winning lane offering its second instead).
    const __mmask8 a_first = before(a.m1, a.i1, b.m1, b.i1);
    const __m512d f = _mm512_mask_mov_pd(b.m1, a_first, a.m1);
    const __m512i fi = _mm512_mask_mov_epi64(b.i1, a_first, a.i1);
    const __m512d p = _mm512_mask_mov_pd(a.m1, a_first, a.m2), r = _mm512_mask_mov_pd(b.m2, a_first, b.m1);
    const __m512i pi = _mm512_mask_mov_epi64(a.i1, a_first, a.i2), ri = _mm512_mask_mov_epi64(b.i2, a_first, b.i1);
    const __mmask8 p_first = before(p, pi, r, ri);
    const __m512d sv = _mm512_mask_mov_pd(r, p_first, p);
    const __m512i si2 = _mm512_mask_mov_epi64(ri, p_first, pi);
    *u_min = _mm512_reduce_min_pd(f);
    const long long best = _mm512_mask_reduce_min_epi64(_mm512_cmp_pd_mask(f, _mm512_set1_pd(*u_min), _CMP_EQ_OQ), fi);
    *j1 = static_cast<int>(best);
    const __mmask8 winner = _mm512_cmpeq_epi64_mask(fi, _mm512_set1_epi64(best));
    const __m512d g = _mm512_mask_mov_pd(f, winner, sv);
    const __m512i gi = _mm512_mask_mov_epi64(fi, winner, si2);
    const double sub = _mm512_reduce_min_pd(g);
    const long long at = _mm512_mask_reduce_min_epi64(_mm512_cmp_pd_mask(g, _mm512_set1_pd(sub), _CMP_EQ_OQ), gi);
    const bool found = at < n;
    *u_sub = found ? sub : __builtin_inf();
    *j2 = found ? static_cast<int>(at) : -1;
}

void augment_avx512(const float* score, int n, double* v, int* row_sol, int* col_sol, int free_row, double* d,
                    int* pred, int* settled, unsigned char* closed) {
    for (int b = 0; b < (n + 7) / 8; ++b) closed[b] = 0;
    int count = 0, end = -1;
    double m = 0.0;
    int j1 = relax_and_argmin<true>(score + static_cast<long>(free_row) * n, v, d, pred, closed, n, free_row, 0.0);
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
        j1 = relax_and_argmin<false>(si, v, d, pred, closed, n, i, -static_cast<double>(si[j1]) - v[j1] - m);
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
