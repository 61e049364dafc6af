// Linear assignment: the permutation that maximises the total score of an n x n matrix.
// It is the inner step of weight matching (which hidden unit of one model plays the role of
// which unit of another). Shortest augmenting paths with dual potentials (Hungarian method,
// O(n^3) worst case), in double precision so that ties and tiny differences are resolved the
// same way on every machine.
#pragma once
#include <vector>

namespace segfast {

struct AssignWorkspace {
    std::vector<double> u, v, min_to;  // row and column potentials, path lengths
    std::vector<int> match, way;       // column -> row matched; predecessor column on the path
    std::vector<char> used;
};

// score: (n, n) row-major. Writes perm[i] = column assigned to row i; returns the total score.
double max_assignment(const float* score, int n, int* perm, AssignWorkspace& ws);

}  // namespace segfast
