#include "predict.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "mlp.h"
#include "threads.h"

namespace segfast {

namespace {

// 256 rows keep a block's activations (256 x 512 floats at most for wide layers) in L2
// while giving the kernel tall enough products to run at speed.
constexpr int kBlockRows = 256;

template <class Body>
void for_each_block(const Arch& arch, int n_models, std::int64_t n_rows, int n_threads, Body&& body) {
    const std::int64_t blocks = (n_rows + kBlockRows - 1) / kBlockRows;
    const long tasks = static_cast<long>(blocks) * n_models;
    const int threads = std::max(1, static_cast<int>(std::min<long>(n_threads, tasks)));
    std::vector<std::unique_ptr<Workspace>> spaces(threads);
    parallel_for(tasks, threads, [&](long task, int thread) {
        if (!spaces[thread]) spaces[thread] = std::make_unique<Workspace>(arch, kBlockRows);
        const int model = static_cast<int>(task / blocks);
        const std::int64_t block = task % blocks;
        const std::int64_t row0 = block * kBlockRows;
        const int rows = static_cast<int>(std::min<std::int64_t>(kBlockRows, n_rows - row0));
        body(model, block, row0, rows, *spaces[thread]);
    });
}

}  // namespace

void predict_outputs(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
                     float* out, bool softmax, int n_threads) {
    const int C = arch.n_out();
    for_each_block(arch, n_models, n_rows, n_threads,
                   [&](int model, std::int64_t, std::int64_t row0, int rows, Workspace& ws) {
                       const float* w = params + static_cast<std::size_t>(model) * arch.n_params;
                       float* z = forward(arch, w, x + row0 * arch.n_in(), rows, ws);
                       if (softmax) softmax_rows(z, rows, C);
                       float* dst = out + (static_cast<std::int64_t>(model) * n_rows + row0) * C;
                       std::memcpy(dst, z, sizeof(float) * rows * C);
                   });
}

void regression_errors(const Arch& arch, const float* params, int n_models, const float* x, const float* t,
                       std::int64_t n_rows, double* sq_err, double* abs_err, int n_threads) {
    const int k = arch.n_out();
    const std::int64_t blocks = (n_rows + kBlockRows - 1) / kBlockRows;
    // Per-block partial sums added in block order afterwards, as evaluate does: thread-independent.
    const std::size_t per_block = static_cast<std::size_t>(2) * k;
    std::vector<double> partial(static_cast<std::size_t>(blocks) * n_models * per_block, 0.0);
    for_each_block(arch, n_models, n_rows, n_threads,
                   [&](int model, std::int64_t block, std::int64_t row0, int rows, Workspace& ws) {
                       const float* w = params + static_cast<std::size_t>(model) * arch.n_params;
                       const float* z = forward(arch, w, x + row0 * arch.n_in(), rows, ws);
                       double* sums = &partial[(static_cast<std::size_t>(model) * blocks + block) * per_block];
                       for (int i = 0; i < rows; ++i)
                           for (int j = 0; j < k; ++j) {
                               const double r = double(z[static_cast<std::size_t>(i) * k + j]) -
                                                t[static_cast<std::size_t>(row0 + i) * k + j];
                               sums[j] += r * r;
                               sums[k + j] += std::abs(r);
                           }
                   });
    for (int m = 0; m < n_models; ++m)
        for (int j = 0; j < k; ++j) {
            double sq = 0.0, ab = 0.0;
            for (std::int64_t b = 0; b < blocks; ++b) {
                const double* sums = &partial[(static_cast<std::size_t>(m) * blocks + b) * per_block];
                sq += sums[j];
                ab += sums[k + j];
            }
            sq_err[static_cast<std::size_t>(m) * k + j] = sq;
            abs_err[static_cast<std::size_t>(m) * k + j] = ab;
        }
}

void evaluate(const Arch& arch, const float* params, int n_models, const float* x, const std::int64_t* y,
              std::int64_t n_rows, double* loss, double* accuracy, int n_threads) {
    const std::int64_t blocks = (n_rows + kBlockRows - 1) / kBlockRows;
    // Per-block partial sums, added in block order afterwards: the same total whatever the threads.
    std::vector<double> block_loss(static_cast<std::size_t>(blocks) * n_models, 0.0);
    std::vector<std::int64_t> block_correct(block_loss.size(), 0);
    for_each_block(arch, n_models, n_rows, n_threads,
                   [&](int model, std::int64_t block, std::int64_t row0, int rows, Workspace& ws) {
                       const float* w = params + static_cast<std::size_t>(model) * arch.n_params;
                       const float* z = forward(arch, w, x + row0 * arch.n_in(), rows, ws);
                       const std::size_t slot = static_cast<std::size_t>(model) * blocks + block;
                       cross_entropy(z, y + row0, rows, arch.n_out(), &block_loss[slot], &block_correct[slot]);
                   });
    for (int m = 0; m < n_models; ++m) {
        double total = 0.0;
        std::int64_t correct = 0;
        for (std::int64_t b = 0; b < blocks; ++b) {
            total += block_loss[static_cast<std::size_t>(m) * blocks + b];
            correct += block_correct[static_cast<std::size_t>(m) * blocks + b];
        }
        loss[m] = n_rows > 0 ? total / static_cast<double>(n_rows) : 0.0;
        accuracy[m] = n_rows > 0 ? static_cast<double>(correct) / static_cast<double>(n_rows) : 0.0;
    }
}

void preactivation_stats(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
                         double* mean, double* stddev, int n_threads) {
    int hidden = 0;
    for (int l = 1; l < arch.n_layers(); ++l) hidden += arch.dims[l];
    const int threads = std::max(1, std::min(n_threads, n_models));
    std::vector<std::unique_ptr<Workspace>> spaces(threads);
    // One task per model, its blocks in order: the sums do not depend on the thread count.
    parallel_for(n_models, threads, [&](long model, int thread) {
        if (!spaces[thread]) spaces[thread] = std::make_unique<Workspace>(arch, kBlockRows);
        Workspace& ws = *spaces[thread];
        const float* w = params + static_cast<std::size_t>(model) * arch.n_params;
        std::vector<double> sum(hidden, 0.0), sum_sq(hidden, 0.0);
        for (std::int64_t row0 = 0; row0 < n_rows; row0 += kBlockRows) {
            const int rows = static_cast<int>(std::min<std::int64_t>(kBlockRows, n_rows - row0));
            const float* in = x + row0 * arch.n_in();
            for (int l = 0, off = 0; l + 1 < arch.n_layers(); off += arch.dims[l + 1], ++l) {
                const int d = arch.dims[l + 1];
                GemmArgs g;
                g.m = rows;
                g.n = d;
                g.k = arch.dims[l];
                g.a = in;
                g.a_rs = arch.dims[l];
                g.a_ks = 1;
                g.b = w + arch.w_off[l];
                g.ldb = d;
                g.c = ws.act[l + 1].data();
                g.ldc = d;
                g.bias = w + arch.b_off[l];
                gemm(Epilogue::Bias, g);
                float* z = ws.act[l + 1].data();
                for (int i = 0; i < rows; ++i)
                    for (int j = 0; j < d; ++j) {
                        float& v = z[static_cast<std::size_t>(i) * d + j];
                        sum[off + j] += v;
                        sum_sq[off + j] += double(v) * v;
                        v = v > 0.f ? v : 0.f;  // the next layer sees the activation
                    }
                in = z;
            }
        }
        for (int h = 0; h < hidden; ++h) {
            const double m = sum[h] / static_cast<double>(n_rows);
            mean[model * hidden + h] = m;
            stddev[model * hidden + h] = std::sqrt(std::max(sum_sq[h] / static_cast<double>(n_rows) - m * m, 0.0));
        }
    });
}

}  // namespace segfast
