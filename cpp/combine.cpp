#include "combine.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "mlp.h"
#include "threads.h"

namespace segfast {

namespace {
constexpr int kBlockRows = 256;
}

void combine(const Arch& arch, const float* params, int n_models, const float* x, std::int64_t n_rows,
             Combine mode, const double* model_weights, const float* row_weights, float* out, int n_threads,
             float* votes) {
    const int C = arch.n_out();
    const long blocks = static_cast<long>((n_rows + kBlockRows - 1) / kBlockRows);
    const int threads = std::max(1, static_cast<int>(std::min<long>(n_threads, blocks)));
    std::vector<std::unique_ptr<Workspace>> spaces(threads);
    parallel_for(blocks, threads, [&](long block, int thread) {
        if (!spaces[thread]) spaces[thread] = std::make_unique<Workspace>(arch, kBlockRows);
        Workspace& ws = *spaces[thread];
        const std::int64_t row0 = block * kBlockRows;
        const int rows = static_cast<int>(std::min<std::int64_t>(kBlockRows, n_rows - row0));
        std::vector<double> acc(static_cast<std::size_t>(rows) * C, 0.0);  // models added in order
        std::vector<double> vote_acc(votes ? acc.size() : 0, 0.0);
        std::vector<int> picked;  // rows of the block where model m has a non-zero weight
        picked.reserve(rows);
        for (int m = 0; m < n_models; ++m) {
            const float* w = params + static_cast<std::size_t>(m) * arch.n_params;
            const double wm = model_weights ? model_weights[m] : 1.0;
            if (wm == 0.0) continue;
            // With per-row weights (competence), a model runs only on the rows that count it:
            // KNORA-E keeps a few models a row, so most of the forward pass is skipped.
            picked.clear();
            for (int i = 0; i < rows; ++i)
                if (!row_weights || row_weights[(row0 + i) * n_models + m] != 0.f) picked.push_back(i);
            if (picked.empty()) continue;
            const float* in = x + row0 * arch.n_in();
            const int count = static_cast<int>(picked.size());
            if (count < rows) {
                const int d = arch.n_in();
                for (int t = 0; t < count; ++t)
                    std::copy(in + static_cast<std::size_t>(picked[t]) * d, in + static_cast<std::size_t>(picked[t] + 1) * d,
                              ws.input.data() + static_cast<std::size_t>(t) * d);
                in = ws.input.data();
            }
            float* z = forward(arch, w, in, count, ws);
            for (int t = 0; t < count; ++t) {
                const int i = count < rows ? picked[t] : t;
                float* zi = z + static_cast<std::size_t>(t) * C;
                const double weight = wm * (row_weights ? row_weights[(row0 + i) * n_models + m] : 1.0f);
                double* a = acc.data() + static_cast<std::size_t>(i) * C;
                int top = 0;
                for (int c = 1; c < C; ++c) top = zi[c] > zi[top] ? c : top;
                if (votes) vote_acc[static_cast<std::size_t>(i) * C + top] += weight;
                if (mode == Combine::Votes) {
                    a[top] += weight;
                    continue;
                }
                double total = 0.0;
                for (int c = 0; c < C; ++c) total += std::exp(double(zi[c]) - zi[top]);
                if (mode == Combine::Proba) {
                    for (int c = 0; c < C; ++c) a[c] += weight * std::exp(double(zi[c]) - zi[top]) / total;
                } else {
                    const double log_total = std::log(total);
                    for (int c = 0; c < C; ++c) a[c] += weight * (double(zi[c]) - zi[top] - log_total);
                }
            }
        }
        float* dst = out + row0 * C;
        for (std::size_t t = 0; t < acc.size(); ++t) dst[t] = static_cast<float>(acc[t]);
        if (votes)
            for (std::size_t t = 0; t < vote_acc.size(); ++t) votes[row0 * C + t] = static_cast<float>(vote_acc[t]);
    });
}

}  // namespace segfast
