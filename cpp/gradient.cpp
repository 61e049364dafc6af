#include "gradient.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "threads.h"

namespace segfast {

namespace {

constexpr int kBlockRows = 256;  // as prediction's blocks: a block's activations stay in L2
constexpr int kPartials = 16;    // partial sums, whatever the threads: the bits do not depend on them

}  // namespace

double loss_gradient(const Arch& arch, const float* params, const float* x, const std::int64_t* labels,
                     const float* targets, std::int64_t n_rows, const LossSpec& loss, double* grad, int n_threads) {
    const std::int64_t blocks = (n_rows + kBlockRows - 1) / kBlockRows;
    const int parts = static_cast<int>(std::min<std::int64_t>(kPartials, std::max<std::int64_t>(blocks, 1)));
    const std::size_t P = arch.n_params;
    std::vector<float> partial(static_cast<std::size_t>(parts) * P, 0.f);
    std::vector<double> losses(parts, 0.0);
    const int d = arch.n_in(), k = arch.n_out();
    parallel_for(parts, std::max(1, std::min(n_threads, parts)), [&](long part, int) {
        Workspace ws(arch, kBlockRows);
        float* g = partial.data() + part * P;
        for (std::int64_t block = blocks * part / parts; block < blocks * (part + 1) / parts; ++block) {
            const std::int64_t row0 = block * kBlockRows;
            const int rows = static_cast<int>(std::min<std::int64_t>(kBlockRows, n_rows - row0));
            std::memcpy(ws.input.data(), x + row0 * d, sizeof(float) * rows * d);
            if (labels) std::copy(labels + row0, labels + row0 + rows, ws.labels.data());
            if (targets) std::memcpy(ws.targets.data(), targets + row0 * k, sizeof(float) * rows * k);
            const float share = static_cast<float>(rows) / static_cast<float>(n_rows);
            losses[part] += add_gradient(arch, params, rows, share, ws, g, loss);
        }
    });
    double total = 0.0;
    std::fill(grad, grad + P, 0.0);
    for (int part = 0; part < parts; ++part) {
        total += losses[part];
        const float* g = partial.data() + static_cast<std::size_t>(part) * P;
        for (std::size_t p = 0; p < P; ++p) grad[p] += static_cast<double>(g[p]);
    }
    return n_rows > 0 ? total / static_cast<double>(n_rows) : 0.0;
}

}  // namespace segfast
