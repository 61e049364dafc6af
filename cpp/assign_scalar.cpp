// The scalar inner loops of the Jonker-Volgenant solver (assign.cpp): the reference set of
// kernel_sets.h, which assign_avx512.cpp matches result for result, tie for tie.
#include <algorithm>
#include <cstddef>
#include <limits>

#include "kernel_sets.h"

namespace segfast {

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

void augment_scalar(const float* score, int n, double* v, int* row_sol, int* col_sol, int free_row, double* d,
                    int* pred, int* col_list, unsigned char* /*closed: the AVX-512 version's*/) {
    auto C = [&](int i, int j) { return -static_cast<double>(score[static_cast<std::size_t>(i) * n + j]); };
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

}  // namespace segfast
