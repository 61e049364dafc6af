// Linear assignment: the permutation that maximises the total score of an n x n matrix.
// It is the inner step of weight matching (which hidden unit of one model plays the role of
// which unit of another). Two solvers, both exact, in double precision:
//  - max_assignment: Jonker-Volgenant. Column reduction, reduction transfer and augmenting row
//    reduction settle most rows cheaply before the shortest-augmenting-path phase; on weight
//    matching's nearly-diagonal problems that is most of them, which makes it much faster than
//    the plain Hungarian method there (bench/README.md). It can also start from the duals of a
//    similar problem (see Start). Its inner loops come from the CPU kernel set (dispatch.h).
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

}  // namespace segfast
