#include "assign.h"

#include <limits>

namespace segfast {

double max_assignment(const float* score, int n, int* perm, AssignWorkspace& ws) {
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

}  // namespace segfast
