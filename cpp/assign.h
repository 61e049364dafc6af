// Linear assignment: the permutation that maximises the total score of an n x n matrix.
// It is the inner step of weight matching (which hidden unit of one model plays the role of
// which unit of another). Two solvers, both exact, in double precision:
//  - max_assignment: Jonker-Volgenant. Column reduction, reduction transfer and augmenting row
//    reduction settle most rows cheaply before the shortest-augmenting-path phase; on weight
//    matching's nearly-diagonal problems that is most of them (measured: 512 x 512 aligned
//    problems in about 1 ms against 17 ms for the plain Hungarian method).
//  - max_assignment_reference: the plain Hungarian method (shortest augmenting path from every
//    row): the oracle for the tests.
#pragma once
#include <vector>

namespace segfast {

struct AssignWorkspace {
    std::vector<double> u, v, min_to;  // row and column potentials, path lengths
    std::vector<int> match, way;       // column -> row matched; predecessor column on the path
    std::vector<char> used;
    std::vector<double> cost;          // (n, n) minimisation costs
    std::vector<int> row_sol, col_sol, free_rows, col_list, pred, matches;
    std::vector<unsigned char> closed;  // bit per column: settled in the current path search
};

// score: (n, n) row-major. Writes perm[i] = column assigned to row i; returns the total score.
// prices (n,), optional: column prices of a previous, similar problem whose solution was the
// identity (in weight matching: the same model's last assignment, already applied). Rows whose
// identity match is still optimal under those prices start assigned; only the others are
// re-routed, so a problem that changed a little costs a few shortest paths instead of n.
// On return prices hold the solution's column prices.
double max_assignment(const float* score, int n, int* perm, AssignWorkspace& ws, double* prices = nullptr,
                      bool warm = false);
double max_assignment_reference(const float* score, int n, int* perm, AssignWorkspace& ws);

// The AVX-512 inner loops of max_assignment (assign_avx512.cpp), used when the CPU has them.
bool assign_avx512_supported();
double min_reduced_cost_avx512(const double* cost_row, const double* prices, int n);
void augment_avx512(const double* cost, int n, double* prices, int* row_sol, int* col_sol, int free_row,
                    double* dist, int* pred, int* settled, unsigned char* closed);

}  // namespace segfast
