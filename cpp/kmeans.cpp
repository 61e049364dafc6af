#include "kmeans.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "buffer.h"
#include "gemm.h"
#include "rng.h"
#include "threads.h"

namespace segfast {

namespace {

constexpr int kRowBlock = 64;  // points per task in the distance products

double squared_distance(const float* a, const float* b, int d) {
    float total = 0.f;
    for (int j = 0; j < d; ++j) {
        const float diff = a[j] - b[j];
        total += diff * diff;
    }
    return total;
}

// dots (n, m) = X (n, d) @ Y^T, with Yt = Y^T (d, m) already laid out; row blocks in parallel.
void dot_products(const float* X, int n, int d, const float* Yt, int m, float* dots, int n_threads) {
    const long blocks = (n + kRowBlock - 1) / kRowBlock;
    parallel_for(blocks, n_threads, [&](long b, int) {
        const int rows = std::min(kRowBlock, n - static_cast<int>(b) * kRowBlock);
        gemm(Epilogue::Store, gemm_args(rows, m, d, rows_of(X + static_cast<std::size_t>(b) * kRowBlock * d, d), Yt, m,
                                        dots + static_cast<std::size_t>(b) * kRowBlock * m, m));
    });
}

std::vector<double> squared_norms(const float* X, int n, int d) {
    std::vector<double> out(n);
    for (int i = 0; i < n; ++i) {
        double s = 0.0;
        const float* x = X + static_cast<std::size_t>(i) * d;
        for (int j = 0; j < d; ++j) s += double(x[j]) * x[j];
        out[i] = s;
    }
    return out;
}

void kmeans_plus_plus(const float* X, int n, int d, int k, Stream& stream, float* centroids, int n_threads) {
    std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
    int chosen = static_cast<int>(stream.below(n));
    for (int c = 0; c < k; ++c) {
        const float* center = X + static_cast<std::size_t>(chosen) * d;
        std::copy(center, center + d, centroids + static_cast<std::size_t>(c) * d);
        parallel_for(n, n_threads,
                     [&](long i, int) { nearest[i] = std::min(nearest[i], squared_distance(X + i * d, center, d)); });
        if (c + 1 == k) break;
        double total = 0.0;
        for (double v : nearest) total += v;
        // D^2 sampling; if every point sits on a centre already, take the next unused index.
        const double r = static_cast<double>(stream.next() >> 11) * 0x1.0p-53 * total;
        double cumulative = 0.0;
        chosen = -1;
        for (int i = 0; i < n && total > 0; ++i) {
            cumulative += nearest[i];
            if (cumulative > r && nearest[i] > 0) {
                chosen = i;
                break;
            }
        }
        if (chosen < 0) chosen = (c + 1) % n;
    }
}

}  // namespace

KMeansStats kmeans(const float* X, int n, int d, int k, std::uint64_t seed, int max_iter, int n_threads, int* labels,
                   float* centroids) {
    Stream stream(seed, 0x6b6d65616e73ull, 0);  // "kmeans"
    kmeans_plus_plus(X, n, d, k, stream, centroids, n_threads);
    const std::vector<double> x_norm = squared_norms(X, n, d);
    Buffer<float> centroids_t(static_cast<std::size_t>(d) * k), dots(static_cast<std::size_t>(n) * k);
    std::vector<double> distance(n);
    std::vector<int> counts(k);
    std::fill(labels, labels + n, -1);
    KMeansStats stats;

    for (stats.iterations = 1; stats.iterations <= max_iter; ++stats.iterations) {
        // Assign: |x - c|^2 = |x|^2 - 2 x.c + |c|^2, the products through gemm.
        transpose(centroids, d, k, d, centroids_t.data(), k);  // (d, k)
        dot_products(X, n, d, centroids_t.data(), k, dots.data(), n_threads);
        const std::vector<double> c_norm = squared_norms(centroids, k, d);
        bool changed = false;
        stats.inertia = 0.0;
        for (int i = 0; i < n; ++i) {
            int best = 0;
            double best_d = std::numeric_limits<double>::infinity();
            for (int c = 0; c < k; ++c) {
                const double dist = x_norm[i] - 2.0 * dots.data()[static_cast<std::size_t>(i) * k + c] + c_norm[c];
                if (dist < best_d) {
                    best_d = dist;
                    best = c;
                }
            }
            changed |= labels[i] != best;
            labels[i] = best;
            distance[i] = std::max(best_d, 0.0);
            stats.inertia += distance[i];
        }
        if (!changed) break;

        // Update: each centroid the mean of its points; an empty cluster takes the point that
        // is farthest from its own centroid.
        std::fill(counts.begin(), counts.end(), 0);
        for (int i = 0; i < n; ++i) ++counts[labels[i]];
        for (int c = 0; c < k; ++c) {
            if (counts[c] > 0) continue;
            const int far = static_cast<int>(std::max_element(distance.begin(), distance.end()) - distance.begin());
            --counts[labels[far]];
            labels[far] = c;
            counts[c] = 1;
            distance[far] = 0.0;
        }
        const long chunks = (d + 1023) / 1024;
        parallel_for(chunks, n_threads, [&](long ch, int) {
            const int j0 = static_cast<int>(ch) * 1024, j1 = std::min(d, j0 + 1024);
            std::vector<double> acc(static_cast<std::size_t>(k) * (j1 - j0), 0.0);
            for (int i = 0; i < n; ++i) {
                const float* x = X + static_cast<std::size_t>(i) * d;
                double* a = acc.data() + static_cast<std::size_t>(labels[i]) * (j1 - j0);
                for (int j = j0; j < j1; ++j) a[j - j0] += x[j];
            }
            for (int c = 0; c < k; ++c)
                for (int j = j0; j < j1; ++j)
                    centroids[static_cast<std::size_t>(c) * d + j] = static_cast<float>(
                        acc[static_cast<std::size_t>(c) * (j1 - j0) + (j - j0)] / counts[c]);
        });
    }
    stats.iterations = std::min(stats.iterations, max_iter);
    return stats;
}

void pairwise_distances(const float* X, int n, int d, float* dist, int n_threads) {
    const std::vector<double> norm = squared_norms(X, n, d);
    // Column blocks of X^T keep the transposed copy small (d x 256 floats).
    constexpr int kCols = 256;
    Buffer<float> xt(static_cast<std::size_t>(d) * kCols), block(static_cast<std::size_t>(n) * kCols);
    for (int j0 = 0; j0 < n; j0 += kCols) {
        const int cols = std::min(kCols, n - j0);
        transpose(X + static_cast<std::size_t>(j0) * d, d, cols, d, xt.data(), cols);  // (d, cols)
        dot_products(X, n, d, xt.data(), cols, block.data(), n_threads);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < cols; ++j) {
                const double sq = norm[i] + norm[j0 + j] - 2.0 * block.data()[static_cast<std::size_t>(i) * cols + j];
                dist[static_cast<std::size_t>(i) * n + j0 + j] = i == j0 + j
                                                                     ? 0.f
                                                                     : static_cast<float>(std::sqrt(std::max(sq, 0.0)));
            }
    }
}

double silhouette(const float* dist, int n, const int* labels, int k) {
    std::vector<int> size(k, 0);
    for (int i = 0; i < n; ++i) ++size[labels[i]];
    std::vector<double> mean_to(k);
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
        std::fill(mean_to.begin(), mean_to.end(), 0.0);
        const float* row = dist + static_cast<std::size_t>(i) * n;
        for (int j = 0; j < n; ++j) mean_to[labels[j]] += row[j];
        const int own = labels[i];
        if (size[own] < 2) continue;  // contributes 0
        const double a = mean_to[own] / (size[own] - 1);
        double b = std::numeric_limits<double>::infinity();
        for (int c = 0; c < k; ++c)
            if (c != own && size[c] > 0) b = std::min(b, mean_to[c] / size[c]);
        if (!std::isfinite(b)) continue;
        const double denom = std::max(a, b);
        total += denom > 0 ? (b - a) / denom : 0.0;
    }
    return total / n;
}

}  // namespace segfast
