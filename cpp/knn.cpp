#include "knn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "buffer.h"
#include "gemm.h"
#include "threads.h"

namespace segfast {

namespace {
constexpr int kQueryBlock = 256;
constexpr int kRefBlock = 256;  // B (d x 256 floats, 800 KB for d = 784) stays in L2, unlike 2048
// refs^T is stored as strips of kGemmStrip columns, each (d, 64) contiguous: the tile streams one
// 200 KB run instead of 64 floats every 1 KB (bench/README.md has both measurements).
constexpr int kStrip = kGemmStrip;
}  // namespace

void knn(const float* queries, std::int64_t n_q, const float* refs, std::int64_t n_r, int d, int k,
         std::int64_t* indices, float* distances, int n_threads) {
    std::vector<float> ref_norm(n_r);
    for (std::int64_t j = 0; j < n_r; ++j) {
        const float* r = refs + j * d;
        double s = 0.0;
        for (int p = 0; p < d; ++p) s += double(r[p]) * r[p];
        ref_norm[j] = static_cast<float>(s);
    }
    // refs^T in strips: the strip of columns [c0, c0 + w) is (d, w) row-major at refs_t + c0 * d.
    Buffer<float> refs_t(static_cast<std::size_t>(d) * n_r);
    for (std::int64_t c0 = 0; c0 < n_r; c0 += kStrip) {
        const std::int64_t w = std::min<std::int64_t>(kStrip, n_r - c0);
        float* dst = refs_t.data() + c0 * d;
        transpose(refs + c0 * d, d, static_cast<int>(w), d, dst, w);
    }
    const std::int64_t ref_blocks = (n_r + kRefBlock - 1) / kRefBlock;

    const long q_blocks = static_cast<long>((n_q + kQueryBlock - 1) / kQueryBlock);
    parallel_for(q_blocks, n_threads, [&](long qb, int) {
        const std::int64_t i0 = qb * kQueryBlock;
        const int rows = static_cast<int>(std::min<std::int64_t>(kQueryBlock, n_q - i0));
        Buffer<float> block(static_cast<std::size_t>(rows) * kRefBlock);
        // Per query: the best k so far as (squared distance, index), kept as a max-heap.
        std::vector<std::vector<std::pair<float, std::int64_t>>> best(rows);
        for (auto& h : best) h.reserve(k + 1);
        std::vector<float> q_norm(rows);
        // Per query: the k-th best squared distance so far (infinite until k are held). Most
        // candidates lose against it, so they are dropped without touching the heap.
        std::vector<float> bound(rows, std::numeric_limits<float>::infinity());
        for (int i = 0; i < rows; ++i) {
            const float* q = queries + (i0 + i) * d;
            double s = 0.0;
            for (int p = 0; p < d; ++p) s += double(q[p]) * q[p];
            q_norm[i] = static_cast<float>(s);
        }
        for (std::int64_t b = 0; b < ref_blocks; ++b) {
            const std::int64_t j0 = b * kRefBlock;
            const int cols = static_cast<int>(std::min<std::int64_t>(kRefBlock, n_r - j0));
            for (int s0 = 0; s0 < cols; s0 += kStrip) {
                const int width = std::min(kStrip, cols - s0);
                gemm(Epilogue::Store, gemm_args(rows, width, d, rows_of(queries + i0 * d, d),
                                                refs_t.data() + (j0 + s0) * d, width, block.data() + s0, cols));
            }
            for (int i = 0; i < rows; ++i) {
                auto& heap = best[i];
                float* sq = block.data() + static_cast<std::size_t>(i) * cols;  // dots in, squared distances out
                const float qn = q_norm[i];
                const float* rn = ref_norm.data() + j0;
                for (int j = 0; j < cols; ++j) sq[j] = std::max(qn - 2.f * sq[j] + rn[j], 0.f);
                float worst = bound[i];
                for (int j = 0; j < cols; ++j) {
                    if (sq[j] > worst) continue;
                    const std::pair<float, std::int64_t> cand(sq[j], j0 + j);
                    if (static_cast<int>(heap.size()) < k) {
                        heap.push_back(cand);
                        std::push_heap(heap.begin(), heap.end());
                        if (static_cast<int>(heap.size()) == k) worst = heap.front().first;
                    } else if (cand < heap.front()) {
                        std::pop_heap(heap.begin(), heap.end());
                        heap.back() = cand;
                        std::push_heap(heap.begin(), heap.end());
                        worst = heap.front().first;
                    }
                }
                bound[i] = worst;
            }
        }
        for (int i = 0; i < rows; ++i) {
            auto& heap = best[i];
            std::sort_heap(heap.begin(), heap.end());
            for (int t = 0; t < k; ++t) {
                indices[(i0 + i) * k + t] = heap[t].second;
                distances[(i0 + i) * k + t] = std::sqrt(heap[t].first);
            }
        }
    });
}

}  // namespace segfast
