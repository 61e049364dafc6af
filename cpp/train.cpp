// OpenMP over models: each thread takes a whole model and runs its epoch from start to end,
// so no two threads ever touch the same parameters and the result is independent of threads.
#include "train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "finite.h"
#include "mlp.h"
#include "rng.h"
#include "threads.h"

namespace segfast {

namespace {

// Copies the rows of one minibatch into ws.input, flipping the chosen ones left-right.
void gather(const Arch& arch, const EpochInputs& in, const std::int64_t* rows, int count, int flip_width,
            Stream& stream, Workspace& ws) {
    const int d = arch.n_in();
    for (int i = 0; i < count; ++i) {
        const float* src = in.x + rows[i] * d;
        float* dst = ws.input.data() + static_cast<std::ptrdiff_t>(i) * d;
        if (in.targets) {
            const int k = arch.n_out();
            const float* t = in.targets + rows[i] * k;
            float* to = ws.targets.data() + static_cast<std::ptrdiff_t>(i) * k;
            if (k == 1) *to = *t;  // one target a row, the common case: no library call per row
            else std::memcpy(to, t, sizeof(float) * k);
        } else {
            ws.labels[i] = in.y[rows[i]];
        }
        if (flip_width > 0 && (stream.next() >> 63)) {
            for (int r = 0; r < d; r += flip_width)
                for (int c = 0; c < flip_width; ++c) dst[r + c] = src[r + flip_width - 1 - c];
        } else {
            std::memcpy(dst, src, sizeof(float) * d);
        }
    }
}

}  // namespace

void train_epoch(const Arch& arch, float* params, float* velocity, const float* anchor, int n_models,
                 const EpochInputs& in, const EpochConfig& cfg, const EpochResult& out) {
    const int n_threads = std::max(1, std::min(cfg.n_threads, n_models));
    std::vector<std::unique_ptr<Workspace>> spaces(n_threads);
    const std::size_t P = arch.n_params;
    // Workspaces hold the widest minibatch there can be: a batch_size above every segment's
    // size asks for no more (batch_size = 2^31 - 1 once allocated for all of it and failed).
    std::int64_t longest = 0;
    for (int m = 0; m < n_models; ++m)
        if (in.active[m]) longest = std::max(longest, in.offsets[m + 1] - in.offsets[m]);
    const int widest = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(cfg.batch_size, longest)));

    auto train_model = [&](long m, int thread) {
        out.mean_loss[m] = std::numeric_limits<double>::quiet_NaN();
        out.diverged[m] = 0;
        if (!in.active[m]) return;
        if (!spaces[thread]) spaces[thread] = std::make_unique<Workspace>(arch, widest);
        Workspace& ws = *spaces[thread];

        const std::int64_t begin = in.offsets[m], count = in.offsets[m + 1] - begin;
        ws.rows.assign(in.order + begin, in.order + begin + count);
        Stream stream(cfg.seed, static_cast<std::uint64_t>(cfg.first_model + m),
                      static_cast<std::uint64_t>(in.epoch[m]));
        stream.shuffle(ws.rows.data(), count);

        float* w = params + static_cast<std::size_t>(m) * P;
        float* v = velocity ? velocity + static_cast<std::size_t>(m) * P : nullptr;
        const float* a = anchor ? anchor + static_cast<std::size_t>(m) * P : nullptr;
        // The broadcast of a round (start_row) is fused in: the row is written here, by the thread
        // that trains it, and doubles as the divergence snapshot. Otherwise a diverged step may
        // already have written inf into the weights; the snapshot lets the model end at its last
        // finished epoch instead (one copy of the row, small beside an epoch).
        const float* restore = in.start_row;
        if (restore) {
            std::memcpy(w, restore, sizeof(float) * P);
            if (v) std::memset(v, 0, sizeof(float) * P);
        } else {
            ws.snapshot.resize(2 * P);
            std::memcpy(ws.snapshot.data(), w, sizeof(float) * P);
            if (v) std::memcpy(ws.snapshot.data() + P, v, sizeof(float) * P);
            restore = ws.snapshot.data();
        }
        auto diverge = [&] {  // back to the epoch's start; the model trains no further
            out.diverged[m] = 1;
            std::memcpy(w, restore, sizeof(float) * P);
            if (v) {
                if (in.start_row) std::memset(v, 0, sizeof(float) * P);
                else std::memcpy(v, ws.snapshot.data() + P, sizeof(float) * P);
            }
        };
        double loss = 0.0;
        for (std::int64_t start = 0; start < count; start += cfg.batch_size) {
            const int rows = static_cast<int>(std::min<std::int64_t>(cfg.batch_size, count - start));
            gather(arch, in, ws.rows.data() + start, rows, cfg.flip_width, stream, ws);
            const double batch_loss = sgd_step(arch, w, v, a, rows, cfg.sgd, ws, cfg.loss);
            if (!std::isfinite(batch_loss)) {
                loss = batch_loss;
                diverge();
                break;
            }
            loss += batch_loss;
        }
        if (!out.diverged[m] && !all_finite(w, P)) {  // the epoch's last step overflowed
            loss = std::numeric_limits<double>::quiet_NaN();
            diverge();
        }
        out.mean_loss[m] = count > 0 ? loss / static_cast<double>(count) : 0.0;
    };

    if (!out.merge_weights) {
        parallel_for(n_models, n_threads, train_model);
        return;
    }
    // Fused merge: models go in fixed pieces (their bounds set by n_models and the block alone),
    // each trained in order by one thread that adds its models into the piece's partial sum; the
    // partial sums are then added in piece order. The same bits for any thread count.
    const auto pieces = merge_pieces(n_models, out.merge_block, out.merge_first);
    const int n_pieces = static_cast<int>(pieces.size());
    std::vector<double> own;
    double* partial = out.pieces;
    if (!partial) {
        own.assign(static_cast<std::size_t>(n_pieces) * P, 0.0);
        partial = own.data();
    }
    parallel_for(n_pieces, std::min(n_threads, n_pieces), [&](long b, int thread) {
        double* sum = partial + static_cast<std::size_t>(b) * P;
        std::fill(sum, sum + P, 0.0);
        for (long m = pieces[b].first; m < pieces[b].second; ++m) {
            train_model(m, thread);
            if (!in.active[m] || out.diverged[m] || out.merge_weights[m] == 0.0) continue;
            const float* w = params + static_cast<std::size_t>(m) * P;
            const double c = out.merge_weights[m];
            for (std::size_t j = 0; j < P; ++j) sum[j] += c * w[j];
        }
    });
    if (!out.merged) return;
    for (std::size_t j = 0; j < P; ++j) out.merged[j] = 0.0;
    for (int b = 0; b < n_pieces; ++b) {
        const double* sum = partial + static_cast<std::size_t>(b) * P;
        for (std::size_t j = 0; j < P; ++j) out.merged[j] += sum[j];
    }
}

std::vector<std::pair<long, long>> merge_pieces(int n_models, std::int64_t block, std::int64_t first) {
    if (block <= 0) block = (n_models + kMergeBlocks - 1) / kMergeBlocks;
    std::vector<std::pair<long, long>> pieces;
    for (std::int64_t at = first; at < first + n_models;) {
        const std::int64_t end = std::min<std::int64_t>(first + n_models, (at / block + 1) * block);
        if (at % block) {
            for (std::int64_t m = at; m < end; ++m) pieces.emplace_back(m - first, m - first + 1);
        } else {
            pieces.emplace_back(at - first, end - first);
        }
        at = end;
    }
    return pieces;
}

}  // namespace segfast
