// k-means over models seen as points (each model's parameter row), with a k-means++ start,
// and the silhouette score used to pick k. The distance products go through gemm.
#pragma once
#include <cstdint>

namespace segfast {

struct KMeansStats {
    int iterations = 0;
    double inertia = 0.0;  // sum of squared distances to the assigned centroid
};

// X: (n, d); labels: (n,) out; centroids: (k, d) out. Lloyd iterations until no label changes
// or max_iter. Deterministic for a seed, whatever n_threads.
KMeansStats kmeans(const float* X, int n, int d, int k, std::uint64_t seed, int max_iter, int n_threads, int* labels,
                   float* centroids);

// dist: (n, n) Euclidean distances between the rows of X.
void pairwise_distances(const float* X, int n, int d, float* dist, int n_threads);

// Mean silhouette coefficient of a labelling, from the (n, n) distances. Points alone in their
// cluster score 0 (the usual convention).
double silhouette(const float* dist, int n, const int* labels, int k);

}  // namespace segfast
