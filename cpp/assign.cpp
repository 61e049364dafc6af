#include "assign.h"

#include <algorithm>
#include <limits>

#include "check.h"
#include "dispatch.h"
#include "finite.h"

namespace segfast {

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

namespace {

// The Jonker-Volgenant solver's state, in the workspace's vectors: the cost minimised is
// -score, in double. Each phase below leaves an assignment that is optimal under prices v for
// the rows it has assigned; free_rows[0, n_free) are the rows still without a column.
struct Jv {
    const float* score;  // (n, n)
    int n;
    double* v;       // (n,) column prices
    double* d;       // (n,) path lengths, scratch
    int* row_sol;    // (n,) row -> column, -1 while free
    int* col_sol;    // (n,) column -> row, -1 while free
    int* free_rows;  // (n,) the first n_free are free
    int* col_list;   // (n,) scratch
    int* pred;       // (n,) scratch
    int* matches;    // (n,) columns each row won in the column reduction
    int n_free = 0;

    double cost(int i, int j) const { return -static_cast<double>(score[static_cast<std::size_t>(i) * n + j]); }
    const float* row(int i) const { return score + static_cast<std::size_t>(i) * n; }
};

Jv prepare(const float* score, int n, AssignWorkspace& ws) {
    ws.v.assign(n, 0.0);
    ws.min_to.assign(n, 0.0);
    ws.row_sol.assign(n, -1);
    ws.col_sol.assign(n, -1);
    ws.free_rows.assign(n, 0);
    ws.col_list.assign(n, 0);
    ws.pred.assign(n, 0);
    ws.matches.assign(n, 0);
    return Jv{score,
              n,
              ws.v.data(),
              ws.min_to.data(),
              ws.row_sol.data(),
              ws.col_sol.data(),
              ws.free_rows.data(),
              ws.col_list.data(),
              ws.pred.data(),
              ws.matches.data()};
}

// A warm start (Start::Prices or Start::RowDuals): prices from the similar problem, then row i
// kept on column i wherever that is still a cheapest column of row i.
void warm_start(Jv& s, Start start, const double* prices, const double* row_duals, AssignWorkspace& ws,
                const CpuKernels& k) {
    const int n = s.n;
    const double inf = std::numeric_limits<double>::infinity();
    double* v = s.v;
    if (start == Start::RowDuals) {
        // The cheapest price each column can have under those row duals; then as from prices.
        for (int j = 0; j < n; ++j) v[j] = s.cost(0, j) - row_duals[0];
        for (int i = 1; i < n; ++i)
            for (int j = 0; j < n; ++j) v[j] = std::min(v[j], s.cost(i, j) - row_duals[i]);
    } else {
        for (int j = 0; j < n; ++j) v[j] = prices[j];
    }
    // u: the kept rows' duals; -inf marks a free row.
    ws.u.resize(n);
    double* u = ws.u.data();
    for (int i = 0; i < n; ++i) {
        if (s.cost(i, i) - v[i] <= k.min_reduced_cost(s.row(i), v, n)) {
            s.row_sol[i] = i;
            s.col_sol[i] = i;
            u[i] = s.cost(i, i) - v[i];
        } else {
            s.free_rows[s.n_free++] = i;
            u[i] = -inf;
        }
    }
    // A free column's price is bound only by the kept rows (their reduced costs must stay
    // >= 0): raise it to the highest they allow. The free columns come closer, so the
    // searches from the free rows end sooner; the answer is the same optimum. Only where most
    // rows are kept: a few bound the prices loosely, and raised that far they lose what the
    // start knew (matches of shuffled units from row duals, where almost no row is kept, slowed
    // down; bench/README.md has the timings).
    if (s.n_free > 0 && s.n_free * 2 <= n) {
        k.column_minima(s.score, u, n, s.d);
        for (int f = 0; f < s.n_free; ++f) {
            const int j = s.free_rows[f];  // row j left column j free
            if (s.d[j] > v[j]) v[j] = s.d[j];
        }
    }
}

// Column reduction: each column's price is its cheapest row; a row that is the cheapest of
// exactly one column takes it. The minima are found row by row (a column walk strides n), each
// column's first cheapest row.
void column_reduction(Jv& s) {
    const int n = s.n;
    double* v = s.v;
    for (int j = 0; j < n; ++j) v[j] = s.cost(0, j);
    for (int i = 1; i < n; ++i)
        for (int j = 0; j < n; ++j)
            if (s.cost(i, j) < v[j]) {
                v[j] = s.cost(i, j);
                s.pred[j] = i;
            }
    for (int j = n - 1; j >= 0; --j) {
        const int i_min = s.pred[j];
        if (++s.matches[i_min] == 1) {  // a row chosen again keeps its first column
            s.row_sol[i_min] = j;
            s.col_sol[j] = i_min;
        }
    }
}

// Reduction transfer: rows assigned once pass their slack to their column's price. Rows the
// column reduction gave nothing become the free rows.
void reduction_transfer(Jv& s, const CpuKernels& k) {
    const double inf = std::numeric_limits<double>::infinity();
    for (int i = 0; i < s.n; ++i) {
        if (s.matches[i] == 0) {
            s.free_rows[s.n_free++] = i;
        } else if (s.matches[i] == 1) {
            const int j1 = s.row_sol[i];
            double low, second;
            int at, at2;
            k.two_smallest(s.row(i), s.v, s.n, &low, &at, &second, &at2);
            const double m = at == j1 ? second : low;  // the row's best over the other columns
            if (m < inf) s.v[j1] -= m;
        }
    }
}

// Augmenting row reduction, one pass: a free row takes its best column, displacing its owner.
// (Rows assigned to several columns by the column reduction gave up all but one: those columns
// are free.)
void augmenting_row_reduction(Jv& s, const CpuKernels& k) {
    int* free_rows = s.free_rows;
    int k_at = 0;
    const int previous = s.n_free;
    s.n_free = 0;
    long steps = 0;
    const long step_limit = 16L * s.n + 64;  // float ties can make it cycle: then leave the rest to augment()
    while (k_at < previous) {
        if (++steps > step_limit) {
            while (k_at < previous) free_rows[s.n_free++] = free_rows[k_at++];
            break;
        }
        const int i = free_rows[k_at++];
        double u_min, u_sub;
        int j1, j2;
        k.two_smallest(s.row(i), s.v, s.n, &u_min, &j1, &u_sub, &j2);
        int i0 = s.col_sol[j1];
        if (u_min < u_sub) {
            s.v[j1] -= u_sub - u_min;
        } else if (i0 >= 0 && j2 >= 0) {
            j1 = j2;
            i0 = s.col_sol[j2];
        }
        if (i0 >= 0) s.row_sol[i0] = -1;
        s.row_sol[i] = j1;
        s.col_sol[j1] = i;
        if (i0 >= 0) {
            if (u_min < u_sub) free_rows[--k_at] = i0;
            else free_rows[s.n_free++] = i0;
        }
    }
}

// Augmentation: a shortest augmenting path for each row still free.
void augment(Jv& s, AssignWorkspace& ws, const CpuKernels& k) {
    ws.closed.assign((s.n + 7) / 8, 0);
    for (int f = 0; f < s.n_free; ++f)
        k.augment(s.score, s.n, s.v, s.row_sol, s.col_sol, s.free_rows[f], s.d, s.pred, s.col_list, ws.closed.data());
    s.n_free = 0;
}

// perm and the total score; prices and row_duals, when given, get the solution's duals.
double finish(const Jv& s, int* perm, double* prices, double* row_duals) {
    const int n = s.n;
    if (prices)
        for (int j = 0; j < n; ++j) prices[j] = s.v[j];
    if (row_duals)
        for (int i = 0; i < n; ++i) row_duals[i] = s.cost(i, s.row_sol[i]) - s.v[s.row_sol[i]];
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
        perm[i] = s.row_sol[i];
        total += s.score[static_cast<std::size_t>(i) * n + s.row_sol[i]];
    }
    return total;
}

}  // namespace

double max_assignment(const float* score, int n, int* perm, AssignWorkspace& ws, Start start, double* prices,
                      double* row_duals) {
    require_finite_scores(score, n);
    SEGFAST_REQUIRE(start != Start::Prices || prices, "a start from prices needs prices");
    SEGFAST_REQUIRE(start != Start::RowDuals || row_duals, "a start from row duals needs row duals");
    const CpuKernels& k = cpu_kernels();
    Jv s = prepare(score, n, ws);
    if (start != Start::Cold) {
        warm_start(s, start, prices, row_duals, ws, k);
    } else {
        column_reduction(s);
        reduction_transfer(s, k);
        for (int pass = 0; pass < 2; ++pass) augmenting_row_reduction(s, k);
    }
    augment(s, ws, k);
    return finish(s, perm, prices, row_duals);
}

}  // namespace segfast
