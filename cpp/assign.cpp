#include "assign.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "check.h"
#include "finite.h"
#include "gemm.h"

namespace segfast {

namespace {

// Scalar versions of assign_avx512.cpp's row searches (same results, same ties).
double min_reduced_cost_scalar(const float* si, const double* v, int n) {
    double best = std::numeric_limits<double>::infinity();
    for (int j = 0; j < n; ++j) best = std::min(best, -static_cast<double>(si[j]) - v[j]);
    return best;
}

void column_minima_scalar(const float* score, const double* u, int n, double* out) {
    for (int j = 0; j < n; ++j) out[j] = std::numeric_limits<double>::infinity();
    for (int k = 0; k < n; ++k) {
        if (u[k] == -std::numeric_limits<double>::infinity()) continue;
        for (int j = 0; j < n; ++j)
            out[j] = std::min(out[j], -static_cast<double>(score[static_cast<std::size_t>(k) * n + j]) - u[k]);
    }
}

void two_smallest_scalar(const float* si, const double* v, int n, double* u_min, int* j1, double* u_sub, int* j2) {
    double low = -static_cast<double>(si[0]) - v[0], second = std::numeric_limits<double>::infinity();
    int at = 0, at2 = -1;
    for (int j = 1; j < n; ++j) {
        const double h = -static_cast<double>(si[j]) - v[j];
        if (h < second) {
            if (h >= low) {
                second = h;
                at2 = j;
            } else {
                second = low;
                low = h;
                at2 = at;
                at = j;
            }
        }
    }
    *u_min = low;
    *j1 = at;
    *u_sub = second;
    *j2 = at2;
}

}  // namespace

// Every solver here needs finite scores: a NaN compares false everywhere and an infinity has no
// finite reduced cost, and either would leave a search without a column (an index out of range).
static void require_finite_scores(const float* score, int n) {
    SEGFAST_REQUIRE(all_finite(score, static_cast<std::size_t>(n) * n),
                    "assignment scores must be finite (NaN or inf found: are the parameters finite?)");
}

double max_assignment_reference(const float* score, int n, int* perm, AssignWorkspace& ws) {
    require_finite_scores(score, n);
    // Minimise cost = -score. Index 0 is a virtual column; rows and columns are 1-based inside.
    const double inf = std::numeric_limits<double>::infinity();
    ws.u.assign(n + 1, 0.0);
    ws.v.assign(n + 1, 0.0);
    ws.match.assign(n + 1, 0);
    ws.way.assign(n + 1, 0);
    ws.min_to.resize(n + 1);
    ws.used.resize(n + 1);
    double* u = ws.u.data();
    double* v = ws.v.data();
    int* match = ws.match.data();
    int* way = ws.way.data();
    double* min_to = ws.min_to.data();
    char* used = ws.used.data();

    for (int row = 1; row <= n; ++row) {
        // Grow a shortest-path tree from `row` until it reaches a free column, then augment.
        match[0] = row;
        int col0 = 0;
        for (int j = 0; j <= n; ++j) {
            min_to[j] = inf;
            used[j] = 0;
        }
        do {
            used[col0] = 1;
            const int i0 = match[col0];
            const float* cost_row = score + static_cast<long>(i0 - 1) * n;
            double delta = inf;
            int col1 = 0;
            for (int j = 1; j <= n; ++j) {
                if (used[j]) continue;
                const double reduced = -static_cast<double>(cost_row[j - 1]) - u[i0] - v[j];
                if (reduced < min_to[j]) {
                    min_to[j] = reduced;
                    way[j] = col0;
                }
                if (min_to[j] < delta) {
                    delta = min_to[j];
                    col1 = j;
                }
            }
            for (int j = 0; j <= n; ++j) {
                if (used[j]) {
                    u[match[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            col0 = col1;
        } while (match[col0] != 0);
        do {  // flip the path's matches back to the root
            const int col1 = way[col0];
            match[col0] = match[col1];
            col0 = col1;
        } while (col0 != 0);
    }
    double total = 0.0;
    for (int j = 1; j <= n; ++j) {
        perm[match[j] - 1] = j - 1;
        total += score[static_cast<long>(match[j] - 1) * n + (j - 1)];
    }
    return total;
}

double max_assignment(const float* score, int n, int* perm, AssignWorkspace& ws, Start start, double* prices,
                      double* row_duals) {
    require_finite_scores(score, n);
    const double inf = std::numeric_limits<double>::infinity();
    // minimise cost = -score, in double
    auto C = [&](int i, int j) { return -static_cast<double>(score[static_cast<std::size_t>(i) * n + j]); };
    ws.v.assign(n, 0.0);
    ws.min_to.assign(n, 0.0);
    ws.row_sol.assign(n, -1);
    ws.col_sol.assign(n, -1);
    ws.free_rows.assign(n, 0);
    ws.col_list.assign(n, 0);
    ws.pred.assign(n, 0);
    ws.matches.assign(n, 0);
    double* v = ws.v.data();
    double* d = ws.min_to.data();
    int* row_sol = ws.row_sol.data();
    int* col_sol = ws.col_sol.data();
    int* free_rows = ws.free_rows.data();
    int* col_list = ws.col_list.data();
    int* pred = ws.pred.data();
    int* matches = ws.matches.data();

    // the AVX-512 loops when gemm uses its AVX-512 kernel (SEGFAST_GEMM=reference turns both off)
    static const bool vectorised = assign_avx512_supported() && std::strcmp(gemm_kernel_name(), "avx512") == 0;
    static const auto min_reduced_cost = vectorised ? &min_reduced_cost_avx512 : &min_reduced_cost_scalar;
    static const auto two_smallest = vectorised ? &two_smallest_avx512 : &two_smallest_scalar;
    static const auto column_minima = vectorised ? &column_minima_avx512 : &column_minima_scalar;
    auto row = [&](int i) { return score + static_cast<std::size_t>(i) * n; };
    int n_free = 0;
    SEGFAST_REQUIRE(start != Start::Prices || prices, "a start from prices needs prices");
    SEGFAST_REQUIRE(start != Start::RowDuals || row_duals, "a start from row duals needs row duals");
    if (start == Start::RowDuals) {
        // The cheapest price each column can have under those row duals; then as from prices.
        for (int j = 0; j < n; ++j) v[j] = C(0, j) - row_duals[0];
        for (int i = 1; i < n; ++i)
            for (int j = 0; j < n; ++j) v[j] = std::min(v[j], C(i, j) - row_duals[i]);
    } else if (start == Start::Prices) {
        for (int j = 0; j < n; ++j) v[j] = prices[j];
    }
    if (start != Start::Cold) {
        // Keep row i on column i wherever that is still a cheapest column of row i.
        // u: the kept rows' duals; -inf marks a free row.
        ws.u.resize(n);
        double* u = ws.u.data();
        for (int i = 0; i < n; ++i) {
            if (C(i, i) - v[i] <= min_reduced_cost(row(i), v, n)) {
                row_sol[i] = i;
                col_sol[i] = i;
                u[i] = C(i, i) - v[i];
            } else {
                free_rows[n_free++] = i;
                u[i] = -inf;
            }
        }
        // A free column's price is bound only by the kept rows (their reduced costs must stay
        // >= 0): raise it to the highest they allow. The free columns come closer, so the
        // searches from the free rows end sooner (the warm solves of an aligned merge 15-20%
        // faster); the answer is the same optimum. Only where most rows are kept: a few bound
        // the prices loosely, and raised that far they lose what the start knew (matches of
        // shuffled units from row duals, almost no row kept, took 2.5x as long).
        if (n_free > 0 && n_free * 2 <= n) {
            column_minima(score, u, n, d);
            for (int f = 0; f < n_free; ++f) {
                const int j = free_rows[f];  // row j left column j free
                if (d[j] > v[j]) v[j] = d[j];
            }
        }
    } else {
        // Column reduction: each column's price is its cheapest row; a row that is the cheapest
        // of exactly one column takes it. The minima are found row by row (a column walk
        // strides n), each column's first cheapest row.
        for (int j = 0; j < n; ++j) v[j] = C(0, j);
        for (int i = 1; i < n; ++i)
            for (int j = 0; j < n; ++j)
                if (C(i, j) < v[j]) {
                    v[j] = C(i, j);
                    pred[j] = i;
                }
        for (int j = n - 1; j >= 0; --j) {
            const int i_min = pred[j];
            if (++matches[i_min] == 1) {  // a row chosen again keeps its first column
                row_sol[i_min] = j;
                col_sol[j] = i_min;
            }
        }
        // Reduction transfer: rows assigned once pass their slack to their column's price.
        for (int i = 0; i < n; ++i) {
            if (matches[i] == 0) {
                free_rows[n_free++] = i;
            } else if (matches[i] == 1) {
                const int j1 = row_sol[i];
                double low, second;
                int at, at2;
                two_smallest(row(i), v, n, &low, &at, &second, &at2);
                const double m = at == j1 ? second : low;  // the row's best over the other columns
                if (m < inf) v[j1] -= m;
            }
        }
        // Rows assigned to several columns above gave up all but one: those columns are free.
        // Augmenting row reduction, twice: a free row takes its best column, displacing its owner.
        for (int pass = 0; pass < 2; ++pass) {
            int k = 0;
            const int previous = n_free;
            n_free = 0;
            long steps = 0;
            const long step_limit = 16L * n + 64;  // float ties can make it cycle: then leave the rest to phase 4
            while (k < previous) {
                if (++steps > step_limit) {
                    while (k < previous) free_rows[n_free++] = free_rows[k++];
                    break;
                }
                const int i = free_rows[k++];
                double u_min, u_sub;
                int j1, j2;
                two_smallest(row(i), v, n, &u_min, &j1, &u_sub, &j2);
                int i0 = col_sol[j1];
                if (u_min < u_sub) {
                    v[j1] -= u_sub - u_min;
                } else if (i0 >= 0 && j2 >= 0) {
                    j1 = j2;
                    i0 = col_sol[j2];
                }
                if (i0 >= 0) row_sol[i0] = -1;
                row_sol[i] = j1;
                col_sol[j1] = i;
                if (i0 >= 0) {
                    if (u_min < u_sub)
                        free_rows[--k] = i0;
                    else
                        free_rows[n_free++] = i0;
                }
            }
        }
    }
    // Augmentation: a shortest augmenting path (Dijkstra on reduced costs) for each free row.
    if (vectorised) {
        ws.closed.assign((n + 7) / 8, 0);
        for (int f = 0; f < n_free; ++f)
            augment_avx512(score, n, v, row_sol, col_sol, free_rows[f], d, pred, col_list, ws.closed.data());
        n_free = 0;  // done: skip the scalar loop below
    }
    for (int f = 0; f < n_free; ++f) {
        const int free_row = free_rows[f];
        for (int j = 0; j < n; ++j) {
            d[j] = C(free_row, j) - v[j];
            pred[j] = free_row;
            col_list[j] = j;
        }
        int low = 0, up = 0, last = 0, end_of_path = -1;
        double m = 0.0;
        // col_list[0, low): settled; [low, up): at the current minimum distance; [up, n): the rest
        while (end_of_path < 0) {
            if (up == low) {
                last = low - 1;
                m = d[col_list[up++]];
                for (int t = up; t < n; ++t) {
                    const int j = col_list[t];
                    const double h = d[j];
                    if (h <= m) {
                        if (h < m) {
                            up = low;
                            m = h;
                        }
                        col_list[t] = col_list[up];
                        col_list[up++] = j;
                    }
                }
                for (int t = low; t < up; ++t)
                    if (col_sol[col_list[t]] < 0) {
                        end_of_path = col_list[t];
                        break;
                    }
            }
            if (end_of_path >= 0) break;
            const int j1 = col_list[low++];
            const int i = col_sol[j1];
            const double h = C(i, j1) - v[j1] - m;
            for (int t = up; t < n; ++t) {
                const int j = col_list[t];
                const double v2 = C(i, j) - v[j] - h;
                if (v2 < d[j]) {
                    pred[j] = i;
                    if (v2 == m) {
                        if (col_sol[j] < 0) {
                            end_of_path = j;
                            break;
                        }
                        col_list[t] = col_list[up];
                        col_list[up++] = j;
                    }
                    d[j] = v2;
                }
            }
        }
        for (int t = 0; t <= last; ++t) {
            const int j1 = col_list[t];
            v[j1] += d[j1] - m;
        }
        int i;
        do {  // flip the assignments along the path back to the free row
            i = pred[end_of_path];
            col_sol[end_of_path] = i;
            const int j1 = end_of_path;
            end_of_path = row_sol[i];
            row_sol[i] = j1;
        } while (i != free_row);
    }
    if (prices)
        for (int j = 0; j < n; ++j) prices[j] = v[j];
    if (row_duals)
        for (int i = 0; i < n; ++i) row_duals[i] = C(i, row_sol[i]) - v[row_sol[i]];
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
        perm[i] = row_sol[i];
        total += score[static_cast<std::size_t>(i) * n + row_sol[i]];
    }
    return total;
}

}  // namespace segfast
