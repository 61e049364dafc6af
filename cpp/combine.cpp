#include "combine.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include "buffer.h"
#include "mlp.h"
#include "softmax.h"
#include "threads.h"

namespace segfast {

namespace {
constexpr int kBlockRows = 256;
// Logits held at once, (span rows, models, classes): 16 MB, 4,096 rows for 100 models of 10 classes.
constexpr std::size_t kLogitBudget = std::size_t(1) << 22;

struct Scratch {
    Workspace ws;
    Buffer<float> packed;               // (n_params,) the model's weights in strips (pack_weights), biases unused
    std::vector<int> picked;            // rows of the chunk where the model has a non-zero weight
    std::vector<double> acc, vote_acc;  // (classes,) one row's sums over models
    std::vector<double> shifted;        // (classes,) one model's exp(logit - largest logit) for the row
    Scratch(const Arch& arch, int rows)
        : ws(arch, rows), packed(arch.n_params), acc(arch.n_out()), vote_acc(arch.n_out()), shifted(arch.n_out()) {
        picked.reserve(rows);
    }
};

}  // namespace

void combine(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows, Combine mode,
             const double* model_weights, const float* row_weights, float* out, int n_threads, float* votes,
             const ModelScores* scores, double* running_sum) {
    const int C = arch.n_out(), d = arch.n_in();
    if (scores && (model_weights || row_weights))
        throw std::invalid_argument("combine: model scores need every model on every row (no weights)");
    // Per (256-row block, model) partial sums, added in block order at the end as evaluate() adds them.
    const std::int64_t all_blocks = (n_rows + kBlockRows - 1) / kBlockRows;
    std::vector<double> block_loss(scores ? static_cast<std::size_t>(all_blocks) * n_models : 0, 0.0);
    std::vector<std::int64_t> block_correct(block_loss.size(), 0);
    const std::int64_t per_row = std::max<std::int64_t>(1, static_cast<std::int64_t>(n_models) * C);
    const std::int64_t span = std::min<std::int64_t>(
        n_rows, std::max<std::int64_t>(kBlockRows,
                                       static_cast<std::int64_t>(kLogitBudget) / per_row / kBlockRows * kBlockRows));
    Buffer<float> logits(static_cast<std::size_t>(span * per_row));  // (span, n_models, C)
    const int threads = std::max(1, n_threads);
    std::vector<std::unique_ptr<Scratch>> spaces(threads);
    auto scratch = [&](int thread) -> Scratch& {
        if (!spaces[thread]) spaces[thread] = std::make_unique<Scratch>(arch, kBlockRows);
        return *spaces[thread];
    };

    for (std::int64_t r0 = 0; r0 < n_rows; r0 += span) {
        const std::int64_t rows = std::min(span, n_rows - r0);
        // Model by model, so each model's weights are packed once and stay in L2 across the
        // span's rows (faster than row blocks that ran all models: bench/README.md). With per-row weights (competence)
        // a model runs only on the rows that count it: KNORA-E keeps a few models a row, so most of the forward pass is
        // skipped.
        parallel_for(n_models, threads, [&](long m, int thread) {
            if (model_weights && model_weights[m] == 0.0) return;
            Scratch& s = scratch(thread);
            const float* w = params + static_cast<std::size_t>(m) * arch.n_params;
            bool packed = false;
            for (std::int64_t c0 = 0; c0 < rows; c0 += kBlockRows) {
                const int chunk = static_cast<int>(std::min<std::int64_t>(kBlockRows, rows - c0));
                s.picked.clear();
                for (int i = 0; i < chunk; ++i)
                    if (!row_weights || row_weights[(r0 + c0 + i) * n_models + m] != 0.f) s.picked.push_back(i);
                const int count = static_cast<int>(s.picked.size());
                if (count == 0) continue;
                // Packing pays back over several chunks; for one (a span of at most 256 rows: many
                // models, or few rows) it would cost more than the forward pass it speeds up.
                if (!packed && rows > kBlockRows) {
                    pack_weights(arch, w, s.packed.data());
                    packed = true;
                }
                const float* in = x + (r0 + c0) * d;
                if (count < chunk) {
                    for (int t = 0; t < count; ++t) {
                        const float* row = in + static_cast<std::size_t>(s.picked[t]) * d;
                        std::copy(row, row + d, s.ws.input.data() + static_cast<std::size_t>(t) * d);
                    }
                    in = s.ws.input.data();
                }
                const float* z = forward(arch, w, in, count, s.ws, packed ? s.packed.data() : nullptr);
                for (int t = 0; t < count; ++t)
                    std::copy(z + static_cast<std::size_t>(t) * C, z + static_cast<std::size_t>(t + 1) * C,
                              logits.data() + ((c0 + s.picked[t]) * n_models + m) * C);
            }
        });
        // Row by row, models added in order: the sums do not depend on the thread count.
        const long blocks = static_cast<long>((rows + kBlockRows - 1) / kBlockRows);
        parallel_for(blocks, threads, [&](long block, int thread) {
            Scratch& s = scratch(thread);
            const std::int64_t b0 = block * kBlockRows, b1 = std::min(rows, b0 + kBlockRows);
            for (std::int64_t i = b0; i < b1; ++i) {
                const std::int64_t r = r0 + i;
                if (running_sum) std::copy(running_sum + r * C, running_sum + (r + 1) * C, s.acc.begin());
                else std::fill(s.acc.begin(), s.acc.end(), 0.0);
                std::fill(s.vote_acc.begin(), s.vote_acc.end(), 0.0);
                for (int m = 0; m < n_models; ++m) {
                    const double wm = model_weights ? model_weights[m] : 1.0;
                    const float wr = row_weights ? row_weights[r * n_models + m] : 1.0f;
                    if (wm == 0.0 || wr == 0.f) continue;  // the rows phase one skipped
                    const double weight = wm * wr;
                    const float* zi = logits.data() + (i * n_models + m) * C;
                    double* a = s.acc.data();
                    const int top = argmax_logit(zi, C);
                    if (scores) {  // evaluate()'s own function, row by row: the same numbers
                        const std::size_t slot = static_cast<std::size_t>((r / kBlockRows) * n_models + m);
                        cross_entropy(zi, scores->labels + r, 1, C, &block_loss[slot], &block_correct[slot]);
                    }
                    if (votes) s.vote_acc[top] += weight;
                    if (mode == Combine::Votes) {
                        a[top] += weight;
                        continue;
                    }
                    double* e = s.shifted.data();
                    const double total = sum_shifted_exp(zi, C, static_cast<double>(zi[top]), e);
                    if (mode == Combine::Proba) {
                        for (int c = 0; c < C; ++c) a[c] += weight * e[c] / total;
                    } else {
                        const double log_total = std::log(total);
                        for (int c = 0; c < C; ++c) a[c] += weight * (double(zi[c]) - zi[top] - log_total);
                    }
                }
                for (int c = 0; c < C; ++c) out[r * C + c] = static_cast<float>(s.acc[c]);
                if (running_sum) std::copy(s.acc.begin(), s.acc.end(), running_sum + r * C);
                if (votes)
                    for (int c = 0; c < C; ++c) votes[r * C + c] = static_cast<float>(s.vote_acc[c]);
            }
        });
    }
    if (!scores) return;
    for (int m = 0; m < n_models; ++m) {
        double total = 0.0;
        std::int64_t correct = 0;
        for (std::int64_t b = 0; b < all_blocks; ++b) {
            total += block_loss[static_cast<std::size_t>(b) * n_models + m];
            correct += block_correct[static_cast<std::size_t>(b) * n_models + m];
        }
        scores->loss[m] = n_rows > 0 ? total / static_cast<double>(n_rows) : 0.0;
        scores->accuracy[m] = n_rows > 0 ? static_cast<double>(correct) / static_cast<double>(n_rows) : 0.0;
    }
}

}  // namespace segfast
