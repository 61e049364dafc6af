// Linear assignment: the permutation that maximises the total score of an n x n matrix.
// It is the inner step of weight matching (which hidden unit of one model plays the role of
// which unit of another). Two solvers, both exact, in double precision:
//  - max_assignment: Jonker-Volgenant. Column reduction, reduction transfer and augmenting row
//    reduction settle most rows cheaply before the shortest-augmenting-path phase; on weight
//    matching's nearly-diagonal problems that is most of them (measured: 512 x 512 aligned
//    problems in about 1 ms against 17 ms for the plain Hungarian method). It can also start
//    from the duals of a similar problem (see Start).
//  - max_assignment_reference: the plain Hungarian method (shortest augmenting path from every
//    row): the oracle for the tests.
#pragma once
#include <vector>

namespace segfast {

struct AssignWorkspace {
    std::vector<double> u, v, min_to;  // row and column potentials, path lengths
    std::vector<int> match, way;       // column -> row matched; predecessor column on the path
    std::vector<char> used;
    std::vector<int> row_sol, col_sol, free_rows, col_list, pred, matches;
    std::vector<unsigned char> closed;  // bit per column: settled in the current path search
};

// Where max_assignment starts. Every start ends at an optimal assignment; a start close to the
// answer leaves few rows for the shortest-path phase.
enum class Start {
    Cold,      // Jonker-Volgenant's own initialisation
    Prices,    // prices: column prices of a similar problem whose solution was the identity (in
               // weight matching, the same model's last match, already applied); rows whose
               // identity match is still a cheapest column under them start assigned
    RowDuals,  // row_duals: the row duals of a similar problem with the same rows (another
               // model's match to nearly the same target); each column gets the cheapest price
               // they allow, then as Prices
};

// score: (n, n) row-major. Writes perm[i] = column assigned to row i; returns the total score.
// prices, row_duals (n,), optional: read by the start that names them; on return they hold
// the solution's column prices and row duals.
double max_assignment(const float* score, int n, int* perm, AssignWorkspace& ws, Start start = Start::Cold,
                      double* prices = nullptr, double* row_duals = nullptr);
double max_assignment_reference(const float* score, int n, int* perm, AssignWorkspace& ws);

// The AVX-512 inner loops of max_assignment (assign_avx512.cpp), used when the CPU has them.
// Rows are score rows (float); the cost minimised is minus the score, in double.
bool assign_avx512_supported();
double min_reduced_cost_avx512(const float* score_row, const double* prices, int n);
// The smallest reduced cost of a row and its first column, and the smallest over the other
// columns and its first column (j2 = -1, u_sub = inf when n = 1).
void two_smallest_avx512(const float* score_row, const double* prices, int n, double* u_min, int* j1, double* u_sub,
                         int* j2);
// out[j] = min over rows k of (cost(k, j) - u[k]), rows with u[k] = -inf left out: the highest
// price column j can have with every such row's reduced cost still >= 0.
void column_minima_avx512(const float* score, const double* u, int n, double* out);
void augment_avx512(const float* score, int n, double* prices, int* row_sol, int* col_sol, int free_row,
                    double* dist, int* pred, int* settled, unsigned char* closed);

}  // namespace segfast
