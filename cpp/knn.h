// Exact k-nearest-neighbour search (Euclidean) of query rows among reference rows, blocked:
// distances (|q|^2 - 2 q.r + |r|^2) are computed 256 query rows x 256 reference rows at a time
// through gemm, so no (queries x references) matrix of the whole query set is ever held.
#pragma once
#include <cstdint>

namespace segfast {

// queries: (n_q, d); refs: (n_r, d). Writes, for each query, the indices (n_q, k) of its k
// nearest references, nearest first (ties: the lower index first), and their distances.
void knn(const float* queries, std::int64_t n_q, const float* refs, std::int64_t n_r, int d, int k,
         std::int64_t* indices, float* distances, int n_threads);

}  // namespace segfast
